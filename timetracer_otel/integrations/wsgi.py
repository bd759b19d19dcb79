"""WSGI apps (Flask, and anything under OpenTelemetry's WSGI middleware): one cassette per request.

Two entry points, each wrapped from the outside: ``flask.Flask.__call__`` (OpenTelemetry's Flask
instrumentation wraps the app's ``wsgi_app`` and starts its server span in a ``before_request`` function, so
the class's ``__call__`` is outside everything it does) and ``OpenTelemetryMiddleware.__call__`` for plain
WSGI apps. There we admit the request, tee ``wsgi.input`` (the app reads exactly what it would without us),
``start_response`` and the response iterable, whose ``close()`` is the done-signal.

Both instrumentations start their server span in a fresh context extracted from the headers, so our
per-request state is put back into the context inside that span: for Flask right after
``preprocess_request`` (where OpenTelemetry's ``before_request`` ran) until ``do_teardown_request``; for the
middleware by a bridge placed as its ``.wsgi`` app. Flask turns an unhandled exception into its 500 response
in ``handle_exception``, which is where it is recorded. In replay, the request body is read first (the
cassette is chosen by it) and handed to the app unchanged.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from opentelemetry import context as otel_context

from timetracer_otel._context import attach_request_state
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._serving import SERVING, InboundExchange, RequestState, Serving, track_server_span
from timetracer_otel.record.captured import CapturedBody, CapturedHttpRequest
from timetracer_otel.record.recorder import Recorder
from timetracer_otel.record.recording import BodyBuffer, RequestRecording

__all__ = ["WsgiIntegration", "inbound_request", "serve_wsgi"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]

#: What a cassette needs from an environ besides the ``HTTP_*`` keys (see :func:`inbound_request`).
_ENVIRON_KEYS = frozenset({
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
    "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "wsgi.url_scheme",
})



def _snapshot(environ: Environ) -> dict[str, Any]:
    """The parts of the environ a cassette needs, as the server handed them in (before the app changes any)."""
    return {k: v for k, v in environ.items() if k in _ENVIRON_KEYS or k.startswith("HTTP_")}


def _wsgi_text(value: str) -> str:
    """PEP 3333 strings carry bytes as Latin-1; URLs are UTF-8 (as ASGI servers decode the path)."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _path(environ: Environ) -> str:
    return _wsgi_text(environ.get("SCRIPT_NAME", "")) + _wsgi_text(environ.get("PATH_INFO", "")) or "/"


def _url(environ: Environ) -> str:
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "localhost")
        port = str(environ.get("SERVER_PORT", ""))
        if port and port != {"http": "80", "https": "443"}.get(scheme):
            host = f"{host}:{port}"
    query = environ.get("QUERY_STRING", "")
    return f"{scheme}://{host}{_path(environ)}" + (f"?{query}" if query else "")


def _headers(environ: Environ) -> list[tuple[str, str]]:
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers.append((key[5:].replace("_", "-").lower(), value))
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            headers.append((key.replace("_", "-").lower(), value))
    return headers


def _content_length(environ: Environ) -> int | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return max(length, 0)


def _has_body(environ: Environ) -> bool:
    return bool(_content_length(environ)) or "HTTP_TRANSFER_ENCODING" in environ


def inbound_request(environ: Environ, body: CapturedBody | None, route: str | None = None) -> CapturedHttpRequest:
    """The request an environ describes, as recorded (and, made a model value, as replay looks it up)."""
    return CapturedHttpRequest(
        method=environ.get("REQUEST_METHOD", "GET"),
        url=_url(environ),
        headers=_headers(environ),
        body=body,
        route=route,
    )


