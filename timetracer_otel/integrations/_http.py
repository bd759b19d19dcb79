"""HTTP knowledge shared by the client integrations: turning a recorded answer back into wire bytes and errors."""

from __future__ import annotations

import builtins
import importlib
import logging
from collections.abc import Iterator, Sequence

from timetracer_otel.cassette.content_coding import encode_content
from timetracer_otel.cassette.model import CallRequest, HttpRequest, HttpResponse, Interaction, RecordedError
from timetracer_otel.errors import IncompleteBodyError, ReplayError, TruncatedBodyError
from timetracer_otel.replay.matching import describe_http, describe_request, header_value

__all__ = ["RecordedBody", "recorded_body", "recorded_exception", "recorded_response"]

logger = logging.getLogger("timetracer.replay")


def recorded_response(interaction: Interaction) -> HttpResponse:
    """The recorded HTTP response of an interaction that has one (matched by an HTTP key, so it is HTTP)."""
    response = interaction.response
    if not isinstance(response, HttpResponse) or not isinstance(interaction.request, HttpRequest):
        raise ReplayError(
            f"{describe_request(interaction.kind, interaction.request)}: the recorded call has no HTTP response"
        )
    return response


def _http_request(interaction: Interaction) -> HttpRequest:
    request = interaction.request
    assert isinstance(request, HttpRequest)  # recorded_response checked it
    return request


def recorded_body(interaction: Interaction) -> bytes:
    """The response body as it came over the wire (re-encoded to its recorded Content-Encoding)."""
    response = recorded_response(interaction)
    body = response.body
    if body is None:
        return b""
    if body.truncated:
        raise TruncatedBodyError(describe_http(_http_request(interaction)), body.size, len(body.data))
    coding = header_value(response.headers, "content-encoding")
    if coding is None or body.content_coding is not None:
        return body.data
    try:
        return encode_content(body.data, coding)
    except ValueError as exc:
        raise ReplayError(f"{describe_http(_http_request(interaction))}: {exc}") from None


class RecordedBody:
    """A recorded response body as replay serves it: its wire bytes (see :func:`recorded_body`), then its end.

    A body the app stopped reading before its end while recording (``Body.complete`` false) holds only the
    bytes the app read. Replay hands those out as usual, but where the body ends the client must call
    :meth:`end`, which raises :class:`IncompleteBodyError` for such a body: ending it there would hand the app a
    shorter body than the server sent.
    """

    __slots__ = ("_call", "_recorded_bytes", "complete", "data")

    def __init__(self, interaction: Interaction) -> None:
        response = recorded_response(interaction)
        self.data = recorded_body(interaction)
        self.complete = response.body is None or response.body.complete
        self._recorded_bytes = 0 if response.body is None else len(response.body.data)
        self._call = describe_http(_http_request(interaction))

    def end(self) -> None:
        """The client wants bytes after ``data``: returns for a complete body, raises for one that is not."""
        if not self.complete:
            raise IncompleteBodyError(self._call, self._recorded_bytes)

    def __iter__(self) -> Iterator[bytes]:
        """``data`` as one chunk (a replayed stream arrives all at once), then :meth:`end`."""
        if self.data:
            yield self.data
        self.end()


def recorded_exception(
    error: RecordedError,
    request: HttpRequest | CallRequest,
    allowed_packages: Sequence[str],
    fallback: type[BaseException],
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
    logger.warning("timetracer: the error recorded for %s names %s, which is not an exception of %s; "
                   "raising %s instead", describe_http(request) if isinstance(request, HttpRequest)
                   else request.operation[:80], error.type, ", ".join(allowed_packages), fallback.__name__)
    return fallback
