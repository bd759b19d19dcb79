"""redis-py: record and replay every command and every pipeline, sync and ``redis.asyncio``.

The seams are where a command's final value exists: ``Redis.execute_command`` returns the reply after the response
callbacks and ``decode_responses`` ran (they run inside it, in ``parse_response``), ``Pipeline.execute`` returns
the list of such replies, and ``Pipeline.immediate_execute_command`` carries WATCH and the commands a pipeline in
watch mode sends at once. Replies are kept with their exact Python types (``bytes`` vs ``str``, tuples, sets, ...;
see :mod:`timetracer_otel.cassette.values`), so replay hands the app the same values.

Replay answers those calls from the cassette and never reaches ``get_connection``. Two constructors connect by
themselves and are patched so that they do not while replaying: the sync client with
``single_connection_client=True`` (in ``__init__``) and the asyncio client's ``initialize()`` (``await client`` /
``async with client``).

Cluster clients (``redis.cluster.RedisCluster`` and its asyncio twin) are hooked one level up, at
``RedisCluster.execute_command`` and ``ClusterPipeline.execute``: below them redis-py picks a node, follows MOVED /
ASK and retries, none of which is the app's business, so a call is keyed as the standalone client's is, whichever
node answered. The client's own traffic (discovery's ``CLUSTER SLOTS`` in ``NodesManager.initialize``, the
``COMMAND`` table in ``CommandsParser.initialize``, ``COMMAND GETKEYS``, a pipeline's per-command retries) runs
inside :func:`_cluster_internals` and is neither recorded nor replayed. Replaying, discovery is replaced by
:func:`_stand_in_topology` and the ``COMMAND`` table left empty, so a cluster client opens no socket.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from redis.crc import REDIS_CLUSTER_HASH_SLOTS
from redis.exceptions import RedisError, ResponseError, WatchError

from timetracer_otel.cassette.model import CallRequest, CallResponse, Interaction, RecordedError
from timetracer_otel.cassette.values import from_json_value, to_json_value
from timetracer_otel.errors import ReplayError
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._http import recorded_exception
from timetracer_otel.record.recording import DataCall, RequestRecording, current_recording
from timetracer_otel.replay.guard import live_call
from timetracer_otel.replay.session import replay_call

__all__ = ["KIND", "RedisIntegration", "command_call", "pipeline_call"]

logger = logging.getLogger("timetracer")

KIND = "redis"
#: How an error reply inside a pipeline's reply list is stored: ``{"$error": {"type", "message", "status_code"}}``.
#: A reply that is itself a dict with ``$`` keys is stored as ``$map`` by ``to_json_value``, so it never looks
#: like this.
_ERROR_TAG = "$error"
#: Types kept as they are until the cassette is written: the app cannot change them in the meantime.
_IMMUTABLE = (str, bytes, int, float, bool, type(None))
#: What the pipeline does to its watch state after these commands (``Pipeline.parse_response``).
_UNWATCH_COMMANDS = frozenset({"DISCARD", "EXEC", "UNWATCH"})
#: Set while a cluster client's own machinery runs (discovery, a command or pipeline being routed to its nodes):
#: the redis calls it makes below the app's call pass through unrecorded.
_CLUSTER_INTERNALS: contextvars.ContextVar[bool] = contextvars.ContextVar("timetracer_redis_cluster", default=False)


# -- the one definition of a call, for record and replay alike -------------------------------------------------


def _command_name(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace").upper()
    return str(value).upper()


def command_call(args: Sequence[Any]) -> tuple[str, list[Any]]:
    """``execute_command(*args)`` as (operation, arguments): the command name upper-cased and the rest as given."""
    return _command_name(args[0]), list(args[1:])


def pipeline_call(stack: Sequence[Sequence[Any]], transactional: bool) -> tuple[str, str, list[Any]]:
    """A pipeline's queued commands (each one's ``execute_command`` args) as (method, operation, arguments):
    one ``[NAME, *args]`` list per command."""
    arguments = [[_command_name(args[0]), *args[1:]] for args in stack]
    if transactional:
        return "transaction", "MULTI", arguments
    return "pipeline", "PIPELINE", arguments


def _request(operation: str, arguments: Any, method: str | None = None) -> CallRequest:
    """What replay looks up: the same fields, encoded as the writer encodes a recorded call's."""
    return CallRequest(operation, method, None, to_json_value(arguments))


# -- record -------------------------------------------------------------------------------------------------------


class _Encoded:
    """A reply already made a JSON value on the app's thread (see :func:`_kept`)."""

    __slots__ = ("json",)

    def __init__(self, json: Any) -> None:
        self.json = json


