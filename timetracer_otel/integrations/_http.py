"""HTTP knowledge shared by the client integrations: turning a recorded answer back into wire bytes and errors."""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Sequence

from timetracer_otel.cassette.content_coding import encode_content
from timetracer_otel.cassette.model import Headers, HttpRequest, Interaction, RecordedError
from timetracer_otel.errors import ReplayError, TruncatedBodyError
from timetracer_otel.replay.matching import describe_http

__all__ = ["header_value", "recorded_body", "recorded_exception"]


def header_value(headers: Headers, name: str) -> str | None:
    name = name.lower()
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def recorded_body(interaction: Interaction) -> bytes:
    """The response body as it came over the wire (re-encoded to its recorded Content-Encoding)."""
    response = interaction.response
    assert response is not None
    body = response.body
    if body is None:
        return b""
    if body.truncated:
        raise TruncatedBodyError(describe_http(interaction.request), body.size, len(body.data))
    coding = header_value(response.headers, "content-encoding")
    if coding is None or body.content_coding is not None:
        return body.data
    try:
        return encode_content(body.data, coding)
    except ValueError as exc:
        raise ReplayError(f"{describe_http(interaction.request)}: {exc}") from None


def recorded_exception(
    error: RecordedError, request: HttpRequest, allowed_packages: Sequence[str], fallback: type[BaseException]
) -> type[BaseException]:
    """The exception class a recorded error names, if it belongs to one of ``allowed_packages`` or builtins.

    Cassettes are data: a tampered one must not make replay import arbitrary modules, so anything outside the
    client library's own packages falls back to ``fallback``.
    """
    module_name, _, qualname = error.type.rpartition(".")
    candidate: object = None
    if module_name == "builtins":
        candidate = getattr(builtins, qualname, None)
    elif module_name.split(".", 1)[0] in allowed_packages:
        try:
            candidate = importlib.import_module(module_name)
            for part in qualname.split("."):
                candidate = getattr(candidate, part)
        except (ImportError, AttributeError):
            candidate = None
    if isinstance(candidate, type) and issubclass(candidate, BaseException):
        return candidate
    return fallback
