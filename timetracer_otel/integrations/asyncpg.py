"""asyncpg: record and replay at the protocol seam, below every public API.

Every query asyncpg runs goes through a handful of methods of its ``Protocol`` (``query`` for the simple-query
protocol, ``bind_execute`` / ``bind_execute_many`` for statements with parameters, ``bind`` / ``execute`` for a
cursor's portal). Recording wraps those, so ``Connection.fetch/fetchrow/fetchval/execute/executemany/
fetchmany``, ``PreparedStatement`` methods, cursors, transactions, pools and SQLAlchemy's asyncpg dialect all
record one interaction per round trip of a statement, with real asyncpg code above it unchanged.

Replay patches ``connect_utils._connect`` (where ``asyncpg.connect`` and every pool's connections end up) to
return the requested ``connection_class`` around :class:`_ReplayProtocol`, which answers the same methods from
the cassette: no socket is opened, and the real ``Connection`` code (statement cache, transactions, pool
reset, record access) runs as usual. Rows are real ``asyncpg.Record`` objects, built by asyncpg's own record
factory.

What is recorded where:

* a statement's round trip: ``method`` None (rows, status and whether the rows were complete: ``fetch``,
  ``fetchrow``, ``fetchval`` and ``execute`` with arguments all share it), ``execute`` (the simple-query
  protocol: ``execute`` without arguments, which answers only a status), ``executemany`` / ``fetchmany``, and
  ``cursor`` (one interaction per cursor, holding every fetch and ``forward`` made on it);
* into the session cassette (connection set-up, replayed as often as needed): ``connect`` (the server's
  parameters: version, encoding, ...), ``describe`` (a prepared statement's parameter and column types, read
  by ``PreparedStatement.get_attributes()``), asyncpg's type introspection and a pool's ``init`` callback;
* nothing for a pool's reset on release (``Connection.reset``): replay answers it locally.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import logging
import re
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any

import asyncpg
from asyncpg import connect_utils
from asyncpg.exceptions import InterfaceError, PostgresError
from asyncpg.pgproto.pgproto import UUID as PgUUID
from asyncpg.protocol.protocol import ConnectionSettings, _create_record
from asyncpg.types import Attribute, Type
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from timetracer_otel._context import connection_setup, in_connection_setup
from timetracer_otel.cassette.model import CallRequest, Interaction
from timetracer_otel.cassette.values import from_json_value, to_json_value
from timetracer_otel.errors import ReplayError, ReplayMismatchError
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._http import recorded_exception
from timetracer_otel.integrations._sql import SQL, sql_mocked
from timetracer_otel.record.recording import DataCall, RequestRecording, current_recording
from timetracer_otel.replay.guard import live_call
from timetracer_otel.replay.matching import describe_call, normalize_sql
from timetracer_otel.replay.session import ReplaySession, current_session, replay_call

__all__ = ["AsyncpgIntegration"]

logger = logging.getLogger("timetracer")

LIBRARY = "asyncpg"

#: True while asyncpg resets a connection for its pool: those statements are neither recorded nor replayed.
_LOCAL: contextvars.ContextVar[bool] = contextvars.ContextVar("timetracer_asyncpg_local", default=False)

#: What a replayed connection reports when the recording holds no ``connect`` call to copy.
_DEFAULT_SERVER_SETTINGS = {
    "server_version": "16.0",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
}

_MOVE = re.compile(r"MOVE FORWARD (\d+) (\S+)\Z")


# -- values ------------------------------------------------------------------------------------------------


def _value(value: Any) -> Any:
    """A value asyncpg gave or was given, as JSON: :func:`to_json_value`, plus composite rows (records)."""
    if isinstance(value, asyncpg.Record):
        return {"$record": [list(value.keys()), [_value(item) for item in value.values()]]}
    if type(value) is list:
        return [_value(item) for item in value]
    return to_json_value(value)


def _python(value: Any) -> Any:
    """The inverse of :func:`_value`. UUIDs come back as asyncpg's own ``pgproto.UUID``, as asyncpg decodes them."""
    if type(value) is list:
        return [_python(item) for item in value]
    if type(value) is dict and len(value) == 1 and "$record" in value:
        keys, values = value["$record"]
        return _record(keys, [_python(item) for item in values])
    result = from_json_value(value)
    if type(result) is uuid.UUID:
        return PgUUID(result.bytes)
    return result


