"""Copying cassettes between S3 and a local folder: listing, ``pull`` and ``push``, shared by the CLI
(``timetracer s3``), replay from ``s3://`` (through :mod:`timetracer_otel.s3.cache`) and the exporter.

boto3 and botocore are imported lazily (they are the optional ``s3`` extra), so importing this module costs
nothing for a CLI run that never touches S3.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from timetracer_otel.cassette.files import SUFFIXES, iter_cassette_files
from timetracer_otel.s3.client import S3Options, describe_s3_error
from timetracer_otel.s3.location import S3Location, UnsafeKeyError, local_path_for
from timetracer_otel.settings import Compression

__all__ = [
    "CASSETTE_SUFFIXES",
    "Progress",
    "S3Object",
    "TransferReport",
    "list_objects",
    "local_cassette_files",
    "make_private_folders",
    "object_arguments",
    "object_at",
    "pull",
    "push",
    "put_arguments",
    "s3_error_types",
]

logger = logging.getLogger("timetracer.s3")

#: Cassette file name endings, longest first where one ends another (``.json.gz`` before ``.json``).
CASSETTE_SUFFIXES = tuple(sorted(SUFFIXES.values(), key=len, reverse=True))
#: The compressions' names are their Content-Encoding names too.
_ENCODINGS = {suffix: compression.value for compression, suffix in SUFFIXES.items()
              if compression is not Compression.NONE}
#: A single-part upload's ETag is the hex MD5 of the object (multipart ETags end in ``-<parts>``).
_MD5_ETAG = re.compile(r"[0-9a-f]{32}")
_CHUNK = 1024 * 1024
_FOLDER_MODE = 0o700  # cassettes can hold secrets: folders and files are the user's alone
_FILE_MODE = 0o600
#: Larger cassettes are streamed from their file rather than read into memory first.
_IN_MEMORY_UPLOAD = 16 * 1024 * 1024

#: Called from the calling thread as each object is finished (copied, skipped, refused or failed) with its size
#: in bytes, so a progress bar whose length is the total size ends at 100 %.
Progress = Callable[[int], None]


@dataclass(frozen=True)
class S3Object:
    key: str
    size: int
    #: Without the quotes S3 puts around it.
    etag: str
    last_modified: datetime


@dataclass
class TransferReport:
    """What a ``pull`` or ``push`` did, by S3 key."""

    copied: list[str] = field(default_factory=list)
    #: Already there with the same size (and content, where that can be told).
    skipped: list[str] = field(default_factory=list)
    #: Never copied, with the reason: keys that would land outside the destination or no timetracer name
    #: looks like.
    refused: list[tuple[str, str]] = field(default_factory=list)
    #: Copying failed (S3 or the local disk said no), with the problem.
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_copied: int = 0

    @property
    def ok(self) -> bool:
        return not self.refused and not self.failed


def s3_error_types() -> tuple[type[Exception], ...]:
    """The exceptions boto3 raises for S3 trouble (credentials, missing bucket, network), for ``except``."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def object_arguments(relative_path: str) -> dict[str, str]:
    """``put_object`` arguments that describe a cassette file by its name (a relative path or a whole key):
    JSON, with ``Content-Encoding`` for gzip and zstd ones, so tools that fetch it know what they hold."""
    for suffix in CASSETTE_SUFFIXES:
        if relative_path.endswith(suffix):
            arguments = {"ContentType": "application/json"}
            if suffix in _ENCODINGS:
                arguments["ContentEncoding"] = _ENCODINGS[suffix]
            return arguments
    return {"ContentType": "application/octet-stream"}


def put_arguments(name: str, options: S3Options) -> dict[str, str]:
    """Everything ``put_object`` is told about a cassette besides its key and bytes: its content type and
    encoding, and the server-side encryption asked for."""
    return {**object_arguments(name), **options.encryption_arguments()}


def _s3_object(item: dict[str, Any]) -> S3Object:
    return S3Object(key=item["Key"], size=int(item["Size"]), etag=str(item.get("ETag", "")).strip('"'),
                    last_modified=item["LastModified"])


def object_at(client: Any, location: S3Location) -> S3Object | None:
    """The object whose key is exactly ``location.prefix``, if there is one.

    Listed rather than ``HeadObject``: a key sorts before every longer key it starts, so one ``MaxKeys=1``
    listing answers, with the same permission (``s3:ListBucket``) as the listing that follows, and a missing key
    is not confused with a refused one (HeadObject answers 403 for both without ListBucket)."""
    if not location.prefix:
        return None
    page = client.list_objects_v2(Bucket=location.bucket, Prefix=location.prefix, MaxKeys=1)
    for item in page.get("Contents", ()):
        if item["Key"] == location.prefix:
            return _s3_object(item)
    return None


