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
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled
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


# -- the one definition of a call, for record and replay alike -------------------------------------------------


def _command_name(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace").upper()
    return str(value).upper()


def command_call(args: Sequence[Any]) -> tuple[str, list[Any]]:
    """``execute_command(*args)`` as (operation, arguments): the command name upper-cased and the rest as given."""
    return _command_name(args[0]), list(args[1:])


def pipeline_call(stack: Sequence[tuple[Sequence[Any], Any]], transactional: bool) -> tuple[str, str, list[Any]]:
    """A pipeline's queued commands as (method, operation, arguments): one ``[NAME, *args]`` list per command."""
    arguments = [[_command_name(args[0]), *args[1:]] for args, _options in stack]
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


def _replay_pipeline(pipeline: Any, transactional: bool, raise_on_error: bool) -> Any:
    """The recorded replies of the pipeline's queued commands; raises as ``execute()`` would."""
    stack = list(pipeline.command_stack)
    method, operation, arguments = pipeline_call(stack, transactional)
    request = _request(operation, arguments, method)
    interaction = replay_call(request, KIND)
    if interaction.error is not None:
        raise _recorded_error(interaction, request)
    replies = _replies(_recorded_result(interaction), request)
    if raise_on_error and isinstance(replies, list):
        pipeline.raise_first_error(stack, replies)
    return replies


def _raise_on_error(args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
    return bool(args[0] if args else kwargs.get("raise_on_error", True))


def _watch_state(pipeline: Any, args: Sequence[Any]) -> None:
    """What ``Pipeline.parse_response`` does to the watch state after an immediate command."""
    name = _command_name(args[0])
    if name in _UNWATCH_COMMANDS:
        pipeline.watching = False
    elif name == "WATCH":
        pipeline.watching = True


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
        )

    def _passes_through(self) -> bool:
        return not self.active or not is_instrumentation_enabled()

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
                return _replay_pipeline(instance, transactional, _raise_on_error(args, kwargs))
            finally:
                instance.reset()
        recording = current_recording()
        if recording is None:
            with live_call():
                return wrapped(*args, **kwargs)
        call = self._begin_pipeline(recording, instance, transactional)
        try:
            replies = wrapped(*args, **kwargs)
        except Exception as exc:
            _failed(call, exc)
            raise
        _succeeded(call, replies, pipeline=True)
        return replies

    async def _async_pipeline_execute(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self._passes_through() or (not instance.command_stack and not instance.watching):
            return await wrapped(*args, **kwargs)
        transactional = bool(instance.is_transaction or instance.explicit_transaction)
        if self.mocked:
            try:
                if instance.scripts:
                    await instance.load_scripts()
                return _replay_pipeline(instance, transactional, _raise_on_error(args, kwargs))
            finally:
                await instance.reset()
        recording = current_recording()
        if recording is None:
            with live_call():
                return await wrapped(*args, **kwargs)
        call = self._begin_pipeline(recording, instance, transactional)
        try:
            replies = await wrapped(*args, **kwargs)
        except Exception as exc:
            _failed(call, exc)
            raise
        _succeeded(call, replies, pipeline=True)
        return replies

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
    def _begin_pipeline(recording: RequestRecording, pipeline: Any, transactional: bool) -> _RedisCall | None:
        try:
            method, operation, arguments = pipeline_call(pipeline.command_stack, transactional)
        except Exception:
            logger.warning("timetracer: could not record a redis pipeline", exc_info=True)
            return None
        return _begin(recording, operation, arguments, method)


INTEGRATION = RedisIntegration
