"""The replay state of one inbound request, carried in the OpenTelemetry context like a recording, and the
process's session: the calls recorded outside any inbound request."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from timetracer_otel._context import attach_request_state, in_connection_setup, request_state
from timetracer_otel.cassette.model import (
    GENERATED_FIELDS,
    HTTP,
    CallRequest,
    Cassette,
    Generated,
    HttpRequest,
    Interaction,
)
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.replay.index import RecordedCalls, ReplayIndex, RequestKey
from timetracer_otel.replay.matching import describe_request
from timetracer_otel.settings import OnExhausted

__all__ = ["CLOCK", "NOT_RECORDED", "ReplaySession", "current_session", "replay_call"]

logger = logging.getLogger("timetracer.replay")

#: What :meth:`ReplaySession.take_generated` returns when no recorded value fits: generate a real one.
NOT_RECORDED: Any = object()
#: The field of the cassette's ``generated`` that holds the app's clock readings (``TIMETRACER_RECORD_CLOCK``).
CLOCK = "clock"


def _epoch_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exactly (a float timestamp would round the microseconds); naive is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.replace(microsecond=0).timestamp()) * 1_000_000_000 + moment.microsecond * 1000


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

    ``generated`` stands in for the cassette's generated values (the process's session, which has no cassette,
    gets those of the session cassettes).
    """

    #: The replaying process's session: every session cassette's calls, in recorded order. None when the
    #: recording made no calls outside requests (or nothing is replayed).
    process: ClassVar[ReplaySession | None] = None

    #: Where calls outside any replayed inbound request are answered from, for miss messages.
    answering = "made outside any replayed inbound request, so answered from the session cassettes (under _session/)"

    def __init__(
        self,
        cassette: Cassette | None,
        on_exhausted: OnExhausted = OnExhausted.ERROR,
        missing_reason: str = "",
        calls: RecordedCalls | None = None,
        generated: Generated | None = None,
        *,
        key: RequestKey | None = None,
    ) -> None:
        """``key`` narrows how calls are matched (it must be the function ``calls`` were keyed with)."""
        self.cassette = cassette
        self._recorded_generated = generated if generated is not None or cassette is None else cassette.generated
        self.missing_reason = missing_reason
        if calls is None:
            calls = RecordedCalls(cassette.interactions if cassette else ())
        self.index = ReplayIndex(calls, on_exhausted, key=key)
        #: When this session started, on the monotonic clock: the replayed clock (:meth:`clock_ns`) runs from the
        #: cassette's ``recorded_at`` at that instant.
        self.started_ns = time.monotonic_ns()
        #: The replayed clock minus the monotonic clock: set from ``recorded_at`` on first use, and moved to each
        #: recorded reading handed back, so the clock runs on from there.
        self._clock_base_ns: int | None = None
        #: The last reading :meth:`clock_ns` gave: it never gives an earlier one.
        self._clock_last_ns = 0
        #: The cassette's generated values still to hand back, per source (built on first use).
        self._generated: dict[str, deque[Any]] | None = None
        #: Generated values the app asked for when no recorded one fitted, per source: they were real.
        self.generated_fallbacks: dict[str, int] = {}

    def take(self, request: HttpRequest | CallRequest, kind: str = HTTP) -> Interaction:
        if self.cassette is None and not len(self.index):
            raise ReplayMismatchError(describe_request(kind, request), self.missing_reason)
        return self.index.take(request, kind)

    def clock_ns(self) -> int | None:
        """Now on the replayed clock, in nanoseconds since the epoch, for one of the app's clock readings.

        The next reading recorded for the request (``generated.clock``, with ``TIMETRACER_RECORD_CLOCK``) while
        there is one; then, and without recorded readings, a ticking clock: from the last recorded reading handed
        back, else from the cassette's ``recorded_at`` at the start of this session, plus the time elapsed since
        (monotonic). Never earlier than the reading before. None when neither applies (no cassette and no
        recorded reading left: the real clock)."""
        queues = self._generated if self._generated is not None else self._queues()
        readings = queues.get(CLOCK)
        if readings:
            try:
                reading: int = readings.popleft()
            except IndexError:  # another thread of the request took the last one
                pass
            else:
                self._clock_base_ns = reading - time.monotonic_ns()
                self._clock_last_ns = max(self._clock_last_ns, reading)
                return reading
        if readings is not None:  # there were recorded readings, and they are used up
            fallbacks = self.generated_fallbacks.get(CLOCK, 0)
            self.generated_fallbacks[CLOCK] = fallbacks + 1
            if not fallbacks:
                logger.debug("timetracer: %s: no recorded clock reading is left; the clock runs on from the last one",
                             self._describe())
        base = self._clock_base_ns
        if base is None:
            if self.cassette is None:
                return None
            base = self._clock_base_ns = _epoch_ns(self.cassette.metadata.recorded_at) - self.started_ns
        now = base + time.monotonic_ns()
        last = self._clock_last_ns
        if now < last:
            return last
        self._clock_last_ns = now
        return now

    def _queues(self) -> dict[str, deque[Any]]:
        generated = self._recorded_generated
        queues = self._generated = {
            name: deque(values) for name in GENERATED_FIELDS if generated and (values := getattr(generated, name))
        }
        return queues

    def take_generated(self, source: str, accept: Callable[[Any], bool]) -> Any:
        """The next value the app generated from ``source`` when this was recorded, if ``accept`` takes it (the
        same primitive asked for it); else :data:`NOT_RECORDED`, and the caller generates a real value.

        Never raises: running out (or a next value of another kind) is counted in ``generated_fallbacks`` and
        logged once per source at debug level."""
        queues = self._generated if self._generated is not None else self._queues()
        queue = queues.get(source)
        if queue:
            try:
                value = queue.popleft()
            except IndexError:  # another thread of the request took the last one
                pass
            else:
                if accept(value):
                    return value
                queue.appendleft(value)
        fallbacks = self.generated_fallbacks.get(source, 0)
        self.generated_fallbacks[source] = fallbacks + 1
        if not fallbacks:
            logger.debug("timetracer: %s: no recorded %s value %s; generating real ones from here", self._describe(),
                         source, "fits the call" if queue else "is left")
        return NOT_RECORDED

    def _describe(self) -> str:
        cassette = self.cassette
        if cassette is None:
            return "outside any replayed request"
        request = cassette.request
        where = f"{request.method} {request.url}" if request is not None else f"{cassette.metadata.scope} cassette"
        return f"{where} (cassette {cassette.metadata.id})"

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
            reason = f"made while setting up a connection, {process.answering}" if process is not None else _SETUP
            raise ReplayMismatchError(describe_request(kind, request), reason)
        return found
    session = current_session()
    if session is not None:
        return session.take(request, kind)
    if process is None:
        raise ReplayMismatchError(describe_request(kind, request), _OUTSIDE)
    try:
        return process.take(request, kind)
    except ReplayMismatchError as exc:
        raise ReplayMismatchError(exc.call, f"{process.answering}: {exc.reason}", exc.candidates) from None
