"""Tortoise ORM (1.x): marks the SQL it runs, so the driver integrations record and replay it.

Tortoise records nothing itself: every statement reaches its driver (asyncpg for ``postgres://``, sqlite3
through aiosqlite for ``sqlite://``, psycopg for ``psycopg://``), whose integration records it once and replays
it on a connection that opens nothing. Here:

- each backend client's query methods (``execute_query``, ``execute_query_dict``, ``execute_insert``,
  ``execute_many``, ``execute_script``: everything the ORM, ``generate_schemas`` and raw SQL go through) and
  the transaction contexts (``in_transaction``: acquiring a pool connection, BEGIN, COMMIT/ROLLBACK,
  savepoints) run in ``orm_layer("tortoise")``, so ``TIMETRACER_LIVE_PLUGINS=tortoise`` sends Tortoise's
  queries (and the connections it opens) to the server while other code on the same driver is replayed;
- a client's ``create_connection`` (the pool or connection Tortoise opens lazily on its first query, and the
  start-up statements it runs there: sqlite's ``PRAGMA journal_mode=WAL``, ``foreign_keys=ON``, ...) runs in
  ``connection_setup()`` too: recorded in the session cassette and replayed from it, as often as needed,
  whichever request happens to open the connection.

The backends are found by class, not by name: every client and transaction context class a backend module
defines gets those of the methods above that it defines itself (subclasses override them).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from timetracer_otel._context import connection_setup
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._sql import orm_layer

__all__ = ["TortoiseIntegration"]

logger = logging.getLogger("timetracer")

#: Backend client modules, with the driver each needs (a backend whose driver is missing cannot be used).
_BACKENDS = (
    ("tortoise.backends.base.client", None),
    ("tortoise.backends.base_postgres.client", None),
    ("tortoise.backends.asyncpg.client", "asyncpg"),
    ("tortoise.backends.psycopg.client", "psycopg_pool"),
    ("tortoise.backends.sqlite.client", "aiosqlite"),
)

#: The query entry points of ``BaseDBAsyncClient`` and its backends.
_QUERIES = ("execute_query", "execute_query_dict", "execute_insert", "execute_many", "execute_script")

#: Entering and leaving a transaction (``in_transaction``): connection acquisition, BEGIN, COMMIT/ROLLBACK.
_TRANSACTION = ("__aenter__", "__aexit__")


class TortoiseIntegration(Integration):
    name = "tortoise"

    def patches(self) -> Sequence[Patch]:
        from tortoise.backends.base.client import BaseDBAsyncClient, TransactionContext

        rows: list[Patch] = []
        for module_name, driver in _BACKENDS:
            if driver is not None and importlib.util.find_spec(driver) is None:
                continue
            try:
                module = importlib.import_module(module_name)
            except ImportError:  # a backend whose dependencies are incomplete: the app cannot use it either
                logger.debug("timetracer: Tortoise backend %s not importable; not instrumented", module_name)
                continue
            for class_name, cls in sorted(vars(module).items()):
                if not isinstance(cls, type) or cls.__module__ != module_name:
                    continue
                if issubclass(cls, BaseDBAsyncClient):
                    rows += [Patch(module_name, f"{class_name}.{method}", self._query)
                             for method in _QUERIES if method in cls.__dict__]
                    if "create_connection" in cls.__dict__:
                        rows.append(Patch(module_name, f"{class_name}.create_connection", self._setup))
                elif issubclass(cls, TransactionContext) and cls is not TransactionContext:
                    rows += [Patch(module_name, f"{class_name}.{method}", self._query)
                             for method in _TRANSACTION if method in cls.__dict__]
        return rows

    async def _query(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        with orm_layer(self.name):
            return await wrapped(*args, **kwargs)

    async def _setup(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        with orm_layer(self.name), connection_setup():
            return await wrapped(*args, **kwargs)


INTEGRATION = TortoiseIntegration
