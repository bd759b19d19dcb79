"""psycopg 3 (sync): record at the cursor, replay with a connection that opens nothing.

Record wraps ``Cursor.execute`` / ``executemany`` (OpenTelemetry's traced cursor classes call them through
``super()``, so its span is open around ours). psycopg keeps a client-side cursor's whole result in memory, so
the rows are read for the cassette without moving the app's cursor: with a transformer of the cursor's own
adapters, as tuples, before any row factory. Replay wraps ``psycopg.connect`` / ``Connection.connect`` and
returns a connection whose cursors answer from the cassette and build the app's rows with its row factory
(``tuple_row``, ``dict_row``, ``namedtuple_row``, ``class_row``, ... read the names from the result as they do
from a real one). Connecting records the server version and parameters as connection set-up, so the replayed
connection's ``info`` reports them.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.rows
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from psycopg import sql
from psycopg.adapt import AdaptersMap, Transformer
from psycopg.pq import DiagnosticField, ExecStatus, TransactionStatus
from psycopg.types.json import Json, Jsonb

from timetracer_otel._context import connection_setup
from timetracer_otel.cassette.model import CallRequest, Interaction
from timetracer_otel.cassette.values import from_json_value
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._dbapi import (
    ReplayedCursor,
    ResultSet,
    SqlCall,
    SqlRequest,
    copy_parameters,
    replay_sql,
    result_value,
)
from timetracer_otel.integrations._http import recorded_exception
from timetracer_otel.integrations._sql import SQL, sql_mocked
from timetracer_otel.record.recording import DataCall, current_recording
from timetracer_otel.replay.guard import live_call
from timetracer_otel.replay.session import replay_call

__all__ = ["PsycopgIntegration"]

logger = logging.getLogger("timetracer")

LIBRARY = "psycopg"
#: The pseudo-statement a connection's set-up is recorded under (with method ``connect``: never a real query).
CONNECT = "connect"
#: The method a server-side (named) cursor's statement is recorded under: one interaction per cursor.
CURSOR = "cursor"
_SERVER_CURSOR = "psycopg._server_cursor_base"
_PARAMETERS = ("server_version", "server_encoding", "client_encoding", "TimeZone", "DateStyle", "IntervalStyle",
               "standard_conforming_strings", "integer_datetimes", "application_name", "is_superuser",
               "session_authorization")


# -- the one description of a call ----------------------------------------------------------------------------


def _statement(query: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    if isinstance(query, sql.Composable):
        return query.as_string(None)
    return str(query)


def _parameter(value: Any) -> Any:
    """psycopg's JSON wrappers are kept as the value they wrap."""
    return value.obj if isinstance(value, Json | Jsonb) else value


def _parameters(params: Any) -> Any:
    if isinstance(params, dict):
        return {key: _parameter(value) for key, value in params.items()}
    if isinstance(params, list | tuple):
        return [_parameter(value) for value in params]
    return copy_parameters(params)


def _request(query: Any, params: Any, method: str | None, dbname: str | None) -> SqlRequest:
    parameters = [_parameters(item) for item in params] if method == "executemany" else _parameters(params)
    return SqlRequest(_statement(query), parameters, method, dbname)


def _error_details(error: BaseException) -> Any:
    diag = getattr(error, "diag", None)
    if diag is None:
        return None
    fields = {field.name.lower(): getattr(diag, field.name.lower(), None) for field in DiagnosticField}
    return {name: value for name, value in fields.items() if value is not None} or None


# -- record ---------------------------------------------------------------------------------------------------


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


# -- replay ---------------------------------------------------------------------------------------------------


class _ReplayedResult:
    """The parts of a ``PGresult`` that psycopg's row factories read (names, field count, status)."""

    def __init__(self, description: list[list[Any]], rowcount: int, status: str | None) -> None:
        self._names = [str(field[0]).encode() for field in description]
        self._types = [field[1] for field in description]
        self.nfields = len(description)
        self.ntuples = max(rowcount, 0)
        self.status = ExecStatus.TUPLES_OK
        self.command_status = status.encode() if status else None

    def fname(self, index: int) -> bytes:
        return self._names[index]

    def ftype(self, index: int) -> int:
        return int(self._types[index] or 0)

    def __bool__(self) -> bool:
        return True


