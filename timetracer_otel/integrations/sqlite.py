"""sqlite3 (and aiosqlite, which runs sqlite3 in a thread): record and replay at ``sqlite3.connect``.

sqlite3's Connection and Cursor are C types whose methods cannot be patched, so ``sqlite3.connect`` (and
``sqlite3.dbapi2.connect``, which SQLAlchemy calls) is wrapped instead. Recording, it returns a proxy of the real
connection whose cursors record each execute: the rows are fetched right away, kept, and served to the app from
there (through the app's row factory, as sqlite3 would). Replaying, it returns a connection that opens nothing
and answers every execute from the cassette. OpenTelemetry's sqlite3 instrumentation wraps ``connect`` on top
and proxies whichever connection comes back, so its spans appear in both modes.

aiosqlite runs each call on its connection's own thread, which does not see the calling task's context (and so
neither the recording nor the replay session): each queued call is run in a copy of the caller's context.
"""

from __future__ import annotations

import _sqlite3
import contextlib
import contextvars
import functools
import importlib.util
import logging
import os
import sqlite3
from collections.abc import Sequence
from typing import Any

import wrapt
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from timetracer_otel.cassette.model import Interaction
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._dbapi import (
    BufferedRows,
    ReplayedCursor,
    ResultSet,
    SqlCall,
    SqlRequest,
    copy_parameters,
    replay_sql,
    result_value,
)
from timetracer_otel.integrations._http import recorded_exception
from timetracer_otel.integrations._sql import sql_mocked
from timetracer_otel.record.recording import current_recording
from timetracer_otel.replay.guard import live_call

__all__ = ["SqliteIntegration"]

logger = logging.getLogger("timetracer")

LIBRARY = "sqlite3"


def _request(statement: str, parameters: Any, method: str | None, database: str) -> SqlRequest:
    """The one description of a call, for both modes: ``method`` is None, ``executemany`` or ``executescript``."""
    return SqlRequest(statement, copy_parameters(parameters, many=method == "executemany"), method, database)


def _database_name(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    database = args[0] if args else kwargs.get("database", "")
    if isinstance(database, bytes):
        return database.decode("utf-8", "replace")
    return os.fspath(database) if isinstance(database, os.PathLike) else str(database)


def _error_details(error: BaseException) -> Any:
    code = getattr(error, "sqlite_errorcode", None)
    name = getattr(error, "sqlite_errorname", None)
    return None if code is None and name is None else {"sqlite_errorcode": code, "sqlite_errorname": name}


def _description(description: Any) -> list[list[Any]] | None:
    return None if description is None else [list(field) for field in description]


# -- record -------------------------------------------------------------------------------------------------


class _RecordingCursor(BufferedRows, wrapt.ObjectProxy):  # type: ignore[misc,type-arg]
    """A real cursor whose executes are recorded; after a recorded execute its rows are served from a buffer."""

    def __init__(self, cursor: sqlite3.Cursor, connection: _RecordingConnection) -> None:
        super().__init__(cursor)
        self._self_connection = connection
        self._self_rows: list[tuple[Any, ...]] | None = None
        self._self_pos = 0

    @property
    def connection(self) -> Any:
        return self._self_connection

    # A proxy keeps its own attributes as ``_self_*``: the buffer ``BufferedRows`` reads, once an execute filled it.

    @property
    def _rows(self) -> list[tuple[Any, ...]]:
        return self._self_rows or []

    @_rows.setter
    def _rows(self, rows: list[tuple[Any, ...]]) -> None:
        self._self_rows = rows

    @property
    def _pos(self) -> int:
        return self._self_pos

    @_pos.setter
    def _pos(self, pos: int) -> None:
        self._self_pos = pos

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self._self_connection._self_integration._record(self, sql, parameters, None)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:
        return self._self_connection._self_integration._record(self, sql, list(seq_of_parameters), "executemany")

    def executescript(self, sql_script: str, /) -> Any:
        return self._self_connection._self_integration._record(self, sql_script, None, "executescript")

    def _make_row(self, values: tuple[Any, ...]) -> Any:
        factory = self.__wrapped__.row_factory
        return values if factory is None else factory(self.__wrapped__, values)

    def fetchone(self) -> Any:
        if self._self_rows is None:
            return self.__wrapped__.fetchone()
        return self._next_row()

    def fetchmany(self, size: int | None = None) -> list[Any]:
        if self._self_rows is None:
            return self.__wrapped__.fetchmany(self.__wrapped__.arraysize if size is None else size)  # type: ignore[no-any-return]
        return self._next_rows(self.__wrapped__.arraysize if size is None else size)

    def fetchall(self) -> list[Any]:
        if self._self_rows is None:
            return self.__wrapped__.fetchall()  # type: ignore[no-any-return]
        return self._other_rows()


class _RecordingConnection(wrapt.ObjectProxy):  # type: ignore[misc,type-arg]
    """A real connection whose cursors (and execute shortcuts) record."""

    def __init__(self, connection: sqlite3.Connection, integration: SqliteIntegration, database: str) -> None:
        super().__init__(connection)
        self._self_integration = integration
        self._self_database = database

    def cursor(self, *args: Any, **kwargs: Any) -> _RecordingCursor:
        return _RecordingCursor(self.__wrapped__.cursor(*args, **kwargs), self)

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: str, /) -> Any:
        return self.cursor().executescript(sql_script)

    def __enter__(self) -> Any:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self.__wrapped__.__exit__(*exc)


