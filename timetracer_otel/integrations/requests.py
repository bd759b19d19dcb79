"""requests: record and replay at the transport seam (``HTTPAdapter.send``).

Everything above the adapter (sessions, redirects, cookies, auth, hooks, the OpenTelemetry instrumentation)
runs unchanged in record and replay; each hop of a redirect is its own recorded call.

Record passes the request and response through untouched and copies what crosses them: a streamed upload
(generator or file) is copied as urllib3 sends it, and the response body as the app reads it, whichever way
it reads it (``.content``, ``iter_content``, ``iter_lines``, ``raw.read``, ``raw.stream``...). Replay builds
the ``requests.Response`` the adapter would have built, over a ``urllib3.HTTPResponse`` that reads the
recorded bytes, so streaming, decoding, ``.raw`` and cookies behave as they did; no connection is made.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from email.message import Message
from http.client import HTTPMessage
from typing import Any

import requests
import urllib3
import wrapt
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest
from urllib3 import HTTPHeaderDict

from timetracer_otel.cassette.model import Headers, Interaction
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._http import RecordedBody, recorded_exception, recorded_response
from timetracer_otel.record.captured import CapturedBody, CapturedHttpRequest, CapturedHttpResponse
from timetracer_otel.record.recording import BodyBuffer, BuiltCall, RequestRecording, body_of, current_recording
from timetracer_otel.replay.episodes import miss_goes_live
from timetracer_otel.replay.guard import live_call
from timetracer_otel.replay.session import replay_call

__all__ = ["RequestsIntegration"]


def _wire(chunk: bytes | str) -> bytes:
    """A body chunk as urllib3 puts it on the wire (it sends text as UTF-8)."""
    return chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)


def _tee_chunks(chunks: Iterable[bytes | str], buffer: BodyBuffer) -> Iterator[bytes | str]:
    for chunk in chunks:
        buffer.feed(_wire(chunk))
        yield chunk
    buffer.close()


class _TeeUpload(wrapt.ObjectProxy[Any]):
    """A file-like request body, passed through unchanged, whose reads are copied into a :class:`BodyBuffer`."""

    def __init__(self, wrapped: Any, limit: int, owner: RequestRecording | None) -> None:
        super().__init__(wrapped)
        self._self_limit = limit
        self._self_owner = owner
        self._self_buffer = BodyBuffer(limit, owner)

    def read(self, *args: Any, **kwargs: Any) -> Any:
        data = self.__wrapped__.read(*args, **kwargs)
        if data:
            self._self_buffer.feed(_wire(data))
        else:
            self._self_buffer.close()
        return data

    def seek(self, *args: Any, **kwargs: Any) -> Any:
        # urllib3 rewinds a file body to send it again (retries): what counts is what the last attempt sent.
        position = self.__wrapped__.seek(*args, **kwargs)
        self._self_buffer = BodyBuffer(self._self_limit, self._self_owner)
        return position

    def body(self) -> CapturedBody:
        return self._self_buffer.to_body()


def _tee_upload(body: Any, limit: int, owner: RequestRecording | None) -> tuple[Any, Callable[[], CapturedBody]]:
    """What urllib3 should send instead of a streamed ``body`` (the same bytes, copied as they are read),
    and what builds the recorded body from the copy."""
    if hasattr(body, "read"):
        upload = _TeeUpload(body, limit, owner)
        return upload, upload.body
    buffer = BodyBuffer(limit, owner)
    return _tee_chunks(body, buffer), buffer.to_body


def _drain(upload: Any) -> None:
    """Read a streamed body to its end, as urllib3 does when it sends one."""
    if hasattr(upload, "read"):
        while upload.read(2**16):
            pass
    else:
        for _ in upload:
            pass


def _whole(body: Any) -> bytes | None:
    """The request body when it is one value (urllib3 sends text as UTF-8); None when it is streamed."""
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if hasattr(body, "read"):
        return None
    try:
        return memoryview(body).tobytes()
    except TypeError:
        return None


def _no_body() -> None:
    return None


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _request_headers(request: PreparedRequest) -> Headers:
    return tuple((_text(name), _text(value)) for name, value in request.headers.items())


def _stored_coding(raw: Any, decoded: bool) -> str | None:
    """The content-coding the bytes the app read are still in: none when urllib3 decoded them."""
    header = raw.headers.get("content-encoding")
    if not header:
        return None
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    if decoded and all(c in urllib3.HTTPResponse.CONTENT_DECODERS or c == "identity" for c in codings):
        return None
    return str(header)


class _TeeResponse(wrapt.ObjectProxy[Any]):
    """The adapter's ``urllib3.HTTPResponse``, unchanged, copying every byte the app reads from it.

    Each reading method calls the real one, whose internal reads are not seen here, so nothing is copied
    twice. ``decode_content`` decides whether the app got decoded or wire bytes, which the body records.
    """

    def __init__(self, wrapped: Any, buffer: BodyBuffer) -> None:
        super().__init__(wrapped)
        self._self_buffer = buffer
        self._self_coding: str | None = None

    def _self_copy(self, data: bytes | None, decode_content: bool | None, done: bool) -> None:
        if data:
            decoded = self.__wrapped__.decode_content if decode_content is None else decode_content
            if not decoded:
                self._self_coding = _stored_coding(self.__wrapped__, decoded=False)
            self._self_buffer.feed(data)
        if done:
            self._self_buffer.close()

    def _self_copy_stream(self, chunks: Iterable[bytes], decode_content: bool | None) -> Iterator[bytes]:
        for chunk in chunks:
            self._self_copy(chunk, decode_content, done=False)
            yield chunk
        self._self_copy(None, decode_content, done=True)

    def body(self) -> CapturedBody:
        """The recorded body (called on the writer thread)."""
        raw = self.__wrapped__
        if getattr(raw, "length_remaining", None) == 0 and not raw.headers.get("content-encoding"):
            # The app read exactly Content-Length bytes (``raw.read(n)``): nothing was left to read.
            self._self_buffer.close()
        coding = self._self_coding or _stored_coding(raw, decoded=True)
        return self._self_buffer.to_body(content_coding=coding)

    def read(self, amt: int | None = None, decode_content: bool | None = None, cache_content: bool = False) -> Any:
        data = self.__wrapped__.read(amt, decode_content=decode_content, cache_content=cache_content)
        self._self_copy(data, decode_content, done=amt != 0 and (not data or amt is None or amt < 0))
        return data

    def read1(self, amt: int | None = None, decode_content: bool | None = None) -> Any:
        data = self.__wrapped__.read1(amt, decode_content=decode_content)
        self._self_copy(data, decode_content, done=amt != 0 and not data)
        return data

    def readinto(self, b: Any) -> int:
        count: int = self.__wrapped__.readinto(b)
        self._self_copy(bytes(memoryview(b)[:count]), None, done=count == 0 and len(b) > 0)
        return count

    def readline(self, size: int | None = -1) -> Any:
        line = self.__wrapped__.readline(size)
        self._self_copy(line, None, done=not line and size != 0)
        return line

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = self.__wrapped__.readlines(hint)
        for line in lines:
            self._self_copy(line, None, done=False)
        return list(lines)

    def stream(self, amt: int | None = 2**16, decode_content: bool | None = None) -> Iterator[bytes]:
        return self._self_copy_stream(self.__wrapped__.stream(amt, decode_content=decode_content), decode_content)

    def read_chunked(self, amt: int | None = None, decode_content: bool | None = None) -> Iterator[bytes]:
        chunks = self.__wrapped__.read_chunked(amt, decode_content=decode_content)
        return self._self_copy_stream(chunks, decode_content)

    def __iter__(self) -> Iterator[bytes]:
        return self._self_copy_stream(iter(self.__wrapped__), True)

    @property
    def data(self) -> Any:
        cached = getattr(self.__wrapped__, "_body", None)
        data = self.__wrapped__.data
        if not cached:
            self._self_copy(data, None, done=True)
        return data


class _RecordedFile(io.RawIOBase):
    """The file urllib3 reads a replayed body from: the recorded bytes, then the end :class:`RecordedBody` gives.

    A read past the bytes of a body the app did not read to the end raises ``IncompleteBodyError``, which
    urllib3 and requests pass on as it is (they wrap only ``OSError``, ``http.client`` and their own errors).
    """

    def __init__(self, body: RecordedBody) -> None:
        super().__init__()
        self._body = body
        self._offset = 0
        self._stop_early = False

    @contextlib.contextmanager
    def stopping_early(self) -> Iterator[None]:
        """Within this, a read past the recorded bytes finds an end instead of an error, and urllib3's closing
        the file at that end is ignored: a urllib3 ``read(amt)`` then returns what it has gathered."""
        self._stop_early = True
        try:
            yield
        finally:
            self._stop_early = False

    def end(self) -> None:
        self._body.end()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = min(len(view), len(self._body.data) - self._offset)
        if count == 0 and len(view) and not self._stop_early:
            self._body.end()
        view[:count] = self._body.data[self._offset : self._offset + count]
        self._offset += count
        return count

    def readall(self) -> bytes:
        rest = self._body.data[self._offset :]
        if not self._stop_early:
            self._body.end()
        self._offset += len(rest)
        return rest

    def read1(self, size: int = -1) -> bytes:
        """What is left, up to ``size``, without asking for more unless nothing is left (as on a socket)."""
        left = len(self._body.data) - self._offset
        return self.read(max(left, 1) if size < 0 else size)

    def close(self) -> None:
        if not self._stop_early:
            super().close()


class _PartlyRecordedResponse(urllib3.HTTPResponse):
    """The replayed response of a body the app did not read to the end while recording.

    urllib3's ``stream()`` fills each ``amt`` before it yields, which live takes what arrives up to the end of
    an HTTP chunk: an app that stopped after the first chunk of a stream would get an error replaying it. Here
    each step stops early at the end of the recorded bytes and yields what it gathered, as a live stream yields
    what has arrived; only a step that finds nothing left raises ``IncompleteBodyError``.
    """

    def __init__(self, body: _RecordedFile, **kwargs: Any) -> None:
        super().__init__(body=body, **kwargs)
        self._recorded_file = body

    def stream(self, amt: int | None = 2**16, decode_content: bool | None = None) -> Generator[bytes, None, None]:
        if amt == 0:
            return
        while True:
            with self._recorded_file.stopping_early():
                data = self.read(amt, decode_content=decode_content)
            if not data:
                self._recorded_file.end()
                return
            yield data


class _RecordedOrigin:
    """Stands in for the ``http.client.HTTPResponse`` urllib3 keeps: requests reads cookies from its headers."""

    def __init__(self, headers: Headers, body: io.RawIOBase) -> None:
        self.msg: Message = HTTPMessage()
        for name, value in headers:
            self.msg[name] = value
        self._body = body

    def isclosed(self) -> bool:
        return self._body.closed

    def close(self) -> None:
        self._body.close()


class RequestsIntegration(Integration):
    name = "requests"

    def patches(self) -> Sequence[Patch]:
        return (Patch("requests.adapters", "HTTPAdapter.send", self._send),)

    def _send(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        request: PreparedRequest = args[0] if args else kwargs["request"]
        if self.mocked:
            with miss_goes_live():
                return self._replay(instance, request)
            with live_call():  # a new episode: answered live, and recorded
                return self._record(wrapped, request, args, kwargs)
        return self._record(wrapped, request, args, kwargs)

    def _record(self, wrapped: Any, request: PreparedRequest, args: Any, kwargs: Any) -> Any:
        recording = current_recording()
        if recording is None:
            with live_call():
                return wrapped(*args, **kwargs)
        body = request.body
        call, request.body = self._begin(recording, request)
        try:
            response = wrapped(*args, **kwargs)
        except Exception as exc:
            call.failed(exc)
            raise
        finally:
            request.body = body
        return self._finish(recording, call, response)

    # -- record -------------------------------------------------------------------------------------------

    def _begin(self, recording: RequestRecording, request: PreparedRequest) -> tuple[BuiltCall, Any]:
        """The call, and the body to send in place of the request's (a teeing one when it is streamed)."""
        limit = self.settings.max_body_bytes
        body: Any = request.body
        whole = _whole(body)
        request_body: Callable[[], CapturedBody | None]
        if body is None:
            request_body = _no_body
        elif whole is not None:
            recording.account(min(len(whole), limit))

            def request_body() -> CapturedBody | None:
                return body_of(whole, limit)
        else:
            body, request_body = _tee_upload(body, limit, recording)
        method, url, headers = request.method or "GET", request.url or "", _request_headers(request)
        call = BuiltCall(
            "http", self.name, lambda: CapturedHttpRequest(method=method, url=url, headers=headers, body=request_body())
        )
        recording.add_call(call)
        return call, body

    def _finish(self, recording: RequestRecording, call: BuiltCall, response: requests.Response) -> requests.Response:
        raw = response.raw
        tee = _TeeResponse(raw, BodyBuffer(self.settings.max_body_bytes, recording))
        response.raw = tee
        call.succeeded(
            lambda: CapturedHttpResponse(
                status=raw.status,
                headers=tuple((str(k), str(v)) for k, v in raw.headers.items()),
                body=tee.body(),
                reason=raw.reason,
                http_version=getattr(raw, "version_string", None),
            )
        )
        return response

    # -- replay -------------------------------------------------------------------------------------------

    def _replay(self, adapter: HTTPAdapter, request: PreparedRequest) -> requests.Response:
        data = _whole(request.body)
        if data is None:  # a streamed upload: consume it, as sending it would
            upload, sent = _tee_upload(request.body, 1 << 62, None)
            _drain(upload)
            data = sent().data
        interaction = replay_call(
            CapturedHttpRequest(
                method=request.method or "GET",
                url=request.url or "",
                headers=_request_headers(request),
                body=body_of(data, len(data)) if request.body is not None else None,
            ).to_model()
        )
        if interaction.error is not None:
            raise self._error(interaction, request)
        return self._response(adapter, interaction, request)

    @staticmethod
    def _response(adapter: HTTPAdapter, interaction: Interaction, request: PreparedRequest) -> requests.Response:
        recorded = recorded_response(interaction)
        headers = HTTPHeaderDict()
        for name, value in recorded.headers:
            headers.add(name, value)
        recorded_body = RecordedBody(interaction)
        body = _RecordedFile(recorded_body)
        version = recorded.http_version or "HTTP/1.1"
        response_class = urllib3.HTTPResponse if recorded_body.complete else _PartlyRecordedResponse
        raw = response_class(
            body=body,
            headers=headers,
            status=recorded.status,
            version=10 if version == "HTTP/1.0" else 11,
            version_string=version,
            reason=recorded.reason,
            preload_content=False,
            decode_content=False,  # as the adapter asks; requests decodes when it reads
            original_response=_RecordedOrigin(recorded.headers, body),  # type: ignore[arg-type]
            # A re-encoded body may differ in length from the recorded Content-Length.
            enforce_content_length=False,
            request_method=request.method,
            request_url=request.url,
        )
        return adapter.build_response(request, raw)

    @staticmethod
    def _error(interaction: Interaction, request: PreparedRequest) -> BaseException:
        error = interaction.error
        assert error is not None
        kind = recorded_exception(
            error, interaction.request, ("requests", "urllib3"), requests.exceptions.ConnectionError
        )
        if issubclass(kind, requests.exceptions.RequestException):
            return kind(error.message, request=request)
        try:
            return kind(error.message)
        except TypeError:
            return requests.exceptions.ConnectionError(error.message, request=request)


INTEGRATION = RequestsIntegration
