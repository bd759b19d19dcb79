"""Replay: each replayed request sees the clock of its recording.

While a request is replayed, "now" (``time.time()``, ``time.time_ns()``, ``datetime.datetime.now()`` and
``utcnow()``, ``datetime.date.today()``, ``time.localtime()``, ``time.gmtime()``, ``time.strftime()`` and
``time.clock_gettime(CLOCK_REALTIME)`` without a time) is what the app read while the request was recorded (see
Recording below); without recorded readings, the cassette's ``metadata.recorded_at`` plus the time elapsed since
the replayed request started. So JWT expiry and "now"-dependent logic behave as recorded while
durations still measure. Requests replayed at the same time each see their own clock; code outside a replayed
request, OpenTelemetry (span timestamps) and timetracer see the real one. ``time.monotonic()`` and
``time.perf_counter()`` are never shifted.

time-machine does the patching: it replaces those functions in C, so references the app took before the install
(``from time import time``) follow too, and asks the traveller on top of its stack for the time, calling its
``time_ns()`` on every reading. One traveller is started for the whole process, and its ``time_ns`` is
:func:`replayed_time_ns`, which reads the clock of the replay session in the OpenTelemetry context (a context
variable): that makes time-machine's process-wide clock one per request. A test's own ``time_machine.travel()``
goes on top of it and wins while it lasts.

Recording: with ``TIMETRACER_RECORD_CLOCK`` on, the same traveller is started while recording, and its
``time_ns`` reads the real clock and keeps each of the app's readings in the request's recording, in order (the
cassette's ``generated.clock``); replay hands them back in that order (:meth:`ReplaySession.clock_ns`), so the
replayed request reads exactly the recorded times, and the clock runs on from the last one when they are used up.
Every clock reading in the process then goes through Python: OpenTelemetry's timestamps and timetracer's own are
spared by giving their modules the unpatched ``time_ns`` while the traveller is in place (on by default: see
docs/determinism.md for what it costs). Off, recording changes nothing about the clock, and the replayed clock runs
from ``recorded_at``.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

import _time_machine
import time_machine

from timetracer_otel.determinism._state import app_called, current_state
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.replay.session import CLOCK, ReplaySession
from timetracer_otel.settings import Mode

__all__ = ["INTEGRATION", "ClockIntegration", "replayed_time_ns"]

logger = logging.getLogger("timetracer")

_original_time_ns = _time_machine.original_time_ns


class _Switches:
    """What the installed traveller does (set by :class:`ClockIntegration`): replay the clock of replayed
    requests, record the app's readings in recorded ones."""

    replay = True
    record = False


def replayed_time_ns() -> int:
    """Now, for whoever reads the clock: the replayed request's clock for the app's code while a request is
    replayed (:meth:`ReplaySession.clock_ns`); the real time, kept in the recording for the app's code while a
    request is recorded with ``TIMETRACER_RECORD_CLOCK``; else the real time."""
    state = current_state()
    if state is not None:
        if isinstance(state, ReplaySession):
            if _Switches.replay and app_called():
                now = state.clock_ns()
                if now is not None:
                    return now
        elif _Switches.record and app_called():
            reading: int = _original_time_ns()
            state.add_generated(CLOCK, reading)
            return reading
    # Only called while time-machine's patch is in place, which is when this escape hatch works.
    real: int = _original_time_ns()
    return real


#: Modules that took ``from time import time_ns``, whose readings are never the app's: OpenTelemetry's SDK (span,
#: log and metric timestamps) and timetracer's recording (call start and end). They are given the unpatched
#: function while the traveller is in place, so their readings cost nothing extra.
_SDK_MODULES = (
    "opentelemetry.sdk.trace", "opentelemetry.sdk._logs._internal", "opentelemetry.sdk.metrics._internal",
    "opentelemetry.sdk.metrics._internal.instrument", "opentelemetry.sdk.metrics._internal.measurement_consumer",
    "opentelemetry.sdk.metrics._internal._view_instrument_match",
    "opentelemetry.sdk.metrics._internal.metric_reader_storage", "opentelemetry.sdk.metrics._internal.export",
    "timetracer_otel.record.recording",
)


class ClockIntegration(Integration):
    """Starts the process's traveller in replay mode (and for the pytest plugin's cassettes, whose runtime's
    mode is off), unless ``TIMETRACER_REPLAY_CLOCK`` is false; in record mode only with
    ``TIMETRACER_RECORD_CLOCK``."""

    name = "clock"

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        self._travel: time_machine.travel | None = None
        self._traveller: Any = None
        #: The SDK modules whose ``time_ns`` was swapped, with the function it replaced.
        self._sdk_swapped: list[tuple[Any, Any]] = []

    def patches(self) -> Sequence[Patch]:
        return ()  # time-machine patches the clock functions in C

    def install(self) -> None:
        self.active = True
        settings = self.settings
        replay = settings.mode is not Mode.RECORD and settings.replay_clock
        record = settings.mode is not Mode.REPLAY and settings.record_clock
        if self._travel is not None or not (replay or record):
            return
        _Switches.replay, _Switches.record = replay, record
        travel = time_machine.travel(0, tick=False)
        traveller = travel.start()
        # time-machine's C functions call the top traveller's time_ns(): an instance attribute takes the place
        # of the method, so every reading goes through replayed_time_ns.
        setattr(traveller, "time_ns", replayed_time_ns)  # noqa: B010 - mypy refuses assigning to a method
        self._travel, self._traveller = travel, traveller
        self._swap_sdk_clock()

    def _swap_sdk_clock(self) -> None:
        for name in _SDK_MODULES:
            try:
                module = sys.modules.get(name) or importlib.import_module(name)
            except ImportError:
                continue
            real = getattr(module, "time_ns", None)
            if real is not None and real is not _original_time_ns:
                self._sdk_swapped.append((module, real))
                setattr(module, "time_ns", _original_time_ns)  # noqa: B010 - a module mypy knows

    def uninstall(self) -> None:
        self.active = False
        while self._sdk_swapped:  # first: the unpatched function only works while time-machine's patch is in
            module, real = self._sdk_swapped.pop()
            if getattr(module, "time_ns", None) is _original_time_ns:
                setattr(module, "time_ns", real)  # noqa: B010
        travel, traveller = self._travel, self._traveller
        if travel is None:
            return
        self._travel = self._traveller = None
        _Switches.replay, _Switches.record = True, False
        stack = time_machine.traveller_stack
        if stack and stack[-1] is traveller:
            travel.stop()
        elif traveller in stack:
            # A test's own travel is on top: leave time-machine patched for it, and take ours out from under it.
            stack.remove(traveller)


INTEGRATION = ClockIntegration
