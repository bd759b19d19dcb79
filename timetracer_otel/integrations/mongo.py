"""MongoDB (PyMongo's ``MongoClient`` and ``AsyncMongoClient``, and Motor, which runs a ``MongoClient``).

Record: each client built while recording gets a command listener (PyMongo's command monitoring), added by
wrapping the client constructors. A command's start is seen on the thread or task that runs it, so it goes
to that request's recording; its reply or failure completes the same call (keyed by request id and
connection). Documents are kept as BSON bytes at once (the app may change its dicts afterwards) and made
canonical extended JSON on the writer thread.

Replay: clients are pointed at an in-process wire server on 127.0.0.1 (``_mongo_wire``) instead of their
hosts. A replay listener looks each command up in the cassette when it starts, on the app's thread (so in
the app's replay session), and leaves the recorded reply for the server to send under the command's request
id. PyMongo then does everything as against a real server: cursors (getMore carries the recorded cursor id),
sessions, transactions, and its own exceptions raised from recorded error replies. A lookup miss reaches the
app as the ``ReplayMismatchError`` itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import bson
from bson.codec_options import DEFAULT_CODEC_OPTIONS, CodecOptions
from bson.objectid import ObjectId
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from pymongo import errors, helpers_shared, monitoring

from timetracer_otel.cassette.extended_json import bson_to_extended_json, decode_bson, extended_json_to_bson
from timetracer_otel.cassette.model import CallRequest, CallResponse
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._mongo_wire import WireResponder
from timetracer_otel.record.captured import BSON, CapturedCallRequest, CapturedCallResponse
from timetracer_otel.record.recording import DataCall, current_recording
from timetracer_otel.replay.guard import allow_internal, live_call
from timetracer_otel.replay.matching import MONGO_SESSION_FIELDS
from timetracer_otel.replay.session import replay_call

__all__ = ["MongoIntegration", "mongo_request"]

logger = logging.getLogger("timetracer")

MONGO = "mongo"

#: Driver housekeeping, never recorded: sessions ended at close, cursors killed (often from a background
#: thread, when a cursor is garbage collected). The replay server answers them itself.
_HOUSEKEEPING = frozenset({"endSessions", "killCursors"})
#: Commands the replay server answers itself when the driver sends them unmonitored (the handshake and the
#: monitors' heartbeats are never seen by command listeners).
_HELLO = frozenset({"hello", "ismaster", "isMaster"})


#: The wire version the replay server claims (MongoDB 8.0), capped to what the installed driver supports.
_WIRE_VERSION = 25
#: Marks a replay server reply that stands for a timetracer error to raise in the app (see _raise_replay_error).
_ERROR_MARK = "$timetracerReplayError"


# -- one request builder for both modes ---------------------------------------------------------------------


def _target(command_name: str, database: str, command: Mapping[str, Any]) -> str:
    """``db.collection`` for commands on a collection (the command's value, or getMore's ``collection``)."""
    collection = command.get("collection") if command_name == "getMore" else command.get(command_name)
    return f"{database}.{collection}" if isinstance(collection, str) else database


def _without_session(command: Mapping[str, Any]) -> dict[str, Any]:
    """The command as stored and matched: without the session's and the cluster's fields."""
    return {key: value for key, value in command.items() if key not in MONGO_SESSION_FIELDS}


def _snapshot(document: Mapping[str, Any], codec_options: CodecOptions[Any]) -> bytes:
    """The document as BSON now (the app may change its dicts later), encoded as the client encodes it, so
    its custom types and UUID representation apply."""
    try:
        return bson.encode(document, codec_options=codec_options)
    except Exception:  # a collection with codec options of its own: try the plain ones
        return bson.encode(document, codec_options=DEFAULT_CODEC_OPTIONS)


def mongo_request(command_name: str, database: str, raw_command: bytes) -> CallRequest:
    """The request a command is recorded and looked up as (both modes go through here)."""
    document = decode_bson(raw_command)
    target = _target(command_name, database, document)
    return CallRequest(command_name, target=target, arguments=bson_to_extended_json(_without_session(document)))


def _recorded(event: monitoring.CommandStartedEvent) -> bool:
    """Whether this command belongs in a cassette: not housekeeping, not a redacted (auth) command."""
    return event.command_name not in _HOUSEKEEPING and bool(event.command)


# -- record -------------------------------------------------------------------------------------------------


class _MongoCall(DataCall):
    """One command: its document (without session fields) and reply kept as BSON bytes, made extended JSON where
    the cassette is assembled: in the writer process, off the app's GIL."""

    __slots__ = ("database", "failure")

    def __init__(self, library: str, command_name: str, database: str, raw_command: bytes,
                 command: Mapping[str, Any]) -> None:
        super().__init__(MONGO, library, command_name, raw_command, target=_target(command_name, database, command))
        self.database = database
        self.failure: bytes | None = None

    def request(self) -> CapturedCallRequest:
        return CapturedCallRequest(self.operation, None, self.target, self.arguments, BSON)

    def response(self) -> CapturedCallResponse | None:
        return None if self.end_ns is None or self.error is not None else CapturedCallResponse(self.result, BSON)

    def error_details(self) -> Any:
        """The failure document: replayed as the server's reply, so the driver raises what it raised."""
        return None if self.failure is None else bson_to_extended_json(self.failure)


