"""Cassettes as files: names, compression, and reading with errors that say what is wrong."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson

from timetracer_otel.cassette.codec import cassette_from_bytes, cassette_to_json
from timetracer_otel.cassette.model import Cassette, HttpRequest, HttpResponse
from timetracer_otel.cassette.naming import slug
from timetracer_otel.errors import CassetteFormatError, CassetteNotFoundError
from timetracer_otel.settings import Compression

__all__ = ["cassette_relative_path", "dump_cassette", "iter_cassette_files", "load_cassette"]

SUFFIXES = {Compression.NONE: ".json", Compression.GZIP: ".json.gz", Compression.ZSTD: ".json.zst"}
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


#: The folder (below the cassette directory) of session cassettes: calls made outside any inbound request.
SESSION_FOLDER = "_session"


def cassette_relative_path(cassette: Cassette, compression: Compression) -> str:
    """``YYYY-MM-DD/METHOD__route-slug__shortid.json[.gz|.zst]``, or for a session cassette
    ``_session/YYYY-MM-DD/HHMMSS__service__shortid.json[.gz|.zst]``: safe characters only, bounded length."""
    request = cassette.request
    short_id = re.sub(r"[^0-9a-f]", "", cassette.metadata.id)[:12]
    recorded_at = cassette.metadata.recorded_at
    day = recorded_at.strftime("%Y-%m-%d")
    if request is None:
        # The time first: name order is then recording order, which is the order replay serves them in.
        moment = recorded_at.strftime("%H%M%S%f")
        return f"{SESSION_FOLDER}/{day}/{moment}__{slug(cassette.metadata.service)}__{short_id}{SUFFIXES[compression]}"
    route = request.route or urlsplit(request.url).path
    method = re.sub(r"[^A-Z]", "", request.method.upper())[:16] or "REQUEST"
    return f"{day}/{method}__{slug(route)}__{short_id}{SUFFIXES[compression]}"


def _encode_json(document: dict[str, object]) -> bytes:
    # Indented for readable git diffs. orjson writes the same bytes as json.dumps(indent=2) about 50 times
    # faster, which matters: the writer thread shares the GIL with the app it records.
    try:
        return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # integers beyond 64 bits, which orjson refuses
        return json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False).encode("utf-8") + b"\n"


def dump_cassette(cassette: Cassette, compression: Compression) -> bytes:
    data = _encode_json(cassette_to_json(cassette))
    if compression is Compression.GZIP:
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression is Compression.ZSTD:
        import zstandard

        return zstandard.ZstdCompressor(level=3, write_content_size=True).compress(data)
    return data


def _decompress(raw: bytes, path: Path) -> bytes:
    if raw.startswith(_GZIP_MAGIC):
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise CassetteFormatError(path, f"corrupt or truncated gzip data ({exc})") from exc
    if raw.startswith(_ZSTD_MAGIC):
        try:
            import zstandard
        except ImportError:
            raise CassetteFormatError(
                path, "zstd-compressed, but zstandard is not installed: pip install 'timetracer-otel[zstd]'"
            ) from None
        try:
            return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        except zstandard.ZstdError as exc:
            raise CassetteFormatError(path, f"corrupt or truncated zstd data ({exc})") from exc
    return raw


def load_cassette(path: str | Path, *, check_bodies: bool = False) -> Cassette:
    """Read one cassette file (plain, gzip or zstd, told apart by content, not name).

    A body stored as structured JSON is parsed, rendered and checked against its size when it is first used
    (most never are in replay); ``check_bodies=True`` does that for every body now, so a tampered body fails
    here rather than later.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CassetteNotFoundError(path) from None
    except IsADirectoryError:
        raise CassetteFormatError(path, "is a directory; pass a cassette file") from None
    cassette = cassette_from_bytes(_decompress(raw, path), source=str(path))
    if check_bodies:
        _check_bodies(cassette, path)
    return cassette


def _check_bodies(cassette: Cassette, path: Path) -> None:
    messages: list[tuple[str, object]] = [
        ("request", cassette.request),
        ("response", cassette.response),
    ]
    for n, interaction in enumerate(cassette.interactions):
        where = f"interactions[{n}]"
        messages += ((f"{where}.request", interaction.request), (f"{where}.response", interaction.response))
    for where, message in messages:
        if isinstance(message, HttpRequest | HttpResponse) and message.body is not None:
            try:
                _ = message.body.data
            except CassetteFormatError as exc:
                raise CassetteFormatError(path, f"{where}.body: {exc.problem}") from None


def iter_cassette_files(directory: str | Path, *, sessions: bool = False) -> Iterator[Path]:
    """Every request cassette file below ``directory`` in name order (which is recording-day order), or with
    ``sessions`` every session cassette file (in recording order)."""
    directory = Path(directory)
    if not directory.exists():
        raise CassetteNotFoundError(directory)
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name.endswith(tuple(SUFFIXES.values())) and not path.name.startswith("."):
            in_session_folder = SESSION_FOLDER in path.relative_to(directory).parts[:-1]
            if in_session_folder == sessions:
                yield path
