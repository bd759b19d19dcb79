"""A local folder where cassettes wait while S3 cannot take them, one file per object key.

A spilled file sits at ``<folder>/<key>``, so whoever finds it (this process later, or the next one after a
restart) knows where it belongs; writing one twice is harmless (same key, same bytes), which makes the
upload from here idempotent: at least once, never a duplicate object.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

from timetracer_otel.exporters.file import write_private_file
from timetracer_otel.s3.location import UnsafeKeyError, local_path_for
from timetracer_otel.s3.transfer import make_private_folders

__all__ = ["SpillFolder"]

logger = logging.getLogger("timetracer.s3")

_PART = ".part"


class SpillFolder:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._bytes = sum(size for _, _, size in self._files())

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def put(self, key: str, data: bytes) -> bool:
        """Keep ``data`` for ``key``; False (nothing written) when the folder is full or cannot be written."""
        with self._lock:
            if self._bytes + len(data) > self.max_bytes:
                return False
            self._bytes += len(data)
        try:
            target = local_path_for(self._root(), key)
            make_private_folders(target.parent)
            temp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}{_PART}")
            with contextlib.suppress(FileNotFoundError):  # left by a crashed process that had this pid
                temp.unlink()
            write_private_file(temp, data)
            os.replace(temp, target)  # a reader never sees half a cassette
        except (OSError, UnsafeKeyError):
            with self._lock:
                self._bytes -= len(data)
            logger.exception("timetracer: could not spill %s to %s", key, self.folder)
            return False
        return True

    def pending(self) -> list[tuple[str, Path]]:
        """(key, file) of every spilled cassette, oldest first."""
        return [(key, path) for key, path, _ in self._files()]

    def remove(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:  # another process sharing the folder uploaded it first
            return
        with self._lock:
            self._bytes -= size

    def _root(self) -> Path:
        make_private_folders(self.folder)
        return self.folder

    def _files(self) -> list[tuple[str, Path, int]]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.rglob("*"):
            if path.name.startswith(".") or not path.is_file():
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            found.append((stat.st_mtime_ns, path.relative_to(self.folder).as_posix(), path, stat.st_size))
        found.sort()
        return [(key, path, size) for _, key, path, size in found]