def _failure_exception(failure: Mapping[str, Any]) -> BaseException:
    """The exception PyMongo raised for a failure document (for the cassette's error type and message)."""
    if "errtype" in failure and "code" not in failure:  # a client-side error: _convert_exception's form
        kind = getattr(errors, str(failure["errtype"]), None)
        message = str(failure.get("errmsg", ""))
        if isinstance(kind, type) and issubclass(kind, errors.PyMongoError):
            try:
                return kind(message)
            except TypeError:
                pass
        return errors.PyMongoError(message)
    try:
        helpers_shared._check_command_response(dict(failure), None)
    except errors.PyMongoError as exc:
        return exc
    except Exception:
        logger.debug("timetracer: could not classify a MongoDB failure", exc_info=True)
    return errors.OperationFailure(str(failure.get("errmsg", "")), failure.get("code"), dict(failure))


class _RecordListener(monitoring.CommandListener):
    """Records the commands of one client (created while recording). Never raises into PyMongo."""

    def __init__(self, integration: MongoIntegration, library: str) -> None:
        self._integration = integration
        self._library = library
        self._calls: dict[tuple[int, Any], _MongoCall] = {}
        self.codec_options: CodecOptions[Any] = DEFAULT_CODEC_OPTIONS

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self._integration.active or not is_instrumentation_enabled() or not _recorded(event):
            return
        try:
            recording = current_recording()
            if recording is None:
                return
            command = event.command
            call = _MongoCall(self._library, event.command_name, event.database_name,
                              _snapshot(_without_session(command), self.codec_options), command)
            recording.add_call(call)
            self._calls[(event.request_id, event.connection_id)] = call
        except Exception:
            logger.exception("timetracer: could not record MongoDB command %s", event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        call = self._calls.pop((event.request_id, event.connection_id), None)
        if call is None:
            return
        try:
            call.succeeded(_snapshot(event.reply, self.codec_options))
        except Exception:
            logger.exception("timetracer: could not record the reply of MongoDB command %s", event.command_name)
            call.failed(errors.PyMongoError("timetracer could not record this reply"))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        call = self._calls.pop((event.request_id, event.connection_id), None)
        if call is None:
            return
        try:
            call.failure = _snapshot(event.failure, DEFAULT_CODEC_OPTIONS)
            call.failed(_failure_exception(event.failure))
        except Exception:
            logger.exception("timetracer: could not record the failure of MongoDB command %s", event.command_name)
            call.failed(errors.PyMongoError(str(event.failure)))


# -- replay -------------------------------------------------------------------------------------------------


class _ReplayListener(monitoring.CommandListener):
    """Looks each command up when it starts, on the app's thread or task (where its replay session is), and
    leaves the answer for the replay server under the command's request id."""

    def __init__(self, integration: MongoIntegration) -> None:
        self._integration = integration
        self.codec_options: CodecOptions[Any] = DEFAULT_CODEC_OPTIONS

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not self._integration.active or not _recorded(event):
            return
        answers = self._integration.answers
        try:
            request = mongo_request(event.command_name, event.database_name,
                                    _snapshot(event.command, self.codec_options))
            interaction = replay_call(request, MONGO)
            if interaction.error is not None:
                details = interaction.error.details
                if isinstance(details, dict) and "errtype" in details and "code" not in details:
                    answers[event.request_id] = None  # a network failure: the connection is dropped
                else:
                    failure = details if isinstance(details, dict) else {"errmsg": interaction.error.message}
                    answers[event.request_id] = extended_json_to_bson({"ok": 0.0, **failure})
            else:
                response = interaction.response
                assert isinstance(response, CallResponse)
                answers[event.request_id] = extended_json_to_bson(response.result)
        except Exception as exc:  # ReplayMismatchError and the like: raised in the app by _raise_replay_error
            self._integration.replay_errors[event.request_id] = exc
            answers[event.request_id] = bson.encode({"ok": 0.0, "errmsg": str(exc), _ERROR_MARK: event.request_id})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _hello(address: str, connection_id: int) -> dict[str, Any]:
    """A replica-set primary reached directly: sessions, transactions and retryable writes all available.
    No ``topologyVersion``, so the monitors poll instead of holding a streaming hello open."""
    from pymongo import common

    return {
        "helloOk": True, "isWritablePrimary": True, "ismaster": True, "maxBsonObjectSize": 16 * 1024 * 1024,
        "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000,
        "localTime": datetime.now(UTC), "logicalSessionTimeoutMinutes": 30, "connectionId": connection_id,
        "minWireVersion": 0, "maxWireVersion": min(_WIRE_VERSION, common.MAX_SUPPORTED_WIRE_VERSION),
        "readOnly": False, "setName": "timetracer-replay", "setVersion": 1, "hosts": [address], "primary": address,
        "me": address, "secondary": False, "electionId": ObjectId("7fffffff0000000000000001"), "ok": 1.0,
    }


# -- pointing clients at the replay server ----------------------------------------------------------------

#: MongoClient's positional parameters, in order.
_POSITIONAL = ("host", "port", "document_class", "tz_aware", "connect", "type_registry")
#: Options about where and how to connect, dropped in replay (compared lower-case, without underscores).
_NETWORK_OPTIONS = frozenset({
    "replicaset", "directconnection", "loadbalanced", "srvservicename", "srvmaxhosts", "authsource",
    "authmechanism", "authmechanismproperties", "username", "password", "serverselectiontimeoutms",
    "compressors", "zlibcompressionlevel", "proxyhost", "proxyport", "proxyusername", "proxypassword",
})


def _is_network_option(name: str) -> bool:
    key = name.lower().replace("_", "")
    return key in _NETWORK_OPTIONS or key.startswith(("tls", "ssl"))


def _uri_parts(host: Any) -> tuple[str, list[tuple[str, str]]]:
    """The default database and the non-network options of the first URI among ``host`` (no DNS lookup)."""
    hosts = [host] if isinstance(host, str) else list(host or ())
    for item in hosts:
        if isinstance(item, str) and "://" in item:
            rest = item.split("://", 1)[1]
            path = rest.split("/", 1)[1] if "/" in rest.split("?", 1)[0] else ""
            database, _, query = path.partition("?")
            options = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if not _is_network_option(k)]
            return unquote(database), options
    return "", []