def _record(names: Sequence[str], values: Sequence[Any]) -> Any:
    """A real ``asyncpg.Record`` (asyncpg offers no public constructor; this is its own record factory)."""
    return _create_record({name: n for n, name in enumerate(names)}, tuple(values))


class _Rows:
    """A statement's answer, kept as asyncpg returned it and made JSON on the writer thread."""

    __slots__ = ("columns", "completed", "records", "status")

    def __init__(self, columns: list[list[Any]], records: Any, status: Any, completed: bool) -> None:
        self.columns = columns
        self.records = None if records is None else list(records)
        self.status = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        self.completed = completed

    def to_json(self) -> dict[str, Any]:
        rows = None if self.records is None else [[_value(item) for item in row] for row in self.records]
        return {"columns": self.columns, "rows": rows, "status": self.status, "completed": self.completed}


class _Cursor:
    """A cursor's answers: one step per fetch (``limit``, rows) or ``forward`` (``move``, status), in order."""

    __slots__ = ("columns", "steps")

    def __init__(self, columns: list[list[Any]]) -> None:
        self.columns = columns
        self.steps: list[Any] = []

    def to_json(self) -> dict[str, Any]:
        steps = [step.to_json() if isinstance(step, _Rows) else step for step in list(self.steps)]
        return {"columns": self.columns, "steps": steps}


def _encode(value: Any) -> Any:
    if isinstance(value, _Rows | _Cursor):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_encode(item) for item in value]
    return _value(value)


def _columns(state: Any) -> list[list[Any]]:
    """``[[name, type oid], ...]`` of a prepared statement's result."""
    try:
        return [[attribute.name, attribute.type.oid] for attribute in state._get_attributes()]
    except Exception:  # a statement without a row description
        return []


# -- the request of each kind of call: one builder for record and replay -----------------------------------


def _request(operation: str, method: str | None, arguments: Any) -> tuple[str, str | None, Any]:
    """(operation, method, arguments as Python values); replay encodes the arguments as recording does."""
    if method in ("executemany", "fetchmany"):
        arguments = [list(item) for item in arguments]
    elif arguments is not None:
        arguments = list(arguments)
    return operation, method, arguments


def _call_request(operation: str, method: str | None, arguments: Any) -> CallRequest:
    operation, method, arguments = _request(operation, method, arguments)
    return CallRequest(operation, method, None, _encode(arguments))


class _AsyncpgCall(DataCall):
    """Keeps what asyncpg's exceptions carry (SQLSTATE, detail, constraint, ...) so replay can rebuild them."""

    __slots__ = ()

    def error_details(self) -> Any:
        error = self.error
        if isinstance(error, PostgresError):
            return {**error.as_dict(), "message": error.args[0] if error.args else str(error)}
        if isinstance(error, InterfaceError):
            return {"message": error.args[0] if error.args else str(error), "detail": error.detail,
                    "hint": error.hint}
        return None


def _new_call(recording: RequestRecording, operation: str, method: str | None, arguments: Any) -> _AsyncpgCall:
    operation, method, arguments = _request(operation, method, arguments)
    call = _AsyncpgCall(SQL, LIBRARY, operation, arguments, method=method, encode=_encode)
    recording.add_call(call)
    return call


