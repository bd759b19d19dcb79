"""Start-up under ``opentelemetry-instrument``: the ``opentelemetry_pre_instrument`` hook.

It runs after the SDK built the tracer provider and before any instrumentor, so our patches end up inner to
theirs. It works with any distro; ours only adds defaults (see :mod:`timetracer_otel.distro`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from timetracer_otel.errors import TimetracerError
from timetracer_otel.runtime import install
from timetracer_otel.settings import Mode, Settings

__all__ = ["pre_instrument"]

logger = logging.getLogger("timetracer")


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
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            logger.warning("timetracer: OTEL_SDK_DISABLED=true, so no spans exist and nothing is %sed",
                           settings.mode.value)
            return
        runtime = install(settings, instrument_libraries=False)
    except TimetracerError as error:
        _stop_start_up(error)
        return
    if runtime.recorder is not None:
        _flush_on_sigterm(runtime.recorder.shutdown)


def _flush_on_sigterm(flush: Callable[[], None]) -> None:
    """Write pending cassettes on SIGTERM, then let the signal do what it did before.

    Servers like uvicorn install their own handler and, after a graceful shutdown, restore the previous one
    (this) and raise the signal again, so atexit handlers would never run. The tracer provider is flushed too,
    so the user's other exporters do not lose the last spans either.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        flush()
        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            provider.force_flush(5000)
        sys.stdout.flush()
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        else:
            signal.raise_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
