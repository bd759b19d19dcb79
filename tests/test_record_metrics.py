"""Recording's counters reach OpenTelemetry metrics when the app exports metrics."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from timetracer_otel.record.metrics import observe_recorder
from timetracer_otel.record.recorder import RecorderStats


def _collected(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    assert data is not None
    points = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                assert metric.name == "timetracer.cassettes"
                for point in metric.data.data_points:
                    points[str(point.attributes["timetracer.outcome"])] = int(point.value)
    return points


def test_counters_are_read_when_metrics_are_collected() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    stats = RecorderStats(written=7, write_errors=1, dropped_capacity=2)
    observe_recorder(stats, provider)
    stats.storage.update({"uploaded": 5, "spilled": 2})
    assert _collected(reader) == {"written": 7, "write_error": 1, "dropped_capacity": 2, "incomplete": 0,
                                  "uploaded": 5, "spilled": 2}
    stats.written += 3
    stats.storage.update({"uploaded_from_spill": 2})
    collected = _collected(reader)
    assert collected["written"] == 10 and collected["uploaded_from_spill"] == 2
    provider.shutdown()
