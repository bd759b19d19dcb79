"""Recorded interactions bucketed by request key: each live call takes the next unplayed answer in O(1)."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Sequence

from timetracer_otel.cassette.model import HttpRequest, Interaction
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.replay.matching import describe_http, http_differences, http_fields, http_key
from timetracer_otel.settings import OnExhausted

__all__ = ["ReplayIndex", "request_keys"]

_NEAREST = 3
# Weights for ranking near misses: a call to the same endpoint with other parameters is "nearer" than
# a call with the same parameters to another endpoint.
_WEIGHTS = {"method": 4, "host": 3, "port": 1, "scheme": 1, "path": 4, "query": 2, "body": 2}


def request_keys(interactions: Iterable[Interaction]) -> tuple[Hashable, ...]:
    return tuple(http_key(interaction.request) for interaction in interactions)


class ReplayIndex:
    """A FIFO queue of recorded answers per request key, in recorded order."""

    def __init__(
        self,
        interactions: Sequence[Interaction],
        on_exhausted: OnExhausted = OnExhausted.ERROR,
        keys: Sequence[Hashable] | None = None,
    ) -> None:
        """``keys`` are the interactions' request keys when the caller computed them already (see
        :func:`request_keys`), so replaying a cassette many times normalises its bodies once."""
        self._queues: dict[Hashable, deque[Interaction]] = {}
        self._used: dict[Hashable, Interaction] = {}
        self._all = list(interactions)
        self._on_exhausted = on_exhausted
        for key, interaction in zip(keys if keys is not None else request_keys(self._all), self._all, strict=True):
            self._queues.setdefault(key, deque()).append(interaction)

    def __len__(self) -> int:
        return len(self._all)

    def take(self, request: HttpRequest) -> Interaction:
        key = http_key(request)
        queue = self._queues.get(key)
        if queue:
            interaction = queue.popleft()
            self._used[key] = interaction
            return interaction
        if queue is not None:
            last = self._used[key]
            if self._on_exhausted is OnExhausted.REPEAT_LAST:
                return last
            played = sum(1 for i in self._all if http_key(i.request) == key)
            raise ReplayMismatchError(
                describe_http(request),
                f"this call was recorded {played} time(s) and every recorded answer has been used; "
                "set TIMETRACER_ON_EXHAUSTED=repeat_last to replay the last answer again",
            )
        raise self.mismatch(request)

    def unused(self) -> list[Interaction]:
        return [interaction for queue in self._queues.values() for interaction in queue]

    def mismatch(self, request: HttpRequest) -> ReplayMismatchError:
        if not self._all:
            return ReplayMismatchError(describe_http(request), "the cassette holds no recorded HTTP calls")
        live = http_fields(request)
        ranked = []
        for position, interaction in enumerate(self._all):
            recorded = http_fields(interaction.request)
            score = sum(w for name, w in _WEIGHTS.items() if getattr(live, name) == getattr(recorded, name))
            ranked.append((-score, position, interaction, recorded))
        ranked.sort(key=lambda item: item[:2])
        candidates = [
            f"#{position + 1} {describe_http(interaction.request)} ({'; '.join(http_differences(live, recorded))})"
            for _, position, interaction, recorded in ranked[:_NEAREST]
        ]
        return ReplayMismatchError(describe_http(request), "no recorded call matches", candidates)