def _settings_of(connection: Any) -> dict[str, str]:
    """The server's parameters a connection holds (asyncpg keeps them in a private dict; its repr shows it)."""
    settings = connection.get_settings()
    text = repr(settings)
    try:
        parsed = ast.literal_eval(text[text.index("{"): text.rindex("}") + 1])
        if isinstance(parsed, dict):
            return {str(key): str(value) for key, value in parsed.items()}
    except (ValueError, SyntaxError):
        pass
    return {name: str(getattr(settings, name)) for name in _DEFAULT_SERVER_SETTINGS if hasattr(settings, name)}


def _recorded_error(interaction: Interaction) -> BaseException:
    """The recorded exception, as asyncpg's own type with its fields (sqlstate, detail, constraint_name, ...)."""
    error = interaction.error
    assert error is not None
    kind = recorded_exception(error, interaction.request, ("asyncpg",), PostgresError)
    details = error.details if isinstance(error.details, dict) else {}
    message = details.get("message", error.message)
    if issubclass(kind, PostgresError):
        exc: BaseException = kind(message)
        exc.__dict__.update({key: value for key, value in details.items() if key != "message"})
        return exc
    if issubclass(kind, InterfaceError):
        return kind(message, detail=details.get("detail"), hint=details.get("hint"))  # type: ignore[call-arg,no-any-return]
    try:
        plain: BaseException = kind(error.message)
        return plain
    except TypeError:
        fallback: BaseException = PostgresError(error.message)
        return fallback


def _status_xact(status: str, in_transaction: bool) -> bool:
    """Whether the session is in a transaction after a statement that answered ``status``."""
    command = status.split(" ", 1)[0].upper()
    if command in ("BEGIN", "START"):
        return True
    if command in ("COMMIT", "ROLLBACK", "END", "ABORT") and status.upper() != "ROLLBACK TO":
        return False
    return in_transaction


def _find_recorded(request: CallRequest) -> Interaction | None:
    """The next recorded answer to ``request`` if one was recorded, else None (no error: used for calls that are
    recorded only when they fail)."""
    session = None if in_connection_setup() else current_session()
    if session is None:
        session = ReplaySession.process
    if session is None:
        return None
    try:
        return session.index.find(request, SQL, repeat_last=in_connection_setup())
    except ReplayMismatchError:
        return None


# -- replay: a connection without a server -----------------------------------------------------------------


class _ReplaySettings:
    """What ``Connection.get_settings()`` returns: the recorded server parameters, and a real asyncpg
    ``ConnectionSettings`` for the codec calls (``set_type_codec``, ...) made on it."""

    def __init__(self, parameters: dict[str, str]) -> None:
        self._parameters = parameters
        self._codecs = ConnectionSettings()

    def __getattr__(self, name: str) -> Any:
        parameters = self.__dict__.get("_parameters", {})
        if name in parameters:
            return parameters[name]
        return getattr(self.__dict__["_codecs"], name)

    def __repr__(self) -> str:
        return f"<ConnectionSettings {self._parameters!r}>"


class _ReplayTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self._closing = False

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True

    def is_closing(self) -> bool:
        return self._closing


class _ReplayStatement:
    """Stands for asyncpg's ``PreparedStatementState``: what ``Connection`` and ``PreparedStatement`` read of it.

    Its parameter and column types (``PreparedStatement.get_attributes()``) come from the recorded ``describe``
    call, looked up only when asked for.
    """

    def __init__(self, name: str, query: str, record_class: type, ignore_custom_codec: bool) -> None:
        self.name = name
        self.query = query
        self.record_class = record_class
        self.ignore_custom_codec = ignore_custom_codec
        self.closed = False
        self.prepared = True
        self.refs = 0
        self._described: Any = None

    def _init_types(self) -> set[int]:
        return set()

    def _init_codecs(self) -> None:
        pass

    def mark_unprepared(self) -> None:
        pass

    def mark_closed(self) -> None:
        self.closed = True

    def attach(self) -> None:
        self.refs += 1

    def detach(self) -> None:
        self.refs -= 1

    def _describe(self) -> Any:
        if self._described is None:
            with connection_setup():
                interaction = replay_call(_call_request(self.query, "describe", None), SQL)
            response = interaction.response
            self._described = getattr(response, "result", None) or {}
        return self._described

    def _get_parameters(self) -> tuple[Type, ...]:
        return tuple(Type(*item) for item in self._describe().get("parameters", []))

    def _get_attributes(self) -> tuple[Attribute, ...]:
        return tuple(Attribute(name, Type(*rest)) for name, *rest in self._describe().get("attributes", []))


