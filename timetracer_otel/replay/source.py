"""Where replayed answers come from: one cassette file, or a directory whose cassettes are picked per request."""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

from timetracer_otel.cassette.files import SESSION_FOLDER, iter_cassette_files, load_cassette
from timetracer_otel.cassette.model import GENERATED_FIELDS, Cassette, Generated, HttpRequest
from timetracer_otel.errors import CassetteFormatError, CassetteNotFoundError
from timetracer_otel.replay.index import RecordedCalls
from timetracer_otel.replay.matching import describe_http, http_differences, http_fields
from timetracer_otel.replay.session import ReplaySession
from timetracer_otel.settings import OnExhausted

__all__ = ["CassetteSource"]

logger = logging.getLogger("timetracer.replay")


def _endpoint(request: HttpRequest) -> Hashable:
    fields = http_fields(request)
    return (fields.method, fields.path, fields.query)


class _Recorded:
    """A directory cassette's inbound request, ready to be compared with live ones."""

    __slots__ = ("body", "body_key", "cassette", "uses")

    def __init__(self, cassette: Cassette) -> None:
        self.cassette = cassette
        request = inbound_request(cassette)
        self.body = request.body
        self.body_key = http_fields(request).body
        self.uses = 0

    def matches(self, live: HttpRequest, live_key: Hashable) -> bool:
        body = self.body
        if body is None or (body.complete and not body.truncated):
            return self.body_key == live_key
        # Only part of the body was stored: what the app read before it stopped (it cannot have depended
        # on the rest), or what fit under TIMETRACER_MAX_BODY_BYTES.
        data = live.body.data if live.body is not None else b""
        return data.startswith(body.data) and (not body.truncated or len(data) == body.size)


def inbound_request(cassette: Cassette) -> HttpRequest:
    """A request cassette's inbound request (a session cassette, which has none, is refused)."""
    if cassette.request is None:
        raise CassetteFormatError(None, f"cassette {cassette.metadata.id} is a session cassette, not a request's")
    return cassette.request


def _joined_generated(sessions: Iterable[Cassette]) -> Generated | None:
    """The generated values of the session cassettes (segments, in recorded order), one after another."""
    joined: dict[str, list[Any]] = {}
    for session in sessions:
        if session.generated:
            for field in GENERATED_FIELDS:
                joined.setdefault(field, []).extend(getattr(session.generated, field))
    generated = Generated(**{field: tuple(values) for field, values in joined.items()})
    return generated if generated else None


def _session_folder_near(path: Path) -> Path | None:
    """The ``_session`` folder of the recording a cassette file belongs to: next to its day folder."""
    for parent in (path.parent, path.parent.parent):
        candidate = parent / SESSION_FOLDER
        if candidate.is_dir():
            return candidate
    return None


class CassetteSource:
    """Hands each inbound request a :class:`ReplaySession`.

    From a file, every request replays that cassette. From a directory, a request gets the cassette whose
    recorded inbound request equals it (method, path, query, body); several equal ones are used in recorded
    order, and once all were used the sequence starts again.
    """

    def __init__(
        self,
        cassettes: list[Cassette],
        *,
        single: bool,
        on_exhausted: OnExhausted,
        sessions: list[Cassette] | None = None,
    ) -> None:
        """``sessions`` are the session cassettes (calls made outside requests), in recorded order."""
        self.cassettes = cassettes
        session_calls = [interaction for session in sessions or () for interaction in session.interactions]
        session_generated = _joined_generated(sessions or ())
        #: Answers calls made outside any replayed request (start-up, connection set-up), in recorded order, and
        #: hands back the values generated (and clock readings recorded) there, in recorded order.
        self.process_session = (
            ReplaySession(None, on_exhausted, calls=RecordedCalls(session_calls), generated=session_generated,
                          missing_reason="the recording's session cassettes (under _session/) hold no calls")
            if session_calls or session_generated else None
        )
        # Each cassette's calls are keyed and grouped once, here: a session for a replayed request then
        # starts in O(1), however many calls its cassette holds.
        self._calls = {id(cassette): RecordedCalls(cassette.interactions) for cassette in cassettes}
        self._single = single
        self._on_exhausted = on_exhausted
        self._lock = threading.Lock()
        self._by_endpoint: dict[Hashable, list[_Recorded]] = {}
        for cassette in sorted(cassettes, key=lambda c: c.metadata.recorded_at):
            self._by_endpoint.setdefault(_endpoint(inbound_request(cassette)), []).append(_Recorded(cassette))

    @classmethod
    def open(cls, path: str | Path, on_exhausted: OnExhausted = OnExhausted.ERROR) -> CassetteSource:
        path = Path(path)
        if path.is_dir():
            cassettes = [load_cassette(p) for p in iter_cassette_files(path)]
            sessions = [load_cassette(p) for p in iter_cassette_files(path, sessions=True)]
            logger.info("timetracer: replaying from %d cassettes and %d session cassettes in %s",
                        len(cassettes), len(sessions), path)
            return cls(cassettes, single=False, on_exhausted=on_exhausted, sessions=sessions)
        if not path.exists():
            raise CassetteNotFoundError(path)
        cassette = load_cassette(path)
        if cassette.request is None:  # a session cassette on its own: it answers calls outside requests
            return cls([], single=False, on_exhausted=on_exhausted, sessions=[cassette])
        # Next to a cassette file, the session cassettes of its directory's recording (if it is one).
        session_folder = _session_folder_near(path)
        sessions = [] if session_folder is None else [load_cassette(p) for p in iter_cassette_files(
            session_folder.parent, sessions=True)]
        return cls([cassette], single=True, on_exhausted=on_exhausted, sessions=sessions)

    def session_for(self, request: HttpRequest) -> ReplaySession:
        if self._single and self.cassettes:
            return self._session(self.cassettes[0])
        live_key = http_fields(request).body
        with self._lock:
            candidates = [r for r in self._by_endpoint.get(_endpoint(request), ()) if r.matches(request, live_key)]
            if candidates:
                chosen = min(candidates, key=lambda r: r.uses)  # the first least-used, in recorded order
                chosen.uses += 1
                return self._session(chosen.cassette)
        return ReplaySession(None, self._on_exhausted, missing_reason=self._explain_missing(request))

    def _session(self, cassette: Cassette) -> ReplaySession:
        return ReplaySession(cassette, self._on_exhausted, calls=self._calls[id(cassette)])

    def _explain_missing(self, request: HttpRequest) -> str:
        reason = f"no cassette was recorded for the inbound request {describe_http(request)}"
        live = http_fields(request)
        ranked = sorted(
            self.cassettes,
            key=lambda c: len(http_differences(live, http_fields(inbound_request(c)))),
        )[:3]
        if not ranked:
            return reason + " (the cassette directory is empty)"
        lines = [reason, "nearest recorded inbound requests:"]
        for cassette in ranked:
            recorded = inbound_request(cassette)
            differences = http_differences(live, http_fields(recorded))
            interesting = [d for d in differences if not d.startswith(("host", "port", "scheme"))]
            lines.append(f"  {describe_http(recorded)} ({'; '.join(interesting) or 'same'})")
        return "\n".join(lines)
