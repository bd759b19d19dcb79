"""The per-request state (a recording or a replay session) travels in the OpenTelemetry context.

That way it reaches asyncio tasks and, through the threading instrumentation, worker threads, exactly as the
request's spans do.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from opentelemetry import context as otel_context

__all__ = ["REQUEST_STATE_KEY", "attach_request_state", "connection_setup", "in_connection_setup", "request_state"]

REQUEST_STATE_KEY = otel_context.create_key("timetracer-request")


def request_state(context: otel_context.Context | None = None) -> object:
    return otel_context.get_value(REQUEST_STATE_KEY, context)


def attach_request_state(state: object) -> object:
    """Put ``state`` in the current context; pass the token to ``opentelemetry.context.detach``."""
    return otel_context.attach(otel_context.set_value(REQUEST_STATE_KEY, state))


_CONNECTION_SETUP: contextvars.ContextVar[bool] = contextvars.ContextVar("timetracer_connection_setup", default=False)


@contextlib.contextmanager
def connection_setup() -> Iterator[None]:
    """Calls made inside belong to setting up a connection (a driver's or an ORM's start-up queries on a new
    connection), not to the request that happened to need the connection.

    They are recorded in the process's session cassette and replayed from it, whichever request opens the
    connection: a replayed pool may open its connections during other requests than the recorded one did.
    """
    token = _CONNECTION_SETUP.set(True)
    try:
        yield
    finally:
        _CONNECTION_SETUP.reset(token)


def in_connection_setup() -> bool:
    return _CONNECTION_SETUP.get()
