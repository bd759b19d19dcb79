"""psycopg 3 (sync): record at the cursor, replay with a connection that opens nothing.

Record wraps ``Cursor.execute`` / ``executemany`` (OpenTelemetry's traced cursor classes call them through
``super()``, so its span is open around ours). psycopg keeps a client-side cursor's whole result in memory, so
the rows are read for the cassette without moving the app's cursor: with a transformer of the cursor's own
adapters, as tuples, before any row factory. Replay wraps ``psycopg.connect`` / ``Connection.connect`` and
returns a connection whose cursors answer from the cassette and build the app's rows with its row factory
(``tuple_row``, ``dict_row``, ``namedtuple_row``, ``class_row``, ... read the names from the result as they do
from a real one). Connecting records the server version and parameters as connection set-up, so the replayed
connection's ``info`` reports them.

This module holds the integration and the record path; the replay stand-ins are in ``_psycopg_replay.py``, the
request both modes build for a call in ``_psycopg_call.py``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Generator, Sequence
from typing import Any

import psycopg
import psycopg.rows
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from psycopg import sql
from psycopg.adapt import Transformer
from psycopg.pq import DiagnosticField, ExecStatus

from timetracer_otel._context import connection_setup
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._dbapi import ResultSet, SqlCall, result_value
from timetracer_otel.integrations._psycopg_call import CONNECT, CURSOR, sql_request
from timetracer_otel.integrations._psycopg_replay import (
    ReplayedAsyncConnection,
    ReplayedConnection,
    replayed_async_connection,
    replayed_connection,
)
from timetracer_otel.integrations._sql import SQL, sql_mocked
from timetracer_otel.record.recording import DataCall, RequestRecording, current_recording
from timetracer_otel.replay.guard import live_call

__all__ = ["PsycopgIntegration"]

logger = logging.getLogger("timetracer")

LIBRARY = "psycopg"
_SERVER_CURSOR = "psycopg._server_cursor_base"
_PARAMETERS = ("server_version", "server_encoding", "client_encoding", "TimeZone", "DateStyle", "IntervalStyle",
               "standard_conforming_strings", "integer_datetimes", "application_name", "is_superuser",
               "session_authorization")


# -- record ---------------------------------------------------------------------------------------------------


def _error_details(error: BaseException) -> Any:
    diag = getattr(error, "diag", None)
    if diag is None:
        return None
    fields = {field.name.lower(): getattr(diag, field.name.lower(), None) for field in DiagnosticField}
    return {name: value for name, value in fields.items() if value is not None} or None


class _ResultView:
    """What ``psycopg.Column`` reads from a cursor, for a result set other than the current one."""

    def __init__(self, cursor: Any, result: Any) -> None:
        self.pgresult = result
        self._encoding = cursor._encoding
        self.adapters = cursor.adapters


def _result_sets(cursor: Any) -> list[ResultSet]:
    """Every result set of the cursor's last execute, without moving the cursor (psycopg keeps them all)."""
    results = list(getattr(cursor, "_results", ()) or ())
    if not results:
        return [ResultSet(None, [], cursor.rowcount, status=cursor.statusmessage)]
    sets = []
    transformer = Transformer.from_context(cursor)
    for index, result in enumerate(results):
        tuples = result.status == ExecStatus.TUPLES_OK or (result.status == ExecStatus.COMMAND_OK and result.nfields)
        description = None
        rows: list[list[Any]] = []
        if tuples:
            view = _ResultView(cursor, result)
            description = [list(psycopg.Column(view, i)) for i in range(result.nfields)]  # type: ignore[arg-type]
            transformer.set_pgresult(result)
            rows = [list(row) for row in transformer.load_rows(0, result.ntuples, tuple)]
        if index == 0:
            rowcount = cursor.rowcount
        elif result.status == ExecStatus.TUPLES_OK:
            rowcount = result.ntuples
        else:
            rowcount = result.command_tuples if result.command_tuples is not None else -1
        status = result.command_status.decode("utf-8", "replace") if result.command_status else None
        sets.append(ResultSet(description, rows, rowcount, status=status))
    return sets


def _connection_facts(connection: Any) -> dict[str, Any]:
    info = connection.info
    return {
        "server_version": info.server_version,
        "backend_pid": info.backend_pid,
        "encoding": info.encoding,
        "parameters": {name: info.parameter_status(name) for name in _PARAMETERS},
    }


def _added_call(recording: RequestRecording, cursor: Any, query: Any, params: Any, method: str | None, *,
                what: str) -> SqlCall | None:
    """The call of an execute (``what``, for the log), added to the recording; None when it cannot be described."""
    try:
        call = SqlCall(LIBRARY, sql_request(query, params, method, cursor.connection.info.dbname), _error_details)
    except Exception:
        logger.exception("timetracer: could not record a psycopg %s", what)
        return None
    recording.add_call(call)
    return call


