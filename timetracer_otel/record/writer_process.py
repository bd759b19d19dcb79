"""Hands captured requests to a writer process, a batch per pipe write, which assembles and stores cassettes.

Every file syscall made from a thread of the app's process has to win the GIL back from the app's threads,
which under load costs milliseconds per call and slows every request, and assembling a cassette and encoding
it as JSON holds that GIL too. A separate process pays none of that: the app's process serialises each
captured request to MessagePack (a few microseconds, in C) and makes one pipe write per batch. It does not wait
for the batch to be stored: acknowledgements are picked up when the next batch is handed over (or on a flush),
because a thread that blocks on each one must win the GIL back from the app every time it arrives.

The pipe protocol: frames of ``C`` + length (8 bytes, big-endian) + one captured request, and ``A`` to ask how
the requests since the previous ``A`` went (see :mod:`timetracer_otel.record._writer_main`).

Batches are kept until acknowledged. If the writer process dies, the batches it acknowledged count, and the
others are written from this process (at least once: one it stored but did not get to acknowledge is written
again, under a new name). A new writer process is then started (at most ``_RESTARTS`` times); if it cannot
start, or its pipe breaks, all later batches are written from this process, so no cassette is lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import struct
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence

from timetracer_otel.exporters.spec import ExporterSpec
from timetracer_otel.record.assembly import AssemblingWriter
from timetracer_otel.record.captured import CapturedRequest, encode_captured

__all__ = ["LENGTH", "WriterProcess"]

logger = logging.getLogger("timetracer.record")

_RESTARTS = 3
#: Batches handed over and not yet acknowledged before handing over another waits for the oldest: this bounds
#: what is held if the writer process falls behind.
_IN_FLIGHT = 4
#: How long handing over a batch waits for the oldest in flight before the writer process counts as hung.
_STALLED_SECONDS = 30.0
LENGTH = struct.Struct(">Q")


def _child_environment() -> dict[str, str]:
    # The writer must not run opentelemetry-instrument's sitecustomize (it would record itself), but it must
    # import timetracer_otel from wherever this process did.
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TIMETRACER_"))}
    paths = [p for p in sys.path if p and "auto_instrumentation" not in p]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    return environment


class WriterProcess:
    """Writes cassettes as files through a writer process; see the module docstring. A
    :class:`~timetracer_otel.record.captured.CaptureWriter`."""

    def __init__(self, spec: ExporterSpec) -> None:
        self.spec = spec
        self._fallback_writer: AssemblingWriter | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()
        self._broken = False
        self._restarts = 0
        #: Batches handed to the writer process and not yet acknowledged, oldest first.
        self._in_flight: deque[Sequence[CapturedRequest]] = deque()
        self._answers = b""
        self._stored = self._failed = 0
        self._storage_counts: Counter[str] = Counter()

    @property
    def _fallback(self) -> AssemblingWriter:
        """This process's own exporter, opened the first time the writer process cannot be used."""
        if self._fallback_writer is None:
            self._fallback_writer = AssemblingWriter(self.spec.open(), self.spec.service)
        return self._fallback_writer

    def start(self) -> None:
        """Start the writer process now rather than with the first batch: an exporter that keeps cassettes
        for later (S3's spill folder) then uploads what an earlier run left without waiting for traffic."""
        self._writer()

    def store_batch(self, captured: Sequence[CapturedRequest]) -> tuple[int, int]:
        """Hand a batch over without waiting for it to be stored. Returns how many cassettes were stored and
        how many failed since the previous call: batches before this one, as their acknowledgements arrive."""
        process = self._writer()
        if process is None:
            self._count(*self._fallback.store_batch(captured))
            return self._counts()
        try:
            self._collect(process)
            self._in_flight.append(captured)
            self._send(process, captured)
            if len(self._in_flight) > _IN_FLIGHT:
                self._collect(process, wait_until=_IN_FLIGHT, timeout=_STALLED_SECONDS)
                if len(self._in_flight) > _IN_FLIGHT:
                    raise TimeoutError(f"the writer process acknowledged nothing for {_STALLED_SECONDS:g} s")
        except (OSError, ValueError, EOFError) as error:
            self._give_up(error)
        return self._counts()

    def drain(self, timeout: float | None = None) -> tuple[int, int]:
        """Wait until every batch handed over is stored, or ``timeout`` seconds; counts as ``store_batch``."""
        process = self._process
        if process is not None and self._in_flight:
            try:
                self._collect(process, wait_until=0, timeout=timeout)
            except (OSError, ValueError, EOFError) as error:
                self._give_up(error)
        return self._counts()

    def _give_up(self, error: BaseException) -> None:
        """The pipe to the writer process broke: from now on, write everything here."""
        logger.error("timetracer: the writer process stopped; writing cassettes in-process", exc_info=error)
        self._broken = True
        self._retire()

    def _send(self, process: subprocess.Popen[bytes], captured: Sequence[CapturedRequest]) -> None:
        assert process.stdin is not None
        frames = bytearray()
        for request in captured:
            data = encode_captured(request)
            frames += b"C"
            frames += LENGTH.pack(len(data))
            frames += data
        frames += b"A"
        view = memoryview(frames)
        while view:
            view = view[process.stdin.write(view) or 0 :]

    def _collect(
        self, process: subprocess.Popen[bytes], wait_until: int | None = None, timeout: float | None = None
    ) -> None:
        """Count the acknowledgements that have arrived; with ``wait_until``, wait (up to ``timeout`` seconds)
        until no more than that many batches are in flight."""
        assert process.stdout is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._in_flight:
            waiting = wait_until is not None and len(self._in_flight) > wait_until
            limit = 0.0 if not waiting else None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([process.stdout], [], [], limit)[0]:
                return
            chunk = process.stdout.read(4096)
            if not chunk:
                raise EOFError("the writer process closed its output")
            self._answers += chunk
            while b"\n" in self._answers:
                line, _, self._answers = self._answers.partition(b"\n")
                stored, failed, *counters = line.decode().split()
                for counter in counters:
                    name, _, change = counter.partition("=")
                    self._storage_counts[name] += int(change)
                self._in_flight.popleft()
                self._count(int(stored), int(failed))

    def _count(self, stored: int, failed: int) -> None:
        self._stored += stored
        self._failed += failed

    def take_counts(self) -> dict[str, int]:
        counts, self._storage_counts = self._storage_counts, Counter()
        if self._fallback_writer is not None:
            counts.update(self._fallback_writer.take_counts())
        return dict(counts)

    def _counts(self) -> tuple[int, int]:
        counts = (self._stored, self._failed)
        self._stored = self._failed = 0
        return counts

    def _writer(self) -> subprocess.Popen[bytes] | None:
        if self._pid != os.getpid():  # forked: the parent's writer and batches belong to the parent
            self._process, self._pid, self._broken, self._restarts = None, os.getpid(), False, 0
            self._in_flight, self._answers, self._fallback_writer = deque(), b"", None
        if self._broken:
            return None
        if self._process is not None and (code := self._process.poll()) is not None:
            self._retire()
            self._restarts += 1
            if self._restarts > _RESTARTS:
                logger.error("timetracer: the writer process keeps exiting (last code %s); writing cassettes "
                             "in-process from now on", code)
                self._broken = True
                return None
            logger.warning("timetracer: the writer process exited with code %s; starting a new one", code)
        if self._process is None:
            try:
                self._process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "timetracer_otel.record._writer_main",
                        self.spec.to_json(),
                        str(logging.getLogger("timetracer").getEffectiveLevel()),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    bufsize=0,  # raw pipes: select() must see every acknowledgement that has arrived
                    env=_child_environment(),
                    close_fds=True,
                )
            except OSError:
                logger.exception("timetracer: could not start the writer process; writing cassettes in-process")
                self._broken = True
                return None
        return self._process

    def _retire(self) -> None:
        """Stop the writer process (it stores what it was sent, then exits); count the batches it acknowledged,
        and write the others here."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            # It stores what it was sent, and an exporter that queues (S3) gets its flush timeout on top.
            process.wait(5 + self.spec.flush_timeout)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        with contextlib.suppress(OSError, ValueError, EOFError):
            self._collect(process, wait_until=0, timeout=0)
        if process.stdout is not None:
            process.stdout.close()
        self._answers = b""
        while self._in_flight:
            self._count(*self._fallback.store_batch(self._in_flight.popleft()))

    def close(self) -> None:
        if self._pid == os.getpid():
            self._retire()
            if self._fallback_writer is not None:
                self._fallback_writer.close()
