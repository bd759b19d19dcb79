"""The inbound request being served, handed from our outermost wrapper to the bridges inside the framework.

Server instrumentations (OpenTelemetry's ASGI and WSGI middleware, Flask's and Django's) start their server span
in a fresh context extracted from the request headers, which drops our per-request state. Our outer wrapper
(where the request is admitted) sets :data:`SERVING`, a plain context variable, and a bridge placed inside the
server span reads it back and puts the state into the OpenTelemetry context again.
"""

from __future__ import annotations

import contextvars
from abc import ABC, abstractmethod
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import Span

from timetracer_otel.integrations._base import Integration
from timetracer_otel.record.captured import CapturedBody, CapturedHttpRequest, CapturedHttpResponse
from timetracer_otel.record.recording import BodyBuffer, RequestRecording
from timetracer_otel.replay.session import ReplaySession

__all__ = ["SERVING", "InboundExchange", "RequestState", "Serving", "track_server_span"]

RequestState = RequestRecording | ReplaySession | None


_NO_BODY = CapturedBody(b"", 0)


class InboundExchange(ABC):
    """What one recorded inbound request captured (ASGI or WSGI); builds the cassette's request and response on
    the writer thread.

    Slotted objects rather than closures: all of this lives until the cassette is written, and each closure
    and cell would be one more object for the garbage collector to promote and scan.
    """

    __slots__ = ("headers", "request_body", "response_body", "route", "status")

    def __init__(self, recording: RequestRecording, limit: int, *, has_body: bool) -> None:
        self.status: int | None = None
        self.headers: Any = ()
        #: Set by a framework bridge once routing has happened (Flask, Django), else read from the request.
        self.route: str | None = None
        #: None when the request has no body: then the app may rightly never read it.
        self.request_body = BodyBuffer(limit, recording) if has_body else None
        self.response_body = BodyBuffer(limit, recording)

    @abstractmethod
    def _request(self, body: CapturedBody) -> CapturedHttpRequest:
        """The inbound request as the server described it, with this body."""

    @abstractmethod
    def _http_version(self) -> str | None: ...

    def request(self) -> CapturedHttpRequest:
        return self._request(_NO_BODY if self.request_body is None else self.request_body.to_body())

    def response(self) -> CapturedHttpResponse | None:
        if self.status is None:
            return None
        return CapturedHttpResponse(
            status=self.status,
            headers=self.headers or (),
            body=self.response_body.to_body(),
            http_version=self._http_version(),
        )


class Serving:
    """One request in service: its ``carrier`` (the ASGI scope or WSGI environ that identifies it, so an inner
    layer of the same request or a context leaked from another one can be told apart), its state, and the
    exchange being recorded (None when replaying or not admitted)."""

    __slots__ = ("carrier", "exchange", "request_ctx", "state", "token")

    def __init__(self, carrier: Any, state: RequestState, exchange: InboundExchange | None) -> None:
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