class _WsgiExchange(InboundExchange):
    """A WSGI request's exchange: the environ as the server handed it in."""

    __slots__ = ("environ",)

    def __init__(self, environ: Environ, recording: RequestRecording, limit: int) -> None:
        super().__init__(recording, limit, has_body=_has_body(environ))
        self.environ = _snapshot(environ)

    def _request(self, body: CapturedBody) -> CapturedHttpRequest:
        return inbound_request(self.environ, body, self.route)

    def _http_version(self) -> str | None:
        return str(self.environ.get("SERVER_PROTOCOL", "")).removeprefix("HTTP/") or None

    def start_response(self, start_response: StartResponse) -> StartResponse:
        def teed_start_response(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            try:
                self.status = int(status[:3])
            except ValueError:
                self.status = None
            self.headers = list(headers)  # as the app gave them: a server may append to the list it got
            write = start_response(status, headers, *args)

            def teed_write(data: bytes) -> Any:
                self.response_body.feed(data)
                return write(data)

            return teed_write

        return teed_start_response


class _TeeInput:
    """``wsgi.input`` as the app gets it: every read passes through unchanged, copied on the way."""

    __slots__ = ("_body", "_read", "_remaining", "_stream")

    def __init__(self, stream: Any, body: BodyBuffer, length: int | None) -> None:
        self._stream = stream
        self._body = body
        #: Bytes still to come when the length is known: the stream is then done without a read returning b"".
        self._remaining = length
        self._read = 0

    def _feed(self, data: bytes) -> bytes:
        body = self._body
        if data:
            body.feed(data)
            if self._remaining is not None:
                self._remaining -= len(data)
                if self._remaining <= 0:
                    body.close()
        else:
            body.close()
        return data

    def read(self, *args: Any) -> bytes:
        return self._feed(self._stream.read(*args))

    def read1(self, *args: Any) -> bytes:
        return self._feed(self._stream.read1(*args))

    def readline(self, *args: Any) -> bytes:
        return self._feed(self._stream.readline(*args))

    def readlines(self, *args: Any) -> list[bytes]:
        lines: list[bytes] = self._stream.readlines(*args)
        for line in lines:
            self._feed(line)
        return lines

    def readinto(self, buffer: Any) -> int | None:
        readinto = getattr(self._stream, "readinto", None)
        if readinto is None:
            data = self._stream.read(len(buffer))
            buffer[: len(data)] = data
            size: int | None = len(data)
        else:
            size = readinto(buffer)
        if size is not None:
            self._feed(bytes(memoryview(buffer)[:size]))
        return size

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _ResponseTee:
    """The response iterable the server gets: chunks pass through unchanged, copied on the way; the end of the
    body, or ``close()`` (which every WSGI server calls), is the done-signal. With ``state``, each chunk is
    produced with it in the context, so calls made by a streamed body are recorded (or replayed) too."""

    __slots__ = ("_exchange", "_iterator", "_recorder", "_recording", "_result", "_state")

    def __init__(
        self,
        result: Iterable[bytes],
        exchange: _WsgiExchange | None,
        recorder: Recorder | None,
        recording: RequestRecording | None,
        state: RequestState,
    ) -> None:
        self._result = result
        self._iterator: Iterator[bytes] | None = None
        self._exchange = exchange
        self._recorder = recorder
        self._recording = recording
        self._state = state

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = iter(self._result)
        token = attach_request_state(self._state) if self._state is not None else None
        try:
            chunk = next(self._iterator)
        except StopIteration:
            if self._exchange is not None:
                self._exchange.response_body.close()
            self._finish()  # the whole body was handed over: a stop before close() must not lose the request
            raise
        except BaseException as exc:
            if self._recording is not None:
                self._recording.error = exc
            raise
        finally:
            if token is not None:
                otel_context.detach(token)  # type: ignore[arg-type]
        if self._exchange is not None:
            self._exchange.response_body.feed(chunk)
        return chunk

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()

    def _finish(self) -> None:
        """The done-signal, once: the body was exhausted, or the server closed the iterable."""
        if self._recorder is not None and self._recording is not None:
            self._recorder.finish(self._recording)
            self._recording = None


class _SizedResponseTee(_ResponseTee):
    """Keeps ``len()`` of a list the app returned: servers use it (wsgiref sets Content-Length for one chunk)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)  # type: ignore[arg-type]


def _tee_response(
    result: Iterable[bytes],
    exchange: _WsgiExchange | None,
    recorder: Recorder | None,
    recording: RequestRecording | None,
    state: RequestState,
) -> _ResponseTee:
    kind = _SizedResponseTee if hasattr(result, "__len__") else _ResponseTee
    return kind(result, exchange, recorder, recording, state)


class _MiddlewareBridge:
    """Placed between OpenTelemetryMiddleware and the app it wraps; see the module docstring."""

    __slots__ = ("integration", "wsgi")

    def __init__(self, wsgi: Callable[..., Any], integration: WsgiIntegration) -> None:
        self.wsgi = wsgi
        self.integration = integration

    def __call__(self, environ: Environ, start_response: StartResponse) -> Any:
        serving = SERVING.get()
        state = serving.state if serving is not None else None
        if state is None or not self.integration.active:
            return self.wsgi(environ, start_response)
        track_server_span(self.integration, state)
        token = attach_request_state(state)
        try:
            result = self.wsgi(environ, start_response)
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]
        # The middleware iterates inside its span's context: produce each chunk with our state in it too.
        return _tee_response(result, None, None, None, state)


def _read_body(environ: Environ) -> bytes | None:
    """The whole request body as the app would read it (see werkzeug's ``get_input_stream``), or None when
    there is nothing to read."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return None
    length = _content_length(environ)
    if length is not None:
        return stream.read(length) if length else None
    if environ.get("wsgi.input_terminated"):
        return bytes(stream.read())
    return None


def serve_wsgi(
    integration: Integration, wrapped: Any, environ: Environ, start_response: StartResponse, *, attach: bool
) -> Any:
    """Serve one WSGI call through ``wrapped``, recording or replaying it for ``integration``.

    With ``attach``, our request state is in the context around the whole call and each response chunk (the
    framework's own server span re-attaches it inside, see the bridges); without, only the bridge attaches it.
    """
    serving = SERVING.get()
    if serving is not None and serving.carrier is environ:  # an inner layer of a request already served
        return wrapped(environ, start_response)
    if integration.runtime.recorder is not None:
        return _record(integration, wrapped, environ, start_response, attach)
    if integration.runtime.source is not None:
        return _replay(integration, wrapped, environ, start_response, attach)
    return wrapped(environ, start_response)


def _record(
    integration: Integration, wrapped: Any, environ: Environ, start_response: StartResponse, attach: bool
) -> Any:
    recorder = integration.runtime.recorder
    assert recorder is not None
    recording = recorder.admit(_path(environ))
    if recording is None:
        serving_token = SERVING.set(Serving(environ, None, None))
        try:
            return wrapped(environ, start_response)
        finally:
            SERVING.reset(serving_token)
    exchange = _WsgiExchange(environ, recording, integration.settings.max_body_bytes)
    recording.inbound = exchange
    if exchange.request_body is not None and "wsgi.input" in environ:
        environ["wsgi.input"] = _TeeInput(environ["wsgi.input"], exchange.request_body, _content_length(environ))
    serving_token = SERVING.set(Serving(environ, recording, exchange))
    token = attach_request_state(recording) if attach else None
    try:
        result = wrapped(environ, exchange.start_response(start_response))
    except BaseException as exc:
        recording.error = exc
        recorder.finish(recording)
        raise
    finally:
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]
        SERVING.reset(serving_token)
    return _tee_response(result, exchange, recorder, recording, recording if attach else None)


def _replay(
    integration: Integration, wrapped: Any, environ: Environ, start_response: StartResponse, attach: bool
) -> Any:
    source = integration.runtime.source
    assert source is not None
    body = _read_body(environ)
    if body is not None:
        environ["wsgi.input"] = io.BytesIO(body)
    data = body or b""
    session = source.session_for(inbound_request(environ, CapturedBody(data, len(data))).to_model())
    serving_token = SERVING.set(Serving(environ, session, None))
    token = attach_request_state(session) if attach else None
    try:
        result = wrapped(environ, start_response)
    finally:
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]
        SERVING.reset(serving_token)
    if not attach:
        return result
    return _tee_response(result, None, None, None, session)