class _ReplayPortal:
    """A replayed cursor: its recorded steps, served in order."""

    def __init__(self, interaction: Interaction) -> None:
        self.interaction = interaction
        result = getattr(interaction.response, "result", None) or {}
        self.columns = result.get("columns", [])
        self.steps: list[Any] = list(result.get("steps", []))

    def next_step(self, expected: str, amount: int) -> Any:
        request = self.interaction.request
        call = describe_call(SQL, request) if isinstance(request, CallRequest) else str(request)
        if not self.steps:
            raise ReplayMismatchError(call, f"the recording made no more {expected} calls on this cursor")
        step = self.steps.pop(0)
        if expected not in step or (step[expected] != amount):
            recorded = f"fetch of {step['limit']} rows" if "limit" in step else f"forward of {step.get('move')} rows"
            raise ReplayMismatchError(call, f"the recording's next use of this cursor was a {recorded}, got a "
                                            f"{'fetch' if expected == 'limit' else 'forward'} of {amount} rows")
        return step


class _ReplayProtocol:
    """Stands for asyncpg's ``Protocol`` on a replayed connection: every query method answers from the cassette."""

    def __init__(self, settings: _ReplaySettings, record_class: type, pid: int) -> None:
        self.settings = settings
        self.record_class = record_class
        self.backend_pid = pid
        self.backend_secret = 0
        self.queries_count = 0
        self.is_ssl = False
        self._connection: Any = None
        self._closed = False
        self._in_transaction = False
        self._portals: dict[str, _ReplayPortal] = {}

    # -- what Connection reads ---------------------------------------------------------------------------

    def set_connection(self, connection: Any) -> None:
        self._connection = connection

    def get_server_pid(self) -> int:
        return self.backend_pid

    def get_settings(self) -> _ReplaySettings:
        return self.settings

    def get_record_class(self) -> type:
        return self.record_class

    def is_in_transaction(self) -> bool:
        return self._in_transaction

    def is_connected(self) -> bool:
        return not self._closed

    def is_closed(self) -> bool:
        return self._closed

    def abort(self) -> None:
        self._closed = True

    async def close(self, timeout: Any) -> None:
        self._closed = True

    def _get_timeout(self, timeout: Any) -> Any:
        return timeout

    def _is_cancelling(self) -> bool:
        return False

    async def _wait_for_cancellation(self, timeout: Any = None) -> Any:
        return timeout

    # -- statements ----------------------------------------------------------------------------------------

    async def prepare(self, stmt_name: str, query: str, timeout: Any, *, state: Any = None,
                      ignore_custom_codec: bool = False, record_class: type) -> Any:
        # Only a prepare that failed was recorded (a syntax error, an unknown table): it fails again here.
        failed = _find_recorded(_call_request(query, "prepare", None))
        if failed is not None and failed.error is not None:
            raise _recorded_error(failed)
        return state or _ReplayStatement(stmt_name, query, record_class, ignore_custom_codec)

    async def close_statement(self, state: Any, timeout: Any) -> None:
        state.mark_closed()

    def _take(self, operation: str, method: str | None, arguments: Any) -> Interaction:
        self.queries_count += 1
        interaction = replay_call(_call_request(operation, method, arguments), SQL)
        if interaction.error is not None:
            raise _recorded_error(interaction)
        return interaction

    def _records(self, result: dict[str, Any], rows: list[Any] | None, record_class: type) -> list[Any] | None:
        if rows is None:
            return None
        if record_class is not asyncpg.Record:
            logger.debug("timetracer: replayed asyncpg rows are asyncpg.Record, not %s", record_class.__name__)
        names = [column[0] for column in result.get("columns", [])]
        return [_record(names, [_python(item) for item in row]) for row in rows]

    def _track(self, status: str | None) -> None:
        if status:
            self._in_transaction = _status_xact(status, self._in_transaction)

    async def query(self, query: str, timeout: Any) -> str:
        if _LOCAL.get():  # a pool's reset of the connection: nothing to answer but its status
            self._in_transaction = False
            return "ROLLBACK" if query.strip().upper() == "ROLLBACK" else "RESET"
        move = _MOVE.match(query)
        if move is not None and move.group(2) in self._portals:
            step = self._portals[move.group(2)].next_step("move", int(move.group(1)))
            return str(step["status"])
        try:
            interaction = self._take(query, "execute", None)
        except ReplayMismatchError:
            if normalize_sql(query) != "ROLLBACK":
                raise
            # Rolling back after a failed replayed call (a transaction block exiting on the error): answer it
            # here, so the app sees the error that caused it rather than a miss of the ROLLBACK.
            self._in_transaction = False
            return "ROLLBACK"
        status = str(getattr(interaction.response, "result", ""))
        self._track(status)
        return status

    async def bind_execute(  # noqa: PLR0917 - asyncpg's signature
        self, state: Any, args: Any, portal_name: str, limit: int, return_extra: bool, timeout: Any
    ) -> Any:
        if portal_name:
            portal = self._portals[portal_name] = _ReplayPortal(self._take(state.query, "cursor", args))
            return self._portal_rows(portal, state, limit, return_extra)
        interaction = self._take(state.query, None, args)
        result: dict[str, Any] = getattr(interaction.response, "result", None) or {}
        rows: list[Any] = result.get("rows") or []
        completed = bool(result.get("completed", True))
        status = str(result.get("status") or "")
        if not completed and (limit == 0 or limit > len(rows)):
            request = interaction.request
            raise ReplayMismatchError(
                describe_call(SQL, request) if isinstance(request, CallRequest) else str(request),
                f"it was recorded with a row limit (fetchrow/fetchval read {len(rows)} row(s) of more), and the "
                f"replayed call wants {'every row' if limit == 0 else f'{limit} rows'}")
        if limit and len(rows) > limit:
            rows, completed, status = rows[:limit], False, ""
        self._track(status)
        records = self._records(result, rows, state.record_class) or []
        return (records, status.encode(), completed) if return_extra else records

    async def bind_execute_many(self, state: Any, args: Any, portal_name: str, timeout: Any,
                                return_rows: bool) -> Any:
        interaction = self._take(state.query, "fetchmany" if return_rows else "executemany", list(args))
        result: dict[str, Any] = getattr(interaction.response, "result", None) or {}
        return self._records(result, result.get("rows"), state.record_class)

    async def bind(self, state: Any, args: Any, portal_name: str, timeout: Any) -> Any:
        self._portals[portal_name] = _ReplayPortal(self._take(state.query, "cursor", args))
        return []

    async def execute(self, state: Any, portal_name: str, limit: int, return_extra: bool, timeout: Any) -> Any:
        portal = self._portals.get(portal_name)
        if portal is None:
            raise ReplayError(f"asyncpg cursor {portal_name} was not opened in replay")
        return self._portal_rows(portal, state, limit, return_extra)

    def _portal_rows(self, portal: _ReplayPortal, state: Any, limit: int, return_extra: bool) -> Any:
        step = portal.next_step("limit", limit)
        records = self._records({"columns": portal.columns}, step.get("rows") or [], state.record_class) or []
        status = str(step.get("status") or "")
        completed = bool(step.get("completed"))
        return (records, status.encode(), completed) if return_extra else records

    async def close_portal(self, portal_name: str, timeout: Any) -> None:
        self._portals.pop(portal_name, None)

    async def copy_out(self, *args: Any, **kwargs: Any) -> Any:
        raise ReplayError("asyncpg COPY is not recorded or replayed by timetracer")

    async def copy_in(self, *args: Any, **kwargs: Any) -> Any:
        raise ReplayError("asyncpg COPY is not recorded or replayed by timetracer")


