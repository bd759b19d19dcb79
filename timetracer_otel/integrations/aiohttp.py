"""aiohttp: record and replay each HTTP exchange of a ``ClientSession`` at its innermost client middleware.

``ClientSession._request`` is wrapped only to add one middleware after the session's own (and the call's),
so it sits where the connection would be opened. Everything else aiohttp does runs unchanged in record and
replay: redirects (each hop is its own recorded call), cookies, ``raise_for_status``, the app's middlewares
and the trace configs the OpenTelemetry instrumentation uses. Client middlewares need aiohttp 3.12 or later.

Record passes the request and response through untouched and copies what crosses them: a streamed payload as
aiohttp writes it, and the response body as the app reads it, whichever way it reads it (``read``, ``text``,
``json``, ``content.read``/``iter_chunked``/``iter_any``/``readline``...). Replay answers with a real
``ClientResponse`` over the recorded bytes; no connection is made.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any, cast

import wrapt
from aiohttp import ClientSession, client_exceptions, hdrs, payload
from aiohttp.client_reqrep import ClientRequest, ClientResponse
from aiohttp.http import HttpVersion
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from timetracer_otel.cassette.content_coding import decode_content
from timetracer_otel.cassette.model import Headers, Interaction
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._http import RecordedBody, recorded_exception, recorded_response
from timetracer_otel.record.captured import CapturedBody, CapturedHttpRequest, CapturedHttpResponse
from timetracer_otel.record.recording import BodyBuffer, BuiltCall, RequestRecording, body_of, current_recording
from timetracer_otel.replay.guard import live_call
from timetracer_otel.replay.matching import header_value
from timetracer_otel.replay.session import replay_call

__all__ = ["AiohttpIntegration"]

Handler = Callable[[ClientRequest], Awaitable[ClientResponse]]

#: Content-codings aiohttp's response parser undoes when ``auto_decompress`` is on (a single coding only).
_DECOMPRESSED = frozenset({"gzip", "deflate", "br", "zstd"})
_TAKES_STREAM_WRITER = "stream_writer" in inspect.signature(ClientResponse.__init__).parameters
_KEEPS_RAW_COOKIES = hasattr(ClientResponse, "_raw_cookie_headers")
_STRERROR = re.compile(r"\[(.*)\]\s*$", re.DOTALL)


def _decompressed(coding: str | None, auto_decompress: bool) -> bool:
    """Whether aiohttp hands the app this body decoded."""
    return auto_decompress and coding is not None and coding.strip().lower() in _DECOMPRESSED


def _headers(headers: Any) -> Headers:
    return tuple((str(name), str(value)) for name, value in headers.items())


def _version_text(version: HttpVersion | None) -> str | None:
    return None if version is None else f"HTTP/{version.major}.{version.minor}"


def _version(text: str | None) -> HttpVersion:
    match = re.fullmatch(r"HTTP/(\d+)\.(\d+)", text or "")
    return HttpVersion(int(match.group(1)), int(match.group(2))) if match else HttpVersion(1, 1)


# -- request bodies -----------------------------------------------------------------------------------------


class _BodyTap:
    """What a request payload writes itself into: each chunk is copied, then passed on to aiohttp's writer.

    Replay has no writer: the payload is only read, as sending it would read it.
    """

    __slots__ = ("_buffer", "_writer")

    def __init__(self, writer: Any, buffer: BodyBuffer) -> None:
        self._writer = writer
        self._buffer = buffer

    async def write(self, chunk: Any, *args: Any, **kwargs: Any) -> None:
        self._buffer.feed(bytes(chunk))
        if self._writer is not None:
            await self._writer.write(chunk, *args, **kwargs)

    async def drain(self) -> None:
        if self._writer is not None:
            await self._writer.drain()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or self._writer is None:
            raise AttributeError(name)
        return getattr(self._writer, name)


class _TeePayload(wrapt.ObjectProxy[Any]):
    """A streamed request payload, unchanged, whose bytes are copied into a :class:`BodyBuffer` as written."""

    def __init__(self, wrapped: payload.Payload, buffer: BodyBuffer) -> None:
        super().__init__(wrapped)
        self._self_buffer = buffer

    async def write(self, writer: Any) -> None:
        await self.__wrapped__.write(_BodyTap(writer, self._self_buffer))
        self._self_buffer.close()

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        await self.__wrapped__.write_with_length(_BodyTap(writer, self._self_buffer), content_length)
        self._self_buffer.close()


def _payload(request: ClientRequest) -> payload.Payload | None:
    body = request._body
    # A redirect re-sends the payload of the previous hop, which that hop's recording had wrapped.
    return body.__wrapped__ if isinstance(body, _TeePayload) else body


async def _whole(body: payload.Payload) -> bytes | None:
    """The payload's bytes when they are in memory already; None when it is streamed (files, iterables...)."""
    if isinstance(body, payload.BytesPayload):
        return bytes(await body.as_bytes())
    return None


