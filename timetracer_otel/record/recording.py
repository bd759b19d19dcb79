"""What is captured for one inbound request while it runs.

A :class:`RequestRecording` travels in the OpenTelemetry context, so it reaches asyncio tasks and (with the
threading instrumentation) worker threads exactly as the request's spans do. Everything done here runs on the
app's threads, so it is limited to keeping references; copying them into captured values happens later, on
the writer thread, through each capture's ``request()`` and ``response()`` (an integration's
:class:`PendingCall` subclass, or its :class:`InboundCapture`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from opentelemetry import trace

from timetracer_otel._context import in_connection_setup, request_state
from timetracer_otel.cassette.values import to_json_value
from timetracer_otel.record.captured import (
    CapturedBody,
    CapturedCallRequest,
    CapturedCallResponse,
    CapturedHttpRequest,
    CapturedHttpResponse,
    SpanTuple,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from timetracer_otel.record.recorder import RecorderStats

__all__ = [
    "MAX_GENERATED_VALUES",
    "BodyBuffer",
    "BuiltCall",
    "ByteBudget",
    "DataCall",
    "InboundCapture",
    "PendingCall",
    "RequestRecording",
    "SessionRecording",
    "body_of",
    "current_recording",
]

#: The wall clock, read through a module attribute so that, while ``TIMETRACER_RECORD_CLOCK`` patches the clock,
#: ``timetracer_otel.determinism.clock`` can give this module the unpatched function (timetracer's own readings
#: are never the app's).
time_ns = time.time_ns


def current_recording() -> RequestRecording | None:
    """Where a call made here is recorded: the recording of the inbound request this code runs for, else (and
    for connection set-up) the process's session recording; None when not recording."""
    if in_connection_setup():
        return SessionRecording.current
    value = request_state()
    return value if isinstance(value, RequestRecording) else SessionRecording.current


class ByteBudget:
    """Bytes held by requests not yet written, across the process (approximate: updated without a lock)."""

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = 0


class BodyBuffer:
    """Collects a payload chunk by chunk (streams are teed, never buffered ahead of the app), up to a cap.

    Into a bytearray rather than a list of chunks: it lives until the cassette is written, and a bytearray is
    not an object the garbage collector has to track.
    """

    __slots__ = ("_data", "_limit", "_owner", "complete", "size")

    def __init__(self, limit: int, owner: RequestRecording | None = None) -> None:
        self._data = bytearray()
        self._limit = limit
        self._owner = owner
        self.size = 0
        self.complete = False

    def feed(self, chunk: bytes) -> None:
        if self._owner is not None and self._owner.finalized:
            return  # written already (hard timeout): keep nothing more alive for it
        self.size += len(chunk)
        room = self._limit - len(self._data)
        if room > 0 and chunk:
            kept = chunk if len(chunk) <= room else chunk[:room]
            self._data += kept
            if self._owner is not None:
                self._owner.account(len(kept))

    def close(self) -> None:
        self.complete = True

    def to_body(self, content_coding: str | None = None) -> CapturedBody:
        data = bytes(self._data)
        return CapturedBody(data, self.size, self.size > len(data), self.complete, content_coding)


def body_of(data: bytes, limit: int) -> CapturedBody:
    """A payload that was available whole."""
    if len(data) <= limit:
        return CapturedBody(bytes(data), len(data))
    return CapturedBody(bytes(data[:limit]), len(data), truncated=True)


class PendingCall(ABC):
    """One outbound call in flight or done.

    Each client integration subclasses it with what its library's call needs kept (one slotted object per
    call: everything here lives until the cassette is written), and builds the captured request and response
    from that on the writer thread.
    """

    __slots__ = ("end_ns", "error", "kind", "library", "parent_span_id", "span_id", "start_ns")

    def __init__(self, kind: str, library: str) -> None:
        self.kind = kind
        self.library = library
        self.error: BaseException | None = None
        self.start_ns = time_ns()
        self.end_ns: int | None = None
        span = trace.get_current_span()
        self.span_id = span.get_span_context().span_id
        parent = getattr(span, "parent", None)
        self.parent_span_id: int | None = parent.span_id if parent is not None else None

    @abstractmethod
    def request(self) -> CapturedHttpRequest | CapturedCallRequest:
        """The request, built on the writer thread."""

    @abstractmethod
    def response(self) -> CapturedHttpResponse | CapturedCallResponse | None:
        """The response, if the call got one; built on the writer thread."""

    def error_details(self) -> Any:
        """What the error carries besides its type and message, as a JSON value (see ``RecordedError.details``)."""
        return None

    def failed(self, error: BaseException) -> None:
        self.error = error
        self._ended()

    def _ended(self) -> None:
        self.end_ns = time_ns()


