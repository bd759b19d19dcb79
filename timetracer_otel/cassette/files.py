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

from timetracer_otel.cassette.codec import cassette_from_json, cassette_to_json
from timetracer_otel.cassette.model import Cassette
from timetracer_otel.errors import CassetteFormatError, CassetteNotFoundError
from timetracer_otel.settings import Compression

__all__ = ["cassette_relative_path", "dump_cassette", "iter_cassette_files", "load_cassette"]

SUFFIXES = {Compression.NONE: ".json", Compression.GZIP: ".json.gz", Compression.ZSTD: ".json.zst"}
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_SLUG_LIMIT = 80


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return slug[:_SLUG_LIMIT].rstrip("-") or "root"


def cassette_relative_path(cassette: Cassette, compression: Compression) -> str:
    """``YYYY-MM-DD/METHOD__route-slug__shortid.json[.gz|.zst]``: safe characters only, bounded length."""
    request = cassette.request
    route = request.route or urlsplit(request.url).path
    method = re.sub(r"[^A-Z]", "", request.method.upper())[:16] or "REQUEST"
    short_id = re.sub(r"[^0-9a-f]", "", cassette.metadata.id)[:12]
    day = cassette.metadata.recorded_at.strftime("%Y-%m-%d")
    return f"{day}/{method}__{_slug(route)}__{short_id}{SUFFIXES[compression]}"


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


#: Every decimal digit as "0", so a run of them is one substring search away.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
#: orjson reads an integer beyond 64 bits as a float, silently; the shortest such run is 19 digits
#: (-9223372036854775809). Floats and ids with 19 digits in a row only cost the slower parser.
_LONG_DIGIT_RUN = b"0" * 19
#: orjson briefly needs about 14 times the document's size in memory (json.loads about 3.5 times) and saves
#: only ~15% of the parsing time on a large cassette: beyond this size it is not worth the memory.
_ORJSON_MAX_BYTES = 8 * 1024 * 1024


def _parse_json(data: bytes) -> object:
    """``json.loads(data)``, ~15% faster: with orjson when it gives the same result (nearly always)."""
    if len(data) <= _ORJSON_MAX_BYTES and _LONG_DIGIT_RUN not in data.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the standard library accepts more (NaN, a byte-order mark) or says where and why it cannot
    return json.loads(data)


def load_cassette(path: str | Path) -> Cassette:
    """Read one cassette file (plain, gzip or zstd, told apart by content, not name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CassetteNotFoundError(path) from None
    except IsADirectoryError:
        raise CassetteFormatError(path, "is a directory; pass a cassette file") from None
    data = _decompress(raw, path)
    try:
        document = _parse_json(data)
    except UnicodeDecodeError as exc:
        raise CassetteFormatError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        hint = " (the file ends early: truncated?)" if exc.pos >= len(data.rstrip()) else ""
        raise CassetteFormatError(
            path, f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}"
        ) from exc
    return cassette_from_json(document, source=str(path))


def iter_cassette_files(directory: str | Path) -> Iterator[Path]:
    """Every cassette file below ``directory``, in name order (which is recording-day order)."""
    directory = Path(directory)
    if not directory.exists():
        raise CassetteNotFoundError(directory)
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name.endswith(tuple(SUFFIXES.values())) and not path.name.startswith("."):
            yield path
