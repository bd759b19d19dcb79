"""Recorded interactions bucketed by request key: each live call takes the next unplayed answer in O(1).

A cassette is grouped by key once (:class:`RecordedCalls`, shared and never changed); each replayed inbound
request gets a :class:`ReplayIndex` over it that only remembers how far it has got in each group it used, so
starting one costs the same whatever the size of the cassette.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from operator import length_hint

from timetracer_otel.cassette.model import HttpRequest, Interaction
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.replay.matching import HttpFields, describe_http, http_differences, http_fields, http_key
from timetracer_otel.settings import OnExhausted

__all__ = ["RecordedCalls", "ReplayIndex", "request_keys"]

_NEAREST = 3
# Weights for ranking near misses: a call to the same endpoint with other parameters is "nearer" than
# a call with the same parameters to another endpoint.
_WEIGHTS = {"method": 4, "host": 3, "port": 1, "scheme": 1, "path": 4, "query": 2, "body": 2}


def request_keys(interactions: Iterable[Interaction]) -> tuple[Hashable, ...]:
    return tuple(http_key(interaction.request) for interaction in interactions)


class RecordedCalls:
    """A cassette's interactions grouped by request key, in recorded order: built once per cassette (this
    normalises every recorded request) and shared, read-only, by every :class:`ReplayIndex` over it."""

    __slots__ = ("groups", "interactions", "keys")

    def __init__(self, interactions: Sequence[Interaction], keys: Sequence[Hashable] | None = None) -> None:
        """``keys`` are the interactions' request keys when the caller computed them already (see
        :func:`request_keys`)."""
        self.interactions = tuple(interactions)
        self.keys = request_keys(self.interactions) if keys is None else tuple(keys)
        groups: dict[Hashable, list[Interaction]] = {}
        for key, interaction in zip(self.keys, self.interactions, strict=True):
            groups.setdefault(key, []).append(interaction)
        #: key -> every interaction recorded with it, in recorded order (never empty).
        self.groups: dict[Hashable, tuple[Interaction, ...]] = {key: tuple(group) for key, group in groups.items()}

    def __len__(self) -> int:
        return len(self.interactions)


class ReplayIndex:
    """A FIFO queue of recorded answers per request key, in recorded order."""

    def __init__(
        self,
        interactions: Sequence[Interaction] | RecordedCalls,
        on_exhausted: OnExhausted = OnExhausted.ERROR,
    ) -> None:
        """Pass the cassette's :class:`RecordedCalls` to start in O(1); given the interactions themselves the
        index groups them first, which is O(n)."""
        self._calls = interactions if isinstance(interactions, RecordedCalls) else RecordedCalls(interactions)
        self._on_exhausted = on_exhausted
        # key -> iterator over its group, created by the first take of that key. next() on a tuple iterator
        # is atomic, so two threads of one inbound request never get the same answer.
        self._cursors: dict[Hashable, Iterator[Interaction]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def take(self, request: HttpRequest) -> Interaction:
        key = http_key(request)
        group = self._calls.groups.get(key)
        if group is None:
            raise self.mismatch(request)
        cursor = self._cursors.get(key)
        if cursor is None:
            cursor = self._cursors.setdefault(key, iter(group))
        interaction = next(cursor, None)
        if interaction is not None:
            return interaction
        if self._on_exhausted is OnExhausted.REPEAT_LAST:
            return group[-1]
        raise ReplayMismatchError(
            describe_http(request),
            f"this call was recorded {len(group)} time(s) and every recorded answer has been used; "
            "set TIMETRACER_ON_EXHAUSTED=repeat_last to replay the last answer again",
        )

    def unused(self) -> list[Interaction]:
        """The answers not taken yet: by key in order of first recording, each key's in recorded order."""
        unused: list[Interaction] = []
        for key, group in self._calls.groups.items():
            cursor = self._cursors.get(key)
            unused.extend(group if cursor is None else group[len(group) - length_hint(cursor) :])
        return unused

    def mismatch(self, request: HttpRequest) -> ReplayMismatchError:
        interactions = self._calls.interactions
        if not interactions:
            return ReplayMismatchError(describe_http(request), "the cassette holds no recorded HTTP calls")
        live = http_fields(request)
        ranked = []
        for position, (interaction, key) in enumerate(zip(interactions, self._calls.keys, strict=True)):
            recorded = key if isinstance(key, HttpFields) else http_fields(interaction.request)
            score = sum(w for name, w in _WEIGHTS.items() if getattr(live, name) == getattr(recorded, name))
            ranked.append((-score, position, interaction, recorded))
        ranked.sort(key=lambda item: item[:2])
        candidates = [
            f"#{position + 1} {describe_http(interaction.request)} ({'; '.join(http_differences(live, recorded))})"
            for _, position, interaction, recorded in ranked[:_NEAREST]
        ]
        return ReplayMismatchError(describe_http(request), "no recorded call matches", candidates)
