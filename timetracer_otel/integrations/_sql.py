"""What the SQL integrations share: the interaction kind, and which layer of the stack a SQL call comes from.

Each SQL call is recorded and replayed once, by the integration of the driver that talks to the server (asyncpg,
psycopg, sqlite3): every library above it (SQLAlchemy, Tortoise ORM, Django) then gets its rows from the driver
as it always does, and a query made through SQLAlchemy on asyncpg is one interaction, not two. The ORM
integrations mark their calls with :func:`orm_layer`, so a plugin name of an ORM in TIMETRACER_LIVE_PLUGINS
still makes its queries live, and set up what the ORM needs on a replayed connection.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from timetracer_otel.integrations._base import Integration

__all__ = ["SQL", "orm_layer", "sql_mocked"]

#: The interaction kind of every SQL call.
SQL = "sql"

_ORM_LAYER: contextvars.ContextVar[str | None] = contextvars.ContextVar("timetracer_orm_layer", default=None)


@contextlib.contextmanager
def orm_layer(plugin: str) -> Iterator[None]:
    """SQL calls made inside come through the ORM whose plugin name is ``plugin`` (``sqlalchemy``, ``tortoise``)."""
    if _ORM_LAYER.get() is not None:  # the outermost layer names the call
        yield
        return
    token = _ORM_LAYER.set(plugin)
    try:
        yield
    finally:
        _ORM_LAYER.reset(token)


def sql_mocked(driver: Integration) -> bool:
    """True when a SQL call of ``driver`` is answered from cassettes: its driver's plugin and the plugin of the
    ORM it comes through (if any) are both replayed."""
    if not driver.mocked:
        return False
    layer = _ORM_LAYER.get()
    return layer is None or layer in driver.settings.mocked_plugins
