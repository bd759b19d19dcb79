"""Recorded interactions bucketed by request key: each live call takes the next unplayed answer in O(1).

A cassette is grouped by key once (:class:`RecordedCalls`, shared and never changed); each replayed inbound
request gets a :class:`ReplayIndex` over it that only remembers how far it has got in each group it used, so
starting one costs the same whatever the size of the cassette.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from operator import length_hint

from timetracer_otel.cassette.model import HTTP, CallRequest, HttpRequest, Interaction
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.replay.matching import (
    CallFields,
    HttpFields,
    call_differences,
    describe_request,
    http_differences,
    request_key,
)
from timetracer_otel.settings import OnExhausted

__all__ = ["RecordedCalls", "ReplayIndex", "RequestKey", "request_keys"]

#: Computes a call's request key: :func:`~timetracer_otel.replay.matching.request_key`, or a narrower one.
RequestKey = Callable[[str, HttpRequest | CallRequest], Hashable]

_NEAREST = 3
# Weights for ranking near misses: a call to the same endpoint with other parameters is "nearer" than
# a call with the same parameters to another endpoint; the same statement with other parameters is nearer
# than another statement.
_HTTP_WEIGHTS = {"method": 4, "host": 3, "port": 1, "scheme": 1, "path": 4, "query": 2, "body": 2}
_CALL_WEIGHTS = {"operation": 4, "target": 3, "method": 2, "arguments": 2}


def request_keys(interactions: Iterable[Interaction]) -> tuple[Hashable, ...]:
    return tuple(request_key(interaction.kind, interaction.request) for interaction in interactions)


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
        *,
        key: RequestKey | None = None,
    ) -> None:
        """Pass the cassette's :class:`RecordedCalls` to start in O(1); given the interactions themselves the
        index groups them first, which is O(n). ``key`` computes a live call's request key (default:
        :func:`~timetracer_otel.replay.matching.request_key`); it must be the function the recorded calls were
        keyed with (see ``RecordedCalls(keys=...)``)."""
        self._calls = interactions if isinstance(interactions, RecordedCalls) else RecordedCalls(interactions)
        self._on_exhausted = on_exhausted
        self._key = key or request_key
        # key -> iterator over its group, created by the first take of that key. next() on a tuple iterator
        # is atomic, so two threads of one inbound request never get the same answer.
        self._cursors: dict[Hashable, Iterator[Interaction]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def find(
        self, request: HttpRequest | CallRequest, kind: str = HTTP, *, repeat_last: bool = False
    ) -> Interaction | None:
        """The next recorded answer to this call; None if none was recorded. Raises when every answer was used,
        unless ``repeat_last`` (or TIMETRACER_ON_EXHAUSTED=repeat_last) says to give the last one again."""
        key = self._key(kind, request)
        group = self._calls.groups.get(key)
        if group is None:
            return None
        cursor = self._cursors.get(key)
        if cursor is None:
            cursor = self._cursors.setdefault(key, iter(group))
        interaction = next(cursor, None)
        if interaction is not None:
            return interaction
        if repeat_last or self._on_exhausted is OnExhausted.REPEAT_LAST:
            return group[-1]
        raise ReplayMismatchError(
            describe_request(kind, request),
            f"this call was recorded {len(group)} time(s) and every recorded answer has been used; "
            "set TIMETRACER_ON_EXHAUSTED=repeat_last to replay the last answer again",
        )

    def take(self, request: HttpRequest | CallRequest, kind: str = HTTP) -> Interaction:
        interaction = self.find(request, kind)
        if interaction is None:
            raise self.mismatch(request, kind)
        return interaction

    def unused(self) -> list[Interaction]:
        """The answers not taken yet: by key in order of first recording, each key's in recorded order."""
        unused: list[Interaction] = []
        for key, group in self._calls.groups.items():
            cursor = self._cursors.get(key)
            unused.extend(group if cursor is None else group[len(group) - length_hint(cursor) :])
        return unused

    def mismatch(self, request: HttpRequest | CallRequest, kind: str = HTTP) -> ReplayMismatchError:
        """Why no recorded call answers this one, with the nearest recorded calls of its kind and what differs."""
        live = request_key(kind, request)
        ranked: list[tuple[int, int, Interaction, list[str]]] = []
        for position, (interaction, given) in enumerate(zip(self._calls.interactions, self._calls.keys, strict=True)):
            if interaction.kind != kind:
                continue
            # Keys of the caller's own making are not fields to compare: compute the fields.
            key = given if isinstance(given, HttpFields | CallFields) else request_key(kind, interaction.request)
            if isinstance(live, HttpFields) and isinstance(key, HttpFields):
                score = sum(w for name, w in _HTTP_WEIGHTS.items() if getattr(live, name) == getattr(key, name))
                differences = http_differences(live, key)
            elif isinstance(live, CallFields) and isinstance(key, CallFields):
                score = sum(w for name, w in _CALL_WEIGHTS.items() if getattr(live, name) == getattr(key, name))
                differences = call_differences(live, key)
            else:
                continue
            ranked.append((-score, position, interaction, differences))
        if not ranked:
            return ReplayMismatchError(describe_request(kind, request), f"the cassette holds no recorded {kind} calls")
        ranked.sort(key=lambda item: item[:2])
        candidates = [
            f"#{position + 1} {describe_request(interaction.kind, interaction.request)} ({'; '.join(differences)})"
            for _, position, interaction, differences in ranked[:_NEAREST]
        ]
        return ReplayMismatchError(describe_request(kind, request), "no recorded call matches", candidates)