# -- the integration ----------------------------------------------------------------------------------------


def _arguments(names: Sequence[str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    """A wrapped protocol method's arguments by position (asyncpg passes them by keyword or position)."""
    values = list(args)
    for name in names[len(values):]:
        values.append(kwargs[name])
    return values


_BIND_EXECUTE = ("state", "args", "portal_name", "limit", "return_extra", "timeout")
_BIND_EXECUTE_MANY = ("state", "args", "portal_name", "timeout", "return_rows")
_BIND = ("state", "args", "portal_name", "timeout")
_EXECUTE = ("state", "portal_name", "limit", "return_extra", "timeout")
_QUERY = ("query", "timeout")


class AsyncpgIntegration(Integration):
    name = "asyncpg"

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        #: Statements whose ``describe`` was recorded already in this process (it goes to the session once).
        self._described: set[str] = set()

    def patches(self) -> Sequence[Patch]:
        protocol = "asyncpg.protocol.protocol"
        return (
            Patch("asyncpg.connect_utils", "_connect", self._connect),
            Patch(protocol, "Protocol.query", self._query),
            Patch(protocol, "Protocol.prepare", self._prepare),
            Patch(protocol, "Protocol.bind_execute", self._bind_execute),
            Patch(protocol, "Protocol.bind_execute_many", self._bind_execute_many),
            Patch(protocol, "Protocol.bind", self._bind),
            Patch(protocol, "Protocol.execute", self._execute),
            Patch(protocol, "Protocol.close_portal", self._close_portal),
            Patch("asyncpg.connection", "Connection._introspect_types", self._setup),
            Patch("asyncpg.connection", "Connection._introspect_type", self._setup),
            Patch("asyncpg.connection", "Connection.reset", self._reset),
            Patch("asyncpg.pool", "Pool._get_new_connection", self._setup),
            Patch("asyncpg.prepared_stmt", "PreparedStatement.get_attributes", self._describe),
            Patch("asyncpg.prepared_stmt", "PreparedStatement.get_parameters", self._describe),
        )

    def _recording(self) -> RequestRecording | None:
        """Where to record a call now; None to let it through unrecorded."""
        if not self.active or not is_instrumentation_enabled() or _LOCAL.get():
            return None
        return current_recording()

    # -- connecting ----------------------------------------------------------------------------------------

    async def _connect(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        if sql_mocked(self):
            return await self._replay_connect(**kwargs)
        if self.runtime.replaying:
            with live_call():
                return await wrapped(*args, **kwargs)
        with connection_setup():
            recording = current_recording()
            if recording is None:
                return await wrapped(*args, **kwargs)
            call = self._safely(lambda: _new_call(recording, "CONNECT", "connect", None))
            try:
                connection = await wrapped(*args, **kwargs)
            except Exception as exc:
                if call is not None:
                    call.failed(exc)
                raise
            if call is not None:
                self._safely(lambda: call.succeeded({"settings": _settings_of(connection),
                                                     "pid": connection.get_server_pid()}))
            return connection

    @staticmethod
    async def _replay_connect(*, loop: Any, connection_class: type, record_class: type, **kwargs: Any) -> Any:
        if loop is None:
            loop = asyncio.get_running_loop()
        addrs, params, config = connect_utils._parse_connect_arguments(**kwargs)
        settings: dict[str, str] = dict(_DEFAULT_SERVER_SETTINGS)
        pid = 0
        with connection_setup():
            try:
                interaction = replay_call(_call_request("CONNECT", "connect", None), SQL)
            except ReplayMismatchError:
                logger.debug("timetracer: no asyncpg connect recorded; replaying with default server settings")
            else:
                if interaction.error is not None:
                    raise _recorded_error(interaction)
                result = getattr(interaction.response, "result", None) or {}
                settings.update(result.get("settings") or {})
                pid = int(result.get("pid") or 0)
        protocol = _ReplayProtocol(_ReplaySettings(settings), record_class, pid)
        connection = connection_class(protocol, _ReplayTransport(), loop, addrs[0], config, params)
        protocol.set_connection(connection)
        return connection

    # -- connection set-up and pool reset: both modes --------------------------------------------------

    async def _setup(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """asyncpg's type introspection and a pool's new connection (with its ``init``) are connection set-up."""
        if not self.active or not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        with connection_setup():
            return await wrapped(*args, **kwargs)

    async def _reset(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        token = _LOCAL.set(True)
        try:
            return await wrapped(*args, **kwargs)
        finally:
            _LOCAL.reset(token)

    def _describe(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Record a prepared statement's types (once per statement per process) into the session cassette."""
        result = wrapped(*args, **kwargs)
        query = getattr(getattr(instance, "_state", None), "query", None)
        if query is None or query in self._described or isinstance(instance._state, _ReplayStatement):
            return result
        with connection_setup():
            recording = self._recording()
            if recording is not None:
                self._safely(lambda: self._record_describe(recording, instance._state))
        return result

    def _record_describe(self, recording: RequestRecording, state: Any) -> None:
        described = {
            "parameters": [list(parameter) for parameter in state._get_parameters()],
            "attributes": [[attribute.name, *attribute.type] for attribute in state._get_attributes()],
        }
        call = _new_call(recording, state.query, "describe", None)
        call.succeeded(described)
        self._described.add(state.query)

    # -- record: the protocol's query methods ------------------------------------------------------------

    async def _query(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        recording = self._recording()
        if recording is None:
            return await wrapped(*args, **kwargs)
        query, timeout = _arguments(_QUERY, args, kwargs)
        move = _MOVE.match(query) if isinstance(query, str) else None
        portal = _portals(instance).get(move.group(2)) if move is not None else None
        if portal is not None and move is not None:
            status = await wrapped(query, timeout)
            steps = portal.result.steps
            self._safely(lambda: steps.append({"move": int(move.group(1)), "status": status}))
            return status
        call = self._safely(lambda: _new_call(recording, query, "execute", None))
        status = await _awaited(call, wrapped(query, timeout))
        if call is not None:
            call.succeeded(status)
        return status

    async def _prepare(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """A failed prepare is recorded (replay raises it again); a successful one is not a call of its own."""
        recording = self._recording()
        if recording is None:
            return await wrapped(*args, **kwargs)
        query = args[1] if len(args) > 1 else kwargs.get("query")
        call = self._safely(lambda: _AsyncpgCall(SQL, LIBRARY, query, method="prepare", encode=_encode))
        try:
            return await wrapped(*args, **kwargs)
        except Exception as exc:
            if call is not None:
                call.failed(exc)
                self._safely(lambda: recording.add_call(call))
            raise

    async def _bind_execute(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        recording = self._recording()
        if recording is None:
            return await wrapped(*args, **kwargs)
        state, parameters, portal_name, limit, return_extra, timeout = _arguments(_BIND_EXECUTE, args, kwargs)
        method = "cursor" if portal_name else None
        call = self._safely(lambda: _new_call(recording, state.query, method, parameters))
        # Always with the status and completion flag: they only change what asyncpg returns, not the wire.
        records, status, completed = await _awaited(
            call, wrapped(state, parameters, portal_name, limit, True, timeout)
        )
        if call is not None:
            def finish() -> None:
                rows = _Rows(_columns(state), records, status, completed)
                if portal_name:
                    cursor = _Cursor(rows.columns)
                    cursor.steps.append(_Step(rows, limit))
                    _portals(instance)[portal_name] = call
                    call.succeeded(cursor)
                else:
                    call.succeeded(rows)
            self._safely(finish)
        return (records, status, completed) if return_extra else records

    async def _bind_execute_many(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        recording = self._recording()
        if recording is None:
            return await wrapped(*args, **kwargs)
        state, parameters, portal_name, timeout, return_rows = _arguments(_BIND_EXECUTE_MANY, args, kwargs)
        parameters = list(parameters)  # it may be an iterator: read it once, for asyncpg and the cassette
        method = "fetchmany" if return_rows else "executemany"
        call = self._safely(lambda: _new_call(recording, state.query, method, parameters))
        result = await _awaited(call, wrapped(state, parameters, portal_name, timeout, return_rows))
        if call is not None:
            self._safely(lambda: call.succeeded(
                _Rows(_columns(state) if return_rows else [], result if return_rows else None, None, True)))
        return result

    async def _bind(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        recording = self._recording()
        if recording is None:
            return await wrapped(*args, **kwargs)
        state, parameters, portal_name, timeout = _arguments(_BIND, args, kwargs)
        call = self._safely(lambda: _new_call(recording, state.query, "cursor", parameters))
        result = await _awaited(call, wrapped(state, parameters, portal_name, timeout))
        if call is not None:
            def finish() -> None:
                call.succeeded(_Cursor(_columns(state)))
                _portals(instance)[portal_name] = call
            self._safely(finish)
        return result

    async def _execute(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        recording = self._recording()
        if recording is None:
            return await wrapped(*args, **kwargs)
        state, portal_name, limit, return_extra, timeout = _arguments(_EXECUTE, args, kwargs)
        call = _portals(instance).get(portal_name)
        if call is None:  # a cursor opened before recording started
            return await wrapped(*args, **kwargs)
        records, status, completed = await wrapped(state, portal_name, limit, True, timeout)

        def finish() -> None:
            cursor = call.result
            cursor.steps.append(_Step(_Rows([], records, status, completed), limit))
            call.succeeded(cursor)
        self._safely(finish)
        return (records, status, completed) if return_extra else records

    async def _close_portal(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        portal_name = args[0] if args else kwargs.get("portal_name")
        instance.__dict__.get("_timetracer_portals", {}).pop(portal_name, None)
        return await wrapped(*args, **kwargs)

    @staticmethod
    def _safely(action: Any) -> Any:
        """Run capture code; a failure is logged and the app's call goes on unrecorded."""
        try:
            return action()
        except Exception:
            logger.exception("timetracer: recording an asyncpg call failed; the call is not recorded")
            return None


async def _awaited(call: _AsyncpgCall | None, answer: Awaitable[Any]) -> Any:
    """The wrapped protocol call's answer; a failure is kept on ``call`` (if it is recorded) and raised."""
    try:
        return await answer
    except Exception as exc:
        if call is not None:
            call.failed(exc)
        raise


class _Step(_Rows):
    """One fetch on a cursor: its rows and the row limit it asked for."""

    __slots__ = ("limit",)

    def __init__(self, rows: _Rows, limit: int) -> None:
        super().__init__([], rows.records, rows.status, rows.completed)
        self.limit = limit

    def to_json(self) -> dict[str, Any]:
        document = super().to_json()
        del document["columns"]
        return {"limit": self.limit, **document}


def _portals(protocol: Any) -> dict[str, Any]:
    """The cursors being recorded on one connection, by portal name (kept on asyncpg's protocol object)."""
    portals: dict[str, Any] | None = protocol.__dict__.get("_timetracer_portals")
    if portals is None:
        portals = protocol.__dict__["_timetracer_portals"] = {}
    return portals


INTEGRATION = AsyncpgIntegration
