"""Hands captured requests to a writer process, a batch per pipe write, which assembles and stores cassettes.

Every file syscall made from a thread of the app's process has to win the GIL back from the app's threads,
which under load costs milliseconds per call and slows every request, and assembling a cassette and encoding
it as JSON holds that GIL too. A separate process pays none of that: the app's process serialises each
captured request to MessagePack (a few microseconds, in C), makes one pipe write per batch and reads one
short acknowledgement.

The pipe protocol: frames of ``C`` + length (8 bytes, big-endian) + one captured request, and ``A`` to ask how
the requests since the previous ``A`` went (see :mod:`timetracer_otel.record._writer_main`).

If the writer process dies between batches a new one is started (at most ``_RESTARTS`` times). If it cannot
start, or dies with a batch it did not acknowledge, that batch and all later ones are written from this
process instead, so no cassette is lost.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from timetracer_otel.exporters.file import FileExporter
from timetracer_otel.record.assembly import AssemblingWriter
from timetracer_otel.record.captured import CapturedRequest, encode_captured
from timetracer_otel.settings import Compression

__all__ = ["LENGTH", "WriterProcess"]

logger = logging.getLogger("timetracer.record")

_RESTARTS = 3
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

    def __init__(self, directory: str | Path, compression: Compression, service: str) -> None:
        self.directory = Path(directory)
        self.compression = compression
        self.service = service
        self._fallback = AssemblingWriter(FileExporter(directory, compression), service)
        self._process: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()
        self._broken = False
        self._restarts = 0

    def store_batch(self, captured: Sequence[CapturedRequest]) -> tuple[int, int]:
        """Store each request's cassette; return how many were written and how many failed."""
        process = self._writer()
        if process is not None:
            try:
                return self._send(process, captured)
            except (OSError, ValueError, EOFError):
                logger.exception("timetracer: the writer process stopped; writing cassettes in-process")
                self._broken = True
                self._stop()
        return self._fallback.store_batch(captured)

    def _send(self, process: subprocess.Popen[bytes], captured: Sequence[CapturedRequest]) -> tuple[int, int]:
        assert process.stdin is not None and process.stdout is not None
        frames = bytearray()
        for request in captured:
            data = encode_captured(request)
            frames += b"C"
            frames += LENGTH.pack(len(data))
            frames += data
        frames += b"A"
        process.stdin.write(frames)
        process.stdin.flush()
        answer = process.stdout.readline()
        if not answer:
            raise EOFError("the writer process closed its output")
        written, failed = (int(n) for n in answer.split())
        return written, failed

    def _writer(self) -> subprocess.Popen[bytes] | None:
        if self._pid != os.getpid():  # forked: the parent's writer belongs to the parent
            self._process, self._pid, self._broken, self._restarts = None, os.getpid(), False, 0
        if self._broken:
            return None
        if self._process is not None and (code := self._process.poll()) is not None:
            self._stop()
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
                        str(self.directory),
                        self.compression.value,
                        self.service,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=_child_environment(),
                    close_fds=True,
                )
            except OSError:
                logger.exception("timetracer: could not start the writer process; writing cassettes in-process")
                self._broken = True
                return None
        return self._process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def close(self) -> None:
        if self._pid == os.getpid():
            self._stop()
