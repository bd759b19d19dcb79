"""Recording's counters as OpenTelemetry metrics, for apps that export metrics anyway.

One observable counter, ``timetracer.cassettes``, with a ``timetracer.outcome`` attribute per counter of
:class:`~timetracer_otel.record.recorder.RecorderStats` that says what became of cassettes. Observable: nothing
happens per request; the callback reads the counters when the app's metric reader collects (and with no
metrics SDK configured, never).
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from timetracer_otel._version import __version__
from timetracer_otel.record.recorder import RecorderStats

__all__ = ["observe_recorder"]

#: RecorderStats fields reported, by outcome name.
_RECORDER_OUTCOMES = {
    "written": "written",
    "write_error": "write_errors",
    "dropped_capacity": "dropped_capacity",
    "incomplete": "incomplete",
}


def observe_recorder(stats: RecorderStats, provider: MeterProvider | None = None) -> None:
    """Report ``stats`` (and the exporter's own counters: ``uploaded``, ``spilled``, ...) through ``provider``
    (the global one by default)."""
    meter = metrics.get_meter("timetracer", __version__, meter_provider=provider)

    def outcomes(_: CallbackOptions) -> Iterable[Observation]:
        for outcome, field in _RECORDER_OUTCOMES.items():
            yield Observation(getattr(stats, field), {"timetracer.outcome": outcome})
        for outcome, count in list(stats.storage.items()):
            yield Observation(count, {"timetracer.outcome": outcome})

    meter.create_observable_counter(
        "timetracer.cassettes", callbacks=[outcomes], unit="{cassette}",
        description="What became of recorded requests' cassettes, by outcome",
    )
