"""The one list of integrations. Adding a library means adding its module and one line here.

Names here are what users write in TIMETRACER_MOCK_PLUGINS / TIMETRACER_LIVE_PLUGINS; groups expand to their
members. Nothing in this module imports a client library, so settings can validate names cheaply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["INBOUND", "OUTBOUND", "PLUGIN_GROUPS", "IntegrationEntry", "expand_plugin_names"]


@dataclass(frozen=True)
class IntegrationEntry:
    #: The integration module; it defines ``INTEGRATION``, its :class:`Integration` subclass.
    module: str
    #: The library it instruments: the integration is installed only when this module can be imported.
    library: str


#: Outbound client integrations (mockable in replay), by plugin name.
OUTBOUND: dict[str, IntegrationEntry] = {
    "httpx": IntegrationEntry("timetracer_otel.integrations.httpx", "httpx"),
    "requests": IntegrationEntry("timetracer_otel.integrations.requests", "requests"),
    "aiohttp": IntegrationEntry("timetracer_otel.integrations.aiohttp", "aiohttp"),
    # SQL: each call is recorded once, by its driver's integration; the ORM integrations prepare replayed
    # connections and tell the drivers which layer a call came through (see integrations/_sql.py).
    "asyncpg": IntegrationEntry("timetracer_otel.integrations.asyncpg", "asyncpg"),
    "psycopg": IntegrationEntry("timetracer_otel.integrations.psycopg", "psycopg"),
    "sqlite": IntegrationEntry("timetracer_otel.integrations.sqlite", "sqlite3"),
    "sqlalchemy": IntegrationEntry("timetracer_otel.integrations.sqlalchemy", "sqlalchemy"),
    "tortoise": IntegrationEntry("timetracer_otel.integrations.tortoise", "tortoise"),
    "redis": IntegrationEntry("timetracer_otel.integrations.redis", "redis"),
    "mongo": IntegrationEntry("timetracer_otel.integrations.mongo", "pymongo"),
}

#: Inbound server integrations: they open one cassette per request and are always on when recording/replaying.
INBOUND: dict[str, IntegrationEntry] = {
    "asgi": IntegrationEntry("timetracer_otel.integrations.asgi", "opentelemetry.instrumentation.asgi"),
    "wsgi": IntegrationEntry("timetracer_otel.integrations.wsgi", "opentelemetry.instrumentation.wsgi"),
    "litestar": IntegrationEntry("timetracer_otel.integrations.litestar", "litestar"),
    "django": IntegrationEntry("timetracer_otel.integrations.django", "django"),
    # Not servers, but on whenever recording or replaying too: what makes a replayed request see what its
    # recording saw (docs/determinism.md). Their settings are TIMETRACER_REPLAY_CLOCK and TIMETRACER_GENERATED.
    "clock": IntegrationEntry("timetracer_otel.determinism.clock", "time_machine"),
    "generated": IntegrationEntry("timetracer_otel.determinism.generated", "uuid"),
}

#: Group names users may write instead of listing every member.
PLUGIN_GROUPS: dict[str, tuple[str, ...]] = {
    "http": ("httpx", "requests", "aiohttp"),
    "sql": ("asyncpg", "psycopg", "sqlite", "sqlalchemy", "tortoise"),
}


def expand_plugin_names(names: Iterable[str]) -> frozenset[str]:
    """Expand group names; raise ``KeyError`` naming the first unknown name."""
    expanded: set[str] = set()
    for name in names:
        if name in PLUGIN_GROUPS:
            expanded.update(PLUGIN_GROUPS[name])
        elif name in OUTBOUND:
            expanded.add(name)
        else:
            raise KeyError(name)
    return frozenset(expanded)


def known_plugin_names() -> list[str]:
    return sorted([*PLUGIN_GROUPS, *OUTBOUND])
