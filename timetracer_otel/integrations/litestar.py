"""Litestar (2.x): puts OpenTelemetry's ASGI middleware around an app that lacks it, so the ASGI integration
records and replays it with no code change.

Litestar has no OpenTelemetry contrib instrumentor: its own ``OpenTelemetryPlugin`` wraps the whole app (CORS,
the exception handler and the router) in ``OpenTelemetryInstrumentationMiddleware``, which delegates to
``opentelemetry.instrumentation.asgi.OpenTelemetryMiddleware``, where :mod:`timetracer_otel.integrations.asgi`
hooks in. Under ``opentelemetry-instrument`` an app without the plugin would pass through no such middleware
and nothing would be recorded. So, while recording or replaying, each ``Litestar(...)`` built without the
plugin gets the plugin's middleware around its ``asgi_handler``, exactly where the plugin would put it (the
server span named by the method alone, see :func:`_span_details`). An app that configures the plugin itself
(or lists the middleware, which Litestar turns into the plugin) is left alone: it is recorded through its own
middleware.

The route template is the ``path_template`` Litestar's router puts in the scope (``/users/{user_id}`` for
``/users/{user_id:int}``). A view's unhandled exception is caught by Litestar's exception handler inside the
middleware, which answers 500: the exception is recorded there (``ExceptionHandlerMiddleware.
handle_request_exception``), next to that response. ``HTTPException`` subclasses (404, validation errors) are
Litestar's answers, not failures, and are not recorded as errors. Apps created before timetracer is installed are
not changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from timetracer_otel.integrations._base import Integration, Patch
from timetracer_otel.record.recording import SessionRecording, current_recording

__all__ = ["LitestarIntegration"]


class LitestarIntegration(Integration):
    name = "litestar"

    def patches(self) -> Sequence[Patch]:
        return (
            Patch("litestar.app", "Litestar.__init__", self._init),
            Patch(_EXCEPTIONS, "ExceptionHandlerMiddleware.handle_request_exception", self._handle_exception),
        )

    async def _handle_exception(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if self.active:
            from litestar.exceptions import HTTPException

            error = kwargs.get("exc", args[-1] if args else None)
            recording = current_recording()
            if (isinstance(error, Exception) and not isinstance(error, HTTPException) and recording is not None
                    and not isinstance(recording, SessionRecording)):
                recording.error = error
        return await wrapped(*args, **kwargs)

    def _init(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        if self.active and (self.runtime.recorder is not None or self.runtime.source is not None):
            _add_middleware(instance)
        return result


_EXCEPTIONS = "litestar.middleware._internal.exceptions.middleware"


def _add_middleware(app: Any) -> None:
    # Imported here: it needs opentelemetry-instrumentation-asgi, and only apps being built need it.
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

    if any(isinstance(plugin, OpenTelemetryPlugin) for plugin in app.plugins):
        return
    config = OpenTelemetryConfig(scope_span_details_extractor=_span_details)
    app.asgi_handler = OpenTelemetryPlugin(config).middleware(app=app.asgi_handler)


def _span_details(scope: Any) -> tuple[str, dict[str, Any]]:
    """The server span's name before routing: the method alone, as OpenTelemetry's conventions name a span
    whose route is not known yet. (Litestar's default puts ``GET /users/42``, the path, into ``http.route``,
    which would also become the cassette's route.)"""
    method = scope.get("method")
    return (str(method), {}) if method else (str(scope.get("path", "")), {})


INTEGRATION = LitestarIntegration
