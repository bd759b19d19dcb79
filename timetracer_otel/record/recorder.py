"""Admits requests for recording, waits for them to settle, and writes their cassettes off the request path.

Request path: :meth:`Recorder.admit` (a few comparisons) and :meth:`Recorder.finish` (one deque append).
Writer thread: settling (quiet period, hard timeout), materializing what each request captured into a
:class:`~timetracer_otel.record.captured.CapturedRequest` and handing batches of them to a capture writer,
which assembles, encodes and stores the cassettes (the default one in a writer process, off the app's GIL).
Nothing here ever raises into the app: failures are logged and counted.

The writer works in batches on a fixed tick rather than being woken per request: every wake-up is a GIL
hand-off that the app's threads pay for, so its cost must not grow with the request rate.
"""

from __future__ import annotations

import atexit
import fnmatch
import logging
import os
import random
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import msgspec

from timetracer_otel.cassette.model import RecordedError
from timetracer_otel.record.captured import CapturedCall, CapturedRequest, CaptureWriter, capture_generated
from timetracer_otel.record.recording import ByteBudget, PendingCall, RequestRecording, SessionRecording
from timetracer_otel.record.tracker import RequestSpanTracker
from timetracer_otel.settings import Settings

__all__ = ["Recorder", "RecorderStats"]

logger = logging.getLogger("timetracer.record")

#: How often the writer looks for settled requests, and how often it checks hard timeouts.
_TICK_SECONDS = 0.05
_SCAN_INTERVAL = 0.5
#: A busy session (a scheduler that never pauses) is still written at least this often.
_SESSION_SEGMENT_SECONDS = 10.0


@dataclass
class RecorderStats:
    """Counters for what recording did; read them with ``timetracer_otel.recorder_stats()``."""

    admitted: int = 0
    written: int = 0
    not_sampled: int = 0
    excluded: int = 0
    dropped_capacity: int = 0
    skipped_not_error: int = 0
    incomplete: int = 0
    #: Spans and calls that arrived after their request was written (they are not in its cassette).
    late_spans: int = 0
    late_calls: int = 0
    capture_errors: int = 0
    write_errors: int = 0
    #: The exporter's own counters: for S3, ``uploaded``, ``spilled``, ``uploaded_from_spill``, ``dropped``,
    #: ``upload_errors`` (docs/s3-storage.md).
    storage: Counter[str] = field(default_factory=Counter)


class _Flush:
    __slots__ = ("event", "final")

    def __init__(self, final: bool) -> None:
        self.event = threading.Event()
        #: The process is stopping: requests the app answered are written even if not done yet.
        self.final = final


def _answered(recording: RequestRecording) -> bool:
    """The app has started its response (read on the writer thread, at shutdown only)."""
    try:
        return recording.inbound.response() is not None
    except Exception:  # no inbound capture yet, or one that cannot say
        return False


