"""SQLAlchemy 2.0 (sync and asyncio): marks the SQL it runs, so the driver integrations record and replay it.

SQLAlchemy records nothing itself: every statement reaches the DB-API driver (psycopg, sqlite3, asyncpg,
aiosqlite), whose integration records it once and replays it with a connection that opens nothing. Here:

- statement execution (``Connection._execute_context``, which Core, the ORM and ``exec_driver_sql`` all go
  through) runs in ``orm_layer("sqlalchemy")``, so ``TIMETRACER_LIVE_PLUGINS=sqlalchemy`` sends SQLAlchemy's
  queries to the server while other code using the same driver is replayed;
- opening a pool connection (the driver's connect, the dialect's first-connect ``initialize`` queries: server
  version, schema, isolation level, hstore lookup; and the dialect's on-connect hooks) and the pool's pre-ping
  run in ``connection_setup()``: they are recorded in the session cassette and replayed from it, repeatedly,
  whichever request happens to open a connection.

It also works around a bug of OpenTelemetry's SQLAlchemy instrumentation (opentelemetry-python-contrib issue
#2149): it attaches two tracers to an engine made by ``create_async_engine``, so each statement starts two spans
and ends one. The span left open would hold every request that ran a query open until
TIMETRACER_REQUEST_TIMEOUT_S and mark its cassette incomplete (and it leaks in any span processor). Here the
second tracer does not start a span while the first one's is still open.

Requires ``sqlalchemy<2.1`` (OpenTelemetry's SQLAlchemy instrumentation does not instrument 2.1).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from timetracer_otel._context import connection_setup
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._sql import orm_layer

__all__ = ["SqlalchemyIntegration"]


class SqlalchemyIntegration(Integration):
    name = "sqlalchemy"

    def patches(self) -> Sequence[Patch]:
        patches = [
            Patch("sqlalchemy.engine.base", "Connection._execute_context", self._execute),
            Patch("sqlalchemy.pool.base", "_ConnectionRecord._ConnectionRecord__connect", self._setup),
            Patch("sqlalchemy.engine.default", "DefaultDialect._do_ping_w_event", self._setup),
        ]
        if importlib.util.find_spec("opentelemetry.instrumentation.sqlalchemy") is not None:
            patches.append(Patch(_OTEL_ENGINE, "EngineTracer._before_cur_exec", _one_span_per_statement))
        return patches

    def _execute(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        with orm_layer(self.name):
            return wrapped(*args, **kwargs)

    def _setup(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        with orm_layer(self.name), connection_setup():
            return wrapped(*args, **kwargs)


_OTEL_ENGINE = "opentelemetry.instrumentation.sqlalchemy.engine"


def _one_span_per_statement(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``EngineTracer._before_cur_exec(conn, cursor, statement, params, context, executemany)``, skipped when
    another tracer of the same engine has already started this execution's span (see the module doc)."""
    context = args[4] if len(args) > 4 else kwargs.get("context")
    span = getattr(context, "_otel_span", None)
    if span is not None and getattr(span, "end_time", 1) is None:
        statement = args[2] if len(args) > 2 else kwargs.get("statement")
        params = args[3] if len(args) > 3 else kwargs.get("params")
        return statement, params
    return wrapped(*args, **kwargs)


INTEGRATION = SqlalchemyIntegration
