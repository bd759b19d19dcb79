"""httpx: record and replay at the transport seam (``HTTPTransport`` / ``AsyncHTTPTransport``).

Record tees the request and response streams, so the app reads exactly what the server sent, as it arrives
(streaming included). Replay returns a real ``httpx.Response`` built from the cassette; no connection is made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from timetracer_otel.cassette.model import Interaction
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._http import RecordedBody, recorded_exception, recorded_response
from timetracer_otel.record.captured import CapturedBody, CapturedHttpRequest, CapturedHttpResponse
from timetracer_otel.record.recording import BodyBuffer, PendingCall, RequestRecording, body_of, current_recording
from timetracer_otel.replay.episodes import miss_goes_live
from timetracer_otel.replay.guard import live_call
from timetracer_otel.replay.session import replay_call

__all__ = ["HttpxIntegration"]


class _TeeStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Passes a stream through unchanged while copying what is read into a :class:`BodyBuffer`."""

    def __init__(self, inner: Any, buffer: BodyBuffer) -> None:
        self._inner = inner
        self._buffer = buffer

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._buffer.feed(chunk)
            yield chunk
        self._buffer.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._buffer.feed(chunk)
            yield chunk
        self._buffer.close()

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()


class _RecordedStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A replayed response's stream: the recorded body, ending as :class:`RecordedBody` ends it."""

    def __init__(self, body: RecordedBody) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        yield from self._body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._body:
            yield chunk


class _HttpxCall(PendingCall):
    """One recorded call: the parts of its request and response the cassette needs, built into captured values
    on the writer thread.

    Only the parts, not httpx's request and response objects: keeping those graphs alive until the cassette is
    written would push them into the garbage collector's oldest generation.
    """

    __slots__ = (
        "content",
        "limit",
        "method",
        "reason",
        "request_buffer",
        "request_headers",
        "response_buffer",
        "response_headers",
        "status",
        "url",
        "version",
    )

    def __init__(self, request: httpx.Request, limit: int, recording: RequestRecording) -> None:
        super().__init__("http", "httpx")
        self.limit = limit
        self.method = request.method
        self.url = request.url
        self.request_headers = request.headers
        self.content: bytes | None = None
        self.request_buffer: BodyBuffer | None = None
        if hasattr(request, "_content"):  # already read; a redirect's next request is not, so it is teed
            self.content = request.content
            recording.account(len(self.content))
        else:
            self.request_buffer = BodyBuffer(limit, recording)
        self.status = 0
        self.response_headers: httpx.Headers | None = None
        self.reason: object = None
        self.version: object = None
        self.response_buffer = BodyBuffer(limit, recording)

    def succeeded(self, response: httpx.Response) -> BodyBuffer:
        """Keep the response's parts; returns the buffer its body is to be teed into."""
        self.status = response.status_code
        self.response_headers = response.headers
        self.reason = response.extensions.get("reason_phrase")
        self.version = response.extensions.get("http_version")
        self._ended()
        return self.response_buffer

    def request(self) -> CapturedHttpRequest:
        if self.request_buffer is not None:
            body = self.request_buffer.to_body()
        else:
            body = body_of(self.content or b"", self.limit)
        return _captured_request(self.method, self.url, self.request_headers, body)

    def response(self) -> CapturedHttpResponse | None:
        headers = self.response_headers
        if headers is None:
            return None
        return CapturedHttpResponse(
            status=self.status,
            headers=headers.raw,
            body=self.response_buffer.to_body(content_coding=headers.get("content-encoding")),
            reason=_text(self.reason),
            http_version=_text(self.version),
        )


def _captured_request(method: str, url: httpx.URL, headers: httpx.Headers, body: CapturedBody) -> CapturedHttpRequest:
    """The request as recorded, and (made a model value) as replay looks it up: headers as sent, in bytes."""
    return CapturedHttpRequest(method=method, url=str(url), headers=headers.raw, body=body)


