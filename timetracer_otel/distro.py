"""The ``timetracer`` distro and configurator: what makes ``opentelemetry-instrument`` record out of the box.

The distro sets defaults; the configurator builds the tracer provider and the exporters named in
``OTEL_TRACES_EXPORTER`` (the SDK ships the logic but registers no configurator of its own; upstream's
``opentelemetry-distro`` does the same as this). Select them with ``OTEL_PYTHON_DISTRO=timetracer`` and
``OTEL_PYTHON_CONFIGURATOR=timetracer`` when several are installed.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

__all__ = ["TimetracerConfigurator", "TimetracerDistro"]



class TimetracerDistro(BaseDistro):  # type: ignore[misc]
    def _configure(self, **kwargs: Any) -> None:
        # Traces go to our exporter unless the user lists exporters (e.g. otlp,timetracer); metrics and logs
        # exporters are off unless asked for, so no collector is needed to record.
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "timetracer")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
        mode = (os.environ.get("TIMETRACER_MODE") or os.environ.get("OTEL_TIMETRACER_MODE") or "").lower()
        if mode in ("record", "replay"):
            # A cassette needs every span of the request: sample everything unless the user chose a sampler.
            os.environ.setdefault("OTEL_TRACES_SAMPLER", "always_on")


class TimetracerConfigurator(_OTelSDKConfigurator):
    """The SDK's environment-driven set-up: tracer provider, sampler and exporters from ``OTEL_*``."""
