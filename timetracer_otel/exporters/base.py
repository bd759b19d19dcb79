from __future__ import annotations

from typing import Protocol

__all__ = ["Exporter"]


class Exporter(Protocol):
    """Stores encoded cassettes. Called only from the writer thread, never on a request path."""

    def store(self, relative_path: str, data: bytes) -> str:
        """Store ``data`` under ``relative_path`` (POSIX, no ``..``) without replacing anything; return where."""
        ...

    def close(self) -> None: ...
