"""All configuration, read once from the environment into one frozen :class:`Settings`.

Every variable is accepted as ``TIMETRACER_<NAME>`` and as ``OTEL_TIMETRACER_<NAME>`` (the form that
``opentelemetry-instrument --timetracer_<name> VALUE`` sets). The plain form wins when both are set.
An invalid value raises :class:`~timetracer_otel.errors.ConfigurationError` naming the variable and what it accepts.
"""

from __future__ import annotations

import difflib
import enum
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from timetracer_otel.cassette.model import GENERATED_SOURCES
from timetracer_otel.cassette.naming import service_folder
from timetracer_otel.errors import ConfigurationError
from timetracer_otel.integrations.registry import OUTBOUND, expand_plugin_names, known_plugin_names
from timetracer_otel.s3.client import SSE_MODES, S3Options
from timetracer_otel.s3.location import S3Location, is_s3_url

__all__ = ["Compression", "Mode", "OnExhausted", "Settings", "Storage", "s3_options_from_env"]

logger = logging.getLogger("timetracer")

_T = TypeVar("_T")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

DEFAULT_EXCLUDE_PATHS = (
    "/health",
    "/health/*",
    "/healthz",
    "/livez",
    "/readyz",
    "/metrics",
    "/docs",
    "/docs/*",
    "/redoc",
    "/openapi.json",
    "/favicon.ico",
)


class Mode(enum.StrEnum):
    OFF = "off"
    RECORD = "record"
    REPLAY = "replay"


