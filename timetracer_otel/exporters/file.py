from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from timetracer_otel.cassette.files import cassette_relative_path, dump_cassette
from timetracer_otel.cassette.model import Cassette
from timetracer_otel.settings import Compression

__all__ = ["FileExporter", "write_private_file"]

logger = logging.getLogger("timetracer.record")

#: Cassettes can hold secrets: readable by their owner only.
_MODE = 0o600


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` (which must not exist), readable by its owner only, holding ``data``; nothing is left
    behind if writing fails (a full disk)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _MODE)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


class FileExporter:
    """Writes cassettes below a directory as ``YYYY-MM-DD/METHOD__route__id.json[.gz|.zst]``, atomically,
    never replacing an existing file.

    Each cassette is written to a temporary file and then linked to its name, so a reader never sees half a
    cassette and an existing file is never replaced. Files are not fsync'ed one by one (that costs the app a
    GIL hand-off per syscall under load): a crash of the process loses nothing written, a power loss may.
    """

    def __init__(self, directory: str | Path, compression: Compression = Compression.NONE) -> None:
        self.directory = Path(directory)
        self.compression = compression
        self._made: set[Path] = set()
        self._temp_names = itertools.count()

    def _target(self, relative_path: str) -> Path:
        relative = PurePosixPath(relative_path)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"refusing to write outside {self.directory}: {relative_path!r}")
        return self.directory.joinpath(*relative.parts)

    def store(self, relative_path: str, data: bytes) -> str:
        """Write ``data`` at ``relative_path`` (POSIX, inside the directory) or, if taken, a numbered variant
        of it; return the path written."""
        target = self._target(relative_path)
        if target.parent not in self._made:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(target.parent)
        temp = target.parent / f".tmp-{os.getpid()}-{next(self._temp_names)}.part"
        write_private_file(temp, data)
        try:
            # link() fails if the name exists, so an earlier cassette is never replaced; add a counter instead.
            stem, dot, suffix = target.name.partition(".")
            for attempt in range(1000):
                candidate = target if attempt == 0 else target.with_name(f"{stem}-{attempt}{dot}{suffix}")
                try:
                    os.link(temp, candidate)
                except FileExistsError:
                    continue
                return str(candidate)
            raise FileExistsError(f"no free name for {target}")
        finally:
            os.unlink(temp)

    def store_batch(self, cassettes: Sequence[Cassette]) -> tuple[int, int]:
        written = failed = 0
        for cassette in cassettes:
            try:
                data = dump_cassette(cassette, self.compression)
                self.store(cassette_relative_path(cassette, self.compression), data)
            except Exception:
                failed += 1
                logger.exception("timetracer: could not write cassette %s", cassette.metadata.id)
            else:
                written += 1
        return written, failed

    def take_counts(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        return None