class _ReplayedCursor(ReplayedCursor):
    _encoding = "utf-8"

    def __init__(self, connection: _ReplayedConnection, row_factory: Any = None) -> None:
        super().__init__(connection)
        self._row_factory = row_factory or connection.row_factory
        self._maker: Any = None
        self.pgresult: _ReplayedResult | None = None
        self.statusmessage: str | None = None
        self.adapters = AdaptersMap(connection.adapters)
        self._executed = False

    @property
    def row_factory(self) -> Any:
        return self._row_factory

    @row_factory.setter
    def row_factory(self, row_factory: Any) -> None:
        self._row_factory = row_factory
        self._maker = None

    @property
    def rownumber(self) -> int | None:
        return self._pos if self.pgresult is not None else None

    def _selected(self) -> None:
        current = self._sets[self._index]
        self.statusmessage = current.status
        description = current.description
        self.pgresult = None if description is None else _ReplayedResult(description, len(current.rows), current.status)
        self._maker = None

    def _make_row(self, values: tuple[Any, ...]) -> Any:
        if self._maker is None:
            self._maker = self._row_factory(self)
        return self._maker(values)

    def _no_result(self) -> list[Any]:
        if self.closed:
            raise psycopg.InterfaceError("the cursor is closed")
        if not self._executed:
            raise psycopg.ProgrammingError("no result available")
        raise psycopg.ProgrammingError(f"the last operation didn't produce a result (command status: "
                                       f"{self.statusmessage})")

    def fetchone(self) -> Any:
        self._check()
        return super().fetchone()

    def fetchmany(self, size: int | None = 0) -> list[Any]:
        self._check()
        return super().fetchmany(size or self.arraysize)

    def fetchall(self) -> list[Any]:
        self._check()
        return super().fetchall()

    def _check(self) -> None:
        if self.closed or not self._executed:
            self._no_result()

    def scroll(self, value: int, mode: str = "relative") -> None:
        self._check()
        position = self._pos + value if mode == "relative" else value
        if mode not in ("relative", "absolute"):
            raise ValueError(f"bad mode: {mode}. It should be 'relative' or 'absolute'")
        if not 0 <= position < len(self._rows):
            raise IndexError("position out of bound")
        self._pos = position

    def results(self) -> Iterator[_ReplayedCursor]:
        if self._sets:
            while True:
                yield self
                if not self.nextset():
                    break

    def set_result(self, index: int) -> _ReplayedCursor:
        if not -len(self._sets) <= index < len(self._sets):
            raise IndexError(f"index {index} out of range: {len(self._sets)} result(s) available")
        self._select(index % len(self._sets))
        return self

    def execute(self, query: Any, params: Any = None, *, prepare: Any = None, binary: Any = None) -> _ReplayedCursor:
        self._run(_request(query, params, None, self.connection.info.dbname))
        return self

    def executemany(self, query: Any, params_seq: Any, *, returning: bool = False) -> None:
        self._run(_request(query, list(params_seq), "executemany", self.connection.info.dbname))

    def _run(self, request: SqlRequest) -> None:
        if self.closed:
            raise psycopg.InterfaceError("the cursor is closed")
        connection: _ReplayedConnection = self.connection
        connection._check()
        interaction = replay_sql(request)
        self._executed = True
        if interaction.error is not None:
            self._sets = []
            connection._failed()
            raise _replayed_error(interaction)
        self._load(interaction)
        connection._ran()