def _encode(value: Any) -> Any:
    return value.json if type(value) is _Encoded else to_json_value(value)


def _kept(reply: Any) -> Any:
    """A reply as it can wait for the writer thread: containers (lists, dicts, sets the app may change) are
    encoded now, which also copies them."""
    return reply if isinstance(reply, _IMMUTABLE) else _Encoded(to_json_value(reply))


def _status_code(error: BaseException) -> Any:
    return getattr(error, "status_code", None) if isinstance(error, RedisError) else None


def _error_reply(error: BaseException) -> dict[str, Any]:
    kind = type(error)
    return {_ERROR_TAG: {"type": f"{kind.__module__}.{kind.__qualname__}", "message": str(error),
                         "status_code": _status_code(error)}}


def _kept_replies(replies: Any) -> Any:
    """A pipeline's reply list, error replies (exception instances) stored as ``$error`` values. Encoded now:
    the app (or ``raise_first_error``) may change the list and the exceptions' messages afterwards."""
    if not isinstance(replies, list):
        return _kept(replies)
    return _Encoded([_error_reply(r) if isinstance(r, BaseException) else to_json_value(r) for r in replies])


class _RedisCall(DataCall):
    """A recorded command or pipeline; an error keeps redis' status code (``WRONGTYPE``, ``NOSCRIPT``...)."""

    __slots__ = ()

    def error_details(self) -> Any:
        status = _status_code(self.error) if self.error is not None else None
        return {"status_code": status} if status is not None else None


def _begin(recording: RequestRecording, operation: str, arguments: Any, method: str | None = None) -> _RedisCall | None:
    """Attach a call to the recording; None (and logged) if that fails: recording never breaks the app."""
    try:
        call = _RedisCall(KIND, "redis", operation, arguments, method=method, encode=_encode)
        recording.add_call(call)
    except Exception:
        logger.warning("timetracer: could not record a redis call", exc_info=True)
        return None
    return call


def _succeeded(call: _RedisCall | None, result: Any, pipeline: bool = False) -> None:
    if call is None:
        return
    try:
        call.succeeded(_kept_replies(result) if pipeline else _kept(result))
    except Exception:
        logger.warning("timetracer: could not record a redis reply", exc_info=True)
        call._ended()  # recorded without a reply: replaying it says so, rather than the request never settling


def _failed(call: _RedisCall | None, error: BaseException) -> None:
    if call is None:
        return
    try:
        call.failed(error)
    except Exception:
        logger.warning("timetracer: could not record a redis error", exc_info=True)


# -- replay -------------------------------------------------------------------------------------------------------


def _exception(type_name: str, message: str, status_code: Any, request: CallRequest) -> BaseException:
    """redis' own exception again (only types from the ``redis`` package or builtins: a cassette is data)."""
    error = RecordedError(type_name, message)
    kind = recorded_exception(error, request, ("redis",), ResponseError)
    try:
        if status_code is not None and issubclass(kind, RedisError):
            return kind(message, status_code=status_code)
        return kind(message)
    except Exception:  # a constructor wanting other arguments
        return ResponseError(message)


def _recorded_error(interaction: Interaction, request: CallRequest) -> BaseException:
    error = interaction.error
    assert error is not None
    details = error.details
    status = details.get("status_code") if isinstance(details, dict) else None
    return _exception(error.type, error.message, status, request)


def _describe(interaction: Interaction) -> str:
    request = interaction.request
    return request.operation if isinstance(request, CallRequest) else "?"


def _recorded_result(interaction: Interaction) -> Any:
    response = interaction.response
    if not isinstance(response, CallResponse):
        raise ReplayError(f"the recorded redis call {_describe(interaction)} has neither a reply nor an error")
    return response.result


def _replay_command(args: Sequence[Any]) -> Any:
    operation, arguments = command_call(args)
    request = _request(operation, arguments)
    interaction = replay_call(request, KIND)
    if interaction.error is not None:
        raise _recorded_error(interaction, request)
    return from_json_value(_recorded_result(interaction))


def _replies(result: Any, request: CallRequest) -> Any:
    if not isinstance(result, list):
        return from_json_value(result)
    replies = []
    for item in result:
        if isinstance(item, dict) and len(item) == 1 and isinstance(item.get(_ERROR_TAG), dict):
            error = item[_ERROR_TAG]
            replies.append(_exception(str(error.get("type")), str(error.get("message")), error.get("status_code"),
                                      request))
        else:
            replies.append(from_json_value(item))
    return replies


