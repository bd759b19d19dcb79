"""The ``timetracer`` traces exporter name.

Cassettes are assembled by a span processor (installed by the pre-instrument hook), not from exported spans,
so this exporter accepts spans and drops them. It exists so ``--traces_exporter timetracer`` (alone, or as
``otlp,timetracer`` next to the user's own exporters) is a valid choice that needs no collector.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["TimetracerSpanExporter"]


class TimetracerSpanExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None
