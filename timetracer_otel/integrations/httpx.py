"""httpx: record and replay at the transport seam (``HTTPTransport`` / ``AsyncHTTPTransport``).

Record tees the request and response streams, so the app reads exactly what the server sent, as it arrives
(streaming included). Replay returns a real ``httpx.Response`` built from the cassette; no connection is made.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from timetracer_otel.cassette.model import HttpRequest, HttpResponse, Interaction
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._http import RecordedBody, recorded_exception
from timetracer_otel.record.recording import BodyBuffer, PendingCall, RequestRecording, body_of, current_recording
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
            return self._replay(request)
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
        return self._finish(recording, call, response)

    async def _handle_async_request(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        request: httpx.Request = args[0] if args else kwargs["request"]
        if self.mocked:
            await request.aread()
            return self._replay(request)
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
        return self._finish(recording, call, response)

    # -- record -------------------------------------------------------------------------------------------

    def _begin(self, recording: RequestRecording, request: httpx.Request) -> PendingCall:
        limit = self.settings.max_body_bytes
        if hasattr(request, "_content"):  # already read; a redirect's next request is not, so it is teed
            content = request.content
            recording.account(len(content))

            def request_body() -> Any:
                return body_of(content, limit)
        else:
            buffer = BodyBuffer(limit, recording)
            request.stream = _TeeStream(request.stream, buffer)

            def request_body() -> Any:
                return buffer.to_body()

        # Only the parts, not the request: keeping httpx's request and response graphs alive until the
        # cassette is written would push them into the garbage collector's oldest generation.
        method, url, headers = request.method, request.url, request.headers
        call = PendingCall(
            "http",
            self.name,
            lambda: HttpRequest(method=method, url=str(url), headers=tuple(headers.multi_items()), body=request_body()),
        )
        recording.add_call(call)
        return call

    def _finish(
        self, recording: RequestRecording, call: PendingCall, response: httpx.Response
    ) -> httpx.Response:
        buffer = BodyBuffer(self.settings.max_body_bytes, recording)
        response.stream = _TeeStream(response.stream, buffer)
        status, headers, extensions = response.status_code, response.headers, response.extensions
        reason, version = extensions.get("reason_phrase"), extensions.get("http_version")
        call.succeeded(
            lambda: HttpResponse(
                status=status,
                headers=tuple(headers.multi_items()),
                body=buffer.to_body(content_coding=headers.get("content-encoding")),
                reason=_text(reason),
                http_version=_text(version),
            )
        )
        return response

    # -- replay -------------------------------------------------------------------------------------------

    def _replay(self, request: httpx.Request) -> httpx.Response:
        recorded_request = HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=tuple(request.headers.multi_items()),
            body=body_of(request.content, len(request.content)),
        )
        interaction = replay_call(recorded_request)
        if interaction.error is not None:
            raise self._error(interaction, request)
        return self._response(interaction, request)

    @staticmethod
    def _response(interaction: Interaction, request: httpx.Request) -> httpx.Response:
        recorded = interaction.response
        assert recorded is not None
        extensions: dict[str, Any] = {}
        if recorded.reason is not None:
            extensions["reason_phrase"] = recorded.reason.encode("ascii", "replace")
        if recorded.http_version is not None:
            extensions["http_version"] = recorded.http_version.encode("ascii", "replace")
        return httpx.Response(
            status_code=recorded.status,
            headers=list(recorded.headers),
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