# -- response bodies ----------------------------------------------------------------------------------------


class _TeeContent(wrapt.ObjectProxy[Any]):
    """A response's ``StreamReader``, unchanged, copying every byte the app reads from it.

    Each reading method calls the real one, whose internal reads are not seen here, so nothing is copied
    twice; the iterator factories run aiohttp's own code against this proxy, so they read through it.
    """

    def __init__(self, wrapped: StreamReader, buffer: BodyBuffer) -> None:
        super().__init__(wrapped)
        self._self_buffer = buffer
        self._self_unread = 0

    def _self_copy(self, data: bytes) -> bytes:
        chunk = data
        if self._self_unread:  # bytes pushed back with unread_data() were copied when first read
            skip = min(self._self_unread, len(chunk))
            self._self_unread -= skip
            chunk = chunk[skip:]
        if chunk:
            self._self_buffer.feed(chunk)
        if self.__wrapped__.at_eof():
            self._self_buffer.close()
        return data

    async def read(self, n: int = -1) -> bytes:
        return self._self_copy(await self.__wrapped__.read(n))

    async def readany(self) -> bytes:
        return self._self_copy(await self.__wrapped__.readany())

    async def readline(self, *args: Any, **kwargs: Any) -> bytes:
        return self._self_copy(await self.__wrapped__.readline(*args, **kwargs))

    async def readuntil(self, *args: Any, **kwargs: Any) -> bytes:
        return self._self_copy(await self.__wrapped__.readuntil(*args, **kwargs))

    async def readexactly(self, n: int) -> bytes:
        try:
            return self._self_copy(await self.__wrapped__.readexactly(n))
        except asyncio.IncompleteReadError as exc:
            self._self_copy(exc.partial)
            raise

    async def readchunk(self) -> tuple[bytes, bool]:
        data, end_of_chunk = await self.__wrapped__.readchunk()
        return self._self_copy(data), end_of_chunk

    def read_nowait(self, n: int = -1) -> bytes:
        return self._self_copy(self.__wrapped__.read_nowait(n))

    def unread_data(self, data: bytes) -> None:
        self.__wrapped__.unread_data(data)
        self._self_unread += len(data)

    def __aiter__(self) -> Any:
        return type(self.__wrapped__).__aiter__(self)

    def iter_chunked(self, n: int) -> Any:
        return type(self.__wrapped__).iter_chunked(self, n)

    def iter_any(self) -> Any:
        return type(self.__wrapped__).iter_any(self)

    def iter_chunks(self) -> Any:
        return type(self.__wrapped__).iter_chunks(self)


class _Delivered:
    """The transport side of a replayed response's ``StreamReader``: everything has arrived already."""

    connected = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


class _RecordedContent(StreamReader):
    """A replayed response's ``StreamReader``, holding the recorded body.

    A complete body is fed with its end, so this waits for nothing. A body the app did not read to the end
    while recording gets no end: a read that needs more than is left (or ``wait_eof``) would wait for more data,
    and there :meth:`RecordedBody.end` raises ``IncompleteBodyError`` instead. (``set_exception`` would not do:
    it fails reads at once, even those the bytes still buffered would answer.)
    """

    __slots__ = ("_recorded",)

    def __init__(self, body: RecordedBody, data: bytes, request: ClientRequest) -> None:
        super().__init__(_Delivered(), 2**16, timer=request._timer, loop=request.loop)  # type: ignore[arg-type]
        self._recorded = body
        if data:
            self.feed_data(data)
        if body.complete:
            self.feed_eof()

    async def _wait(self, func_name: str) -> None:
        self._recorded.end()
        self.feed_eof()

    async def wait_eof(self) -> None:
        if not self._eof:
            await self._wait("wait_eof")


