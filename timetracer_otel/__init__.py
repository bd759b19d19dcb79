"""timetracer-otel: record every inbound request with all its outbound calls; replay them hermetically."""

from timetracer_otel._version import __version__
from timetracer_otel.cassette.files import load_cassette
from timetracer_otel.cassette.model import Cassette, Interaction
from timetracer_otel.errors import (
    CassetteError,
    CassetteFormatError,
    CassetteNotFoundError,
    ConfigurationError,
    IncompleteBodyError,
    NetworkBlockedError,
    ReplayError,
    ReplayMismatchError,
    TimetracerError,
    TruncatedBodyError,
)
from timetracer_otel.runtime import install, recorder_stats, uninstall
from timetracer_otel.settings import Compression, Mode, OnExhausted, Settings

__all__ = [
    "Cassette",
    "CassetteError",
    "CassetteFormatError",
    "CassetteNotFoundError",
    "Compression",
    "ConfigurationError",
    "IncompleteBodyError",
    "Interaction",
    "Mode",
    "NetworkBlockedError",
    "OnExhausted",
    "ReplayError",
    "ReplayMismatchError",
    "Settings",
    "TimetracerError",
    "TruncatedBodyError",
    "__version__",
    "install",
    "load_cassette",
    "recorder_stats",
    "uninstall",
]