# -- replay -------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _row_cursor(names: tuple[str, ...]) -> sqlite3.Cursor:
    """A real (in-memory) cursor whose description has these column names: ``sqlite3.Row`` only accepts a real
    cursor, and reads the names from its description."""
    cursor = _sqlite3.connect(":memory:", check_same_thread=False).cursor()
    columns = ", ".join('NULL AS "{}"'.format(name.replace('"', '""')) for name in names)
    cursor.execute(f"SELECT {columns}" if names else "SELECT NULL LIMIT 0")
    return cursor


class _ReplayedCursor(ReplayedCursor):
    def __init__(self, connection: _ReplayedConnection) -> None:
        super().__init__(connection)
        self.row_factory = connection.row_factory

    def _make_row(self, values: tuple[Any, ...]) -> Any:
        factory = self.row_factory
        if factory is None:
            return values
        if factory is sqlite3.Row:
            description = self.description or []
            return factory(_row_cursor(tuple(field[0] for field in description)), values)
        return factory(self, values)

    def execute(self, sql: str, parameters: Any = (), /) -> _ReplayedCursor:
        return self._run(sql, parameters, None)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _ReplayedCursor:
        return self._run(sql, list(seq_of_parameters), "executemany")

    def executescript(self, sql_script: str, /) -> _ReplayedCursor:
        return self._run(sql_script, None, "executescript")

    def _run(self, sql: str, parameters: Any, method: str | None) -> _ReplayedCursor:
        connection: _ReplayedConnection = self.connection
        if connection.closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        interaction = replay_sql(_request(sql, parameters, method, connection.database))
        if interaction.error is not None:
            raise _replayed_error(interaction)
        self._load(interaction)
        if self.description is None and method != "executescript":
            connection.total_changes += max(self.rowcount, 0)
        return self


class _ReplayedConnection:
    """What ``sqlite3.connect`` returns in replay: opens nothing, its cursors answer from the cassette."""

    def __init__(self, database: str, kwargs: dict[str, Any]) -> None:
        self.database = database
        self.row_factory: Any = None
        self.text_factory: Any = str
        self.isolation_level: str | None = kwargs.get("isolation_level", "")
        self.autocommit: Any = kwargs.get("autocommit", getattr(sqlite3, "LEGACY_TRANSACTION_CONTROL", -1))
        self.in_transaction = False
        self.total_changes = 0
        self.closed = False

    def cursor(self, factory: Any = None) -> _ReplayedCursor:
        return _ReplayedCursor(self)

    def execute(self, sql: str, parameters: Any = (), /) -> _ReplayedCursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _ReplayedCursor:
        return self.cursor().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: str, /) -> _ReplayedCursor:
        return self.cursor().executescript(sql_script)

    def commit(self) -> None:
        self.in_transaction = False

    def rollback(self) -> None:
        self.in_transaction = False

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> _ReplayedConnection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.in_transaction = False

    def _accept(self, *args: Any, **kwargs: Any) -> None:
        """Functions, collations, handlers and extensions are the app's own code: nothing to replay."""

    create_function = create_aggregate = create_window_function = create_collation = _accept
    set_authorizer = set_progress_handler = set_trace_callback = _accept
    enable_load_extension = load_extension = interrupt = _accept