class _Sent:
    """The stream writer of a replayed request, which aiohttp only asks how much was sent."""

    def __init__(self, size: int) -> None:
        self.output_size = size


# -- the integration ----------------------------------------------------------------------------------------


class _Exchange:
    """One ``_request`` call while recording: its hops, and the one in flight, if any."""

    __slots__ = ("auto_decompress", "pending", "recording")

    def __init__(self, recording: RequestRecording, auto_decompress: bool) -> None:
        self.recording = recording
        self.auto_decompress = auto_decompress
        self.pending: BuiltCall | None = None


def _innermost(session: ClientSession, kwargs: dict[str, Any], middleware: Any) -> dict[str, Any]:
    """``kwargs`` with ``middleware`` added after the ones the call would use: it runs closest to the wire."""
    middlewares = kwargs.get("middlewares")
    if middlewares is None:
        middlewares = session._middlewares
    return {**kwargs, "middlewares": (*middlewares, middleware)}


def _upgrade(request: ClientRequest) -> bool:
    """WebSocket and other upgraded connections are not HTTP exchanges we can record or replay."""
    return hdrs.UPGRADE in request.headers


class AiohttpIntegration(Integration):
    name = "aiohttp"

    def patches(self) -> Sequence[Patch]:
        if "middlewares" not in inspect.signature(ClientSession._request).parameters:
            raise RuntimeError("the aiohttp integration needs aiohttp >= 3.12 (client middlewares)")
        return (Patch("aiohttp.client", "ClientSession._request", self._request),)

    async def _request(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        auto_decompress = kwargs.get("auto_decompress")
        if auto_decompress is None:
            auto_decompress = instance.auto_decompress
        if self.mocked:
            hop = functools.partial(self._replay_hop, bool(auto_decompress))
            return await wrapped(*args, **_innermost(instance, kwargs, hop))
        recording = current_recording()
        if recording is None:
            with live_call():
                return await wrapped(*args, **kwargs)
        exchange = _Exchange(recording, bool(auto_decompress))
        try:
            return await wrapped(*args, **_innermost(instance, kwargs, functools.partial(self._record_hop, exchange)))
        except BaseException as exc:
            # A hop cut short from outside, e.g. by the session's total timeout (the cancellation reaches the
            # hop; the TimeoutError it becomes is raised here): record what the app got.
            if exchange.pending is not None:
                exchange.pending.failed(exc)
            raise

    # -- record -------------------------------------------------------------------------------------------

    async def _record_hop(self, exchange: _Exchange, request: ClientRequest, handler: Handler) -> ClientResponse:
        if _upgrade(request):
            return await handler(request)
        recording = exchange.recording
        limit = self.settings.max_body_bytes
        request_body = await self._tap_request(recording, request, limit)
        method, url, headers = request.method, str(request.url), _headers(request.headers)
        call = BuiltCall(
            "http", self.name, lambda: CapturedHttpRequest(method=method, url=url, headers=headers, body=request_body())
        )
        recording.add_call(call)
        exchange.pending = call
        try:
            response = await handler(request)
        except Exception as exc:
            exchange.pending = None
            call.failed(exc)
            raise
        exchange.pending = None
        buffer = BodyBuffer(limit, recording)
        response.content = cast(StreamReader, _TeeContent(response.content, buffer))
        status, reason, version, response_headers = response.status, response.reason, response.version, response.headers
        coding = response_headers.get(hdrs.CONTENT_ENCODING)
        stored = None if _decompressed(coding, exchange.auto_decompress) else coding
        call.succeeded(
            lambda: CapturedHttpResponse(
                status=status,
                headers=_headers(response_headers),
                body=buffer.to_body(content_coding=stored),
                reason=reason,
                http_version=_version_text(version),
            )
        )
        return response

    @staticmethod
    async def _tap_request(
        recording: RequestRecording, request: ClientRequest, limit: int
    ) -> Callable[[], CapturedBody | None]:
        body = _payload(request)
        if body is None:
            return _no_body
        whole = await _whole(body)
        if whole is not None:
            recording.account(min(len(whole), limit))
            return functools.partial(body_of, whole, limit)
        buffer = BodyBuffer(limit, recording)
        request._body = cast(payload.Payload, _TeePayload(body, buffer))
        return buffer.to_body

    # -- replay -------------------------------------------------------------------------------------------

    async def _replay_hop(self, auto_decompress: bool, request: ClientRequest, handler: Handler) -> ClientResponse:
        if _upgrade(request):
            return await handler(request)
        body = _payload(request)
        data = None if body is None else await _whole(body)
        if body is not None and data is None:  # streamed: read it to its end, as sending it would
            buffer = BodyBuffer(1 << 62)
            await _TeePayload(body, buffer).write_with_length(None, None)
            data = buffer.to_body().data
        interaction = replay_call(
            CapturedHttpRequest(
                method=request.method,
                url=str(request.url),
                headers=_headers(request.headers),
                body=None if data is None else body_of(data, len(data)),
            ).to_model()
        )
        if interaction.error is not None:
            raise self._error(interaction, request)
        return self._response(interaction, request, auto_decompress, len(data or b""))

    @staticmethod
    def _response(interaction: Interaction, request: ClientRequest, auto_decompress: bool, sent: int) -> ClientResponse:
        recorded = recorded_response(interaction)
        body = RecordedBody(interaction)
        data = body.data
        coding = header_value(recorded.headers, "content-encoding")
        if _decompressed(coding, auto_decompress):
            assert coding is not None
            decoded = decode_content(data, coding)
            data = data if decoded is None else decoded
        extra: dict[str, Any] = {"stream_writer": _Sent(sent)} if _TAKES_STREAM_WRITER else {}
        response = request.response_class(
            request.method,
            request.original_url,
            writer=None,
            continue100=None,
            timer=request._timer,
            request_info=request.request_info,
            traces=request._traces,
            loop=request.loop,
            session=request._session,
            **extra,
        )
        # What ClientResponse.start() sets from the parsed status line, headers and payload.
        content = _RecordedContent(body, data, request)
        response._closed = False
        response.version = _version(recorded.http_version)
        response.status = recorded.status
        response.reason = recorded.reason if recorded.reason is not None else _phrase(recorded.status)
        response._headers = CIMultiDictProxy(CIMultiDict(recorded.headers))
        response._raw_headers = tuple(
            (name.encode("utf-8", "surrogateescape"), value.encode("utf-8", "surrogateescape"))
            for name, value in recorded.headers
        )
        response.content = content
        cookies = response._headers.getall(hdrs.SET_COOKIE, ())
        if cookies:
            if _KEEPS_RAW_COOKIES:
                response._raw_cookie_headers = tuple(cookies)
            else:  # aiohttp < 3.12.7 parsed them in start()
                for cookie in cookies:
                    response.cookies.load(cookie)
        content.on_eof(response._response_eof)
        return response

    @staticmethod
    def _error(interaction: Interaction, request: ClientRequest) -> BaseException:
        error = interaction.error
        assert error is not None
        kind = recorded_exception(error, interaction.request, ("aiohttp",), client_exceptions.ClientConnectionError)
        try:
            if issubclass(kind, client_exceptions.ClientConnectorError):
                # str() is "Cannot connect to host h:p ssl:s [strerror]"; the connection key supplies the rest.
                found = _STRERROR.search(error.message)
                reason = OSError(None, found.group(1) if found else error.message)
                return kind(request.connection_key, reason)
            if issubclass(kind, client_exceptions.ClientResponseError):
                return kind(request.request_info, (), message=error.message)
            return kind(error.message)
        except TypeError:
            return client_exceptions.ClientConnectionError(error.message)


def _no_body() -> None:
    return None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


INTEGRATION = AiohttpIntegration
