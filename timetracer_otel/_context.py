"""The per-request state (a recording or a replay session) travels in the OpenTelemetry context.

That way it reaches asyncio tasks and, through the threading instrumentation, worker threads, exactly as the
request's spans do.
"""

from __future__ import annotations

from opentelemetry import context as otel_context

__all__ = ["REQUEST_STATE_KEY", "attach_request_state", "request_state"]

REQUEST_STATE_KEY = otel_context.create_key("timetracer-request")


def request_state(context: otel_context.Context | None = None) -> object:
    return otel_context.get_value(REQUEST_STATE_KEY, context)


def attach_request_state(state: object) -> object:
    """Put ``state`` in the current context; pass the token to ``opentelemetry.context.detach``."""
    return otel_context.attach(otel_context.set_value(REQUEST_STATE_KEY, state))
