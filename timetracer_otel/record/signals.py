"""Writing pending cassettes when the process is asked to stop."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

__all__ = ["flush_on_sigterm"]


def flush_on_sigterm(flush: Callable[[], None]) -> bool:
    """Write pending cassettes on SIGTERM, then let the signal do what it did before.

    Servers like uvicorn install their own handler and, after a graceful shutdown, restore the previous one
    (this) and raise the signal again, so atexit handlers would never run. The tracer provider is flushed too,
    so the user's other exporters do not lose the last spans either.
    """
    if threading.current_thread() is not threading.main_thread():
        return False  # signal handlers can only be set from the main thread
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
    return True
