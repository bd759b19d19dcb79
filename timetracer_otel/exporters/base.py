from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from timetracer_otel.cassette.model import Cassette

__all__ = ["Exporter"]


class Exporter(Protocol):
    """Encodes and stores finished cassettes. Called off the request path: in the writer process, or from the
    recorder's writer thread when that process is unavailable."""

    def store_batch(self, cassettes: Sequence[Cassette]) -> tuple[int, int]:
        """Encode and store each cassette without replacing anything already stored.

        Returns how many were stored and how many failed; failures are logged, never raised.
        """
        ...

    def take_counts(self) -> dict[str, int]:
        """The exporter's own counters (an S3 exporter's uploads and spills) that changed since the previous
        call; they reach ``recorder_stats().storage``."""
        ...

    def close(self) -> None:
        """Store what is still queued (within the exporter's deadline) and release its resources."""
        ...