def list_objects(client: Any, location: S3Location) -> Iterator[S3Object]:
    """Every object below ``location`` in key order; the one object when ``location.prefix`` is itself a key.

    Folder markers (keys ending in ``/``, which consoles create for "new folder") are no objects here: they hold
    nothing and would otherwise be refused by every pull."""
    single = object_at(client, location)
    if single is not None:
        yield single
        return
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=location.bucket, Prefix=location.list_prefix):
        for item in page.get("Contents", ()):
            if not item["Key"].endswith("/"):
                yield _s3_object(item)


class _Outcome(enum.Enum):
    COPIED = "copied"
    SKIPPED = "skipped"


def _part_file(target: Path) -> Path:
    """Where ``target`` is written until it is complete: hidden, next to it (the same file system, so the
    final rename is atomic), and not a cassette name, so nothing reads it half written."""
    return target.with_name(f".{target.name}.part")


def make_private_folders(folder: Path) -> None:
    """``mkdir -p`` with every new level private (``Path.mkdir(parents=True)`` gives new parents the umask's
    mode)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for level in reversed(missing):
        level.mkdir(mode=_FOLDER_MODE, exist_ok=True)


def _md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _up_to_date(target: Path, obj: S3Object) -> bool:
    """Whether ``target`` already holds ``obj``: the same size, and either the modification time a pull sets
    (the object's LastModified, so a file pulled before is not read again) or, for an MD5 ETag, the same MD5.
    Other ETags (multipart, SSE-KMS) say nothing about the content: the size and time decide."""
    try:
        stat = target.lstat()
    except FileNotFoundError:
        return False
    if not target.is_file() or target.is_symlink() or stat.st_size != obj.size:
        return False
    if abs(stat.st_mtime - obj.last_modified.timestamp()) < 0.001:
        return True
    if _MD5_ETAG.fullmatch(obj.etag):
        return _md5_of(target) == obj.etag
    return False


def _download(client: Any, bucket: str, obj: S3Object, target: Path) -> tuple[_Outcome, int]:
    part = _part_file(target)
    if _up_to_date(target, obj):
        part.unlink(missing_ok=True)  # left by an earlier pull that was interrupted
        return _Outcome.SKIPPED, 0
    make_private_folders(target.parent)
    response = client.get_object(Bucket=bucket, Key=obj.key)
    body = response["Body"]
    size = 0
    try:
        # A stale part file (or a symlink planted in its place) is removed, never written through.
        part.unlink(missing_ok=True)
        descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _FILE_MODE)
        with os.fdopen(descriptor, "wb") as out:
            for chunk in body.iter_chunks(_CHUNK):
                out.write(chunk)
                size += len(chunk)
        expected = int(response.get("ContentLength", size))
        if size != expected:
            raise OSError(f"the download ended after {size} of {expected} bytes")
        # Renamed into place only once complete: an interrupted pull leaves no half file under a cassette name.
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        body.close()  # hands the connection back to the pool, also when the download stopped early
    # The object's time, so the next pull knows this file is that object without reading it (see _up_to_date).
    moment = obj.last_modified.timestamp()
    os.utime(target, (moment, moment))
    return _Outcome.COPIED, size


def _upload(client: Any, *, bucket: str, key: str, path: Path, relative: str,
            options: S3Options) -> tuple[_Outcome, int]:
    arguments = put_arguments(relative, options)
    size = path.stat().st_size
    if size <= _IN_MEMORY_UPLOAD:
        # As bytes: botocore sends a file object with "Expect: 100-continue", and a store that does not answer
        # it (SeaweedFS) costs a one-second wait per object.
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), **arguments)
        return _Outcome.COPIED, size
    with path.open("rb") as body:
        client.put_object(Bucket=bucket, Key=key, Body=body, **arguments)
    return _Outcome.COPIED, size


def _problem(error: BaseException, location: S3Location) -> str:
    # S3's errors first: some of botocore's network errors are OSErrors too.
    if isinstance(error, s3_error_types()) or not isinstance(error, OSError):
        return describe_s3_error(error, location)
    return error.strerror or str(error)


def _run(jobs: Sequence[tuple[str, int, Callable[[], tuple[_Outcome, int]]]], bucket: str, report: TransferReport,
         workers: int, tick: Progress) -> None:
    """Runs ``(key, size, job)`` in parallel (boto3 clients are thread-safe), recording each outcome; a failed
    object is reported and the others go on."""
    if not jobs:
        return
    errors: tuple[type[Exception], ...] = (*s3_error_types(), OSError)
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="timetracer-s3")
    try:
        futures: dict[Future[tuple[_Outcome, int]], tuple[str, int]] = {
            pool.submit(job): (key, size) for key, size, job in jobs}
        for future in as_completed(futures):
            key, size = futures[future]
            try:
                outcome, copied = future.result()
            except errors as exc:
                problem = _problem(exc, S3Location(bucket, key))
                logger.debug("timetracer: copying the S3 key %r (bucket %s) failed: %s", key, bucket, problem)
                report.failed.append((key, problem))
            else:
                if outcome is _Outcome.COPIED:
                    report.copied.append(key)
                    report.bytes_copied += copied
                else:
                    report.skipped.append(key)
            tick(size)
    finally:
        # On Ctrl-C, queued objects are dropped rather than waited for; running ones finish or leave a part
        # file the next pull replaces.
        pool.shutdown(wait=True, cancel_futures=True)


def _ticker(progress: Progress | None) -> Progress:
    return progress if progress is not None else (lambda _n: None)


def pull(client: Any, location: S3Location, destination: Path, *, workers: int = 8, progress: Progress | None = None,
         objects: Iterable[S3Object] | None = None) -> TransferReport:
    """Download every object below ``location`` to ``destination / <key relative to the prefix>``.

    Resumable: each object is written to a hidden part file and renamed into place when complete, and objects
    already there (see ``_up_to_date``) are skipped, so a rerun fetches only what is missing. Keys that
    :func:`local_path_for` refuses (``..``, absolute, odd characters, through a symlink out of ``destination``)
    are reported in ``refused`` and never written; the others go on (the report is for the caller to show:
    nothing is logged above DEBUG). ``objects`` is the listing when the caller
    already made it (to size a progress bar). S3 errors while listing are raised (boto3's own exceptions,
    see :func:`s3_error_types`); errors on one object are reported in ``failed``.
    """
    listing = list(objects) if objects is not None else list(list_objects(client, location))
    report = TransferReport()
    tick = _ticker(progress)
    make_private_folders(destination)
    jobs = []
    for obj in listing:
        try:
            target = local_path_for(destination, location.relative(obj.key))
        except UnsafeKeyError as exc:
            logger.debug("timetracer: not pulling the S3 key %r: %s", obj.key, exc.problem)
            report.refused.append((obj.key, exc.problem))
            tick(obj.size)
            continue
        jobs.append((obj.key, obj.size, functools.partial(_download, client, location.bucket, obj, target)))
    _run(jobs, location.bucket, report, workers, tick)
    return report


def local_cassette_files(directory: Path) -> list[Path]:
    """The request and the session cassette files below ``directory``: what ``push`` uploads. Raises
    :class:`~timetracer_otel.errors.CassetteNotFoundError` when ``directory`` does not exist."""
    return sorted([*iter_cassette_files(directory), *iter_cassette_files(directory, sessions=True)])


def push(client: Any, directory: Path, location: S3Location, options: S3Options, *, workers: int = 8,
         progress: Progress | None = None, files: Sequence[Path] | None = None) -> TransferReport:
    """Upload every cassette file below ``directory`` to ``location`` (key: the file's path relative to
    ``directory``), with its content type and encoding (:func:`object_arguments`) and ``options``' server-side
    encryption; keys already in the bucket with the same size are skipped.

    A file whose relative path :func:`local_path_for` would refuse on the way back (odd characters, a symlink
    leading out of ``directory``) is refused here too: what is pushed can always be pulled. ``files`` is
    :func:`local_cassette_files` when the caller already made that list (to size a progress bar).
    """
    files = local_cassette_files(directory) if files is None else files
    existing = {obj.key: obj.size for obj in list_objects(client, location)}
    report = TransferReport()
    tick = _ticker(progress)
    jobs = []
    for path in files:
        relative = path.relative_to(directory).as_posix()
        key = location.key(relative)
        size = path.stat().st_size
        try:
            local_path_for(directory, relative)
        except UnsafeKeyError as exc:
            logger.debug("timetracer: not pushing %s: %s", path, exc.problem)
            report.refused.append((key, exc.problem))
            tick(size)
            continue
        if existing.get(key) == size:
            report.skipped.append(key)
            tick(size)
            continue
        upload = functools.partial(_upload, client, bucket=location.bucket, key=key, path=path, relative=relative,
                                   options=options)
        jobs.append((key, size, upload))
    _run(jobs, location.bucket, report, workers, tick)
    return report

