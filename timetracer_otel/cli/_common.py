"""Small helpers shared by the commands: the error type they exit with and how cassette facts read as text."""

from __future__ import annotations

from datetime import datetime
from typing import IO, Any
from urllib.parse import urlsplit

import click

from timetracer_otel.cassette.model import CallResponse, HttpRequest, HttpResponse, RecordedError

__all__ = ["CliError", "format_ms", "local_time", "outcome", "route_of", "short_error", "sort_key_time"]


class CliError(click.ClickException):
    """A problem the user can fix (missing path, unreadable cassette): one line, no traceback, exit 2.

    Exit 2 rather than click's default 1 because ``list`` uses 1 for "listed, but skipped some files".
    """

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def sort_key_time(moment: datetime) -> datetime:
    """Aware version of ``moment`` so cassettes with and without a UTC offset can be ordered together."""
    return moment.astimezone()


def local_time(moment: datetime) -> str:
    """Local ISO 8601 to the second: what a person reading a terminal wants to compare with their clock."""
    return moment.astimezone().isoformat(timespec="seconds")


def format_ms(value: float) -> str:
    return f"{value:.1f}"


def method_of(request: HttpRequest | None) -> str:
    """The inbound request's method; ``SESSION`` for a session cassette (calls made outside requests)."""
    return "SESSION" if request is None else request.method


def route_of(request: HttpRequest | None) -> str:
    """The route template when the framework reported one, else the URL path (a query would split groups)."""
    if request is None:
        return "(outside requests)"
    if request.route:
        return request.route
    return urlsplit(request.url).path or "/"


def short_error(error: RecordedError) -> str:
    return f"{error.type}: {' '.join(error.message.split())}"


def outcome(response: HttpResponse | CallResponse | None, error: RecordedError | None, *, detailed: bool) -> str:
    """The status code (``ok`` for a database or cache call that answered), or the error for calls that raised;
    ``detailed`` adds the error message."""
    parts = []
    if isinstance(response, HttpResponse):
        parts.append(str(response.status))
    elif response is not None:
        parts.append("ok")
    if error is not None and (detailed or response is None):
        parts.append(short_error(error) if detailed else error.type)
    return " ".join(parts) or "-"
