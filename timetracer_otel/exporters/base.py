from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Exporter"]


class Exporter(Protocol):
    """Stores encoded cassettes. Called only from the writer thread, never on a request path."""

    def store_batch(self, items: Sequence[tuple[str, bytes]]) -> tuple[int, int]:
        """Store each ``(relative_path, data)`` (POSIX path, no ``..``) without replacing anything.

        Returns how many were stored and how many failed; failures are logged, never raised.
        """
        ...

    def close(self) -> None: ...