def _redirect(args: tuple[Any, ...], kwargs: dict[str, Any], address: str) -> dict[str, Any]:
    """MongoClient arguments that reach the replay server instead, keeping every other option."""
    bound = dict(zip(_POSITIONAL, args, strict=False))
    bound.update(kwargs)
    database, options = _uri_parts(bound.get("host"))
    redirected = {key: value for key, value in bound.items()
                  if key not in ("host", "port") and not _is_network_option(key)}
    query = urlencode(options)
    redirected["host"] = f"mongodb://{address}/{quote(database)}" + (f"?{query}" if query else "")
    redirected["directConnection"] = True
    redirected["serverSelectionTimeoutMS"] = 5000
    return redirected


def _library(kwargs: Mapping[str, Any]) -> str:
    driver = kwargs.get("driver")
    return "motor" if str(getattr(driver, "name", "")).startswith("Motor") else "pymongo"


def _with_listener(kwargs: dict[str, Any], listener: monitoring.CommandListener) -> dict[str, Any]:
    return {**kwargs, "event_listeners": [*(kwargs.get("event_listeners") or ()), listener]}


class MongoIntegration(Integration):
    name = "mongo"

    def __init__(self, runtime: Any) -> None:
        super().__init__(runtime)
        #: Replay: request id -> the reply BSON for the replay server (None: drop the connection).
        self.answers: dict[int, bytes | None] = {}
        #: Replay: request id -> the timetracer error its command met, raised in the app.
        self.replay_errors: dict[int, BaseException] = {}
        self._responder: WireResponder | None = None
        self._lock = threading.Lock()
        self._connections = 0

    def patches(self) -> Sequence[Patch]:
        import pymongo.pool_shared

        patches = [
            Patch("pymongo.synchronous.mongo_client", "MongoClient.__init__", self._client_init),
            Patch("pymongo.asynchronous.mongo_client", "AsyncMongoClient.__init__", self._client_init),
            Patch("pymongo.helpers_shared", "_check_command_response", self._check_command_response),
        ]
        # A live plugin in replay: the driver connects from its monitor threads too, outside the app's context.
        if hasattr(pymongo.pool_shared, "_create_connection"):
            patches.append(Patch("pymongo.pool_shared", "_create_connection", self._live_connect))
        if hasattr(pymongo.pool_shared, "_async_create_connection"):
            patches.append(Patch("pymongo.pool_shared", "_async_create_connection", self._live_connect_async))
        return patches

    def uninstall(self) -> None:
        super().uninstall()
        with self._lock:
            responder, self._responder = self._responder, None
        if responder is not None:
            responder.stop()
        self.answers.clear()
        self.replay_errors.clear()

    # -- wrappers -------------------------------------------------------------------------------------------

    def _client_init(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        listener: _RecordListener | _ReplayListener
        if self.mocked:
            listener = _ReplayListener(self)
            result = wrapped(**_with_listener(_redirect(args, kwargs, self._replay_address()), listener))
        elif self.runtime.replaying:
            return wrapped(*args, **kwargs)
        else:
            listener = _RecordListener(self, _library(kwargs))
            result = wrapped(*args, **_with_listener(kwargs, listener))
        listener.codec_options = instance.codec_options
        return result

    def _check_command_response(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Raise a replay error (a lookup miss) in the app as itself, not as the error reply carrying it."""
        if self.active and self.mocked:
            response = args[0] if args else kwargs.get("response")
            if isinstance(response, Mapping) and _ERROR_MARK in response:
                error = self.replay_errors.pop(response[_ERROR_MARK], None)
                if error is not None:
                    raise error
        return wrapped(*args, **kwargs)

    def _live_connect(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self.active and self.runtime.replaying and not self.mocked:
            with live_call():
                return wrapped(*args, **kwargs)
        return wrapped(*args, **kwargs)

    async def _live_connect_async(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self.active and self.runtime.replaying and not self.mocked:
            with live_call():
                return await wrapped(*args, **kwargs)
        return await wrapped(*args, **kwargs)

    # -- the replay server ----------------------------------------------------------------------------------

    def _replay_address(self) -> str:
        with self._lock:
            if self._responder is None:
                self._responder = WireResponder(self._answer)
                host, _, port = self._responder.address.rpartition(":")
                allow_internal(host, int(port))
            return self._responder.address

    def _answer(self, request_id: int, command: dict[str, Any]) -> bytes | None:
        """Runs on the replay server's threads: hands out what the replay listener left for this request."""
        name = next(iter(command), "")
        if name in _HOUSEKEEPING:
            self.answers.pop(request_id, None)
            return bson.encode(_housekeeping_reply(name, command))
        if request_id in self.answers:
            return self.answers.pop(request_id)
        if name in _HELLO:  # the handshake and the monitors' heartbeats
            with self._lock:
                self._connections += 1
                connection_id = self._connections
            responder = self._responder
            return bson.encode(_hello(responder.address if responder else "127.0.0.1", connection_id))
        if name in ("ping", "buildInfo", "buildinfo"):
            return bson.encode({"ok": 1.0, "version": "8.0.0"} if name != "ping" else {"ok": 1.0})
        message = (f"timetracer: no recorded answer for MongoDB command {name!r} (the driver sent it without "
                   "command monitoring, or the client was created before timetracer was installed)")
        logger.warning("%s", message)
        return bson.encode({"ok": 0.0, "errmsg": message, "code": 8})


def _housekeeping_reply(name: str, command: Mapping[str, Any]) -> dict[str, Any]:
    if name == "killCursors":
        return {"cursorsKilled": list(command.get("cursors") or ()), "cursorsNotFound": [], "cursorsAlive": [],
                "cursorsUnknown": [], "ok": 1.0}
    return {"ok": 1.0}


INTEGRATION = MongoIntegration
