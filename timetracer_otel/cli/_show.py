"""``timetracer show``: what one cassette recorded."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click

from timetracer_otel.cassette.codec import cassette_to_json
from timetracer_otel.cassette.files import load_cassette
from timetracer_otel.cassette.model import Body, CallRequest, Cassette, HttpRequest, HttpResponse
from timetracer_otel.cli._common import CliError, format_ms, local_time, outcome, route_of, short_error
from timetracer_otel.cli._format import safe, table
from timetracer_otel.errors import CassetteError

__all__ = ["show_command"]

_EVENT_HEADER = ("#", "start ms", "duration ms", "library", "method", "url", "status")
_EVENT_RIGHT = frozenset({0, 1, 2})


def _read(path: Path) -> Cassette:
    try:
        return load_cassette(path, check_bodies=True)
    except CassetteError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:  # permissions and I/O errors read as one line too, not a traceback
        raise CliError(f"{path}: {exc.strerror or exc}") from None


def _body_text(body: Body | None) -> str:
    if body is None:
        return "no body"
    if body.truncated:
        return f"body {body.size} bytes (truncated: {len(body.data)} stored)"
    return f"body {body.size} bytes"


def _response_text(response: HttpResponse | None) -> str:
    if response is None:
        return "none"
    return f"{response.status}, {_body_text(response.body)}"


def _interaction_counts(cassette: Cassette) -> str:
    counts = Counter(f"{i.kind}/{i.library}" for i in cassette.interactions)
    total = str(len(cassette.interactions))
    if not counts:
        return total
    return f"{total} ({', '.join(f'{name}: {n}' for name, n in sorted(counts.items()))})"


def _summary(cassette: Cassette) -> list[tuple[str, str]]:
    meta = cassette.metadata
    request = cassette.request
    fields = [
        ("cassette", meta.id),
        ("recorded at", local_time(meta.recorded_at)),
        ("service", meta.service),
        ("recorded by", f"timetracer-otel {meta.tool_version}"),
        ("trace id", meta.trace_id or "-"),
        ("duration", f"{format_ms(meta.duration_ms)} ms"),
        ("request", "none: calls made outside requests" if request is None else f"{request.method} {request.url}"),
        ("route", route_of(request)),
        ("response", _response_text(cassette.response)),
    ]
    if cassette.error is not None:
        fields.append(("error", short_error(cassette.error)))
    if meta.incomplete:
        fields.append(("incomplete", "yes: written before the request settled; later calls are missing"))
    fields.append(("interactions", _interaction_counts(cassette)))
    return fields


def _call_text(request: CallRequest) -> str:
    text = " ".join(request.operation.split())
    text = text if len(text) <= 80 else text[:77] + "..."
    return f"{text} ({request.target})" if request.target else text


def _event_rows(cassette: Cassette) -> list[list[str]]:
    return [
        [
            str(n),
            format_ms(i.start_ms),
            format_ms(i.duration_ms),
            i.library,
            i.request.method if isinstance(i.request, HttpRequest) else i.kind,
            i.request.url if isinstance(i.request, HttpRequest) else _call_text(i.request),
            outcome(i.response, i.error, detailed=True),
        ]
        for n, i in enumerate(cassette.interactions, start=1)
    ]


@click.command("show", short_help="Summarise one cassette.")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--events", is_flag=True, help="Add one line per outbound call.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole cassette as JSON (ignores --events).")
def show_command(file: Path, events: bool, as_json: bool) -> None:
    """Summarise the cassette in FILE (plain, gzip or zstd).

    Exit status: 0, or 2 when FILE is missing or is not a readable cassette.
    """
    cassette = _read(file)
    if as_json:
        click.echo(json.dumps(cassette_to_json(cassette), indent=2, ensure_ascii=False))
        return
    width = max(len(label) for label, _ in _summary(cassette))
    for label, value in _summary(cassette):
        click.echo(f"{label.ljust(width)}  {safe(value)}")
    if events and cassette.interactions:
        click.echo("")
        for line in table(_EVENT_HEADER, _event_rows(cassette), right=_EVENT_RIGHT):
            click.echo(line)
