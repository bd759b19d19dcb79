"""The replay state of one inbound request, carried in the OpenTelemetry context like a recording, and the
process's session: the calls recorded outside any inbound request."""

from __future__ import annotations

from typing import ClassVar

from timetracer_otel._context import attach_request_state, in_connection_setup, request_state
from timetracer_otel.cassette.model import HTTP, CallRequest, Cassette, HttpRequest, Interaction
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.replay.index import RecordedCalls, ReplayIndex
from timetracer_otel.replay.matching import describe_request
from timetracer_otel.settings import OnExhausted

__all__ = ["ReplaySession", "current_session", "replay_call"]


def current_session() -> ReplaySession | None:
    value = request_state()
    return value if isinstance(value, ReplaySession) else None


class ReplaySession:
    """Answers the outbound calls of one inbound request from one cassette.

    ``cassette`` is None when no cassette matched the inbound request; ``missing_reason`` then says why,
    and every outbound call fails with that explanation.

    ``calls`` is the cassette's :class:`RecordedCalls` when the caller keeps them (as
    :class:`~timetracer_otel.replay.source.CassetteSource` does), so a session starts in O(1); without them
    the cassette's interactions are grouped here.
    """

    #: The replaying process's session: every session cassette's calls, in recorded order. None when the
    #: recording made no calls outside requests (or nothing is replayed).
    process: ClassVar[ReplaySession | None] = None

    def __init__(
        self,
        cassette: Cassette | None,
        on_exhausted: OnExhausted = OnExhausted.ERROR,
        missing_reason: str = "",
        calls: RecordedCalls | None = None,
    ) -> None:
        self.cassette = cassette
        self.missing_reason = missing_reason
        if calls is None:
            calls = RecordedCalls(cassette.interactions if cassette else ())
        self.index = ReplayIndex(calls, on_exhausted)

    def take(self, request: HttpRequest | CallRequest, kind: str = HTTP) -> Interaction:
        if self.cassette is None and not len(self.index):
            raise ReplayMismatchError(describe_request(kind, request), self.missing_reason)
        return self.index.take(request, kind)

    def attach(self) -> object:
        """Make this the session of the current context; pass the token to ``opentelemetry.context.detach``."""
        return attach_request_state(self)


_NOT_IN_SESSION = "the recording's session cassettes (calls made outside requests, under _session/) hold no such call"
_OUTSIDE = f"made outside any replayed inbound request, and {_NOT_IN_SESSION}"
_SETUP = f"made while setting up a connection, and {_NOT_IN_SESSION}"


def replay_call(request: HttpRequest | CallRequest, kind: str = HTTP) -> Interaction:
    """The recorded answer to an outbound call: from the current inbound request's cassette, or from the
    session cassettes for calls outside any request and for connection set-up (see ``connection_setup``)."""
    process = ReplaySession.process
    if in_connection_setup():
        # A replayed pool may open more connections than the recorded one did: their set-up repeats.
        found = process.index.find(request, kind, repeat_last=True) if process is not None else None
        if found is None:
            raise ReplayMismatchError(describe_request(kind, request), _SETUP)
        return found
    session = current_session()
    if session is not None:
        return session.take(request, kind)
    if process is None:
        raise ReplayMismatchError(describe_request(kind, request), _OUTSIDE)
    try:
        return process.take(request, kind)
    except ReplayMismatchError as exc:
        where = "made outside any replayed inbound request, so answered from the session cassettes (under _session/)"
        raise ReplayMismatchError(exc.call, f"{where}: {exc.reason}", exc.candidates) from None
