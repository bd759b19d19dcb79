"""ASGI apps (FastAPI, Starlette, and anything under OpenTelemetry's ASGI middleware): one cassette per request.

We wrap ``OpenTelemetryMiddleware.__call__`` from the outside, and ``Starlette.__call__`` (FastAPI's too), which is
outside the middleware Starlette's instrumentation adds and outside ``ServerErrorMiddleware``'s 500 for an
unhandled exception. Whichever comes first admits the request, tees ``receive`` and ``send`` (never altering
them: the app and the client see exactly what they would without us), and the call returning, after background
tasks ran, is the done-signal; an inner layer of the same request passes straight through. The middleware starts
its server span in a fresh context extracted from the headers, so a small bridge between it and the app puts our
per-request state back into the context inside that span. In replay, the request body is read first (the
cassette is chosen by it) and handed to the app unchanged.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from opentelemetry import context as otel_context

from timetracer_otel._context import attach_request_state
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._serving import SERVING, InboundExchange, Serving, track_server_span
from timetracer_otel.record.captured import CapturedBody, CapturedHttpRequest
from timetracer_otel.record.recording import RequestRecording

__all__ = ["AsgiIntegration", "serve_asgi"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


#: What a cassette needs from a scope: what :func:`inbound_request` reads, and the response's HTTP version.
_REQUEST_KEYS = (
    "method", "scheme", "server", "root_path", "path", "query_string", "headers", "route", "path_template",
    "http_version",
)


def _url(scope: Scope) -> str:
    scheme = scope.get("scheme", "http")
    host = next((v.decode("latin-1") for k, v in scope.get("headers") or () if k == b"host"), None)
    if host is None and scope.get("server"):
        server_host, port = scope["server"]
        host = f"{server_host}:{port}" if port else str(server_host)
    path = scope.get("path", "/")
    root_path = scope.get("root_path", "")
    if not path.startswith(root_path):  # servers before the 2023 ASGI spec left the root path out of path
        path = root_path + path
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scheme}://{host or 'localhost'}{path}" + (f"?{query}" if query else "")


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"", b"0")):
            return True
    return False


def _route(scope: Scope) -> str | None:
    """The matched route's template: Starlette's route object, or Litestar's ``path_template``."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None) or scope.get("path_template")
    return f"{scope.get('root_path', '')}{path}" if isinstance(path, str) else None


def inbound_request(scope: Scope, body: CapturedBody | None, route: str | None = None) -> CapturedHttpRequest:
    """The request a scope describes, as recorded (and, made a model value, as replay looks it up)."""
    return CapturedHttpRequest(
        method=scope.get("method", "GET"),
        url=_url(scope),
        headers=scope.get("headers") or (),
        body=body,
        route=route or _route(scope),
    )


class _InboundExchange(InboundExchange):
    """An ASGI request's exchange: the scope it was served with."""

    __slots__ = ("received_path", "scope")

    def __init__(self, scope: Scope, recording: RequestRecording, limit: int) -> None:
        super().__init__(recording, limit, has_body=_has_body(scope))
        #: The live scope while the request runs (the router sets its route; a hard timeout may write the
        #: request early), then only the parts :func:`inbound_request` reads (see :meth:`release_scope`).
        self.scope = scope
        #: The path as the server handed it in: routers rewrite the scope's (a mount moves its prefix into
        #: ``root_path``; Litestar may strip a trailing slash), and replay looks the request up as received.
        self.received_path = (scope.get("root_path", ""), scope.get("path", "/"))

    def release_scope(self) -> None:
        """Keep only what the cassette needs: the scope holds the app's whole request graph, which would
        otherwise live on into the garbage collector's oldest generation."""
        scope = self.scope
        self.route = self.route or _route(scope)
        self.scope = {key: scope[key] for key in _REQUEST_KEYS if key in scope}
        self.scope["root_path"], self.scope["path"] = self.received_path

    def _request(self, body: CapturedBody) -> CapturedHttpRequest:
        return inbound_request(self.scope, body, self.route)

    def _http_version(self) -> str | None:
        return self.scope.get("http_version")




class _Tee:
    """The ``receive`` and ``send`` the app gets: each message passes through unchanged, copied on the way."""

    __slots__ = ("_exchange", "_receive", "_send")

    def __init__(self, exchange: _InboundExchange, receive: Receive, send: Send) -> None:
        self._exchange = exchange
        self._receive = receive
        self._send = send

    async def receive(self) -> Message:
        message = await self._receive()
        body = self._exchange.request_body
        if body is not None and message.get("type") == "http.request":
            body.feed(message.get("body", b""))
            if not message.get("more_body", False):
                body.close()
        return message

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            self._exchange.status = message.get("status")
            self._exchange.headers = message.get("headers")
        elif kind == "http.response.body":
            body = self._exchange.response_body
            body.feed(message.get("body", b""))
            if not message.get("more_body", False):
                body.close()
        await self._send(message)


class _FreshContext:
    """Serves a request from a clean OpenTelemetry context when it inherited the previous one's.

    asyncio can hand a keep-alive connection's next request the context of the previous one
    (cpython#140947, uvicorn#2167): its server span would become a child of the previous request's spans.
    A class, not ``contextlib.contextmanager``: this runs on every such request.
    """

    __slots__ = ("_leaked", "_token")

    def __init__(self, leaked: bool) -> None:
        self._leaked = leaked
        self._token: object = None

    def __enter__(self) -> None:
        if self._leaked:
            self._token = otel_context.attach(otel_context.Context())

    def __exit__(self, *_: object) -> None:
        if self._token is not None:
            otel_context.detach(self._token)  # type: ignore[arg-type]


