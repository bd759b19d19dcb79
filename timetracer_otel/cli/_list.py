"""``timetracer list``: one line per cassette in a directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from timetracer_otel.cassette.files import iter_cassette_files, load_cassette
from timetracer_otel.cassette.model import Cassette
from timetracer_otel.cli._common import CliError, format_ms, local_time, method_of, outcome, route_of, sort_key_time
from timetracer_otel.cli._format import table
from timetracer_otel.cli._s3 import options_from_env, s3_client
from timetracer_otel.errors import CassetteError, CassetteNotFoundError
from timetracer_otel.s3.location import S3Location, is_s3_url

__all__ = ["list_command"]

_HEADER = ("time", "method", "route", "status", "duration", "interactions", "file")
_RIGHT = frozenset({4, 5})


@dataclass(frozen=True)
class _Entry:
    cassette: Cassette
    file: str


def _default_source() -> str:
    # Same precedence as Settings.from_env, without validating unrelated variables a listing does not need.
    for name in ("TIMETRACER_DIR", "OTEL_TIMETRACER_DIR"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return "cassettes"


def _default_directory() -> Path:
    return Path(_default_source())


def _local_copy(url: str) -> Path:
    """The cassettes at an ``s3://`` URL, copied into (or brought up to date in) the local S3 cache, as replay
    does: the folder, or the file for a single cassette key."""
    from timetracer_otel.s3.cache import S3SourceError, materialize

    try:
        location = S3Location.parse(url)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    options = options_from_env()
    try:
        return materialize(s3_client(options), location, options)
    except CassetteNotFoundError:
        raise CliError(f"no cassettes at {location}") from None
    except S3SourceError as exc:
        raise CliError(exc.problem) from None


def _load_all(directory: Path) -> tuple[list[_Entry], list[tuple[Path, str]]]:
    """Every readable cassette, plus (path, problem) for each one that is not."""
    entries: list[_Entry] = []
    skipped: list[tuple[Path, str]] = []
    try:
        paths = [directory] if directory.is_file() else list(iter_cassette_files(directory))
    except CassetteNotFoundError:
        raise CliError(f"no cassettes at {directory}") from None
    for path in paths:
        try:
            cassette = load_cassette(path, check_bodies=True)
        except CassetteError as exc:
            skipped.append((path, exc.problem))
        except OSError as exc:  # unreadable (permissions, I/O): one bad file must not hide the rest
            skipped.append((path, exc.strerror or str(exc)))
        else:
            file = path.name if path == directory else path.relative_to(directory).as_posix()
            entries.append(_Entry(cassette, file))
    entries.sort(key=lambda e: (sort_key_time(e.cassette.metadata.recorded_at), e.file))
    return entries, skipped


def _row(entry: _Entry) -> list[str]:
    cassette = entry.cassette
    return [
        local_time(cassette.metadata.recorded_at),
        method_of(cassette.request),
        route_of(cassette.request),
        outcome(cassette.response, cassette.error, detailed=False),
        f"{format_ms(cassette.metadata.duration_ms)} ms",
        str(len(cassette.interactions)),
        entry.file,
    ]


def _record(entry: _Entry) -> dict[str, Any]:
    cassette = entry.cassette
    return {
        "id": cassette.metadata.id,
        "time": cassette.metadata.recorded_at.isoformat(),
        "method": method_of(cassette.request),
        "route": route_of(cassette.request),
        "status": None if cassette.response is None else cassette.response.status,
        "scope": cassette.metadata.scope,
        "error": None if cassette.error is None else cassette.error.type,
        "duration_ms": cassette.metadata.duration_ms,
        "interactions": len(cassette.interactions),
        "file": entry.file,
    }


@click.command("list", short_help="List recorded cassettes, oldest first.")
# A string, not click.Path: a Path would fold the "//" of an s3:// URL.
@click.argument("source", metavar="[DIRECTORY]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_context
def list_command(ctx: click.Context, source: str | None, as_json: bool) -> None:
    """List the cassettes in DIRECTORY (default: $TIMETRACER_DIR, else ./cassettes), oldest first.

    DIRECTORY may be an s3://bucket/prefix URL: its cassettes are copied into the local S3 cache
    ($TIMETRACER_S3_CACHE_DIR, else ~/.cache/timetracer/s3), only what changed, and listed from there.

    Exit status: 0, or 1 when some files could not be read (each is named on stderr), or 2 when DIRECTORY
    does not exist (or S3 refuses).
    """
    source = source if source is not None else _default_source()
    if is_s3_url(source):
        directory = _local_copy(source)
    else:
        directory = Path(source)
        if directory.exists() and not directory.is_dir():
            raise CliError(f"{directory} is not a directory")
    entries, skipped = _load_all(directory)
    if as_json:
        click.echo(json.dumps([_record(e) for e in entries], indent=2, ensure_ascii=False))
    elif entries:
        for line in table(_HEADER, [_row(e) for e in entries], right=_RIGHT):
            click.echo(line)
    elif not skipped:
        click.echo(f"no cassettes in {directory}")
    for path, problem in skipped:
        click.echo(f"skipped {path}: {problem}", err=True)
    if skipped:
        ctx.exit(1)
