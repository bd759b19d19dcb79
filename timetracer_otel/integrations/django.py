"""Django 5.2, WSGI and ASGI (async views too): one cassette per request, with the URL pattern as its route.

The entry points are Django's handlers, wrapped from the outside: ``WSGIHandler.__call__`` and
``ASGIHandler.__call__`` are served by the same code as any WSGI or ASGI app (:func:`~timetracer_otel.
integrations.wsgi.serve_wsgi`, :func:`~timetracer_otel.integrations.asgi.serve_asgi`), which tees the request
body and the response as the server exchanges them. So we never touch ``request.body``: Django's own size check
(``DATA_UPLOAD_MAX_MEMORY_SIZE``) and streamed uploads behave exactly as without us, and the cassette keeps what
the app read, up to ``TIMETRACER_MAX_BODY_BYTES``.

OpenTelemetry's Django instrumentation puts its middleware first in ``settings.MIDDLEWARE`` and starts the server
span there, in a fresh context. :class:`TimetracerMiddleware` is put right after it when Django loads its
middleware: inside that span it puts our request state back into the context, and once the view has run it
notes the route (``request.resolver_match.route``, so ``/users/<int:pk>/``). The ORM's SQL is recorded and
replayed by the driver's integration (psycopg, sqlite3). An unhandled exception is recorded where Django turns it
into its 500 response (``handle_uncaught_exception``); ``Http404``, ``PermissionDenied`` and the like are Django's
answers, not failures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from opentelemetry import context as otel_context

from timetracer_otel._context import attach_request_state
from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.integrations._serving import SERVING, Serving, track_server_span
from timetracer_otel.integrations.asgi import serve_asgi
from timetracer_otel.integrations.wsgi import serve_wsgi
from timetracer_otel.record.recording import SessionRecording, current_recording

__all__ = ["DjangoIntegration", "TimetracerMiddleware"]

MIDDLEWARE_PATH = "timetracer_otel.integrations.django.TimetracerMiddleware"
_OTEL_MIDDLEWARE_PATH = "opentelemetry.instrumentation.django.middleware.otel_middleware._DjangoMiddleware"


class TimetracerMiddleware:
    """Puts the request state back into the context inside OpenTelemetry's server span; notes the route."""

    sync_capable = True
    async_capable = True
    #: The installed integration (set by :meth:`DjangoIntegration.install`); Django builds middleware itself.
    integration: ClassVar[DjangoIntegration | None] = None

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        serving = self._serving(request)
        if serving is None:
            return self.get_response(request)
        token = self._enter(serving)
        try:
            return self.get_response(request)
        finally:
            self._exit(serving, request, token)

    async def _acall(self, request: Any) -> Any:
        serving = self._serving(request)
        response: Awaitable[Any] = self.get_response(request)
        if serving is None:
            return await response
        token = self._enter(serving)
        try:
            return await response
        finally:
            self._exit(serving, request, token)

    def _serving(self, request: Any) -> Serving | None:
        integration = self.integration
        serving = SERVING.get()
        if integration is None or not integration.active or serving is None or serving.state is None:
            return None
        carrier = request.scope if hasattr(request, "scope") else getattr(request, "environ", None)
        return serving if serving.carrier is carrier else None

    def _enter(self, serving: Serving) -> object:
        if self.integration is not None:
            track_server_span(self.integration, serving.state)
        return attach_request_state(serving.state)

    @staticmethod
    def _exit(serving: Serving, request: Any, token: object) -> None:
        otel_context.detach(token)  # type: ignore[arg-type]
        match = getattr(request, "resolver_match", None)
        if serving.exchange is not None and match is not None and match.route:
            serving.exchange.route = _route(request, match.route)


def _route(request: Any, route: str) -> str:
    """The pattern as a path: Django's route is relative to the script prefix (``users/<int:pk>/``); a
    ``re_path`` pattern is kept as written."""
    if route.startswith("^"):
        return route
    script_prefix = request.path[: len(request.path) - len(request.path_info)]
    return f"{script_prefix}/{route}"


class DjangoIntegration(Integration):
    name = "django"

    def patches(self) -> Sequence[Patch]:
        return (
            Patch("django.core.handlers.wsgi", "WSGIHandler.__call__", self._wsgi),
            Patch("django.core.handlers.asgi", "ASGIHandler.__call__", self._asgi),
            Patch("django.core.handlers.base", "BaseHandler.load_middleware", self._load_middleware),
            Patch("django.core.handlers.exception", "handle_uncaught_exception", self._uncaught_exception),
        )

    def install(self) -> None:
        super().install()
        TimetracerMiddleware.integration = self

    def uninstall(self) -> None:
        super().uninstall()
        if TimetracerMiddleware.integration is self:
            TimetracerMiddleware.integration = None

    def _wsgi(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or len(args) != 2 or kwargs:
            return wrapped(*args, **kwargs)
        return serve_wsgi(self, wrapped, args[0], args[1], attach=True)

    def _asgi(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if not self.active or len(args) != 3 or kwargs:
            return wrapped(*args, **kwargs)
        return serve_asgi(self, wrapped, *args)

    def _load_middleware(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self.active:
            _insert_middleware()
        return wrapped(*args, **kwargs)

    def _uncaught_exception(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self.active and len(args) == 3:
            error = args[2][1] if isinstance(args[2], tuple) else None
            recording = current_recording()
            if isinstance(error, Exception) and recording is not None and not isinstance(recording, SessionRecording):
                recording.error = error
        return wrapped(*args, **kwargs)


def _insert_middleware() -> None:
    """Put :class:`TimetracerMiddleware` right after OpenTelemetry's (first when that is absent)."""
    from django.conf import settings

    middleware = list(settings.MIDDLEWARE)
    if MIDDLEWARE_PATH in middleware:
        return
    index = middleware.index(_OTEL_MIDDLEWARE_PATH) + 1 if _OTEL_MIDDLEWARE_PATH in middleware else 0
    middleware.insert(index, MIDDLEWARE_PATH)
    settings.MIDDLEWARE = type(settings.MIDDLEWARE)(middleware)


INTEGRATION = DjangoIntegration
