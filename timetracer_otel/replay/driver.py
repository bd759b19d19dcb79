"""Drives an app in-process with recorded inbound requests, each answered from its own cassette.

:class:`AppDriver` installs the runtime in replay mode (before the app is imported, so the OpenTelemetry
instrumentors wrap it as under ``opentelemetry-instrument``), imports ``module:app``, tells ASGI from WSGI, runs
an ASGI app's lifespan, and sends each cassette's recorded request (method, path and query, headers, body)
straight into the app: an ASGI call with an in-memory ``receive``/``send``, or a WSGI call with a built
environ. No socket, no server.

Each request goes through :func:`~timetracer_otel.integrations.asgi.serve_asgi` /
:func:`~timetracer_otel.integrations.wsgi.serve_wsgi`, the integrations' own serving path, with the runtime's
replay source swapped, for that one request, for a source holding only that cassette: so every layer of the
app (Starlette, OpenTelemetry's middleware, Flask, Django) replays the request from **its** cassette, whatever
order the cassettes run in and however many identical requests were recorded. A plain app that nothing
instruments is served the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import importlib
import inspect
import io
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from timetracer_otel import runtime as _runtime
from timetracer_otel.cassette.files import iter_cassette_files, load_cassette
from timetracer_otel.cassette.model import Cassette, HttpRequest
from timetracer_otel.errors import ConfigurationError, TimetracerError
from timetracer_otel.integrations.asgi import AsgiIntegration, serve_asgi
from timetracer_otel.integrations.wsgi import WsgiIntegration, serve_wsgi
from timetracer_otel.replay.compare import Answer, Comparison, NoiseRules, compare
from timetracer_otel.replay.guard import NetworkGuard
from timetracer_otel.replay.matching import describe_request
from timetracer_otel.replay.session import ReplaySession
from timetracer_otel.replay.source import CassetteSource
from timetracer_otel.settings import Mode, OnExhausted, Settings

__all__ = ["AppDriver", "AppLoadError", "Interface", "LiveResponse", "detect_interface", "load_app", "unreplayable"]

logger = logging.getLogger("timetracer.replay")

Message = MutableMapping[str, Any]

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: What a path may keep unescaped in ``raw_path`` (RFC 3986 pchar and ``/``).
_PATH_SAFE = "/!$&'()*+,;=:@-._~"


class AppLoadError(TimetracerError):
    """The app named by ``--app`` cannot be loaded or served: not importable, not found, not an ASGI or WSGI app,
    or its lifespan startup failed."""

    def __init__(self, spec: str, problem: str) -> None:
        self.spec = spec
        self.problem = problem
        super().__init__(f"{spec}: {problem}")


class Interface(enum.StrEnum):
    AUTO = "auto"
    ASGI = "asgi"
    WSGI = "wsgi"


def unreplayable(cassette: Cassette) -> str | None:
    """Why this cassette cannot be replayed as a test (None when it can)."""
    request = cassette.request
    if request is None:
        return f"a {cassette.metadata.scope} cassette: it holds calls made outside any inbound request"
    body = request.body
    if body is not None and body.truncated:
        return (
            f"the recorded request body was cut at TIMETRACER_MAX_BODY_BYTES ({len(body.data)} of {body.size} bytes "
            "stored), so the request cannot be sent again; record it with a higher TIMETRACER_MAX_BODY_BYTES"
        )
    return None


# -- loading the app --------------------------------------------------------------------------------------


def load_app(spec: str, app_dir: Path | None = None) -> Any:
    """The object ``module:attribute`` names (``attribute`` may be dotted), imported with ``app_dir`` first on
    ``sys.path``."""
    if app_dir is not None and str(app_dir.resolve()) not in sys.path:
        sys.path.insert(0, str(app_dir.resolve()))
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(spec, "expected MODULE:APP, e.g. app:app or shop.wsgi:application")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            where = f"in {app_dir} or " if app_dir is not None else ""
            raise AppLoadError(spec, f"no module named {exc.name!r} {where}on sys.path") from exc
        raise AppLoadError(spec, f"importing {module_name} failed: {exc}") from exc
    except Exception as exc:
        raise AppLoadError(spec, f"importing {module_name} raised {type(exc).__name__}: {exc}") from exc
    app: Any = module
    for part in attribute.split("."):
        try:
            app = getattr(app, part)
        except AttributeError:
            raise AppLoadError(spec, f"module {module_name} has no attribute {attribute}") from None
    return app


def _is_instance(app: Any, module: str, name: str) -> bool:
    loaded = sys.modules.get(module)
    kind = getattr(loaded, name, None)
    return isinstance(kind, type) and isinstance(app, kind)


def detect_interface(app: Any, spec: str = "app") -> Interface:
    """ASGI or WSGI: Django's handlers by type, else a coroutine function or three positional parameters
    (``scope, receive, send``) for ASGI, two (``environ, start_response``) for WSGI."""
    if _is_instance(app, "django.core.handlers.asgi", "ASGIHandler"):
        return Interface.ASGI
    if _is_instance(app, "django.core.handlers.wsgi", "WSGIHandler"):
        return Interface.WSGI
    if inspect.isclass(app):
        raise AppLoadError(spec, "is a class, not an application object")
    if not callable(app):
        raise AppLoadError(spec, f"is a {type(app).__name__}, not an ASGI or WSGI application")
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(type(app).__call__):
        return Interface.ASGI
    try:
        parameters = list(inspect.signature(app).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    if len(positional) == 3 and not variadic:
        return Interface.ASGI
    if len(positional) == 2 and not variadic:
        return Interface.WSGI
    raise AppLoadError(
        spec, "cannot tell whether this is an ASGI app (scope, receive, send) or a WSGI app (environ, "
        "start_response); say which with --interface asgi or --interface wsgi",
    )


# -- requests as the app receives them ----------------------------------------------------------------------


def _split(request: HttpRequest) -> tuple[str, str, int, str, str]:
    """scheme, host, port, path (decoded, as the server handed it to the app) and query of a recorded URL."""
    parts = urlsplit(request.url)
    scheme = parts.scheme or "http"
    host = parts.hostname or "localhost"
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 80)
    except ValueError:
        port = _DEFAULT_PORTS.get(scheme, 80)
    return scheme, host, port, parts.path or "/", parts.query


def asgi_scope(request: HttpRequest, state: dict[str, Any]) -> dict[str, Any]:
    """The HTTP scope an ASGI server would build for the recorded request."""
    scheme, host, port, path, query = _split(request)
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": request.method.upper(),
        "scheme": scheme,
        "path": path,
        "raw_path": quote(path, safe=_PATH_SAFE).encode("ascii"),
        "query_string": query.encode("latin-1", "replace"),
        "root_path": "",
        "headers": [
            (name.lower().encode("latin-1", "replace"), value.encode("latin-1", "replace"))
            for name, value in request.headers
        ],
        "client": ("127.0.0.1", 50000),
        "server": (host, port),
        # What the lifespan put in its state, shallow-copied per request, as servers do.
        "state": dict(state),
    }


def wsgi_environ(request: HttpRequest, body: bytes, errors: io.StringIO) -> dict[str, Any]:
    """The environ a WSGI server would build for the recorded request (PEP 3333: text as Latin-1)."""
    scheme, host, port, path, query = _split(request)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method.upper(),
        "SCRIPT_NAME": "",
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": host,
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": errors,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers:
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = f"HTTP_{key}"
        if key in environ:
            environ[key] += f"{'; ' if key == 'HTTP_COOKIE' else ','}{value}"
        else:
            environ[key] = value
    if "HTTP_TRANSFER_ENCODING" in environ and "CONTENT_LENGTH" not in environ:
        environ["wsgi.input_terminated"] = True  # the server de-chunked it: read to the end
    elif body and "CONTENT_LENGTH" not in environ:
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


# -- responses as the app gives them ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LiveResponse:
    """What the app answered: ``status`` None when it sent no response; ``error`` the exception it raised
    while serving (also when its framework answered 500 for it)."""

    status: int | None
    headers: tuple[tuple[str, str], ...]
    body: bytes
    error: BaseException | None = None
    #: The cassette's recorded outbound calls the app did not make this time.
    unused: tuple[str, ...] = ()

    def answer(self) -> Answer:
        return Answer.live(self.status, self.headers, self.body, self.error)


class _OneCassette(CassetteSource):
    """Every request replays this one cassette; keeps the sessions it hands out, to see what went unused. Calls
    outside requests are answered by ``process_session``: the recording's session cassettes."""

    def __init__(self, cassette: Cassette, on_exhausted: OnExhausted, process_session: ReplaySession | None) -> None:
        super().__init__([cassette], single=True, on_exhausted=on_exhausted)
        self.process_session = process_session
        self.sessions: list[ReplaySession] = []

    def session_for(self, request: HttpRequest) -> ReplaySession:
        session = super().session_for(request)
        self.sessions.append(session)
        return session

    def unused(self) -> tuple[str, ...]:
        if not self.sessions:
            return ()
        return tuple(describe_request(i.kind, i.request) for i in self.sessions[0].index.unused())


