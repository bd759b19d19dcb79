"""Stores cassettes in S3 at ``prefix/<service>/YYYY-MM-DD/<name>``: the local layout, one folder per service.

Runs where cassettes are stored (the writer process, off the app's GIL and outside its instrumentation), and
never makes the caller wait for S3: :meth:`S3Exporter.store_batch` encodes and queues; uploader threads send.
The queue is bounded (in bytes); what does not fit, and what S3 does not take (after botocore's retries with
backoff), goes to a local spill folder, from which a drainer uploads it once S3 answers again. A failed upload
marks S3 down: later cassettes go straight to the spill folder instead of each waiting for a timeout, and the
drainer probes with backoff (1 s doubling to 15 s). Keys are derived from the cassette alone, so an upload
repeated after a crash or a lost answer writes the same object again: at least once, never duplicated.
"""

from __future__ import annotations

import collections
import enum
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from opentelemetry.instrumentation.utils import suppress_instrumentation

from timetracer_otel._version import __version__
from timetracer_otel.cassette.files import cassette_relative_path, dump_cassette
from timetracer_otel.cassette.model import Cassette
from timetracer_otel.cassette.naming import service_folder
from timetracer_otel.exporters.spill import SpillFolder
from timetracer_otel.s3.client import S3Options, describe_s3_error, make_client
from timetracer_otel.s3.location import S3Location
from timetracer_otel.s3.transfer import put_arguments
from timetracer_otel.settings import Compression

__all__ = ["S3Exporter", "S3ExporterCounts"]

logger = logging.getLogger("timetracer.s3")

_WORKERS = 8
_QUEUE_BYTES = 64 * 1024 * 1024
_FIRST_RETRY_SECONDS = 1.0
_MAX_RETRY_SECONDS = 15.0
_DRAIN_TICK_SECONDS = 0.25
#: 4xx answers about the credentials, the bucket or the request rate, not the object being uploaded.
_NOT_ABOUT_THE_OBJECT = frozenset({401, 403, 404, 408, 429})


@dataclass
class S3ExporterCounts:
    """What happened to the cassettes handed to the exporter."""

    #: Uploaded straight from the queue.
    uploaded: int = 0
    #: Put in the spill folder (queue full, S3 down, or an upload that failed after retries).
    spilled: int = 0
    #: Uploaded later from the spill folder (this run's spills and earlier runs' leftovers).
    uploaded_from_spill: int = 0
    #: Lost: could not be encoded, or the spill folder was full or not writable.
    dropped: int = 0
    #: Upload attempts that failed (each after botocore's own retries).
    upload_errors: int = 0


class _Outcome(enum.Enum):
    STORED = "stored"
    #: No answer, or one refusing every request (credentials, the bucket, throttling, server errors).
    S3_DOWN = "s3 down"
    #: An answer refusing this object only (a 4xx about the request): other uploads go on.
    REJECTED = "rejected"


def _rejects_the_object(error: BaseException) -> bool:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return 400 <= status < 500 and status not in _NOT_ABOUT_THE_OBJECT


@dataclass(frozen=True, eq=False)  # compared by identity: the same cassette may be queued and in flight
class _Upload:
    key: str
    data: bytes
    arguments: dict[str, Any]


class _Health:
    """Whether S3 took the last upload; while not, uploads go to the spill folder, and probes back off."""

    def __init__(self) -> None:
        self.up = True
        self.retry_at = 0.0
        self._delay = _FIRST_RETRY_SECONDS
        self._lock = threading.Lock()

    def failed(self, problem: str) -> None:
        with self._lock:
            was_up, self.up = self.up, False
            self._delay = _FIRST_RETRY_SECONDS if was_up else min(self._delay * 2, _MAX_RETRY_SECONDS)
            self.retry_at = time.monotonic() + self._delay
        if was_up:
            logger.error("timetracer: %s; cassettes are kept in the spill folder and uploaded when S3 answers "
                         "again", problem)

    def succeeded(self) -> None:
        with self._lock:
            was_up, self.up, self._delay = self.up, True, _FIRST_RETRY_SECONDS
        if not was_up:
            logger.warning("timetracer: S3 answers again; uploading the spilled cassettes")

    def may_probe(self) -> bool:
        return self.up or time.monotonic() >= self.retry_at