class BuiltCall(PendingCall):
    """A call whose captured request and response are built by callables the integration hands over."""

    __slots__ = ("_request", "_response")

    def __init__(self, kind: str, library: str, request: Callable[[], CapturedHttpRequest]) -> None:
        super().__init__(kind, library)
        self._request = request
        self._response: Callable[[], CapturedHttpResponse] | None = None

    def succeeded(self, response: Callable[[], CapturedHttpResponse]) -> None:
        self._response = response
        self._ended()

    def request(self) -> CapturedHttpRequest:
        return self._request()

    def response(self) -> CapturedHttpResponse | None:
        return None if self._response is None else self._response()


_NO_RESULT: Any = object()


class DataCall(PendingCall):
    """A database or cache call: what the library was given and what it answered, kept as they are and made
    JSON values on the writer thread by ``encode`` (by default :func:`~timetracer_otel.cassette.values.to_json_value`).

    Keep only values the app will not change afterwards (copy a list of rows the app receives), since they are
    read when the cassette is written. Subclass it to add :meth:`error_details`.
    """

    __slots__ = ("arguments", "encode", "method", "operation", "result", "target")

    def __init__(
        self,
        kind: str,
        library: str,
        operation: str,
        arguments: Any = None,
        *,
        method: str | None = None,
        target: str | None = None,
        encode: Callable[[Any], Any] = to_json_value,
    ) -> None:
        super().__init__(kind, library)
        self.operation = operation
        self.arguments = arguments
        self.method = method
        self.target = target
        self.encode = encode
        self.result: Any = _NO_RESULT

    def succeeded(self, result: Any) -> None:
        self.result = result
        self._ended()

    def request(self) -> CapturedCallRequest:
        return CapturedCallRequest(self.operation, self.method, self.target, self.encode(self.arguments))

    def response(self) -> CapturedCallResponse | None:
        return None if self.result is _NO_RESULT else CapturedCallResponse(self.encode(self.result))


class InboundCapture(Protocol):
    """What an inbound integration captured of the request it serves: built on the writer thread."""

    def request(self) -> CapturedHttpRequest: ...

    def response(self) -> CapturedHttpResponse | None:
        """The response, or None when the app never started one."""
        ...


class _NoInbound:
    """The inbound capture of a recording its integration has not described yet, or that was written and
    released: reading it then is a bug."""

    def request(self) -> CapturedHttpRequest:
        raise RuntimeError("this recording has no inbound request to write")

    def response(self) -> CapturedHttpResponse | None:
        raise RuntimeError("this recording has no inbound response to write")


_NO_INBOUND = _NoInbound()

#: Values kept per source and recording (the rest are generated as usual, not recorded, so replay generates
#: them for real too): bounds what an endpoint that draws a million random numbers keeps in memory.
MAX_GENERATED_VALUES = 10_000


