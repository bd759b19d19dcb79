"""The span processor that tells the recorder when a request's spans are all done.

on_start/on_end run synchronously on the app's threads: they do dictionary work and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind

from timetracer_otel._context import REQUEST_STATE_KEY
from timetracer_otel.record.recording import RequestRecording

if TYPE_CHECKING:
    from timetracer_otel.record.recorder import RecorderStats

__all__ = ["RequestSpanTracker"]

_ROOT_KINDS = (SpanKind.SERVER, SpanKind.CONSUMER)


class RequestSpanTracker(SpanProcessor):
    def __init__(self, on_settled: Callable[[RequestRecording], None], stats: RecorderStats) -> None:
        #: span id -> its recording. Single dict operations are atomic, so no lock on the request path.
        self._open: dict[int, RequestRecording] = {}
        self._on_settled = on_settled
        self._stats = stats
        #: The SDK cannot remove a span processor, so a stopped recorder's tracker just stops acting.
        self.enabled = True

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if not self.enabled:
            return
        # A context is a dict: reading it directly spares two function calls on every span of the app.
        recording = parent_context.get(REQUEST_STATE_KEY) if parent_context else None
        if recording is None:
            recording = otel_context.get_current().get(REQUEST_STATE_KEY)
        if isinstance(recording, RequestRecording):
            self.track(span, recording)

    def track(self, span: Span | ReadableSpan, recording: RequestRecording) -> None:
        """Count ``span`` as part of ``recording``. Inbound integrations call this for the server span, which
        starts before the recording can be in its context."""
        if recording.finalized:
            self._stats.late_spans += 1
            return
        span_context = span.get_span_context()
        if span_context is None:
            return
        span_id = span_context.span_id
        if recording.root_span_id is None:  # only the first spans can be the root: skip the reads after
            parent = span.parent
            if span.kind in _ROOT_KINDS and (parent is None or parent.is_remote):
                recording.root_started(span_context.trace_id, span_id)
        recording.span_started(span_id)
        self._open[span_id] = recording

    def on_end(self, span: ReadableSpan) -> None:
        span_context = span.get_span_context()
        if span_context is None:
            return
        span_id = span_context.span_id
        recording = self._open.pop(span_id, None)
        if recording is None:
            return
        recording.span_ended(span, span_id)
        if recording.done and not recording.open_spans:
            self._on_settled(recording)

    def forget(self, span_ids: set[int]) -> None:
        """Stop tracking spans of a request written without them (still open at its hard timeout, or leaked by
        an instrumentation that never ends them): otherwise each would keep its request's recording alive."""
        for span_id in list(span_ids):
            self._open.pop(span_id, None)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