def _replay_pipeline(stack: Sequence[Sequence[Any]], transactional: bool,
                     raise_first: Callable[[list[Any]], None] | None) -> Any:
    """The recorded replies of a pipeline's queued commands; ``raise_first`` raises as ``execute()`` would."""
    method, operation, arguments = pipeline_call(stack, transactional)
    request = _request(operation, arguments, method)
    interaction = replay_call(request, KIND)
    if interaction.error is not None:
        raise _recorded_error(interaction, request)
    replies = _replies(_recorded_result(interaction), request)
    if raise_first is not None and isinstance(replies, list):
        raise_first(replies)
    return replies


def _standalone_stack(pipeline: Any) -> list[Sequence[Any]]:
    return [args for args, _options in pipeline.command_stack]


def _standalone_raise_first(pipeline: Any, args: Sequence[Any], kwargs: dict[str, Any]
                            ) -> Callable[[list[Any]], None] | None:
    if not _raise_on_error(args, kwargs):
        return None
    stack = list(pipeline.command_stack)
    return lambda replies: pipeline.raise_first_error(stack, replies)


def _raise_on_error(args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
    return bool(args[0] if args else kwargs.get("raise_on_error", True))


def _watch_state(pipeline: Any, args: Sequence[Any]) -> None:
    """What ``Pipeline.parse_response`` does to the watch state after an immediate command."""
    name = _command_name(args[0])
    if name in _UNWATCH_COMMANDS:
        pipeline.watching = False
    elif name == "WATCH":
        pipeline.watching = True


# -- cluster clients ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _cluster_internals() -> Iterator[None]:
    """The cluster client's own redis traffic: unrecorded, and let through the network guard (a live plugin)."""
    token = _CLUSTER_INTERNALS.set(True)
    try:
        with live_call():
            yield
    finally:
        _CLUSTER_INTERNALS.reset(token)


def _internal(wrapped: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with _cluster_internals():
            return wrapped(*args, **kwargs)
    return call


def _async_internal(wrapped: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def call(*args: Any, **kwargs: Any) -> Any:
        with _cluster_internals():
            return await wrapped(*args, **kwargs)
    return call


def _stand_in_topology(manager: Any) -> None:
    """Replaying, the startup nodes stand in for the discovered cluster, the first owning every slot: redis-py's
    routing before a seam (``mget_nonatomic`` picks a node per slot while queueing) works, and a node's connections
    open lazily, which no replayed call does. Sync and asyncio ``NodesManager`` share these attributes."""
    nodes = list(manager.startup_nodes.values())
    for node in nodes:
        node.server_type = "primary"
    if hasattr(manager, "create_redis_connections"):  # sync: each node holds a (not yet connected) Redis client
        manager.create_redis_connections(nodes)
    manager.nodes_cache = {node.name: node for node in nodes}
    manager.slots_cache = dict.fromkeys(range(REDIS_CLUSTER_HASH_SLOTS), nodes[:1])
    manager.default_node = nodes[0] if nodes else None


def _cluster_stack(pipeline: Any) -> list[Sequence[Any]]:
    """A cluster pipeline's queued commands (its execution strategy holds them, sync and asyncio alike)."""
    return [command.args for command in pipeline._execution_strategy._command_queue]


def _cluster_transactional(pipeline: Any) -> bool:
    return type(pipeline._execution_strategy).__name__ == "TransactionStrategy"


def _cluster_raise_first(pipeline: Any, args: Sequence[Any], kwargs: dict[str, Any]
                         ) -> Callable[[list[Any]], None] | None:
    """Raise the first error reply with redis-py's ``Command # n (...) of pipeline caused error:`` prefix."""
    if not _raise_on_error(args, kwargs):
        return None
    stack = _cluster_stack(pipeline)
    strategy = pipeline._execution_strategy
    annotate = getattr(strategy, "annotate_exception", None) or strategy._annotate_exception

    def raise_first(replies: list[Any]) -> None:
        for number, (reply, command) in enumerate(zip(replies, stack, strict=False), 1):
            if isinstance(reply, Exception):
                annotate(reply, number, command)
                raise reply

    return raise_first


# -- the integration ----------------------------------------------------------------------------------------------


class RedisIntegration(Integration):
    name = "redis"

    def patches(self) -> Sequence[Patch]:
        return (
            Patch("redis.client", "Redis.__init__", self._init),
            Patch("redis.client", "Redis.execute_command", self._execute_command),
            Patch("redis.client", "Pipeline.execute", self._pipeline_execute),
            Patch("redis.client", "Pipeline.immediate_execute_command", self._immediate),
            Patch("redis.asyncio.client", "Redis.initialize", self._async_initialize),
            Patch("redis.asyncio.client", "Redis.execute_command", self._async_execute_command),
            Patch("redis.asyncio.client", "Pipeline.execute", self._async_pipeline_execute),
            Patch("redis.asyncio.client", "Pipeline.immediate_execute_command", self._async_immediate),
            Patch("redis.cluster", "NodesManager.initialize", self._discover),
            Patch("redis._parsers.commands", "CommandsParser.initialize", self._command_table),
            Patch("redis.cluster", "RedisCluster.execute_command", self._cluster_execute_command),
            Patch("redis.cluster", "ClusterPipeline.execute", self._cluster_pipeline_execute),
            Patch("redis.asyncio.cluster", "NodesManager.initialize", self._async_discover),
            Patch("redis._parsers.commands", "AsyncCommandsParser.initialize", self._async_command_table),
            Patch("redis.asyncio.cluster", "RedisCluster.execute_command", self._async_cluster_execute_command),
            Patch("redis.asyncio.cluster", "ClusterPipeline.execute", self._async_cluster_pipeline_execute),
        )

    def _passes_through(self) -> bool:
        return not self.active or not is_instrumentation_enabled() or _CLUSTER_INTERNALS.get()

    # -- connecting constructors -------------------------------------------------------------------------------

    def _init(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """``single_connection_client=True`` takes a (connected) connection in ``__init__``: not when replaying."""
        if self._passes_through() or not self.mocked or not kwargs.get("single_connection_client"):
            return wrapped(*args, **kwargs)
        wrapped(*args, **{**kwargs, "single_connection_client": False})
        instance._single_connection_client = True  # as asked; its commands never reach a connection
        return None

    async def _async_initialize(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """``await client`` / ``async with client`` connect a single-connection client: not when replaying."""
        if self._passes_through() or not self.mocked:
            return await wrapped(*args, **kwargs)
        return instance

    # -- commands: sync and async twins ------------------------------------------------------------------------

    def _execute_command(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._passes_through():
            return wrapped(*args, **kwargs)
        if self.mocked:
            return _replay_command(args)
        recording = current_recording()
        if recording is None:
            with live_call():
                return wrapped(*args, **kwargs)
        call = self._begin_command(recording, args)
        try:
            result = wrapped(*args, **kwargs)
        except Exception as exc:
            _failed(call, exc)
            raise
        _succeeded(call, result)
        return result

    async def _async_execute_command(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._passes_through():
            return await wrapped(*args, **kwargs)
        if self.mocked:
            return _replay_command(args)
        recording = current_recording()
        if recording is None:
            with live_call():
                return await wrapped(*args, **kwargs)
        call = self._begin_command(recording, args)
        try:
            result = await wrapped(*args, **kwargs)
        except Exception as exc:
            _failed(call, exc)
            raise
        _succeeded(call, result)
        return result

    def _immediate(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """A command a pipeline sends at once (WATCH, and everything while watching): a plain command."""
        if self._passes_through() or not self.mocked:
            return self._execute_command(wrapped, instance, args, kwargs)
        try:
            result = _replay_command(args)
        except WatchError:
            instance.reset()
            raise
        _watch_state(instance, args)
        return result

    async def _async_immediate(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._passes_through() or not self.mocked:
            return await self._async_execute_command(wrapped, instance, args, kwargs)
        try:
            result = _replay_command(args)
        except WatchError:
            await instance.reset()
            raise
        _watch_state(instance, args)
        return result

    # -- pipelines: sync and async twins -----------------------------------------------------------------------

    def _pipeline_execute(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._passes_through() or (not instance.command_stack and not instance.watching):
            return wrapped(*args, **kwargs)  # nothing to send: execute() returns [] without a connection
        transactional = bool(instance.transaction or instance.explicit_transaction)
        if self.mocked:
            try:
                if instance.scripts:
                    instance.load_scripts()  # its SCRIPT EXISTS / LOAD are immediate commands: replayed too
                return _replay_pipeline(_standalone_stack(instance), transactional,
                                        _standalone_raise_first(instance, args, kwargs))
            finally:
                instance.reset()
        return self._record_pipeline(wrapped, args, kwargs, _standalone_stack(instance), transactional)

    async def _async_pipeline_execute(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._passes_through() or (not instance.command_stack and not instance.watching):
            return await wrapped(*args, **kwargs)
        transactional = bool(instance.is_transaction or instance.explicit_transaction)
        if self.mocked:
            try:
                if instance.scripts:
                    await instance.load_scripts()
                return _replay_pipeline(_standalone_stack(instance), transactional,
                                        _standalone_raise_first(instance, args, kwargs))
            finally:
                await instance.reset()
        return await self._async_record_pipeline(wrapped, args, kwargs, _standalone_stack(instance), transactional)

    def _record_pipeline(self, wrapped: Any, args: Any, kwargs: Any, stack: list[Sequence[Any]],
                         transactional: bool) -> Any:
        recording = current_recording()
        if recording is None:
            with live_call():
                return wrapped(*args, **kwargs)
        call = self._begin_pipeline(recording, stack, transactional)
        try:
            replies = wrapped(*args, **kwargs)
        except Exception as exc:
            _failed(call, exc)
            raise
        _succeeded(call, replies, pipeline=True)
        return replies

    async def _async_record_pipeline(self, wrapped: Any, args: Any, kwargs: Any, stack: list[Sequence[Any]],
                                     transactional: bool) -> Any:
        recording = current_recording()
        if recording is None:
            with live_call():
                return await wrapped(*args, **kwargs)
        call = self._begin_pipeline(recording, stack, transactional)
        try:
            replies = await wrapped(*args, **kwargs)
        except Exception as exc:
            _failed(call, exc)
            raise
        _succeeded(call, replies, pipeline=True)
        return replies

    # -- cluster clients: sync and async twins -----------------------------------------------------------------

    def _discover(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Cluster discovery (``CLUSTER SLOTS`` to the startup nodes: the sync client's ``__init__``, the asyncio
        client's ``initialize()``, and after MOVED): a stand-in topology when replaying."""
        if self._passes_through():
            return wrapped(*args, **kwargs)
        if self.mocked:
            return _stand_in_topology(instance)
        return _internal(wrapped)(*args, **kwargs)

    async def _async_discover(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._passes_through():
            return await wrapped(*args, **kwargs)
        if self.mocked:
            return _stand_in_topology(instance)
        return await _async_internal(wrapped)(*args, **kwargs)

    def _command_table(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """The ``COMMAND`` table a cluster client fetches to find a command's keys: left empty when replaying."""
        if self._passes_through():
            return wrapped(*args, **kwargs)
        if self.mocked:
            instance.commands = {}
            return None
        return _internal(wrapped)(*args, **kwargs)

    async def _async_command_table(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._passes_through():
            return await wrapped(*args, **kwargs)
        if self.mocked:
            instance.commands = {}
            return None
        return await _async_internal(wrapped)(*args, **kwargs)

    def _cluster_execute_command(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """A command as the app sent it; ``target_nodes`` and the node that answered are not part of its key."""
        if self._passes_through():
            return wrapped(*args, **kwargs)
        return self._execute_command(_internal(wrapped), instance, args, kwargs)

    async def _async_cluster_execute_command(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._passes_through():
            return await wrapped(*args, **kwargs)
        return await self._async_execute_command(_async_internal(wrapped), instance, args, kwargs)

    def _cluster_pipeline_execute(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._passes_through() or not (stack := _cluster_stack(instance)):
            return wrapped(*args, **kwargs)  # nothing queued: execute() returns [] without a connection
        if self.mocked:
            try:
                return _replay_pipeline(stack, _cluster_transactional(instance),
                                        _cluster_raise_first(instance, args, kwargs))
            finally:
                instance.reset()
        return self._record_pipeline(_internal(wrapped), args, kwargs, stack, _cluster_transactional(instance))

    async def _async_cluster_pipeline_execute(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._passes_through() or not (stack := _cluster_stack(instance)):
            return await wrapped(*args, **kwargs)  # nothing queued: execute() returns [] without a connection
        if self.mocked:
            try:
                return _replay_pipeline(stack, _cluster_transactional(instance),
                                        _cluster_raise_first(instance, args, kwargs))
            finally:
                await instance.reset()
        return await self._async_record_pipeline(_async_internal(wrapped), args, kwargs, stack,
                                                 _cluster_transactional(instance))

    # -- record helpers ----------------------------------------------------------------------------------------

    @staticmethod
    def _begin_command(recording: RequestRecording, args: Sequence[Any]) -> _RedisCall | None:
        try:
            operation, arguments = command_call(args)
        except Exception:
            logger.warning("timetracer: could not record a redis command", exc_info=True)
            return None
        return _begin(recording, operation, arguments)

    @staticmethod
    def _begin_pipeline(recording: RequestRecording, stack: list[Sequence[Any]], transactional: bool
                        ) -> _RedisCall | None:
        try:
            method, operation, arguments = pipeline_call(stack, transactional)
        except Exception:
            logger.warning("timetracer: could not record a redis pipeline", exc_info=True)
            return None
        return _begin(recording, operation, arguments, method)


INTEGRATION = RedisIntegration