class _ContextBridge:
    """Placed between OpenTelemetryMiddleware and the app it wraps; see the module docstring."""

    __slots__ = ("app", "integration")

    def __init__(self, app: App, integration: AsgiIntegration) -> None:
        self.app = app
        self.integration = integration

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        serving = SERVING.get()
        state = serving.state if serving is not None else None
        if state is None or not self.integration.active:
            return await self.app(scope, receive, send)
        track_server_span(self.integration, state)
        token = attach_request_state(state)
        try:
            return await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]


class AsgiIntegration(Integration):
    name = "asgi"

    def patches(self) -> Sequence[Patch]:
        patches = [Patch("opentelemetry.instrumentation.asgi", "OpenTelemetryMiddleware.__call__", self._call)]
        if importlib.util.find_spec("starlette") is not None:
            # Outside Starlette's ServerErrorMiddleware, which sends the 500 for an unhandled exception: the
            # Starlette instrumentation adds OpenTelemetry's middleware inside it, where that 500 never passes.
            patches.append(Patch("starlette.applications", "Starlette.__call__", self._starlette))
        return patches

    def _starlette(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or len(args) != 3 or kwargs:
            return wrapped(*args, **kwargs)
        return serve_asgi(self, wrapped, *args)

    def _call(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        # Not a coroutine function itself: it picks which coroutine serves the request, so the request path
        # has one layer of ours, not two. A call with other arguments fails at once, as the middleware's own
        # does (uvicorn calls the app with none to tell apps from app factories).
        if not self.active or len(args) != 3 or kwargs:
            return wrapped(*args, **kwargs)
        if not isinstance(instance.app, _ContextBridge):
            instance.app = _ContextBridge(instance.app, self)
        return serve_asgi(self, wrapped, *args)


def serve_asgi(integration: Integration, wrapped: Any, scope: Scope, receive: Receive, send: Send) -> Any:
    """Serve one ASGI call through ``wrapped``, recording or replaying it for ``integration``; the awaitable
    the caller awaits. The request state is in the context for the whole call (what runs outside the
    framework's server span, such as a Django streaming body, belongs to the request too), and a bridge inside
    that span, which starts from a fresh context, puts it back (see :mod:`timetracer_otel.integrations._serving`)."""
    serving = SERVING.get()
    if serving is not None and serving.carrier is scope:  # a mounted app inside a request already served
        return wrapped(scope, receive, send)
    kind = scope["type"]
    if kind == "lifespan":
        return wrapped(scope, receive, _lifespan_send(integration, send))
    if kind != "http":  # websockets pass through untouched: they are not recorded
        return wrapped(scope, receive, send)
    fresh = _FreshContext(leaked=serving is not None)  # see _FreshContext
    if integration.runtime.recorder is not None:
        return _record(integration, wrapped, scope, receive, send, fresh=fresh)
    if integration.runtime.source is not None:
        return _replay(integration, wrapped, scope, receive, send, fresh=fresh)
    if serving is not None:
        return _serve(wrapped, scope, receive, send, fresh)
    return wrapped(scope, receive, send)


async def _serve(wrapped: Any, scope: Scope, receive: Receive, send: Send, fresh: _FreshContext) -> Any:
    with fresh:
        return await wrapped(scope, receive, send)


def _lifespan_send(integration: Integration, send: Send) -> Send:
    recorder = integration.runtime.recorder

    async def lifespan_send(message: Message) -> None:
        # uvicorn re-raises SIGTERM after shutdown, so atexit never runs: write what is pending now.
        if recorder is not None and message.get("type") == "lifespan.shutdown.complete":
            await asyncio.to_thread(recorder.flush)
        await send(message)

    return lifespan_send


async def _record(
    integration: Integration, wrapped: Any, scope: Scope, receive: Receive, send: Send, *, fresh: _FreshContext
) -> Any:
    recorder = integration.runtime.recorder
    assert recorder is not None
    with fresh:
        recording = recorder.admit(scope.get("path", "/"))
        if recording is None:
            token = SERVING.set(Serving(scope, None, None))
            try:
                return await wrapped(scope, receive, send)
            finally:
                SERVING.reset(token)
        exchange = _InboundExchange(scope, recording, integration.settings.max_body_bytes)
        recording.inbound = exchange
        tee = _Tee(exchange, receive, send)
        token = SERVING.set(Serving(scope, recording, exchange))
        state_token = attach_request_state(recording)
        try:
            return await wrapped(scope, tee.receive, tee.send)
        except BaseException as exc:
            recording.error = exc
            raise
        finally:
            otel_context.detach(state_token)  # type: ignore[arg-type]
            SERVING.reset(token)
            exchange.release_scope()
            recorder.finish(recording)


async def _replay(
    integration: Integration, wrapped: Any, scope: Scope, receive: Receive, send: Send, *, fresh: _FreshContext
) -> Any:
    source = integration.runtime.source
    assert source is not None
    with fresh:
        buffered: list[Message] = []
        chunks: list[bytes] = []
        while True:
            message = await receive()
            buffered.append(message)
            if message.get("type") != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        session = source.session_for(inbound_request(scope, CapturedBody(body, len(body))).to_model())

        async def replay_receive() -> Message:
            return buffered.pop(0) if buffered else await receive()

        token = SERVING.set(Serving(scope, session, None))
        state_token = attach_request_state(session)
        try:
            return await wrapped(scope, replay_receive, send)
        finally:
            otel_context.detach(state_token)  # type: ignore[arg-type]
            SERVING.reset(token)


INTEGRATION = AsgiIntegration