class RequestRecording:
    """Everything captured for one inbound request."""

    __slots__ = (
        "_budget",
        "_stats",
        "buffered",
        "calls",
        "deadline",
        "done",
        "error",
        "finalized",
        "generated",
        "inbound",
        "last_activity",
        "open_spans",
        "root_span_id",
        "route",
        "spans",
        "start_ns",
        "started_at",
        "trace_id",
    )

    def __init__(self, stats: RecorderStats, budget: ByteBudget) -> None:
        #: The inbound integration sets it right after admission.
        self.inbound: InboundCapture = _NO_INBOUND
        self._stats = stats
        self._budget = budget
        self.buffered = 0
        self.route: str | None = None
        self.error: BaseException | None = None
        self.calls: list[PendingCall] = []
        self.spans: list[SpanTuple] = []
        #: Values the app generated, per source (see :meth:`add_generated`); None until the first one.
        self.generated: dict[str, list[Any]] | None = None
        #: Ids of this request's spans that started and have not ended.
        self.open_spans: set[int] = set()
        self.done = False
        self.finalized = False
        self.trace_id: int | None = None
        self.root_span_id: int | None = None
        self.start_ns = start_ns = time_ns()
        self.started_at = start_ns / 1e9
        self.last_activity = time.monotonic()
        self.deadline = 0.0

    # -- called on app threads ----------------------------------------------------------------------------

    def account(self, size: int) -> None:
        """Count payload bytes this recording keeps alive until it is written."""
        self.buffered += size
        self._budget.used += size

    def release(self) -> None:
        """Once written: give back the bytes, and drop what was captured so it is freed right away.

        The captures hold buffers that point back here: left in place, they would make each request a
        reference cycle that only the garbage collector's slowest generation frees.
        """
        self._budget.used -= self.buffered
        self.buffered = 0
        self.calls = []
        self.spans = []
        self.generated = None
        self.inbound = _NO_INBOUND

    def add_call(self, call: PendingCall) -> bool:
        """Attach an outbound call; False if the request was already written (the call is then not kept)."""
        self.last_activity = time.monotonic()
        if self.finalized:
            self._stats.late_calls += 1
            return False
        self.calls.append(call)
        return True

    def add_generated(self, source: str, value: Any) -> None:
        """Keep a value the app generated (``timetracer_otel.determinism``): bytes, a float or an integer, none of
        which the garbage collector tracks. Runs for every generated value, so it only appends."""
        kept = self.generated
        if kept is None:
            if self.finalized:
                return  # written already: replay will generate it for real
            kept = self.generated = {}
        values = kept.get(source)
        if values is None:
            kept[source] = values = []
        elif len(values) >= MAX_GENERATED_VALUES:
            return
        values.append(value)

    def take_generated(self) -> dict[str, list[Any]] | None:
        """The generated values kept so far, and forget them (the writer takes a session's with each segment)."""
        kept, self.generated = self.generated, None
        return kept

    def root_started(self, trace_id: int, span_id: int) -> None:
        """The request's root span started. Only the server span qualifies, and its integration reports it
        before the app runs, so there is no race for it."""
        self.trace_id = trace_id
        self.root_span_id = span_id

    def span_started(self, span_id: int) -> None:
        # A set's add and discard are atomic, so spans ending on other threads need no lock. No activity
        # stamp: an open span holds the request back by itself, and its end stamps the time.
        self.open_spans.add(span_id)

    def span_ended(self, span: ReadableSpan, span_id: int) -> None:
        parent = span.parent
        self.spans.append(
            (
                span.name,
                # The kind's number (an enum's documented ``_value_``: ``.value`` and ``.name`` are Python
                # properties, and this runs for every span); the writer process names it.
                span.kind._value_,
                span_id,
                parent.span_id if parent is not None and not parent.is_remote else None,
                span.start_time or 0,
                span.end_time or 0,
            )
        )
        if span_id == self.root_span_id:
            route = (span.attributes or {}).get("http.route")
            self.route = route if isinstance(route, str) else None
        self.open_spans.discard(span_id)
        self.last_activity = time.monotonic()


class SessionRecording(RequestRecording):
    """Calls the process makes outside any inbound request (start-up, schedulers, connection set-up).

    There is one per recording process (``current``). It never settles: the recorder writes the calls that
    ended, from time to time, as segments of the process's session cassette.
    """

    __slots__ = ()

    #: The recording process's session recording; None when not recording.
    current: ClassVar[SessionRecording | None] = None

    def __init__(self, stats: RecorderStats, budget: ByteBudget) -> None:
        super().__init__(stats, budget)
        # A deque: the writer takes calls from its left end while app threads append at its right.
        self.calls: deque[PendingCall] = deque()  # type: ignore[assignment]

    def take_ended(self, unfinished: list[PendingCall]) -> list[PendingCall]:
        """Remove and return the calls that ended; ``unfinished`` holds calls still running (kept by the
        writer between segments) and is updated in place."""
        calls = self.calls
        while calls:
            unfinished.append(calls.popleft())
        ended = [call for call in unfinished if call.end_ns is not None]
        unfinished[:] = [call for call in unfinished if call.end_ns is None]
        # The bytes of calls still running are forgotten with the rest: the budget is approximate.
        self._budget.used -= self.buffered
        self.buffered = 0
        return ended
