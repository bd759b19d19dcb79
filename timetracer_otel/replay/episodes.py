"""Whether an HTTP call that its cassette does not answer may go live and be recorded: a test's cassette in
record mode ``new_episodes`` (see :mod:`timetracer_otel.testing`). Everywhere else such a call is a miss."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar

from timetracer_otel.errors import ReplayMismatchError

__all__ = ["NewEpisodes", "miss_goes_live"]


class NewEpisodes:
    #: Set while a ``new_episodes`` block replays (one block at a time per process).
    allowed: ClassVar[bool] = False


@contextlib.contextmanager
def miss_goes_live() -> Iterator[None]:
    """Around a replayed call: a miss is swallowed when new episodes are allowed, so the code after the block
    makes the call live (and records it); otherwise it propagates."""
    try:
        yield
    except ReplayMismatchError:
        if not NewEpisodes.allowed:
            raise
