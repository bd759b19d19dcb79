"""Replay from ``s3://``: a local copy of the cassettes at an S3 location, which replay then reads as it reads
any folder or file.

The copy lives at ``<cache_dir>/<bucket>/<prefix>``. Each start fetches only what changed (see
:func:`~timetracer_otel.s3.transfer.pull`) and deletes cached cassettes no longer in the bucket, so replay sees
exactly what the location holds now.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from timetracer_otel.cassette.files import SESSION_FOLDER
from timetracer_otel.errors import CassetteError, CassetteNotFoundError
from timetracer_otel.s3.client import S3Options, describe_s3_error, is_unreachable
from timetracer_otel.s3.location import S3Location, UnsafeKeyError, local_path_for
from timetracer_otel.s3.transfer import (
    CASSETTE_SUFFIXES,
    S3Object,
    TransferReport,
    list_objects,
    make_private_folders,
    pull,
    s3_error_types,
)

__all__ = ["S3SourceError", "cache_path", "materialize"]

logger = logging.getLogger("timetracer.s3")


class S3SourceError(CassetteError):
    """Cassettes could not be fetched from S3 (credentials, missing bucket, network, failed downloads)."""

    def __init__(self, location: S3Location, problem: str) -> None:
        self.location = location
        # No path prefix: the problems name the location themselves.
        super().__init__(None, problem)


def cache_path(location: S3Location, options: S3Options) -> Path:
    """Where the local copy of ``location`` lives: ``<cache_dir>/<bucket>/<prefix>``."""
    root = options.cache_dir / location.bucket
    if not location.prefix:
        return root
    try:
        return local_path_for(root, location.prefix)
    except UnsafeKeyError as exc:
        raise S3SourceError(location, f"cannot cache {location} locally: {exc.problem}") from None


@contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    """One materialization at a time per cache: several processes of one app (gunicorn workers, pods sharing a
    volume) start replay together, and each must neither delete the others' part files nor read half a copy."""
    make_private_folders(cache_dir)
    descriptor = os.open(cache_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def materialize(client: Any, location: S3Location, options: S3Options) -> Path:
    """The local copy of ``location``, brought up to date: the folder for a prefix; for a cassette key (a
    prefix ending in ``.json``, ``.json.gz`` or ``.json.zst`` that is an object), the file, with the session
    cassettes of its recording (the ``_session/`` folder next to its day folder) copied beside it as replay
    expects.

    When S3 cannot be reached at all and an earlier call cached ``location``, that copy is returned (with a
    warning). Raises :class:`~timetracer_otel.errors.CassetteNotFoundError` when the location holds nothing, and
    :class:`S3SourceError` when S3 refuses (the message says what to fix) or some objects could not be
    downloaded. Keys that would not stay inside the cache are not copied (logged as warnings).
    """
    errors = s3_error_types()
    try:
        with _locked(options.cache_dir):
            objects = list(list_objects(client, location))
            if not objects:
                raise CassetteNotFoundError(str(location))
            if objects[0].key == location.prefix and location.prefix.endswith(CASSETTE_SUFFIXES):
                return _materialize_key(client, location, objects[0], options)
            return _materialize_prefix(client, location, objects, options)
    except errors as exc:
        cached = _cached_copy(location, options)
        if cached is not None and is_unreachable(exc):
            # Reproducing a bug on a laptop must not need the network twice: the copy from last time will do.
            logger.warning("timetracer: %s; replaying the copy cached at %s", describe_s3_error(exc, location),
                           cached)
            return cached
        raise S3SourceError(location, describe_s3_error(exc, location)) from exc
    except OSError as exc:  # the cache folder cannot be written
        raise S3SourceError(location, f"cannot write the local copy of {location} under {options.cache_dir}: "
                            f"{exc.strerror or exc}") from exc


def _cached_copy(location: S3Location, options: S3Options) -> Path | None:
    """The cached copy of ``location`` if an earlier start made one (a cassette file, or a folder with some)."""
    try:
        path = cache_path(location, options)
    except S3SourceError:
        return None
    if path.is_file():
        return path
    if path.is_dir() and any(p.name.endswith(CASSETTE_SUFFIXES) for p in path.rglob("*")):
        return path
    return None


def _materialize_prefix(client: Any, location: S3Location, objects: list[S3Object], options: S3Options) -> Path:
    folder = cache_path(location, options)
    report = pull(client, location, folder, objects=objects)
    _check(location, report)
    _remove_stale(folder, {location.relative(obj.key) for obj in objects})
    logger.info("timetracer: %s: %d objects fetched, %d already cached in %s", location, len(report.copied),
                len(report.skipped), folder)
    return folder


def _materialize_key(client: Any, location: S3Location, obj: S3Object, options: S3Options) -> Path:
    file = cache_path(location, options)
    _check(location, pull(client, location, file.parent, objects=[obj]))
    parts = location.prefix.split("/")
    if SESSION_FOLDER not in parts[:-1]:  # a session cassette replays on its own
        # replay looks for the recording's session cassettes next to the cassette's day folder.
        session = S3Location(location.bucket, "/".join([*parts[:-2], SESSION_FOLDER]))
        objects = list(list_objects(client, session))
        folder = cache_path(session, options)
        if objects:
            _check(session, pull(client, session, folder, objects=objects))
        _remove_stale(folder, {session.relative(o.key) for o in objects})
    return file


def _check(location: S3Location, report: TransferReport) -> None:
    for key, problem in report.refused:
        logger.warning("timetracer: the S3 key %r in %s is not replayed: %s", key, location, problem)
    if report.failed:
        key, problem = report.failed[0]
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        raise S3SourceError(location, f"could not fetch s3://{location.bucket}/{key}{more}: {problem}")


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Delete cached cassette files below ``folder`` that are not in ``keep`` (relative paths), part files
    left by interrupted pulls (no pull is running: we hold the lock), and folders left empty."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), reverse=True):  # children before their folders
        name = path.name
        if path.is_dir() and not path.is_symlink():
            if path != folder and not any(path.iterdir()):
                path.rmdir()
            continue
        stale_part = name.startswith(".") and name.endswith(".part")
        stale_cassette = name.endswith(CASSETTE_SUFFIXES) and path.relative_to(folder).as_posix() not in keep
        if stale_part or stale_cassette:
            logger.debug("timetracer: removing %s from the S3 cache", path)
            path.unlink()