class _AsgiExchange:
    """The in-memory ``receive`` and ``send`` of one ASGI request."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent_body = False
        self.done = asyncio.Event()
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []

    async def receive(self) -> Message:
        if not self.sent_body:
            self.sent_body = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.done.wait()  # as a client that stays connected until the response is complete
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            self.status = int(message["status"])
            self.headers = [
                (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
                for name, value in message.get("headers") or ()
            ]
        elif kind == "http.response.body":
            self.chunks.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                self.done.set()


class _WsgiExchange:
    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[
            [bytes], None]:
        try:
            self.status = int(status.split(None, 1)[0])
        except (ValueError, IndexError):
            self.status = None
        self.headers = [(str(name), str(value)) for name, value in headers]
        return self.chunks.append


class _Lifespan:
    """An ASGI app's lifespan, run as a server runs it: startup before the first request, shutdown after the
    last. An app that does not speak the protocol (it raises, or returns, without answering) runs without."""

    def __init__(self, app: Any, spec: str) -> None:
        self.app = app
        self.spec = spec
        self.state: dict[str, Any] = {}
        self.supported = False
        self._task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Message] | None = None
        self._answers: dict[str, asyncio.Future[Message | None]] = {}

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self._answers = {"startup": loop.create_future(), "shutdown": loop.create_future()}
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        self._task = asyncio.ensure_future(self._run(scope, self._inbox))
        await self._inbox.put({"type": "lifespan.startup"})
        answer = await self._answers["startup"]
        if answer is None:
            logger.debug("timetracer: %s does not support the ASGI lifespan protocol; running without", self.spec)
            return
        if answer.get("type") == "lifespan.startup.failed":
            raise AppLoadError(self.spec, f"its lifespan startup failed: {answer.get('message') or '(no message)'}")
        self.supported = True

    async def shutdown(self) -> None:
        if not self.supported or self._task is None or self._inbox is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        answer = await self._answers["shutdown"]
        if answer is not None and answer.get("type") == "lifespan.shutdown.failed":
            logger.warning("timetracer: the lifespan shutdown of %s failed: %s", self.spec, answer.get("message"))
        await asyncio.wait({self._task}, timeout=10)

    async def _run(self, scope: Message, inbox: asyncio.Queue[Message]) -> None:
        try:
            await self.app(scope, inbox.get, self._send)
        except Exception:
            logger.debug("timetracer: the lifespan of %s raised", self.spec, exc_info=True)
        finally:
            for future in self._answers.values():
                if not future.done():
                    future.set_result(None)

    async def _send(self, message: Message) -> None:
        kind = str(message.get("type", ""))
        phase = "startup" if kind.startswith("lifespan.startup") else "shutdown"
        future = self._answers.get(phase)
        if future is not None and not future.done():
            future.set_result(message)


class _RaisedErrors:
    """Exceptions Flask and Django turned into their 500 responses (they never leave the app), caught through
    the frameworks' ``got_request_exception`` signals."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self._disconnects: list[Callable[[], None]] = []

    def connect(self) -> None:
        if "flask" in sys.modules:
            from flask import got_request_exception

            got_request_exception.connect(self._flask, weak=False)
            self._disconnects.append(lambda: got_request_exception.disconnect(self._flask))
        if "django.core.signals" in sys.modules:
            from django.core.signals import got_request_exception as django_exception

            uid = f"timetracer-replay-{id(self)}"
            django_exception.connect(self._django, weak=False, dispatch_uid=uid)
            self._disconnects.append(lambda: django_exception.disconnect(dispatch_uid=uid))

    def disconnect(self) -> None:
        while self._disconnects:
            self._disconnects.pop()()

    def _flask(self, sender: Any, exception: Any = None, **extra: Any) -> None:
        if isinstance(exception, BaseException):
            self.errors.append(exception)

    def _django(self, sender: Any, **extra: Any) -> None:
        error = sys.exc_info()[1]  # sent from Django's except block
        if error is not None:
            self.errors.append(error)