class Compression(enum.StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


class Storage(enum.StrEnum):
    """Where record mode writes cassettes."""

    FILE = "file"
    S3 = "s3"


class OnExhausted(enum.StrEnum):
    """What replay does when every recorded answer for a request key has been used."""

    ERROR = "error"
    REPEAT_LAST = "repeat_last"


@dataclass(frozen=True)
class Settings:
    mode: Mode = Mode.OFF
    directory: Path = Path("cassettes")
    #: Record to this bucket and prefix instead of ``directory`` (``TIMETRACER_DIR=s3://...``).
    s3_destination: S3Location | None = None
    #: Replay source: a cassette file, a directory of cassettes, or an S3 key or prefix (defaults to where
    #: record mode writes).
    cassette: Path | S3Location | None = None
    #: How S3 is reached and written (endpoint, region, encryption, spill and cache folders).
    s3: S3Options = field(default_factory=S3Options)
    sample_rate: float = 1.0
    errors_only: bool = False
    exclude_paths: tuple[str, ...] = DEFAULT_EXCLUDE_PATHS
    compression: Compression = Compression.NONE
    max_body_bytes: int = 1024 * 1024
    #: Outbound plugins served from cassettes in replay.
    mocked_plugins: frozenset[str] = field(default_factory=lambda: frozenset(OUTBOUND))
    service: str = "unknown_service"
    network_guard: bool = True
    on_exhausted: OnExhausted = OnExhausted.ERROR
    #: How long a finished request waits for late spans (background tasks, stray tasks) before it is written.
    quiet_period: float = 0.05
    #: A request still open after this long is written anyway, flagged incomplete.
    request_timeout: float = 60.0
    max_pending_requests: int = 1000
    max_buffered_bytes: int = 256 * 1024 * 1024
    #: How long shutdown waits for queued cassettes to be written.
    flush_timeout: float = 10.0
    #: Replay: each replayed request sees the clock of its recording (docs/determinism.md).
    replay_clock: bool = True
    #: Record: keep the app's clock readings, so replay hands them back exactly (docs/determinism.md).
    record_clock: bool = True
    #: Sources of generated values recorded and replayed (``GENERATED_SOURCES``; docs/determinism.md).
    generated: frozenset[str] = frozenset(GENERATED_SOURCES)

    @property
    def live_plugins(self) -> frozenset[str]:
        return frozenset(OUTBOUND) - self.mocked_plugins

    @property
    def storage(self) -> Storage:
        return Storage.FILE if self.s3_destination is None else Storage.S3

    @property
    def replay_source(self) -> Path | S3Location:
        if self.cassette is not None:
            return self.cassette
        if self.s3_destination is None:
            return self.directory
        return self.s3_destination.child(service_folder(self.service))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        env.warn_unknown()
        mocked = env.plugins("MOCK_PLUGINS")
        live = env.plugins("LIVE_PLUGINS")
        if mocked is not None and live is not None and mocked & live:
            raise ConfigurationError(
                env.name("LIVE_PLUGINS"),
                env.raw("LIVE_PLUGINS") or "",
                f"plugins that are not also mocked (both name {', '.join(sorted(mocked & live))})",
            )
        mocked_plugins = (mocked if mocked is not None else frozenset(OUTBOUND)) - (live or frozenset())
        directory = env.raw("DIR") or "cassettes"
        return cls(
            mode=env.choice("MODE", Mode, Mode.OFF),
            directory=Path("cassettes") if is_s3_url(directory) else Path(directory),
            s3_destination=env.s3_destination(directory),
            cassette=env.location("CASSETTE"),
            s3=env.s3_options(),
            sample_rate=env.number("SAMPLE_RATE", float, 1.0, low=0.0, high=1.0),
            errors_only=env.flag("ERRORS_ONLY", default=False),
            exclude_paths=env.patterns("EXCLUDE_PATHS", DEFAULT_EXCLUDE_PATHS),
            compression=env.choice("COMPRESSION", Compression, Compression.NONE),
            max_body_bytes=env.number("MAX_BODY_BYTES", int, 1024 * 1024, low=0),
            mocked_plugins=mocked_plugins,
            service=env.raw("SERVICE") or env.environ.get("OTEL_SERVICE_NAME") or "unknown_service",
            network_guard=env.flag("NETWORK_GUARD", default=True),
            on_exhausted=env.choice("ON_EXHAUSTED", OnExhausted, OnExhausted.ERROR),
            quiet_period=env.number("QUIET_PERIOD_MS", float, 50.0, low=0.0) / 1000,
            request_timeout=env.number("REQUEST_TIMEOUT_S", float, 60.0, low=0.001),
            max_pending_requests=env.number("MAX_PENDING_REQUESTS", int, 1000, low=1),
            max_buffered_bytes=env.number("MAX_BUFFERED_BYTES", int, 256 * 1024 * 1024, low=1),
            flush_timeout=env.number("FLUSH_TIMEOUT_S", float, 10.0, low=0.0),
            replay_clock=env.flag("REPLAY_CLOCK", default=True),
            record_clock=env.flag("RECORD_CLOCK", default=True),
            generated=env.sources("GENERATED"),
        )


def s3_options_from_env(environ: Mapping[str, str] | None = None) -> S3Options:
    """The ``TIMETRACER_S3_*`` options alone, validated as :meth:`Settings.from_env` does: for commands that
    need S3 but none of the other settings."""
    return _Env(os.environ if environ is None else environ).s3_options()


#: Every variable name (without prefix) ``Settings.from_env`` reads; exported as CLI flags too.
VARIABLES = (
    "MODE",
    "DIR",
    "CASSETTE",
    "SAMPLE_RATE",
    "ERRORS_ONLY",
    "EXCLUDE_PATHS",
    "COMPRESSION",
    "MAX_BODY_BYTES",
    "MOCK_PLUGINS",
    "LIVE_PLUGINS",
    "SERVICE",
    "NETWORK_GUARD",
    "ON_EXHAUSTED",
    "QUIET_PERIOD_MS",
    "REQUEST_TIMEOUT_S",
    "MAX_PENDING_REQUESTS",
    "MAX_BUFFERED_BYTES",
    "FLUSH_TIMEOUT_S",
    "REPLAY_CLOCK",
    "RECORD_CLOCK",
    "GENERATED",
    "STORAGE",
    "S3_BUCKET",
    "S3_PREFIX",
    "S3_REGION",
    "S3_ENDPOINT_URL",
    "S3_SSE",
    "S3_SSE_KMS_KEY_ID",
    "S3_SPILL_DIR",
    "S3_SPILL_MAX_BYTES",
    "S3_CACHE_DIR",
)


class _Env:
    """Typed readers over the environment; each names the variable it read in its errors."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def warn_unknown(self) -> None:
        """A misspelt variable would otherwise be ignored without a word."""
        for variable in self.environ:
            key = variable.removeprefix("OTEL_").removeprefix("TIMETRACER_")
            if variable.startswith(("TIMETRACER_", "OTEL_TIMETRACER_")) and key not in VARIABLES:
                close = difflib.get_close_matches(key, VARIABLES, n=1)
                hint = f"; did you mean TIMETRACER_{close[0]}?" if close else ""
                logger.warning("timetracer: %s is not a timetracer setting and is ignored%s", variable, hint)

    def name(self, key: str) -> str:
        plain = f"TIMETRACER_{key}"
        return plain if plain in self.environ or f"OTEL_{plain}" not in self.environ else f"OTEL_{plain}"

    def raw(self, key: str) -> str | None:
        value = self.environ.get(self.name(key))
        return value.strip() if value is not None else None

    def choice(self, key: str, enum_type: type[_E], default: _E) -> _E:
        value = self.raw(key)
        if not value:
            return default
        try:
            return enum_type(value.lower())
        except ValueError:
            allowed = "|".join(member.value for member in enum_type)
            raise ConfigurationError(self.name(key), value, f"one of {allowed}") from None

    def flag(self, key: str, *, default: bool) -> bool:
        value = self.raw(key)
        if not value:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigurationError(self.name(key), value, "true or false (also 1/0, yes/no, on/off)")

    def number(
        self, key: str, kind: Callable[[str], _T], default: _T, *, low: float, high: float | None = None
    ) -> _T:
        value = self.raw(key)
        if not value:
            return default
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        expected = f"{'an integer' if kind is int else 'a number'} {bounds}"
        try:
            number = kind(value)
        except ValueError:
            raise ConfigurationError(self.name(key), value, expected) from None
        if not (low <= number and (high is None or number <= high)):  # type: ignore[operator]
            raise ConfigurationError(self.name(key), value, expected)
        return number

    def patterns(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.raw(key)
        if value is None:
            return default
        return tuple(item.strip() for item in value.split(",") if item.strip())

    def plugins(self, key: str) -> frozenset[str] | None:
        value = self.raw(key)
        if value is None:
            return None
        names = [item.strip().lower() for item in value.split(",") if item.strip()]
        try:
            return expand_plugin_names(names)
        except KeyError as unknown:
            raise ConfigurationError(
                self.name(key), value, f"plugin names from {', '.join(known_plugin_names())} (unknown: {unknown})"
            ) from None

    def sources(self, key: str) -> frozenset[str]:
        """Names of sources of generated values: unset means all of them, an empty value none."""
        value = self.raw(key)
        if value is None:
            return frozenset(GENERATED_SOURCES)
        names = [item.strip().lower() for item in value.split(",") if item.strip()]
        unknown = [name for name in names if name not in GENERATED_SOURCES]
        if unknown:
            raise ConfigurationError(
                self.name(key), value,
                f"source names from {', '.join(GENERATED_SOURCES)}, or an empty value for none (unknown: "
                f"{unknown[0]!r})",
            )
        return frozenset(names)


    def s3_url(self, key: str, value: str) -> S3Location:
        try:
            return S3Location.parse(value)
        except ValueError as error:
            raise ConfigurationError(self.name(key), value, f"s3://bucket/prefix ({error})") from None

    def location(self, key: str) -> Path | S3Location | None:
        """A local path or an ``s3://`` URL."""
        value = self.raw(key)
        if not value:
            return None
        return self.s3_url(key, value) if is_s3_url(value) else Path(value)

    def s3_destination(self, directory: str) -> S3Location | None:
        """Where record mode writes in S3: ``TIMETRACER_DIR=s3://...``, or ``TIMETRACER_STORAGE=s3`` with
        ``TIMETRACER_S3_BUCKET`` (and ``_PREFIX``); None for local files."""
        storage = self.choice("STORAGE", Storage, Storage.S3 if is_s3_url(directory) else Storage.FILE)
        if storage is Storage.FILE:
            if is_s3_url(directory):
                raise ConfigurationError(self.name("STORAGE"), self.raw("STORAGE") or "",
                                         f"s3 (or unset) when {self.name('DIR')} is an s3:// URL")
            return None
        if is_s3_url(directory):
            return self.s3_url("DIR", directory)
        bucket = self.raw("S3_BUCKET") or ""
        if not bucket:
            raise ConfigurationError(self.name("S3_BUCKET"), bucket, "a bucket name (TIMETRACER_STORAGE=s3 needs "
                                     "one), or set TIMETRACER_DIR=s3://bucket/prefix instead")
        try:
            return S3Location.of(bucket, self.raw("S3_PREFIX") or "")
        except ValueError as error:
            raise ConfigurationError(self.name("S3_BUCKET"), bucket, str(error)) from None

    def s3_options(self) -> S3Options:
        defaults = S3Options()
        sse = self.raw("S3_SSE") or None
        if sse is not None and sse not in SSE_MODES:
            raise ConfigurationError(self.name("S3_SSE"), sse, f"one of {'|'.join(SSE_MODES)}")
        kms_key = self.raw("S3_SSE_KMS_KEY_ID") or None
        if kms_key and not (sse or "").startswith("aws:kms"):
            raise ConfigurationError(self.name("S3_SSE"), sse or "", "aws:kms (or aws:kms:dsse) when "
                                     f"{self.name('S3_SSE_KMS_KEY_ID')} is set")
        endpoint = self.raw("S3_ENDPOINT_URL") or None
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ConfigurationError(self.name("S3_ENDPOINT_URL"), endpoint, "an http:// or https:// URL")
        return S3Options(
            region=self.raw("S3_REGION") or None,
            endpoint_url=endpoint,
            sse=sse,
            sse_kms_key_id=kms_key,
            spill_dir=Path(raw) if (raw := self.raw("S3_SPILL_DIR")) else defaults.spill_dir,
            spill_max_bytes=self.number("S3_SPILL_MAX_BYTES", int, defaults.spill_max_bytes, low=0),
            cache_dir=Path(raw) if (raw := self.raw("S3_CACHE_DIR")) else defaults.cache_dir,
        )


_E = TypeVar("_E", bound=enum.Enum)
