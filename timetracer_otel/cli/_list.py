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
from timetracer_otel.errors import CassetteError, CassetteNotFoundError

__all__ = ["list_command"]

_HEADER = ("time", "method", "route", "status", "duration", "interactions", "file")
_RIGHT = frozenset({4, 5})


@dataclass(frozen=True)
class _Entry:
    cassette: Cassette
    file: str


def _default_directory() -> Path:
    # Same precedence as Settings.from_env, without validating unrelated variables a listing does not need.
    for name in ("TIMETRACER_DIR", "OTEL_TIMETRACER_DIR"):
        value = os.environ.get(name, "").strip()
        if value:
            return Path(value)
    return Path("cassettes")


def _load_all(directory: Path) -> tuple[list[_Entry], list[tuple[Path, str]]]:
    """Every readable cassette, plus (path, problem) for each one that is not."""
    entries: list[_Entry] = []
    skipped: list[tuple[Path, str]] = []
    try:
        paths = list(iter_cassette_files(directory))
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
            entries.append(_Entry(cassette, path.relative_to(directory).as_posix()))
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
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_context
def list_command(ctx: click.Context, directory: Path | None, as_json: bool) -> None:
    """List the cassettes in DIRECTORY (default: $TIMETRACER_DIR, else ./cassettes), oldest first.

    Exit status: 0, or 1 when some files could not be read (each is named on stderr), or 2 when DIRECTORY
    does not exist.
    """
    directory = directory if directory is not None else _default_directory()
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
