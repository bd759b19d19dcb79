"""Every error timetracer raises derives from :class:`TimetracerError`.

::

    TimetracerError
    ├── ConfigurationError          an environment variable or option has an invalid value
    ├── CassetteError               a cassette cannot be used
    │   ├── CassetteNotFoundError   the path does not exist
    │   └── CassetteFormatError     corrupt, truncated, tampered or of an unsupported schema
    └── ReplayError                 replay cannot answer a call faithfully
        ├── ReplayMismatchError     no recorded interaction matches the call (with the nearest candidates)
        ├── TruncatedBodyError      the recorded body was cut at the size cap, so it cannot be replayed
        ├── IncompleteBodyError     the app reads a body further than it was read when recorded
        ├── StaleCassetteError      a test's cassette holds calls the test no longer makes
        └── NetworkBlockedError     a live connection was attempted while replaying

Replaying recorded traffic as tests adds ``AppLoadError`` (the app given to ``timetracer replay`` cannot be
loaded; in :mod:`timetracer_otel.replay.driver`) and ``ResponseDriftError`` (a replayed response differs from the
recorded one; in :mod:`timetracer_otel._pytest_replay`), both subclasses of ``TimetracerError``.

Each carries the facts it names as attributes, so tools can act on them without parsing messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "CassetteError",
    "CassetteFormatError",
    "CassetteNotFoundError",
    "ConfigurationError",
    "IncompleteBodyError",
    "NetworkBlockedError",
    "ReplayError",
    "ReplayMismatchError",
    "StaleCassetteError",
    "TimetracerError",
    "TruncatedBodyError",
]


class TimetracerError(Exception):
    """Base class of every error raised by timetracer."""


class ConfigurationError(TimetracerError):
    """A setting has a value timetracer cannot use."""

    def __init__(self, variable: str, value: str, expected: str) -> None:
        self.variable = variable
        self.value = value
        self.expected = expected
        super().__init__(f"{variable}={value!r} is not valid: expected {expected}")


class CassetteError(TimetracerError):
    """A cassette cannot be read or used."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}")


class CassetteNotFoundError(CassetteError):
    """The cassette path does not exist."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(
            path, "no cassette here; check TIMETRACER_CASSETTE or record one first (TIMETRACER_MODE=record)"
        )


class CassetteFormatError(CassetteError):
    """The file is not a readable cassette: corrupt, truncated, tampered, or of another schema version."""


class ReplayError(TimetracerError):
    """Replay cannot answer a call the way it was recorded."""


class ReplayMismatchError(ReplayError):
    """No recorded interaction answers this call.

    ``candidates`` holds the nearest recorded calls, each with the fields that differ.
    """

    def __init__(self, call: str, reason: str, candidates: Sequence[str] = ()) -> None:
        self.call = call
        self.reason = reason
        self.candidates = tuple(candidates)
        lines = [f"{call}: {reason}"]
        if self.candidates:
            lines.append("nearest recorded calls:")
            lines.extend(f"  {candidate}" for candidate in self.candidates)
        super().__init__("\n".join(lines))


class StaleCassetteError(ReplayError):
    """A replayed cassette holds interactions the code never asked for: it no longer describes what runs."""

    def __init__(self, path: str | Path, unused: Sequence[object]) -> None:
        self.path = str(path)
        self.unused = tuple(unused)
        described = "\n".join(f"  {_describe_interaction(item)}" for item in self.unused[:10])
        more = f"\n  ... and {len(self.unused) - 10} more" if len(self.unused) > 10 else ""
        super().__init__(
            f"{self.path}: {len(self.unused)} recorded interaction(s) were never used:\n{described}{more}\n"
            "the code no longer makes these calls: record the cassette again (record mode 'rewrite')"
        )


def _describe_interaction(interaction: object) -> str:
    from timetracer_otel.replay.matching import describe_request

    kind = getattr(interaction, "kind", "?")
    return describe_request(kind, getattr(interaction, "request", None))  # type: ignore[arg-type]


class TruncatedBodyError(ReplayError):
    """The recorded body was cut at TIMETRACER_MAX_BODY_BYTES, so replaying it would hand the app wrong bytes."""

    def __init__(self, call: str, recorded_size: int, stored_size: int) -> None:
        self.call = call
        self.recorded_size = recorded_size
        self.stored_size = stored_size
        super().__init__(
            f"{call}: the recorded body had {recorded_size} bytes but only {stored_size} were stored; "
            "raise TIMETRACER_MAX_BODY_BYTES and record again"
        )


class IncompleteBodyError(ReplayError):
    """The app reads a recorded response body further than it read it while recording.

    Recording keeps the bytes the app read; an app that stopped reading a streamed body before its end leaves
    only those. Replay hands them out, then raises this rather than end the body early.
    """

    def __init__(self, call: str, recorded_bytes: int) -> None:
        self.call = call
        self.recorded_bytes = recorded_bytes
        super().__init__(
            f"{call}: the recording holds only the first {recorded_bytes} bytes of this body, because the app "
            "stopped reading there when it was recorded; read no further, or record again reading the whole body"
        )


class NetworkBlockedError(ReplayError):
    """A connection to a non-loopback address was attempted while replaying."""

    def __init__(self, address: str, hint: str | None = None) -> None:
        self.address = address
        hint = hint or ("Record this call, keep its plugin live with TIMETRACER_LIVE_PLUGINS, "
                        "or turn the guard off with TIMETRACER_NETWORK_GUARD=false")
        super().__init__(f"replay blocked a live connection to {address}: replay never touches the network. {hint}")