class WsgiIntegration(Integration):
    name = "wsgi"

    def patches(self) -> Sequence[Patch]:
        patches = [Patch("opentelemetry.instrumentation.wsgi", "OpenTelemetryMiddleware.__call__", self._middleware)]
        if importlib.util.find_spec("flask") is not None:
            patches += [
                Patch("flask", "Flask.__call__", self._flask),
                Patch("flask", "Flask.preprocess_request", self._preprocess),
                Patch("flask", "Flask.do_teardown_request", self._teardown),
                Patch("flask", "Flask.handle_exception", self._handle_exception),
            ]
        return patches

    # -- entry points -------------------------------------------------------------------------------------

    def _middleware(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self.active and not isinstance(instance.wsgi, _MiddlewareBridge):
            instance.wsgi = _MiddlewareBridge(instance.wsgi, self)
        # The middleware keeps its context attached until its iterable is closed: ours is attached by the
        # bridge inside it, never around it (detaching out of order would leak one of the two).
        return self._serve(wrapped, args, kwargs, attach=False)

    def _flask(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._serve(wrapped, args, kwargs, attach=True)

    def _serve(self, wrapped: Any, args: Any, kwargs: Any, attach: bool) -> Any:
        if not self.active or len(args) != 2 or kwargs:
            return wrapped(*args, **kwargs)
        return serve_wsgi(self, wrapped, args[0], args[1], attach=attach)

    # -- Flask bridges ------------------------------------------------------------------------------------

    def _preprocess(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        serving = SERVING.get()
        if serving is None or serving.state is None or serving.token is not None or not self.active:
            return wrapped(*args, **kwargs)
        try:
            return wrapped(*args, **kwargs)
        finally:
            import flask

            request_ctx = flask.globals.request_ctx._get_current_object()  # type: ignore[attr-defined]
            rule = flask.request.url_rule
            if serving.exchange is not None and rule is not None:
                serving.exchange.route = _wsgi_text(flask.request.environ.get("SCRIPT_NAME", "")) + rule.rule
            track_server_span(self, serving.state)
            serving.token = attach_request_state(serving.state)
            serving.request_ctx = request_ctx

    def _teardown(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        serving = SERVING.get()
        if serving is not None and serving.token is not None:
            import flask

            if flask.globals.request_ctx._get_current_object() is serving.request_ctx:  # type: ignore[attr-defined]
                token, serving.token, serving.request_ctx = serving.token, None, None
                otel_context.detach(token)  # type: ignore[arg-type]
        return wrapped(*args, **kwargs)

    def _handle_exception(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        serving = SERVING.get()
        if serving is not None and isinstance(serving.state, RequestRecording) and args:
            error = args[0]
            if isinstance(error, BaseException):
                serving.state.error = error
        return wrapped(*args, **kwargs)


INTEGRATION = WsgiIntegration