class _ReplayedServerCursor(_ReplayedCursor):
    """A named cursor: its statement is one interaction (method ``cursor``) holding the rows the recording
    fetched; fetches are served from them, in any page sizes, and one reaching past them is a mismatch unless
    the recording reached the end."""

    def __init__(self, connection: _ReplayedConnection, name: str, row_factory: Any, scrollable: Any,
                 withhold: bool) -> None:
        super().__init__(connection, row_factory)
        self.name = name
        self.scrollable = scrollable
        self.withhold = withhold
        self.itersize = 100
        self._complete = True

    def execute(self, query: Any, params: Any = None, *, binary: Any = None, **kwargs: Any) -> _ReplayedCursor:
        if kwargs:
            raise TypeError(f"keyword not supported: {next(iter(kwargs))}")
        self._run(_request(query, params, CURSOR, self.connection.info.dbname))
        return self

    def executemany(self, query: Any, params_seq: Any, *, returning: bool = True) -> None:
        raise psycopg.NotSupportedError("executemany not supported on server-side cursors")

    def _selected(self) -> None:
        super()._selected()
        self._complete = self._sets[self._index].complete is not False

    def _reach(self, count: int | None) -> None:
        """Fail as a mismatch when the fetch needs rows the recording never fetched."""
        if self._complete:
            return
        end = len(self._rows) + 1 if count is None else self._pos + count
        if end > len(self._rows):
            raise ReplayMismatchError(
                f"psycopg server-side cursor {self.name!r}",
                f"the recording fetched only {len(self._rows)} rows from it and not its end; this fetch needs "
                f"{'all the rows' if count is None else f'rows up to {end}'}")

    def fetchone(self) -> Any:
        self._check()
        self._reach(1)
        return super().fetchone()

    def fetchmany(self, size: int | None = 0) -> list[Any]:
        self._check()
        self._reach(size or self.arraysize)
        return super().fetchmany(size)

    def fetchall(self) -> list[Any]:
        self._check()
        self._reach(None)
        return super().fetchall()

    def scroll(self, value: int, mode: str = "relative") -> None:
        """PostgreSQL reports no cursor out of bounds: a fetch there gives no rows (or is a mismatch)."""
        self._check()
        if mode not in ("relative", "absolute"):
            raise ValueError(f"bad mode: {mode}. It should be 'relative' or 'absolute'")
        self._pos = max(self._pos + value if mode == "relative" else value, 0)


class _ReplayedInfo:
    """``connection.info`` of a replayed connection: what was recorded when the connection was opened."""

    def __init__(self, params: dict[str, Any], facts: dict[str, Any]) -> None:
        self.dbname = str(params.get("dbname") or params.get("user") or "")
        self.user = str(params.get("user") or "")
        self.host = str(params.get("host") or "")
        self.hostaddr = self.host
        self.port = int(params.get("port") or 5432)
        self.password = None
        self.options = str(params.get("options") or "")
        self.server_version = int(facts.get("server_version") or 150000)
        self.backend_pid = int(facts.get("backend_pid") or 0)
        self.encoding = str(facts.get("encoding") or "utf-8")
        self._parameters: dict[str, Any] = dict(facts.get("parameters") or {})
        self.transaction_status = TransactionStatus.IDLE
        self.pipeline_status = 0
        self.vendor = "PostgreSQL"
        self.timezone = None

    def parameter_status(self, name: str) -> str | None:
        value = self._parameters.get(name)
        return None if value is None else str(value)

    def get_parameters(self) -> dict[str, str]:
        return {"dbname": self.dbname, "user": self.user, "host": self.host, "port": str(self.port)}