class Recorder:
    def __init__(self, settings: Settings, writer: CaptureWriter) -> None:
        self.settings = settings
        self.writer = writer
        self.stats = RecorderStats()
        self.tracker = RequestSpanTracker(self.settle, self.stats)
        self.budget = ByteBudget()
        patterns = "|".join(fnmatch.translate(p) for p in settings.exclude_paths)
        self._exclude_re = re.compile(patterns) if patterns else None
        self._pending: dict[int, RequestRecording] = {}
        #: Appended on app threads, drained by the writer (deque appends and pops are thread-safe).
        self._settled: deque[RequestRecording] = deque()
        self._flushes: deque[_Flush] = deque()
        self._wake = threading.Event()
        #: Captured requests waiting for the writer: one hand-off per writer tick.
        self._batch: list[CapturedRequest] = []
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._stopped = False
        self._last_capacity_warning = 0.0
        #: Calls outside any inbound request; their unfinished calls wait here between session segments.
        self.session = SessionRecording(self.stats, self.budget)
        self._session_unfinished: list[PendingCall] = []
        self._session_written = time.monotonic()
        SessionRecording.current = self.session
        self._ensure_thread()
        os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self.shutdown)

    # -- request path -------------------------------------------------------------------------------------

    def admit(self, path: str) -> RequestRecording | None:
        """A recording for this inbound request, or None if it is excluded, not sampled, or over capacity.

        The inbound integration then sets the recording's ``inbound`` capture."""
        if self._exclude_re is not None and self._exclude_re.match(path):
            self.stats.excluded += 1
            return None
        rate = self.settings.sample_rate
        if rate < 1.0 and random.random() >= rate:  # noqa: S311 - sampling, not security
            self.stats.not_sampled += 1
            return None
        if self._stopped:
            return None
        if (
            len(self._pending) >= self.settings.max_pending_requests
            or self.budget.used >= self.settings.max_buffered_bytes
        ):
            self._over_capacity()
            return None
        recording = RequestRecording(self.stats, self.budget)
        self._pending[id(recording)] = recording
        self.stats.admitted += 1
        self._ensure_thread()
        return recording

    def finish(self, recording: RequestRecording) -> None:
        """The inbound integration's done-signal: the app has answered and its own work returned."""
        recording.done = True
        if not recording.open_spans:
            self.settle(recording)

    def settle(self, recording: RequestRecording) -> None:
        """Every span of the request has ended: write it once a quiet period passes without new activity."""
        self._settled.append(recording)

    def _over_capacity(self) -> None:
        self.stats.dropped_capacity += 1
        now = time.monotonic()
        if now - self._last_capacity_warning > 10:
            self._last_capacity_warning = now
            logger.warning(
                "timetracer: %d requests holding %d bytes are waiting to be written "
                "(TIMETRACER_MAX_PENDING_REQUESTS / TIMETRACER_MAX_BUFFERED_BYTES); "
                "new requests are not recorded until they drain (%d dropped so far)",
                len(self._pending),
                self.budget.used,
                self.stats.dropped_capacity,
            )

    # -- lifecycle ----------------------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._thread_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="timetracer-writer", daemon=True)
                self._thread.start()

    def flush(self, timeout: float | None = None, *, final: bool = False) -> bool:
        """Write every request that has finished, without waiting for quiet periods. True if done in time.

        ``final`` (at shutdown) also writes requests the app has answered but whose done-signal has not come
        (a server stopped between sending a response and closing it), marked incomplete."""
        if self._thread is None and (self.session.calls or self._session_unfinished):
            self._ensure_thread()  # a forked child that made calls but served no request yet
        if self._thread is None or not self._thread.is_alive():
            return not self._pending
        marker = _Flush(final)
        self._flushes.append(marker)
        self._wake.set()
        return marker.event.wait(self.settings.flush_timeout if timeout is None else timeout)

    def shutdown(self) -> None:
        if self._stopped:
            return
        self.flush(final=True)
        self._stopped = True
        if SessionRecording.current is self.session:
            SessionRecording.current = None
        self.tracker.enabled = False
        self._wake.set()
        if self._pending:
            logger.warning("timetracer: %d requests were still running at shutdown and were not written",
                           len(self._pending))
        self.writer.close()

    def _after_fork(self) -> None:
        # The writer thread does not exist in a forked child; requests in flight belong to the parent.
        self._thread = None
        self._thread_lock = threading.Lock()
        self._settled = deque()
        self._flushes = deque()
        self._wake = threading.Event()
        self._pending = {}
        self.session = SessionRecording(self.stats, self.budget)
        self._session_unfinished = []
        if SessionRecording.current is not None:
            SessionRecording.current = self.session

    # -- writer thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        waiting: list[RequestRecording] = []
        next_scan = time.monotonic() + _SCAN_INTERVAL
        while not self._stopped:
            self._wake.wait(_TICK_SECONDS)
            self._wake.clear()
            while self._settled:
                waiting.append(self._settled.popleft())
            flushes = []
            while self._flushes:
                flushes.append(self._flushes.popleft())
            waiting = self._write_settled(waiting, everything=bool(flushes))
            if flushes:
                final = any(flush.final for flush in flushes)
                for recording in list(self._pending.values()):
                    if recording.done or (final and _answered(recording)):
                        self._write(recording)
            if flushes or time.monotonic() >= next_scan:
                next_scan = time.monotonic() + _SCAN_INTERVAL
                self._expire()
                self._write_session(everything=bool(flushes))
            self._store_batch()
            if flushes:
                self._drain()
            for flush in flushes:
                flush.event.set()

    def _drain(self) -> None:
        try:
            written, failed = self.writer.drain(self.settings.flush_timeout)
        except Exception:  # as for store_batch: the writer thread must outlive a writer that raises
            logger.exception("timetracer: the writer failed while waiting for cassettes to be stored")
            return
        self._count_stored(written, failed)

    def _count_stored(self, written: int, failed: int) -> None:
        self.stats.written += written
        self.stats.write_errors += failed
        self.stats.storage.update(self.writer.take_counts())

    def _store_batch(self) -> None:
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        try:
            written, failed = self.writer.store_batch(batch)
        except Exception:  # a writer must not raise, but the writer thread must outlive one that does
            written, failed = 0, len(batch)
            logger.exception("timetracer: the writer failed to store %d cassettes", len(batch))
        self._count_stored(written, failed)

    def _write_settled(self, waiting: list[RequestRecording], everything: bool) -> list[RequestRecording]:
        """Write the requests that stayed quiet for the quiet period; return those still waiting."""
        now = time.monotonic()
        still_waiting = []
        for recording in waiting:
            if recording.finalized:
                continue
            if everything:
                self._write(recording)
            elif recording.open_spans:
                continue  # a late span started; its end settles the request again
            elif now - recording.last_activity >= self.settings.quiet_period:
                self._write(recording)
            else:
                still_waiting.append(recording)
        return still_waiting

    def _expire(self) -> None:
        limit = self.settings.request_timeout
        wall = time.time()
        for recording in list(self._pending.values()):
            if wall - recording.started_at > limit and not recording.finalized:
                self._write(recording, incomplete=True)

    def _write(self, recording: RequestRecording, incomplete: bool = False) -> None:
        """Capture the request into the batch for the writer, and release what it held."""
        if recording.finalized:
            return
        recording.finalized = True
        self._pending.pop(id(recording), None)
        if recording.open_spans:
            self.tracker.forget(recording.open_spans)
        try:
            captured = self._capture(recording, incomplete or bool(recording.open_spans) or not recording.done)
        except Exception:
            self.stats.capture_errors += 1
            logger.exception("timetracer: could not capture a request; it is not recorded")
            return
        finally:
            recording.release()  # also drops its references, so no cycle outlives the request
        if captured is None:
            return
        self._batch.append(captured)
        if captured.incomplete:
            self.stats.incomplete += 1

    def _write_session(self, everything: bool) -> None:
        """Write the session's ended calls as a segment, once the session has been quiet for the quiet period
        (or a segment is overdue, or on a flush)."""
        session = self.session
        if not session.calls and not self._session_unfinished:
            return
        now = time.monotonic()
        quiet = now - session.last_activity >= self.settings.quiet_period
        if not (everything or quiet or now - self._session_written >= _SESSION_SEGMENT_SECONDS):
            return
        ended = session.take_ended(self._session_unfinished)
        if not ended:
            return
        self._session_written = now
        calls = []
        for call in sorted(ended, key=lambda c: c.start_ns):
            captured = self._captured_call(call)
            if captured is not None:
                calls.append(captured)
        if not calls:
            return
        start_ns = calls[0].start_ns
        self._batch.append(
            CapturedRequest(
                id=f"{random.getrandbits(128):032x}",
                started_at=start_ns / 1e9,
                start_ns=start_ns,
                trace_id=None,
                incomplete=False,
                request=None,
                response=None,
                error=None,
                calls=tuple(calls),
                spans=(),
                generated=capture_generated(session.take_generated()),
            )
        )

    def _capture(self, recording: RequestRecording, incomplete: bool) -> CapturedRequest | None:
        response = recording.inbound.response()
        error = (RecordedError.from_exception(recording.error, with_traceback=True)
                 if recording.error is not None else None)
        if self.settings.errors_only and error is None and (response is None or response.status < 500):
            self.stats.skipped_not_error += 1
            return None
        request = recording.inbound.request()
        if request.route is None and recording.route is not None:
            request = msgspec.structs.replace(request, route=recording.route)
        calls = []
        for call in recording.calls:
            captured = self._captured_call(call)
            if captured is not None:
                calls.append(captured)
        return CapturedRequest(
            # Not uuid4: os.urandom is a syscall, and each costs the app a GIL hand-off.
            id=f"{random.getrandbits(128):032x}",
            started_at=recording.started_at,
            start_ns=recording.start_ns,
            trace_id=None if recording.trace_id is None else f"{recording.trace_id:032x}",
            incomplete=incomplete,
            request=request,
            response=response,
            error=error,
            calls=tuple(calls),
            spans=tuple(recording.spans),
            generated=capture_generated(recording.take_generated()),
        )

    def _captured_call(self, call: PendingCall) -> CapturedCall | None:
        return capture_call(call, self.stats)


def capture_call(call: PendingCall, stats: RecorderStats) -> CapturedCall | None:
    """What a finished call captured, as it crosses to the writer; None (counted in ``stats``) if capturing
    failed: a capture error loses the call from the cassette, never the app's request."""
    try:
        request = call.request()
        response = call.response()
        error = None if call.error is None else RecordedError.from_exception(call.error, call.error_details())
    except Exception:
        stats.capture_errors += 1
        logger.exception("timetracer: could not capture a %s call; it is left out of the cassette", call.library)
        return None
    return CapturedCall(
        kind=call.kind,
        library=call.library,
        request=request,
        response=response,
        error=error,
        start_ns=call.start_ns,
        end_ns=call.end_ns,
        span_id=call.span_id,
        parent_span_id=call.parent_span_id,
    )