def _succeeded(call: SqlCall, cursor: Any) -> None:
    try:
        call.succeeded(result_value(_result_sets(cursor)))
    except Exception:
        logger.exception("timetracer: could not record a psycopg result")
        call.succeeded(None)


async def _recorded_async(call: SqlCall, cursor: Any, wrapped: Any, args: Any, kwargs: Any) -> Any:
    """An ``AsyncCursor.execute`` recorded as ``Cursor.execute`` is: the call added before, its result after."""
    try:
        result = await wrapped(*args, **kwargs)
    except Exception as exc:
        call.failed(exc)
        raise
    _succeeded(call, cursor)
    return result


async def _live(wrapped: Any, args: Any, kwargs: Any) -> Any:
    """A live (not mocked) async call in replay: the network guard lets it through while it runs."""
    with live_call():
        return await wrapped(*args, **kwargs)


async def _ready(value: Any) -> Any:
    return value


class _NamedCursor:
    """A server-side cursor being recorded: its rows by position, as its FETCHes bring them.

    psycopg reads a named cursor page by page (``FETCH FORWARD n``), so its recorded result holds the rows the
    app fetched, in order, and ``complete`` once a fetch reached the end. Each fetch publishes a new result
    value (the writer reads ``call.result`` whenever the cassette is written).
    """

    def __init__(self, call: SqlCall, first: ResultSet) -> None:
        self.call = call
        self.description = first.description
        self.rowcount = first.rowcount
        self.rows: list[list[Any]] = []
        self.position = 0  # the server's: psycopg's own ``_pos`` lags behind while iterating a page
        self.complete = False
        self._publish()

    def _publish(self) -> None:
        self.call.succeeded(ResultSet(self.description, list(self.rows), self.rowcount,
                                      complete=self.complete).value())

    def fetching(self, cursor: Any, size: int | None, fetch: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        rows = yield from fetch
        try:
            self._fetched(cursor, size)
        except Exception:
            logger.exception("timetracer: could not record a psycopg server-side cursor's rows")
        return rows

    def _fetched(self, cursor: Any, size: int | None) -> None:
        result = cursor.pgresult
        transformer = Transformer.from_context(cursor)
        transformer.set_pgresult(result)
        fetched = [list(row) for row in transformer.load_rows(0, result.ntuples, tuple)]
        start = self.position
        if start > len(self.rows):
            logger.debug("timetracer: rows %d.. of psycopg cursor skipped by a scroll are not recorded",
                         len(self.rows))
        else:
            self.rows[start:start + len(fetched)] = fetched
        self.position = start + len(fetched)
        if size is None or len(fetched) < size:
            self.complete = True
        self._publish()

    def moving(self, value: int, mode: str, move: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        result = yield from move
        self.position = self.position + value if mode == "relative" else value
        return result


#: The server-side cursors being recorded (a cursor's ``__slots__`` leave no room for ours).
_NAMED: weakref.WeakKeyDictionary[Any, _NamedCursor] = weakref.WeakKeyDictionary()


def _recorded_declare(call: SqlCall, cursor: Any, declare: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    try:
        result = yield from declare
    except Exception as exc:
        call.failed(exc)
        raise
    try:
        _NAMED[cursor] = _NamedCursor(call, _result_sets(cursor)[0])
    except Exception:
        logger.exception("timetracer: could not record a psycopg server-side cursor")
        call.succeeded(None)
    return result


# -- the integration -------------------------------------------------------------------------------------------


class PsycopgIntegration(Integration):
    name = "psycopg"

    def patches(self) -> Sequence[Patch]:
        return (
            Patch("psycopg", "connect", self._connect),
            Patch("psycopg", "Connection.connect", self._connect),
            Patch("psycopg", "AsyncConnection.connect", self._connect_async),
            Patch("psycopg", "Cursor.execute", self._execute),
            Patch("psycopg", "Cursor.executemany", self._executemany),
            Patch("psycopg", "AsyncCursor.execute", self._execute_async),
            Patch("psycopg", "AsyncCursor.executemany", self._executemany_async),
            # Server-side cursors (sync and async share these generators): DECLARE, FETCH and MOVE.
            Patch(_SERVER_CURSOR, "ServerCursorMixin._declare_gen", self._declare),
            Patch(_SERVER_CURSOR, "ServerCursorMixin._fetch_gen", self._fetch),
            Patch(_SERVER_CURSOR, "ServerCursorMixin._scroll_gen", self._scroll),
            Patch("psycopg.types", "TypeInfo.fetch", self._type_info_fetch),
        )

    # -- connect ------------------------------------------------------------------------------------------------

    def _connect(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        if self.runtime.replaying:
            if sql_mocked(self):
                return replayed_connection(args, kwargs)
            with live_call():
                return wrapped(*args, **kwargs)
        connection = wrapped(*args, **kwargs)
        self._record_connection(connection)
        return connection

    def _connect_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """``AsyncConnection.connect``: the same as ``_connect``, as a coroutine."""
        if not self.active or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        if self.runtime.replaying:
            if sql_mocked(self):
                return replayed_async_connection(args, kwargs)
            return _live(wrapped, args, kwargs)
        return self._record_async_connection(wrapped(*args, **kwargs))

    async def _record_async_connection(self, connecting: Any) -> Any:
        connection = await connecting
        self._record_connection(connection)
        return connection

    @staticmethod
    def _record_connection(connection: Any) -> None:
        with connection_setup():
            recording = current_recording()
            if recording is not None:
                try:
                    call = DataCall(SQL, LIBRARY, CONNECT, None, method=CONNECT, target=connection.info.dbname)
                    recording.add_call(call)
                    call.succeeded(_connection_facts(connection))
                except Exception:
                    logger.exception("timetracer: could not record a psycopg connection's parameters")

    # -- execute (client-side cursors) ----------------------------------------------------------------------------

    def _execute(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._call(wrapped, instance, args, kwargs, None)

    def _executemany(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._call(wrapped, instance, args, kwargs, "executemany")

    def _execute_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._call(wrapped, instance, args, kwargs, None, asynchronous=True)

    def _executemany_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._call(wrapped, instance, args, kwargs, "executemany", asynchronous=True)

    def _call(self, wrapped: Any, instance: Any, args: Any, kwargs: Any, method: str | None, *,
              asynchronous: bool = False) -> Any:
        """Record one execute; for an ``AsyncCursor`` (``asynchronous``) the same, around the coroutine."""
        if not self.active or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        if self.runtime.replaying:  # a real connection in replay is a live one
            if asynchronous:
                return _live(wrapped, args, kwargs)
            with live_call():
                return wrapped(*args, **kwargs)
        recording = current_recording()
        if recording is None:
            return wrapped(*args, **kwargs)
        query = args[0] if args else kwargs.get("query")
        if method == "executemany":
            params = list(args[1] if len(args) > 1 else kwargs.get("params_seq", ()))
            args = (query, params, *args[2:])
            kwargs = {k: v for k, v in kwargs.items() if k not in ("query", "params_seq")}
        else:
            params = args[1] if len(args) > 1 else kwargs.get("params")
        call = _added_call(recording, instance, query, params, method, what="call")
        if call is None:
            return wrapped(*args, **kwargs)
        if asynchronous:
            return _recorded_async(call, instance, wrapped, args, kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except Exception as exc:
            call.failed(exc)
            raise
        _succeeded(call, instance)
        return result

    # -- server-side cursors ------------------------------------------------------------------------------------

    def _declare(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """``_declare_gen(query, params, binary)``: the named cursor's ``execute``, recorded as one interaction
        (method ``cursor``) whose result grows with each fetch (see ``_fetch``)."""
        _NAMED.pop(instance, None)
        if not self.active or not is_instrumentation_enabled() or self.runtime.replaying:
            return wrapped(*args, **kwargs)
        recording = current_recording()
        if recording is None:
            return wrapped(*args, **kwargs)
        query = args[0] if args else kwargs.get("query")
        params = args[1] if len(args) > 1 else kwargs.get("params")
        call = _added_call(recording, instance, query, params, CURSOR, what="server-side cursor")
        if call is None:
            return wrapped(*args, **kwargs)
        return _recorded_declare(call, instance, wrapped(*args, **kwargs))

    def _fetch(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        named = _NAMED.get(instance) if self.active else None
        if named is None:
            return wrapped(*args, **kwargs)
        size = args[0] if args else kwargs.get("num")
        return named.fetching(instance, size, wrapped(*args, **kwargs))

    def _scroll(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        named = _NAMED.get(instance) if self.active else None
        if named is None:
            return wrapped(*args, **kwargs)
        value = args[0] if args else kwargs["value"]
        mode = args[1] if len(args) > 1 else kwargs.get("mode", "relative")
        return named.moving(value, mode, wrapped(*args, **kwargs))

    # -- type introspection on a replayed connection ----------------------------------------------------------

    def _type_info_fetch(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """``TypeInfo.fetch`` accepts only a real connection; on a replayed one, run its query on our cursor."""
        conn = args[0] if args else kwargs.get("conn")
        if isinstance(conn, ReplayedAsyncConnection):
            return _ready(self._type_info_fetch(wrapped, instance, (conn._sync, *args[1:]), kwargs))
        if not isinstance(conn, ReplayedConnection):
            return wrapped(*args, **kwargs)
        cls = instance
        name = args[1] if len(args) > 1 else kwargs["name"]
        if isinstance(name, sql.Composable):
            name = name.as_string(None)
        try:
            cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
            cursor.execute(cls._get_info_query(conn), {"name": name})
            records = cursor.fetchall()
        except psycopg.errors.UndefinedObject:
            return None
        return cls._from_records(name, records)


INTEGRATION = PsycopgIntegration
