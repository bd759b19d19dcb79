"""Captured requests become cassettes here, where they are stored (normally the writer process)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from opentelemetry.trace import SpanKind

from timetracer_otel._version import __version__
from timetracer_otel.cassette.model import Cassette, Interaction, Metadata, SpanSummary
from timetracer_otel.exporters.base import Exporter
from timetracer_otel.record.captured import CapturedCall, CapturedRequest

__all__ = ["AssemblingWriter", "assemble"]

logger = logging.getLogger("timetracer.record")

_MS = 1_000_000


def _span_id(value: int | None) -> str | None:
    return None if value is None else f"{value:016x}"


def _interaction(call: CapturedCall, base: int) -> Interaction:
    end = call.end_ns if call.end_ns is not None else call.start_ns
    return Interaction(
        kind=call.kind,
        library=call.library,
        request=call.request.to_model(),
        response=None if call.response is None else call.response.to_model(),
        error=call.error,
        start_ms=(call.start_ns - base) / _MS,
        duration_ms=(end - call.start_ns) / _MS,
        span_id=_span_id(call.span_id or None),
        parent_span_id=_span_id(call.parent_span_id),
    )


def assemble(captured: CapturedRequest, service: str) -> Cassette:
    """The cassette of a captured request: calls in start order, times as offsets from the request's start."""
    base = captured.start_ns
    spans = tuple(
        SpanSummary(
            name=name,
            kind=SpanKind(kind).name,
            span_id=f"{span_id:016x}",
            parent_span_id=_span_id(parent),
            start_ms=(start - base) / _MS,
            duration_ms=(end - start) / _MS,
        )
        for name, kind, span_id, parent, start, end in sorted(captured.spans, key=lambda s: s[4])
    )
    last_end = max([s[5] for s in captured.spans] + [c.end_ns or 0 for c in captured.calls] + [base])
    return Cassette(
        metadata=Metadata(
            id=captured.id,
            recorded_at=datetime.fromtimestamp(captured.started_at, UTC),
            service=service,
            tool_version=__version__,
            trace_id=captured.trace_id,
            duration_ms=(last_end - base) / _MS,
            incomplete=captured.incomplete,
            scope="request" if captured.request is not None else "session",
        ),
        request=None if captured.request is None else captured.request.to_model(),
        response=None if captured.response is None else captured.response.to_model(),
        error=captured.error,
        interactions=tuple(_interaction(c, base) for c in sorted(captured.calls, key=lambda c: c.start_ns)),
        spans=spans,
        generated=None if captured.generated is None else captured.generated.to_model(),
    )


class AssemblingWriter:
    """A :class:`~timetracer_otel.record.captured.CaptureWriter` that assembles cassettes in this process and
    hands them to an exporter."""

    def __init__(self, exporter: Exporter, service: str) -> None:
        self.exporter = exporter
        self.service = service

    def store_batch(self, captured: Sequence[CapturedRequest]) -> tuple[int, int]:
        cassettes = []
        failed = 0
        for request in captured:
            try:
                cassettes.append(assemble(request, self.service))
            except Exception:
                failed += 1
                logger.exception("timetracer: could not assemble cassette %s", request.id)
        written, not_stored = self.exporter.store_batch(cassettes)
        return written, failed + not_stored

    def drain(self, timeout: float | None = None) -> tuple[int, int]:
        return (0, 0)  # every batch is stored (or queued by the exporter) before store_batch returns

    def take_counts(self) -> dict[str, int]:
        return self.exporter.take_counts()

    def close(self) -> None:
        self.exporter.close()
