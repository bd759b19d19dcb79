"""Start-up under ``opentelemetry-instrument``: the ``opentelemetry_pre_instrument`` hook.

It runs after the SDK built the tracer provider and before any instrumentor, so our patches end up inner to
theirs. It works with any distro; ours only adds defaults (see :mod:`timetracer_otel.distro`).
"""

from __future__ import annotations

import os
import sys

from timetracer_otel.errors import TimetracerError
from timetracer_otel.runtime import install
from timetracer_otel.settings import Mode, Settings

__all__ = ["pre_instrument"]


def _stop_start_up(error: TimetracerError) -> None:
    # opentelemetry-instrument swallows exceptions here and would run the app unrecorded; a bad setting
    # must stop start-up instead, with a message rather than a traceback.
    sys.stderr.write(f"timetracer: {error}\ntimetracer: start-up stopped; fix the setting and start again\n")
    sys.stderr.flush()
    os._exit(2)


def pre_instrument() -> None:
    try:
        settings = Settings.from_env()
        if settings.mode is Mode.OFF:
            return
        install(settings, instrument_libraries=False)
    except TimetracerError as error:
        _stop_start_up(error)
