from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath

__all__ = ["FileExporter"]


class FileExporter:
    """Writes cassettes below a directory, atomically, never replacing an existing file."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _target(self, relative_path: str) -> Path:
        relative = PurePosixPath(relative_path)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise ValueError(f"refusing to write outside {self.directory}: {relative_path!r}")
        return self.directory.joinpath(*relative.parts)

    def store(self, relative_path: str, data: bytes) -> str:
        target = self._target(relative_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
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

    def close(self) -> None:
        return None