# -- the driver -------------------------------------------------------------------------------------------


def _instrument_threading() -> Any:
    """OpenTelemetry's threading instrumentation, when nothing ran it: it carries a request's context (its
    replay session) into the threads and pools the app hands work to. The instrumentor, to undo it; else None."""
    from opentelemetry.instrumentation.threading import ThreadingInstrumentor

    instrumentor = ThreadingInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        return None
    instrumentor.instrument()
    return instrumentor


def _session_source(path: Path, settings: Settings) -> CassetteSource:
    """What answers calls made outside requests: the session cassettes of the directory ``path``, or those next
    to the cassette file ``path``."""
    if path.is_dir():
        sessions = [load_cassette(p) for p in iter_cassette_files(path, sessions=True)]
        return CassetteSource([], single=False, on_exhausted=settings.on_exhausted, sessions=sessions)
    return CassetteSource.open(path, settings.on_exhausted)


class AppDriver:
    """Replays cassettes against an app in this process. ``start()`` (or ``with``) loads the app; ``replay()``
    sends one cassette's request and returns what the app answered; ``close()`` undoes ``start()``.

    ``source`` is the cassette directory (or file) being replayed: its session cassettes answer calls made
    outside requests (the app's import, its lifespan). ``app_dir`` goes first on ``sys.path``;
    ``django_settings`` becomes ``DJANGO_SETTINGS_MODULE`` before anything is instrumented.
    """

    def __init__(
        self,
        app: str,
        source: Path,
        *,
        interface: Interface = Interface.AUTO,
        app_dir: Path | None = None,
        django_settings: str | None = None,
    ) -> None:
        self.spec = app
        self.source = source
        self.interface = interface
        self.app_dir = app_dir
        self.django_settings = django_settings
        self.app: Any = None
        self._runtime: _runtime.Runtime | None = None
        self._settings: Settings | None = None
        self._owned = False
        self._guard: NetworkGuard | None = None
        self._threading: Any = None
        self._base: CassetteSource | None = None
        self._runner: asyncio.Runner | None = None
        self._lifespan: _Lifespan | None = None
        self._raised = _RaisedErrors()
        self._attach = True

    def __enter__(self) -> AppDriver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def settings(self) -> Settings:
        """The replay settings: the environment's ``TIMETRACER_*``, in replay mode on ``source``."""
        assert self._settings is not None, "start() first"
        return self._settings

    def start(self) -> None:
        if self._runtime is not None:
            return
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        if self.app_dir is not None and str(self.app_dir.resolve()) not in sys.path:
            sys.path.insert(0, str(self.app_dir.resolve()))  # before the runtime: Django's settings import from it
        if self.django_settings:
            os.environ["DJANGO_SETTINGS_MODULE"] = self.django_settings
        base = Settings.from_env()
        settings = dataclasses.replace(
            base,
            mode=Mode.REPLAY,
            directory=self.source if self.source.is_dir() else base.directory,
            cassette=None if self.source.is_dir() else self.source,
        )
        self._settings = settings
        existing = _runtime.installed()
        if existing is not None and existing.recorder is not None:
            raise ConfigurationError(
                "TIMETRACER_MODE", existing.settings.mode.value,
                "replay or off (unset): this process is recording, so it cannot replay cassettes as tests",
            )
        if existing is None:
            self._runtime = _runtime.install(settings)
            self._owned = True
        else:  # replaying already, or the integrations alone (the pytest plugin's): serve from our cassettes
            self._runtime = existing
            if existing.guard is None and settings.network_guard:
                self._guard = NetworkGuard()
                self._guard.install()
            self._threading = _instrument_threading()
        self._base = self._runtime.source if self._owned else _session_source(self.source, settings)
        with self._answering(self._base):
            self.app = load_app(self.spec, self.app_dir)
            interface = self.interface
            if interface is Interface.AUTO:
                interface = detect_interface(self.app, self.spec)
            self.interface = interface
            if interface is Interface.ASGI:
                self._runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
                self._lifespan = _Lifespan(self.app, self.spec)
                self._runner.run(self._lifespan.startup())
        # The WSGI middleware attaches the request's state itself (inside its span); everything else gets
        # it around the whole call, as the Flask and Django integrations do.
        self._attach = not _is_instance(self.app, "opentelemetry.instrumentation.wsgi", "OpenTelemetryMiddleware")
        self._raised.connect()

    def close(self) -> None:
        try:
            if self._runner is not None:
                try:
                    if self._lifespan is not None and self._runtime is not None:
                        with self._answering(self._base):
                            self._runner.run(self._lifespan.shutdown())
                finally:
                    self._runner.close()
        finally:
            self._runner = None
            self._lifespan = None
            self._raised.disconnect()
            if self._guard is not None:
                self._guard.uninstall()
                self._guard = None
            if self._threading is not None:
                self._threading.uninstrument()
                self._threading = None
            if self._owned:
                _runtime.uninstall()
            self._runtime = None
            self._owned = False

    @contextlib.contextmanager
    def _answering(self, source: CassetteSource | None) -> Iterator[None]:
        """Calls made in this block are answered from ``source`` (and, outside requests, from our session
        cassettes)."""
        assert self._runtime is not None
        with self._runtime.answering(source):
            yield

    def replay(self, cassette: Cassette) -> LiveResponse:
        """Send the cassette's recorded request to the app, its outbound calls answered from that cassette."""
        request = cassette.request
        if request is None or self._runtime is None:
            raise ValueError("replay() needs a started driver and a request cassette (see unreplayable())")
        body = request.body.data if request.body is not None else b""
        assert self._base is not None
        source = _OneCassette(cassette, self.settings.on_exhausted, self._base.process_session)
        self._raised.errors.clear()
        with self._answering(source):
            if self._runner is not None:
                live = self._runner.run(self._asgi(request, body))
            else:
                live = self._wsgi(request, body)
        error = live.error if live.error is not None or not self._raised.errors else self._raised.errors[0]
        return dataclasses.replace(live, error=error, unused=source.unused())

    def check(self, cassette: Cassette, rules: NoiseRules) -> Comparison:
        """Replay the cassette and compare the answer with the recorded one; recorded calls the app did not
        make are noted (the response may still be right: a cache, a skipped side effect)."""
        live = self.replay(cassette)
        comparison = compare(Answer.recorded(cassette), live.answer(), rules)
        if live.unused:
            shown = ", ".join(live.unused[:3]) + (f" and {len(live.unused) - 3} more" if len(live.unused) > 3 else "")
            calls = "call was" if len(live.unused) == 1 else "calls were"
            note = f"{len(live.unused)} recorded {calls} not made this time: {shown}"
            comparison = dataclasses.replace(comparison, notes=(*comparison.notes, note))
        return comparison

    async def _asgi(self, request: HttpRequest, body: bytes) -> LiveResponse:
        assert self._lifespan is not None
        exchange = _AsgiExchange(body)
        scope = asgi_scope(request, self._lifespan.state)
        error: BaseException | None = None
        try:
            served: Awaitable[None] = serve_asgi(self._handle(AsgiIntegration), self.app, scope, exchange.receive,
                                                 exchange.send)
            await served
        except Exception as exc:
            error = exc
        finally:
            exchange.done.set()
        return LiveResponse(exchange.status, tuple(exchange.headers), b"".join(exchange.chunks), error)

    def _wsgi(self, request: HttpRequest, body: bytes) -> LiveResponse:
        exchange = _WsgiExchange()
        environ = wsgi_environ(request, body, io.StringIO())
        error: BaseException | None = None
        try:
            result = serve_wsgi(self._handle(WsgiIntegration), self.app, environ, exchange.start_response,
                                attach=self._attach)
            try:
                for chunk in result:
                    exchange.chunks.append(bytes(chunk))
            finally:
                close = getattr(result, "close", None)
                if callable(close):
                    close()
        except Exception as exc:
            error = exc
        return LiveResponse(exchange.status, tuple(exchange.headers), b"".join(exchange.chunks), error)

    def _handle(self, kind: type[AsgiIntegration] | type[WsgiIntegration]) -> AsgiIntegration | WsgiIntegration:
        """What ``serve_asgi``/``serve_wsgi`` take: an integration whose runtime is the one replaying (its
        patches are not installed: the served app's own layers run the installed integrations)."""
        assert self._runtime is not None
        return kind(self._runtime)
