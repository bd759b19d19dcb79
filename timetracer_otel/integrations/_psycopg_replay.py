"""psycopg 3 in replay: a connection that opens nothing, whose cursors answer from the cassette.

``psycopg.connect`` / ``Connection.connect`` (and ``AsyncConnection.connect``) return these stand-ins when SQL is
mocked. Their cursors build the app's rows with its row factory (``tuple_row``, ``dict_row``,
``namedtuple_row``, ``class_row``, ... read the names from the result as they do from a real one); a named
cursor serves the rows its recording fetched. The connection's ``info`` reports the server version and
parameters recorded when the recording connected.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import psycopg.conninfo
import psycopg.rows
from psycopg.adapt import AdaptersMap
from psycopg.pq import DiagnosticField, ExecStatus, TransactionStatus

from timetracer_otel._context import connection_setup
from timetracer_otel.cassette.model import CallRequest, Interaction
from timetracer_otel.cassette.values import from_json_value
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.integrations._dbapi import ReplayedCursor, SqlRequest, replay_sql
from timetracer_otel.integrations._http import recorded_exception
from timetracer_otel.integrations._psycopg_call import CONNECT, CURSOR, sql_request
from timetracer_otel.integrations._sql import SQL
from timetracer_otel.replay.session import replay_call

__all__ = ["ReplayedAsyncConnection", "ReplayedConnection", "replayed_async_connection", "replayed_connection"]

logger = logging.getLogger("timetracer")


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

    def __init__(self, connection: ReplayedConnection, row_factory: Any = None) -> None:
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
        self._run(sql_request(query, params, None, self.connection.info.dbname))
        return self

    def executemany(self, query: Any, params_seq: Any, *, returning: bool = False) -> None:
        self._run(sql_request(query, list(params_seq), "executemany", self.connection.info.dbname))

    def _run(self, request: SqlRequest) -> None:
        if self.closed:
            raise psycopg.InterfaceError("the cursor is closed")
        connection: ReplayedConnection = self.connection
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

    def __init__(self, connection: ReplayedConnection, name: str, row_factory: Any, scrollable: Any,
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
        self._run(sql_request(query, params, CURSOR, self.connection.info.dbname))
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


class ReplayedConnection:
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

    def __enter__(self) -> ReplayedConnection:
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

    def __init__(self, connection: ReplayedAsyncConnection, cursor: _ReplayedCursor) -> None:
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


class ReplayedAsyncConnection:
    """What ``psycopg.AsyncConnection.connect`` returns in replay: the replayed connection, with coroutines."""

    __slots__ = ("_sync",)

    def __init__(self, connection: ReplayedConnection) -> None:
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

    async def __aenter__(self) -> ReplayedAsyncConnection:
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


def replayed_connection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> ReplayedConnection:
    """What ``psycopg.connect(*args, **kwargs)`` returns in replay: the recorded server facts, no socket."""
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
    return ReplayedConnection(params, facts, kwargs)


async def replayed_async_connection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> ReplayedAsyncConnection:
    """What ``psycopg.AsyncConnection.connect(*args, **kwargs)`` returns in replay, once awaited."""
    return ReplayedAsyncConnection(replayed_connection(args, kwargs))