class _ReplayedConnection:
    """What ``psycopg.connect`` returns in replay: opens nothing; its cursors answer from the cassette."""

    def __init__(self, params: dict[str, Any], facts: dict[str, Any], kwargs: dict[str, Any]) -> None:
        context = kwargs.get("context")
        self.adapters = AdaptersMap(context.adapters if context is not None else psycopg.adapters)
        self.info = _ReplayedInfo(params, facts)
        self.autocommit = bool(kwargs.get("autocommit", False))
        self.row_factory: Any = kwargs.get("row_factory") or psycopg.rows.tuple_row
        self.cursor_factory: Any = kwargs.get("cursor_factory")
        self.prepare_threshold = kwargs.get("prepare_threshold", 5)
        self.isolation_level: Any = None
        self.read_only: Any = None
        self.deferrable: Any = None
        self.closed = False
        self.broken = False
        self.pgconn = None

    # -- transaction state, as psycopg reports it --------------------------------------------------------------

    def _check(self) -> None:
        if self.closed:
            raise psycopg.OperationalError("the connection is closed")

    def _ran(self) -> None:
        if not self.autocommit and self.info.transaction_status is TransactionStatus.IDLE:
            self.info.transaction_status = TransactionStatus.INTRANS

    def _failed(self) -> None:
        if not self.autocommit:
            self.info.transaction_status = TransactionStatus.INERROR

    def commit(self) -> None:
        self._check()
        self.info.transaction_status = TransactionStatus.IDLE

    def rollback(self) -> None:
        self._check()
        self.info.transaction_status = TransactionStatus.IDLE

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> _ReplayedConnection:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if not self.closed:
            if exc_type is None:
                self.commit()
            else:
                self.rollback()
            self.close()

    @contextlib.contextmanager
    def transaction(self, savepoint_name: str | None = None, force_rollback: bool = False) -> Iterator[Any]:
        """No statements to replay (psycopg sends BEGIN / SAVEPOINT itself, not through a cursor), but the
        transaction status moves as psycopg's does: an outer block begins and ends a transaction, a nested one
        (a savepoint) leaves it open and recovers it from an error."""
        self._check()
        outer = self.info.transaction_status is TransactionStatus.IDLE
        self.info.transaction_status = TransactionStatus.INTRANS
        try:
            yield self
        except psycopg.Rollback:
            pass  # psycopg swallows its own Rollback exception: the block is rolled back
        finally:
            self.info.transaction_status = TransactionStatus.IDLE if outer else TransactionStatus.INTRANS

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[Any]:
        yield self

    # -- cursors -----------------------------------------------------------------------------------------------

    def cursor(self, name: str = "", *, row_factory: Any = None, binary: Any = None, scrollable: Any = None,
               withhold: bool = False) -> _ReplayedCursor:
        self._check()
        if name:
            return _ReplayedServerCursor(self, name, row_factory, scrollable, withhold)
        return _ReplayedCursor(self, row_factory)

    def execute(self, query: Any, params: Any = None, *, prepare: Any = None, binary: bool = False) -> _ReplayedCursor:
        return self.cursor().execute(query, params)

    # -- settings the app may change -------------------------------------------------------------------------

    def set_autocommit(self, value: bool) -> None:
        self.autocommit = value

    def set_isolation_level(self, value: Any) -> None:
        self.isolation_level = value

    def set_read_only(self, value: Any) -> None:
        self.read_only = value

    def set_deferrable(self, value: Any) -> None:
        self.deferrable = value

    def _accept(self, *args: Any, **kwargs: Any) -> None:
        """Notice and notify handlers: a replayed server sends neither."""

    add_notice_handler = remove_notice_handler = add_notify_handler = remove_notify_handler = _accept
    cancel = cancel_safe = _accept

    def fileno(self) -> int:
        raise psycopg.NotSupportedError("a replayed connection has no socket")


class _ReplayedAsyncCursor:
    """What a replayed ``AsyncConnection`` hands out: a replayed cursor (client- or server-side) whose I/O
    methods are coroutines. Everything else (``description``, ``rowcount``, ``row_factory``, ...) is the
    wrapped cursor's."""

    __slots__ = ("_sync", "connection")

    def __init__(self, connection: _ReplayedAsyncConnection, cursor: _ReplayedCursor) -> None:
        object.__setattr__(self, "_sync", cursor)
        object.__setattr__(self, "connection", connection)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sync, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._sync, name, value)

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _ReplayedAsyncCursor:
        self._sync.execute(query, params, **kwargs)
        return self

    async def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> None:
        self._sync.executemany(query, params_seq, **kwargs)

    async def fetchone(self) -> Any:
        return self._sync.fetchone()

    async def fetchmany(self, size: int = 0) -> list[Any]:
        rows: list[Any] = self._sync.fetchmany(size)
        return rows

    async def fetchall(self) -> list[Any]:
        rows: list[Any] = self._sync.fetchall()
        return rows

    async def scroll(self, value: int, mode: str = "relative") -> None:
        self._sync.scroll(value, mode)

    async def set_result(self, index: int) -> _ReplayedAsyncCursor:
        self._sync.set_result(index)
        return self

    async def results(self) -> AsyncIterator[_ReplayedAsyncCursor]:
        for _ in self._sync.results():
            yield self

    def __aiter__(self) -> _ReplayedAsyncCursor:
        return self

    async def __anext__(self) -> Any:
        row = self._sync.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row

    async def close(self) -> None:
        self._sync.close()

    def _close(self) -> None:
        self._sync.close()

    async def __aenter__(self) -> _ReplayedAsyncCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._sync.close()


