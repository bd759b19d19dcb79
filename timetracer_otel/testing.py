"""Cassettes around a block of code, as tests use them (the pytest plugin is built on this).

``use_cassette(path, record_mode=...)`` records every outbound call made inside the block into one cassette
file, or answers them from it. While the block runs, its cassette is the process's session: every call made
outside an inbound request served by a real server belongs to it, whichever thread makes it. That covers the
test's own calls, the code it drives, and apps served in-process (Starlette's ``TestClient``,
``httpx.ASGITransport``, the Flask and Django test clients): their inbound requests are not recorded as requests
of their own, their outbound calls land in the test's cassette. One block at a time per process: pytest runs one
test at a time per process, and pytest-xdist's workers are processes. The integrations are installed once, the
first time a block starts; each block's state lives in the block.

Record modes, as VCR.py users know them:

- ``none``: replay only; a missing cassette is an error.
- ``once``: replay the cassette if it exists, else record it.
- ``new_episodes``: replay what the cassette answers; HTTP calls it does not answer go live and are appended.
- ``all``: every call goes live and is recorded, appended after the interactions already in the file.
- ``rewrite``: every call goes live and is recorded; the file is replaced.
"""

from __future__ import annotations

import contextlib
import enum
import os
import random
import socket
import time
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from timetracer_otel._version import __version__
from timetracer_otel.cassette.files import dump_cassette, load_cassette
from timetracer_otel.cassette.model import HTTP, CallRequest, Cassette, HttpRequest, Interaction
from timetracer_otel.errors import CassetteError, ConfigurationError, ReplayMismatchError, StaleCassetteError
from timetracer_otel.record.assembly import assemble
from timetracer_otel.record.captured import CapturedRequest, capture_generated
from timetracer_otel.record.recorder import RecorderStats, capture_call
from timetracer_otel.record.recording import ByteBudget, SessionRecording
from timetracer_otel.replay.episodes import NewEpisodes
from timetracer_otel.replay.guard import NetworkGuard
from timetracer_otel.replay.index import RecordedCalls, RequestKey
from timetracer_otel.replay.matching import HttpFields, request_key
from timetracer_otel.replay.session import ReplaySession
from timetracer_otel.runtime import install_integrations_only
from timetracer_otel.settings import Compression, OnExhausted

__all__ = ["MATCH_ON_FIELDS", "CassetteUse", "RecordMode", "use_cassette"]


class RecordMode(enum.StrEnum):
    NONE = "none"
    ONCE = "once"
    NEW_EPISODES = "new_episodes"
    ALL = "all"
    REWRITE = "rewrite"


#: The parts of an HTTP request ``match_on`` may name (SQL, Redis and MongoDB calls always match in full).
MATCH_ON_FIELDS = ("method", "scheme", "host", "port", "path", "query", "body")


def _http_key(match_on: tuple[str, ...]) -> RequestKey:
    def key(kind: str, request: HttpRequest | CallRequest) -> Hashable:
        fields = request_key(kind, request)
        if kind != HTTP or not isinstance(fields, HttpFields):
            return fields
        return (HTTP, *(getattr(fields, name) for name in match_on))

    return key


def _checked_match_on(match_on: Iterable[str] | None) -> tuple[str, ...] | None:
    if match_on is None:
        return None
    names = tuple(match_on)
    unknown = [name for name in names if name not in MATCH_ON_FIELDS]
    if unknown or not names:
        raise ConfigurationError("match_on", ",".join(names), f"some of {', '.join(MATCH_ON_FIELDS)}")
    return names


class _TestSession(ReplaySession):
    """The block's replay session: remembers every miss, so a test whose app turned one into a 500 still fails
    with the explanation."""

    def __init__(self, use: CassetteUse, cassette: Cassette, on_exhausted: OnExhausted) -> None:
        key = _http_key(use.match_on) if use.match_on else request_key
        calls = RecordedCalls(cassette.interactions, [key(i.kind, i.request) for i in cassette.interactions])
        super().__init__(cassette, on_exhausted, calls=calls, key=key)
        self._use = use
        self.answering = f"answered from the test's cassette {use.path}"

    def take(self, request: HttpRequest | CallRequest, kind: str = HTTP) -> Interaction:
        try:
            interaction = super().take(request, kind)
        except ReplayMismatchError as miss:
            if self._use.record_mode is not RecordMode.NEW_EPISODES or kind != HTTP:
                self._use.misses.append(miss)
            raise
        self._use.replayed += 1
        return interaction


@dataclass
class CassetteUse:
    """One block's cassette: what it does with it, and what happened (for the pytest summary)."""

    path: Path
    record_mode: RecordMode
    allow_playback_repeats: bool = False
    match_on: tuple[str, ...] | None = None
    #: Hosts a replaying block may still connect to (every other connection is refused, loopback included).
    allow_hosts: tuple[str, ...] = ()
    #: "replay" or "record": what the block does with its cassette.
    action: str = ""
    replayed: int = 0
    recorded: int = 0
    misses: list[ReplayMismatchError] = field(default_factory=list)
    _session: _TestSession | None = None
    _recording: SessionRecording | None = None
    _stats: RecorderStats = field(default_factory=RecorderStats)
    _cassette: Cassette | None = None

    def unused(self) -> list[Interaction]:
        """Recorded interactions the block has not replayed (so far)."""
        return [] if self._session is None else self._session.index.unused()

    def check_unused(self) -> None:
        """Raise :class:`StaleCassetteError` if the cassette holds interactions the block never used."""
        unused = self.unused()
        if unused:
            raise StaleCassetteError(self.path, unused)


