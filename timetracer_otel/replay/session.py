"""The replay state of one inbound request, carried in the OpenTelemetry context like a recording."""

from __future__ import annotations

from timetracer_otel._context import attach_request_state, request_state
from timetracer_otel.cassette.model import Cassette, HttpRequest, Interaction
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.replay.index import RecordedCalls, ReplayIndex
from timetracer_otel.replay.matching import describe_http
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

    def take(self, request: HttpRequest) -> Interaction:
        if self.cassette is None:
            raise ReplayMismatchError(describe_http(request), self.missing_reason)
        return self.index.take(request)

    def attach(self) -> object:
        """Make this the session of the current context; pass the token to ``opentelemetry.context.detach``."""
        return attach_request_state(self)


def replay_call(request: HttpRequest) -> Interaction:
    """The recorded answer to an outbound call in the current inbound request's session."""
    session = current_session()
    if session is None:
        raise ReplayMismatchError(
            describe_http(request), "made outside any replayed inbound request, so no cassette can answer it"
        )
    return session.take(request)