def _text(value: object) -> str | None:
    return value.decode("ascii", "replace") if isinstance(value, bytes) and value else None


class HttpxIntegration(Integration):
    name = "httpx"

    def patches(self) -> Sequence[Patch]:
        return (
            Patch("httpx", "HTTPTransport.handle_request", self._handle_request),
            Patch("httpx", "AsyncHTTPTransport.handle_async_request", self._handle_async_request),
        )

    # -- the two I/O twins: everything else is shared -----------------------------------------------------

    def _handle_request(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        request: httpx.Request = args[0] if args else kwargs["request"]
        if self.mocked:
            request.read()
            with miss_goes_live():
                return self._replay(request)
            with live_call():  # a new episode: answered live, and recorded
                return self._record(wrapped, request, args, kwargs)
        return self._record(wrapped, request, args, kwargs)

    def _record(self, wrapped: Any, request: httpx.Request, args: Any, kwargs: Any) -> Any:
        recording = current_recording()
        if recording is None:
            with live_call():
                return wrapped(*args, **kwargs)
        call = self._begin(recording, request)
        try:
            response = wrapped(*args, **kwargs)
        except Exception as exc:
            call.failed(exc)
            raise
        return self._finish(call, response)

    async def _handle_async_request(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        request: httpx.Request = args[0] if args else kwargs["request"]
        if self.mocked:
            await request.aread()
            with miss_goes_live():
                return self._replay(request)
            with live_call():  # a new episode: answered live, and recorded
                return await self._record_async(wrapped, request, args, kwargs)
        return await self._record_async(wrapped, request, args, kwargs)

    async def _record_async(self, wrapped: Any, request: httpx.Request, args: Any, kwargs: Any) -> Any:
        recording = current_recording()
        if recording is None:
            with live_call():
                return await wrapped(*args, **kwargs)
        call = self._begin(recording, request)
        try:
            response = await wrapped(*args, **kwargs)
        except Exception as exc:
            call.failed(exc)
            raise
        return self._finish(call, response)

    # -- record -------------------------------------------------------------------------------------------

    def _begin(self, recording: RequestRecording, request: httpx.Request) -> _HttpxCall:
        call = _HttpxCall(request, self.settings.max_body_bytes, recording)
        if call.request_buffer is not None:
            request.stream = _TeeStream(request.stream, call.request_buffer)
        recording.add_call(call)
        return call

    @staticmethod
    def _finish(call: _HttpxCall, response: httpx.Response) -> httpx.Response:
        response.stream = _TeeStream(response.stream, call.succeeded(response))
        return response

    # -- replay -------------------------------------------------------------------------------------------

    def _replay(self, request: httpx.Request) -> httpx.Response:
        content = request.content
        live = _captured_request(request.method, request.url, request.headers, body_of(content, len(content)))
        interaction = replay_call(live.to_model())
        if interaction.error is not None:
            raise self._error(interaction, request)
        return self._response(interaction, request)

    @staticmethod
    def _response(interaction: Interaction, request: httpx.Request) -> httpx.Response:
        recorded = recorded_response(interaction)
        extensions: dict[str, Any] = {}
        if recorded.reason is not None:
            extensions["reason_phrase"] = recorded.reason.encode("ascii", "replace")
        if recorded.http_version is not None:
            extensions["http_version"] = recorded.http_version.encode("ascii", "replace")
        return httpx.Response(
            status_code=recorded.status,
            headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in recorded.headers],
            stream=_RecordedStream(RecordedBody(interaction)),
            extensions=extensions,
            request=request,
        )

    @staticmethod
    def _error(interaction: Interaction, request: httpx.Request) -> BaseException:
        error = interaction.error
        assert error is not None
        kind = recorded_exception(error, interaction.request, ("httpx", "httpcore"), httpx.TransportError)
        if issubclass(kind, httpx.RequestError):
            return kind(error.message, request=request)
        try:
            return kind(error.message)
        except TypeError:
            return httpx.TransportError(error.message, request=request)


INTEGRATION = HttpxIntegration
