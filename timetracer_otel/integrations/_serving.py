"""The inbound request being served, handed from our outermost wrapper to the bridges inside the framework.

Server instrumentations (OpenTelemetry's ASGI and WSGI middleware, Flask's and Django's) start their server span
in a fresh context extracted from the request headers, which drops our per-request state. Our outer wrapper
(where the request is admitted) sets :data:`SERVING`, a plain context variable, and a bridge placed inside the
server span reads it back and puts the state into the OpenTelemetry context again.
"""

from __future__ import annotations

import contextvars
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.sdk.trace import Span

from timetracer_otel.integrations._base import Integration
from timetracer_otel.record.recording import RequestRecording
from timetracer_otel.replay.session import ReplaySession

__all__ = ["SERVING", "RequestState", "RoutedExchange", "Serving", "track_server_span"]

RequestState = RequestRecording | ReplaySession | None


class RoutedExchange(Protocol):
    """A recorded exchange whose route template a framework bridge fills in once routing has happened."""

    route: str | None


class Serving:
    """One request in service: its ``carrier`` (the ASGI scope or WSGI environ that identifies it, so an inner
    layer of the same request or a context leaked from another one can be told apart), its state, and the
    exchange being recorded (None when replaying or not admitted)."""

    __slots__ = ("carrier", "exchange", "request_ctx", "state", "token")

    def __init__(self, carrier: Any, state: RequestState, exchange: RoutedExchange | None) -> None:
        self.carrier = carrier
        self.state = state
        self.exchange = exchange
        #: Flask: the context token our ``preprocess_request`` bridge attached, and the request context it
        #: belongs to (a nested request context must not detach it).
        self.token: object = None
        self.request_ctx: object = None


SERVING: contextvars.ContextVar[Serving | None] = contextvars.ContextVar("timetracer_serving", default=None)


def track_server_span(integration: Integration, state: RequestState) -> None:
    """Count the current (server) span and its descendants as part of the recording: it is written once they
    have ended."""
    recorder = integration.runtime.recorder
    span = trace.get_current_span()
    if isinstance(state, RequestRecording) and recorder is not None and isinstance(span, Span):
        recorder.tracker.track(span, state)