class _Active:
    """The block running in this process, if any (one at a time, see the module docstring)."""

    use: CassetteUse | None = None


@contextlib.contextmanager
def use_cassette(
    path: str | os.PathLike[str],
    *,
    record_mode: RecordMode | str = RecordMode.ONCE,
    allow_playback_repeats: bool = False,
    match_on: Iterable[str] | None = None,
    allow_hosts: Sequence[str] = (),
) -> Iterator[CassetteUse]:
    """Record the calls made inside the block into the cassette at ``path``, or replay them from it (see the
    module docstring for ``record_mode``). ``match_on`` narrows how HTTP calls are matched (e.g.
    ``("method", "path")``); ``allow_playback_repeats`` lets a recorded answer be used again once every
    recorded answer of its kind was used."""
    try:
        mode = RecordMode(record_mode)
    except ValueError:
        raise ConfigurationError("record_mode", str(record_mode), ", ".join(m.value for m in RecordMode)) from None
    use = CassetteUse(Path(path), mode, allow_playback_repeats, _checked_match_on(match_on), tuple(allow_hosts))
    if _Active.use is not None:
        raise CassetteError(use.path, f"another cassette ({_Active.use.path}) is in use: blocks cannot nest")
    runtime = install_integrations_only()
    exists = use.path.exists()
    if mode is RecordMode.NONE and not exists:
        raise CassetteError(use.path, "no cassette here and the record mode is 'none' (the default when CI is "
                                      "set), so nothing may be recorded: record it locally (record mode 'once') "
                                      "and commit it")
    replays = exists and mode in (RecordMode.NONE, RecordMode.ONCE, RecordMode.NEW_EPISODES)
    use.action = "replay" if replays else "record"
    _Active.use = use
    guard: NetworkGuard | None = None
    started = time.time_ns()
    try:
        if replays:
            use._cassette = load_cassette(use.path, check_bodies=True)
            on_exhausted = OnExhausted.REPEAT_LAST if allow_playback_repeats else runtime.settings.on_exhausted
            use._session = _TestSession(use, use._cassette, on_exhausted)
            ReplaySession.process = use._session
            guard = NetworkGuard(_resolved(use.allow_hosts), allow_loopback=False, hint=(
                "Record this call (record mode 'new_episodes' or 'rewrite'), or let the connection through with "
                "--timetracer-allow-hosts (allow_hosts=) if the test needs that server live"))
            guard.install()
        if not replays or mode is RecordMode.NEW_EPISODES:
            use._recording = SessionRecording(use._stats, ByteBudget())
            SessionRecording.current = use._recording
            NewEpisodes.allowed = replays
        yield use
    finally:
        _Active.use = None
        if ReplaySession.process is use._session and use._session is not None:
            ReplaySession.process = None
        if SessionRecording.current is use._recording and use._recording is not None:
            SessionRecording.current = None
        NewEpisodes.allowed = False
        if guard is not None:
            guard.uninstall()
    _save(use, started)  # not when the block raised: a recording cut short would replay wrong


def _resolved(hosts: Sequence[str]) -> frozenset[str]:
    """The hosts as given and every address they resolve to (the guard sees addresses)."""
    allowed = set(hosts)
    for host in hosts:
        with contextlib.suppress(OSError):
            allowed.update(str(info[4][0]) for info in socket.getaddrinfo(host, None))
    return frozenset(allowed)


def _save(use: CassetteUse, started_ns: int) -> None:
    """Write what the block recorded: the whole cassette, or (new_episodes, all) the old one with the new calls
    appended. Written to a temporary file and moved into place, so a crash never leaves half a cassette."""
    recording = use._recording
    if recording is None:
        return
    calls = [captured for call in recording.calls if (captured := capture_call(call, use._stats)) is not None]
    use.recorded = len(calls)
    if use.action == "replay" and not calls:
        return  # new_episodes with nothing new: the file stays as it is (values generated anew are not kept)
    block = CapturedRequest(
        id=f"{random.getrandbits(128):032x}", started_at=started_ns / 1e9, start_ns=started_ns, trace_id=None,
        incomplete=any(call.end_ns is None for call in calls), request=None, response=None, error=None,
        calls=tuple(calls), spans=(), generated=capture_generated(recording.take_generated()),
    )
    cassette = assemble(block, service="pytest")
    cassette = msgspec.structs.replace(cassette, metadata=msgspec.structs.replace(cassette.metadata, scope="test"))
    previous = use._cassette if use.action == "replay" else _previous(use)
    if previous is not None:
        metadata = msgspec.structs.replace(previous.metadata, tool_version=__version__,
                                           incomplete=previous.metadata.incomplete or cassette.metadata.incomplete)
        # new_episodes replayed the old values (the app's ids went into the calls kept); all records afresh.
        generated = previous.generated if use.action == "replay" else cassette.generated
        cassette = msgspec.structs.replace(cassette, metadata=metadata, generated=generated,
                                           interactions=previous.interactions + cassette.interactions)
    use.path.parent.mkdir(parents=True, exist_ok=True)
    temporary = use.path.with_name(f".{use.path.name}.{os.getpid()}.part")
    temporary.write_bytes(dump_cassette(cassette, Compression.NONE))
    temporary.replace(use.path)


def _previous(use: CassetteUse) -> Cassette | None:
    """The cassette ``all`` appends to (``rewrite`` and a first recording start afresh)."""
    if use.record_mode is not RecordMode.ALL or not use.path.exists():
        return None
    return load_cassette(use.path)

