"""What is captured for one inbound request while it runs.

A :class:`RequestRecording` travels in the OpenTelemetry context, so it reaches asyncio tasks and (with the
threading instrumentation) worker threads exactly as the request's spans do. Everything done here runs on the
app's threads, so it is limited to appending references; turning them into cassette values happens later,
on the writer thread, through the materializer callables integrations hand over.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from opentelemetry import trace

from timetracer_otel._context import request_state
from timetracer_otel.cassette.model import Body, HttpRequest, HttpResponse
from timetracer_otel.record.captured import SpanTuple

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

    from timetracer_otel.record.recorder import RecorderStats

__all__ = ["BodyBuffer", "ByteBudget", "PendingCall", "RequestRecording", "body_of", "current_recording"]

def current_recording() -> RequestRecording | None:
    """The recording of the inbound request this code runs for, if any."""
    value = request_state()
    return value if isinstance(value, RequestRecording) else None


class ByteBudget:
    """Bytes held by requests not yet written, across the process (approximate: updated without a lock)."""

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = 0


class BodyBuffer:
    """Collects a payload chunk by chunk (streams are teed, never buffered ahead of the app), up to a cap."""

    __slots__ = ("_chunks", "_kept", "_limit", "_owner", "complete", "size")

    def __init__(self, limit: int, owner: RequestRecording | None = None) -> None:
        self._chunks: list[bytes] = []
        self._kept = 0
        self._limit = limit
        self._owner = owner
        self.size = 0
        self.complete = False

    def feed(self, chunk: bytes) -> None:
        if self._owner is not None and self._owner.finalized:
            return  # written already (hard timeout): keep nothing more alive for it
        self.size += len(chunk)
        room = self._limit - self._kept
        if room > 0 and chunk:
            kept = chunk if len(chunk) <= room else chunk[:room]
            self._chunks.append(bytes(kept))
            self._kept += len(kept)
            if self._owner is not None:
                self._owner.account(len(kept))

    def close(self) -> None:
        self.complete = True

    def to_body(self, content_coding: str | None = None) -> Body:
        return Body(
            data=b"".join(self._chunks),
            size=self.size,
            truncated=self.size > self._kept,
            complete=self.complete,
            content_coding=content_coding,
        )


def body_of(data: bytes, limit: int) -> Body:
    """A payload that was available whole."""
    if len(data) <= limit:
        return Body(data=bytes(data), size=len(data))
    return Body(data=bytes(data[:limit]), size=len(data), truncated=True)


class PendingCall:
    """One outbound call in flight or done. ``request``/``response`` build model values on the writer thread."""

    __slots__ = ("end_ns", "error", "kind", "library", "parent_span_id", "request", "response", "span_id", "start_ns")

    def __init__(self, kind: str, library: str, request: Callable[[], HttpRequest]) -> None:
        self.kind = kind
        self.library = library
        self.request = request
        self.response: Callable[[], HttpResponse] | None = None
        self.error: BaseException | None = None
        self.start_ns = time.time_ns()
        self.end_ns: int | None = None
        span = trace.get_current_span()
        self.span_id = span.get_span_context().span_id
        parent = getattr(span, "parent", None)
        self.parent_span_id: int | None = parent.span_id if parent is not None else None

    def succeeded(self, response: Callable[[], HttpResponse]) -> None:
        self.response = response
        self.end_ns = time.time_ns()

    def failed(self, error: BaseException) -> None:
        self.error = error
        self.end_ns = time.time_ns()


def _released() -> HttpRequest:
    """A released recording's request: it was written already, and reading it again is a bug."""
    raise RuntimeError("this recording was written and released")


class RequestRecording:
    """Everything captured for one inbound request."""

    __slots__ = (
        "_budget",
        "_lock",
        "_stats",
        "buffered",
        "calls",
        "deadline",
        "done",
        "error",
        "finalized",
        "last_activity",
        "open_spans",
        "request",
        "response",
        "root_span_id",
        "route",
        "spans",
        "start_ns",
        "started_at",
        "trace_id",
    )

    def __init__(self, request: Callable[[], HttpRequest], stats: RecorderStats, budget: ByteBudget) -> None:
        self.request = request
        self._stats = stats
        self._budget = budget
        self.buffered = 0
        self.route: str | None = None
        #: Builds the inbound response; it returns None when the app never started one.
        self.response: Callable[[], HttpResponse | None] | None = None
        self.error: BaseException | None = None
        self.calls: list[PendingCall] = []
        self.spans: list[SpanTuple] = []
        self.open_spans = 0
        self.done = False
        self.finalized = False
        self.trace_id: int | None = None
        self.root_span_id: int | None = None
        self.started_at = time.time()
        self.start_ns = time.time_ns()
        self.last_activity = time.monotonic()
        self.deadline = 0.0
        self._lock = threading.Lock()

    # -- called on app threads ----------------------------------------------------------------------------

    def account(self, size: int) -> None:
        """Count payload bytes this recording keeps alive until it is written."""
        self.buffered += size
        self._budget.used += size

    def release(self) -> None:
        """Once written: give back the bytes, and drop what was captured so it is freed right away.

        The materializers close over buffers that point back here: left in place, they would make each
        request a reference cycle that only the garbage collector's slowest generation frees.
        """
        self._budget.used -= self.buffered
        self.buffered = 0
        self.calls = []
        self.spans = []
        self.request = _released
        self.response = None

    def add_call(self, call: PendingCall) -> bool:
        """Attach an outbound call; False if the request was already written (the call is then not kept)."""
        self.last_activity = time.monotonic()
        if self.finalized:
            self._stats.late_calls += 1
            return False
        self.calls.append(call)
        return True

    def span_started(self, trace_id: int, span_id: int, is_root: bool) -> None:
        with self._lock:
            self.open_spans += 1
            if is_root and self.root_span_id is None:
                self.trace_id = trace_id
                self.root_span_id = span_id
        self.last_activity = time.monotonic()

    def span_ended(self, span: ReadableSpan) -> None:
        context = span.get_span_context()
        parent = span.parent
        self.spans.append(
            (
                span.name,
                span.kind.name,
                context.span_id if context else 0,
                parent.span_id if parent is not None and not parent.is_remote else None,
                span.start_time or 0,
                span.end_time or 0,
            )
        )
        if context is not None and context.span_id == self.root_span_id and span.attributes:
            route = span.attributes.get("http.route")
            self.route = route if isinstance(route, str) else None
        with self._lock:
            self.open_spans -= 1
        self.last_activity = time.monotonic()