class _ReplayedAsyncConnection:
    """What ``psycopg.AsyncConnection.connect`` returns in replay: the replayed connection, with coroutines."""

    __slots__ = ("_sync",)

    def __init__(self, connection: _ReplayedConnection) -> None:
        object.__setattr__(self, "_sync", connection)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sync, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._sync, name, value)

    def cursor(self, name: str = "", **kwargs: Any) -> _ReplayedAsyncCursor:
        return _ReplayedAsyncCursor(self, self._sync.cursor(name, **kwargs))

    async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _ReplayedAsyncCursor:
        return await self.cursor().execute(query, params)

    async def commit(self) -> None:
        self._sync.commit()

    async def rollback(self) -> None:
        self._sync.rollback()

    async def close(self) -> None:
        self._sync.close()

    async def __aenter__(self) -> _ReplayedAsyncConnection:
        return self

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        self._sync.__exit__(exc_type, *exc)

    @contextlib.asynccontextmanager
    async def transaction(self, savepoint_name: str | None = None,
                          force_rollback: bool = False) -> AsyncIterator[Any]:
        with self._sync.transaction(savepoint_name, force_rollback):
            yield self

    @contextlib.asynccontextmanager
    async def pipeline(self) -> AsyncIterator[Any]:
        yield self

    async def set_autocommit(self, value: bool) -> None:
        self._sync.set_autocommit(value)

    async def set_isolation_level(self, value: Any) -> None:
        self._sync.set_isolation_level(value)

    async def set_read_only(self, value: Any) -> None:
        self._sync.set_read_only(value)

    async def set_deferrable(self, value: Any) -> None:
        self._sync.set_deferrable(value)

    async def cancel_safe(self, *args: Any, **kwargs: Any) -> None:
        """A replayed server runs nothing to cancel."""


def _replayed_error(interaction: Interaction) -> BaseException:
    error = interaction.error
    assert error is not None
    kind = recorded_exception(error, interaction.request, ("psycopg",), psycopg.DatabaseError)  # type: ignore[arg-type]
    info: dict[int, bytes | None] | None = None
    if isinstance(error.details, dict):
        info = {
            int(field): str(error.details[field.name.lower()]).encode() for field in DiagnosticField
                if error.details.get(field.name.lower()) is not None}
    try:
        return kind(error.message, info=info) if issubclass(kind, psycopg.Error) else kind(error.message)
    except TypeError:
        return psycopg.DatabaseError(error.message)


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
                return self._replayed_connection(args, kwargs)
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
                return self._replayed_async_connection(args, kwargs)
            return _live(wrapped, args, kwargs)
        return self._record_async_connection(wrapped(*args, **kwargs))

    async def _record_async_connection(self, connecting: Any) -> Any:
        connection = await connecting
        self._record_connection(connection)
        return connection

    async def _replayed_async_connection(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return _ReplayedAsyncConnection(self._replayed_connection(args, kwargs))

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

    @staticmethod
    def _replayed_connection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _ReplayedConnection:
        conninfo = args[0] if args else kwargs.get("conninfo", "")
        connection_kwargs = {k: v for k, v in kwargs.items()
                             if k not in ("conninfo", "autocommit", "prepare_threshold", "context", "row_factory",
                                          "cursor_factory")}
        params = psycopg.conninfo.conninfo_to_dict(conninfo, **connection_kwargs)
        facts: dict[str, Any] = {}
        with connection_setup():
            try:
                interaction = replay_call(CallRequest(CONNECT, CONNECT, None, None), SQL)
            except ReplayMismatchError:
                logger.debug("timetracer: no recorded psycopg connection; replaying with default server facts")
            else:
                if interaction.error is not None:
                    raise _replayed_error(interaction)
                response = interaction.response
                facts = from_json_value(getattr(response, "result", None)) or {}
        return _ReplayedConnection(params, facts, kwargs)

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
        try:
            call = SqlCall(LIBRARY, _request(query, params, method, instance.connection.info.dbname), _error_details)
        except Exception:
            logger.exception("timetracer: could not record a psycopg call")
            return wrapped(*args, **kwargs)
        recording.add_call(call)
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
        try:
            call = SqlCall(LIBRARY, _request(query, params, CURSOR, instance.connection.info.dbname), _error_details)
        except Exception:
            logger.exception("timetracer: could not record a psycopg server-side cursor")
            return wrapped(*args, **kwargs)
        recording.add_call(call)
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
        if isinstance(conn, _ReplayedAsyncConnection):
            return _ready(self._type_info_fetch(wrapped, instance, (conn._sync, *args[1:]), kwargs))
        if not isinstance(conn, _ReplayedConnection):
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