def _replayed_error(interaction: Interaction) -> BaseException:
    error = interaction.error
    assert error is not None
    kind = recorded_exception(error, interaction.request, ("sqlite3",), sqlite3.DatabaseError)  # type: ignore[arg-type]
    try:
        exc = kind(error.message)
    except TypeError:
        exc = sqlite3.DatabaseError(error.message)
    if isinstance(error.details, dict):
        for name in ("sqlite_errorcode", "sqlite_errorname"):
            if error.details.get(name) is not None:
                with contextlib.suppress(AttributeError):
                    setattr(exc, name, error.details[name])
    return exc


# -- the integration -----------------------------------------------------------------------------------------


class SqliteIntegration(Integration):
    name = "sqlite"

    def patches(self) -> Sequence[Patch]:
        rows = [
            Patch("sqlite3", "connect", self._connect),
            Patch("sqlite3.dbapi2", "connect", self._connect),
        ]
        if importlib.util.find_spec("aiosqlite") is not None:
            rows += [
                Patch("aiosqlite.core", "Connection._execute", self._aiosqlite_execute),
                Patch("aiosqlite.core", "Connection._connect", self._aiosqlite_connect),
            ]
        return rows

    def _connect(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        database = _database_name(args, kwargs)
        if self.runtime.replaying:
            if sql_mocked(self):
                return _ReplayedConnection(database, kwargs)
            with live_call():
                return wrapped(*args, **kwargs)
        # Recording: every connection is a recording proxy, since it may serve requests later.
        return _RecordingConnection(wrapped(*args, **kwargs), self, database)

    # -- record ---------------------------------------------------------------------------------------------

    def _record(self, cursor: _RecordingCursor, sql: str, parameters: Any, method: str | None) -> Any:
        real: sqlite3.Cursor = cursor.__wrapped__
        if method == "executescript":
            run: Any = functools.partial(real.executescript, sql)
        else:
            run = functools.partial(real.executemany if method else real.execute, sql, parameters)
        cursor._self_rows = None
        recording = current_recording() if self.active and is_instrumentation_enabled() else None
        if recording is None:
            run()
            return cursor
        call = SqlCall(LIBRARY, _request(sql, parameters, method, cursor._self_connection._self_database),
                       _error_details)
        recording.add_call(call)
        try:
            run()
            factory = real.row_factory
            real.row_factory = None
            try:
                rows = real.fetchall()
            finally:
                real.row_factory = factory
        except Exception as exc:
            call.failed(exc)
            raise
        cursor._self_rows = rows
        cursor._self_pos = 0
        try:
            result = ResultSet(_description(real.description), [list(row) for row in rows], real.rowcount,
                               real.lastrowid)
            call.succeeded(result_value([result]))
        except Exception:
            logger.exception("timetracer: could not record a sqlite3 result")
            call.succeeded(None)
        return cursor

    # -- aiosqlite: carry the caller's context into the connection's thread -------------------------------

    def _aiosqlite_execute(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not args:
            return wrapped(*args, **kwargs)
        fn, *rest = args
        return wrapped(functools.partial(contextvars.copy_context().run, fn), *rest, **kwargs)

    async def _aiosqlite_connect(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        connector = getattr(instance, "_connector", None)
        if not self.active or connector is None or instance._connection is not None:
            return await wrapped(*args, **kwargs)
        instance._connector = functools.partial(contextvars.copy_context().run, connector)
        try:
            return await wrapped(*args, **kwargs)
        finally:
            instance._connector = connector


INTEGRATION = SqliteIntegration
