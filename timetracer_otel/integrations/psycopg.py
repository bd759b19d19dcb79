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
from collections.abc import Iterator, Sequence
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
        """No statements to replay: psycopg sends BEGIN / SAVEPOINT itself, not through a cursor."""
        yield self

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[Any]:
        yield self

    # -- cursors -----------------------------------------------------------------------------------------------

    def cursor(self, name: str = "", *, row_factory: Any = None, binary: Any = None, scrollable: Any = None,
               withhold: bool = False) -> _ReplayedCursor:
        self._check()
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
            Patch("psycopg", "Cursor.execute", self._execute),
            Patch("psycopg", "Cursor.executemany", self._executemany),
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
        with connection_setup():
            recording = current_recording()
            if recording is not None:
                try:
                    call = DataCall(SQL, LIBRARY, CONNECT, None, method=CONNECT, target=connection.info.dbname)
                    recording.add_call(call)
                    call.succeeded(_connection_facts(connection))
                except Exception:
                    logger.exception("timetracer: could not record a psycopg connection's parameters")
        return connection

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

    # -- execute ------------------------------------------------------------------------------------------------

    def _execute(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._call(wrapped, instance, args, kwargs, None)

    def _executemany(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._call(wrapped, instance, args, kwargs, "executemany")

    def _call(self, wrapped: Any, instance: Any, args: Any, kwargs: Any, method: str | None) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        if self.runtime.replaying:  # a real connection in replay is a live one
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
        try:
            result = wrapped(*args, **kwargs)
        except Exception as exc:
            call.failed(exc)
            raise
        try:
            call.succeeded(result_value(_result_sets(instance)))
        except Exception:
            logger.exception("timetracer: could not record a psycopg result")
            call.succeeded(None)
        return result

    # -- type introspection on a replayed connection ----------------------------------------------------------

    def _type_info_fetch(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """``TypeInfo.fetch`` accepts only a real connection; on a replayed one, run its query on our cursor."""
        conn = args[0] if args else kwargs.get("conn")
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
