"""The ``timetracer`` distro: defaults that make ``opentelemetry-instrument`` record out of the box.

Select it with ``OTEL_PYTHON_DISTRO=timetracer`` when several distros are installed.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

__all__ = ["TimetracerDistro"]

logger = logging.getLogger("timetracer")


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