class S3Exporter:
    """An :class:`~timetracer_otel.exporters.base.Exporter` writing to S3; see the module docstring."""

    def __init__(
        self,
        location: S3Location,
        options: S3Options,
        service: str,
        compression: Compression = Compression.NONE,
        *,
        flush_timeout: float = 10.0,
        workers: int = _WORKERS,
        queue_bytes: int = _QUEUE_BYTES,
    ) -> None:
        self.location = location.child(service_folder(service))
        self.options = options
        self.compression = compression
        self.flush_timeout = flush_timeout
        self.counts = S3ExporterCounts()
        self._reported = S3ExporterCounts()
        self._client = make_client(options, max_pool_connections=workers + 1)
        self._spill = SpillFolder(options.spill_dir / location.bucket, options.spill_max_bytes)
        self._health = _Health()
        self._queue: collections.deque[_Upload] = collections.deque()
        self._queue_bytes = queue_bytes
        self._queued_bytes = 0
        self._sending: set[_Upload] = set()
        self._ready = threading.Condition()
        self._closing = threading.Event()
        self._counts_lock = threading.Lock()
        self._threads = [threading.Thread(target=self._upload_loop, name=f"timetracer-s3-upload-{n}", daemon=True)
                         for n in range(workers)]
        self._threads.append(threading.Thread(target=self._drain_loop, name="timetracer-s3-spill", daemon=True))
        for thread in self._threads:
            thread.start()

    # -- caller's side ------------------------------------------------------------------------------------

    def store_batch(self, cassettes: Sequence[Cassette]) -> tuple[int, int]:
        """Queue each cassette for upload (or spill it when the queue is full). Returns (accepted, dropped)."""
        accepted = dropped = 0
        for cassette in cassettes:
            try:
                relative = cassette_relative_path(cassette, self.compression)
                upload = _Upload(self.location.key(relative), dump_cassette(cassette, self.compression),
                                 self._arguments(relative, cassette))
            except Exception:
                logger.exception("timetracer: could not encode cassette %s", cassette.metadata.id)
                self._count("dropped")
                dropped += 1
                continue
            if self._enqueue(upload) or self._spill_upload(upload):
                accepted += 1
            else:
                dropped += 1
        return accepted, dropped

    def take_counts(self) -> dict[str, int]:
        """The counters' changes since the previous call."""
        with self._counts_lock:
            now, before = asdict(self.counts), asdict(self._reported)
            self._reported = S3ExporterCounts(**now)
        return {name: now[name] - before[name] for name in now if now[name] != before[name]}

    def close(self) -> None:
        """Upload what is queued within the flush timeout; spill what is left (uploaded on the next start)."""
        deadline = time.monotonic() + self.flush_timeout
        with self._ready:
            while (self._queue or self._sending) and time.monotonic() < deadline:
                self._ready.wait(max(0.0, min(0.1, deadline - time.monotonic())))
            self._closing.set()
            leftovers = [*self._queue, *self._sending]  # in flight: may also land, under the same key
            self._queue.clear()
            self._ready.notify_all()
        for upload in leftovers:
            self._spill_upload(upload)
        for thread in self._threads:
            thread.join(0.5)
        counts = self.counts
        level = logging.WARNING if counts.spilled or counts.dropped else logging.INFO
        logger.log(level, "timetracer: S3 exporter for %s: %d uploaded, %d spilled, %d uploaded from the spill "
                   "folder, %d dropped; %d bytes wait in %s", self.location, counts.uploaded, counts.spilled,
                   counts.uploaded_from_spill, counts.dropped, self._spill.bytes_used, self._spill.folder)

    # -- uploader threads ---------------------------------------------------------------------------------

    def _arguments(self, relative: str, cassette: Cassette) -> dict[str, Any]:
        metadata = {"cassette-id": cassette.metadata.id, "timetracer-version": __version__}
        return {**put_arguments(relative, self.options), "Metadata": metadata}

    def _enqueue(self, upload: _Upload) -> bool:
        with self._ready:
            if self._closing.is_set() or self._queued_bytes + len(upload.data) > self._queue_bytes:
                return False
            self._queue.append(upload)
            self._queued_bytes += len(upload.data)
            self._ready.notify()
        return True

    def _upload_loop(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closing.is_set():
                    self._ready.wait()
                if not self._queue:
                    return
                upload = self._queue.popleft()
                self._queued_bytes -= len(upload.data)
                self._sending.add(upload)
            try:
                if not self._health.up:  # S3 is down: do not make this one wait for a timeout too
                    self._spill_upload(upload)
                elif self._put(upload) is _Outcome.STORED:
                    self._count("uploaded")
                else:
                    self._spill_upload(upload)
            finally:
                with self._ready:
                    self._sending.discard(upload)
                    self._ready.notify_all()

    def _drain_loop(self) -> None:
        """Uploads spilled cassettes (this run's and earlier runs') whenever S3 may be back."""
        rejected: set[str] = set()  # kept in the folder, not retried by this process
        while not self._closing.wait(_DRAIN_TICK_SECONDS):
            if not self._health.may_probe():
                continue
            for key, path in self._spill.pending():
                if self._closing.is_set() or not self._health.may_probe():
                    break
                if key in rejected:
                    continue
                try:
                    data = path.read_bytes()
                except FileNotFoundError:  # uploaded by another process sharing the folder
                    continue
                outcome = self._put(_Upload(key, data, put_arguments(key, self.options)))
                if outcome is _Outcome.S3_DOWN:
                    break
                if outcome is _Outcome.REJECTED:
                    rejected.add(key)
                    continue
                self._spill.remove(path)
                self._count("uploaded_from_spill")

    def _put(self, upload: _Upload) -> _Outcome:
        try:
            with suppress_instrumentation():  # the exporter's own calls are never the app's
                self._client.put_object(Bucket=self.location.bucket, Key=upload.key, Body=upload.data,
                                        **upload.arguments)
        except Exception as error:
            self._count("upload_errors")
            problem = describe_s3_error(error, self.location)
            if _rejects_the_object(error):
                logger.error("timetracer: S3 refused the cassette %s (%s); it is kept in the spill folder %s",
                             upload.key, problem, self._spill.folder)
                return _Outcome.REJECTED
            self._health.failed(problem)
            return _Outcome.S3_DOWN
        self._health.succeeded()
        return _Outcome.STORED

    def _spill_upload(self, upload: _Upload) -> bool:
        if self._spill.put(upload.key, upload.data):
            self._count("spilled")
            return True
        self._count("dropped")
        logger.error("timetracer: dropped cassette %s: the spill folder %s is full (%d bytes, "
                     "TIMETRACER_S3_SPILL_MAX_BYTES) or not writable", upload.key, self._spill.folder,
                     self._spill.max_bytes)
        return False

    def _count(self, name: str) -> None:
        with self._counts_lock:
            setattr(self.counts, name, getattr(self.counts, name) + 1)
