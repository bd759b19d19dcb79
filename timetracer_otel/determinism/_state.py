"""Whose clock reading or generated value this is: a request being recorded or replayed, and the app's own.

Every hook asks both on each call, so both are a few dictionary look-ups: the hooks run for every
``random.random()`` and every span id OpenTelemetry draws.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from types import FrameType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import _RUNTIME_CONTEXT, _SUPPRESS_INSTRUMENTATION_KEY

from timetracer_otel._context import _CONNECTION_SETUP, REQUEST_STATE_KEY
from timetracer_otel.record.recording import RequestRecording, SessionRecording
from timetracer_otel.replay.session import ReplaySession

__all__ = ["app_called", "current_state"]

_STATES = (RequestRecording, ReplaySession)
#: ``opentelemetry.context.get_current`` without its two calls in between, for the default runtime context (a
#: context variable); any other runtime context through the API.
_runtime_variable = getattr(_RUNTIME_CONTEXT, "_current_context", None)
_get_context: Any = (
    _runtime_variable.get if isinstance(_runtime_variable, ContextVar) else otel_context.get_current
)
#: ``in_connection_setup()``, without the call.
_in_connection_setup = _CONNECTION_SETUP.get


def current_state() -> RequestRecording | ReplaySession | None:
    """Where a value generated here is recorded (a recording) or replayed from (a replay session): the request
    this code serves, else the process's session (outside requests, and for connection set-up), as for outbound
    calls. None (generate for real, read the real clock) when instrumentation is suppressed or nothing is
    recorded or replayed."""
    context = _get_context()
    if context:  # empty outside requests
        # One look-up for suppression: suppress_instrumentation() sets the API's key besides its older one.
        if context.get(_SUPPRESS_INSTRUMENTATION_KEY):
            return None
        state = context.get(REQUEST_STATE_KEY)
        if state is not None and isinstance(state, _STATES) and not _in_connection_setup():
            return state
    return ReplaySession.process or SessionRecording.current


#: Modules whose values and clock readings are their own, never the app's, so never recorded or replayed:
#: OpenTelemetry (span and trace ids, span timestamps) and timetracer (cassette ids, sampling); uuid's and
#: bson's generators, which are recorded whole (``uuid4()``, ``ObjectId()``), not by the bytes they draw; log
#: record timestamps; what PyMongo draws for itself (wire request ids, server session ids, retry jitter,
#: authentication nonces, a client's topology id): none of it is part of what replay matches, and a replayed
#: client neither authenticates nor always sends the messages the recorded one did.
_TOOLING_MODULES = frozenset({
    "opentelemetry", "timetracer_otel", "uuid", "bson.objectid", "logging", "asyncio", "uvloop",
    # PyMongo across its layouts (4.20; 4.9-4.19; before 4.9).
    "pymongo.message", "pymongo.helpers_shared", "pymongo.helpers", "pymongo.settings_shared", "pymongo.settings",
    "pymongo.client_session_shared", "pymongo.auth_shared",
    "pymongo.synchronous.client_session", "pymongo.asynchronous.client_session",
    "pymongo.synchronous.auth", "pymongo.asynchronous.auth", "pymongo.client_session", "pymongo.auth",
    # Servers (Date headers, access logs, heartbeats), and clients' own bookkeeping (urllib3's clock check on
    # connecting, SQLAlchemy's pool recycling, a client's cookie jar), which a replayed request need not repeat.
    "http.server", "socketserver", "werkzeug.serving", "werkzeug._reloader", "http.cookiejar",
})
#: Packages likewise. The event loop's frame is the nearest Python caller of compiled code it runs, such as a
#: driver's protocol drawing an authentication nonce (asyncpg's SCRAM), which replay never runs.
_TOOLING_PACKAGES = (
    "opentelemetry.", "timetracer_otel.", "logging.", "asyncio.", "uvloop.",
    "uvicorn.", "h11.", "h2.", "httptools.", "hypercorn.", "gunicorn.", "daphne.", "granian.", "waitress.",
    "wsgiref.", "django.core.servers.", "urllib3.", "sqlalchemy.pool.", "_pytest.", "pluggy.",
)
#: Modules whose functions stand between the caller and a hooked primitive (``random.randint`` ->
#: ``randrange`` -> ``_randbelow`` -> ``getrandbits``; time-machine's Python layer in its 3.0-3.3 releases;
#: ``email.utils.formatdate()`` and ``http.cookies``, which read the clock for a server's Date header as for the
#: app's own): the caller is further up.
_PASS_THROUGH = frozenset({"random", "secrets", "time_machine", "email.utils", "http.cookies"})

#: Verdict per module name (True: the app's, False: tooling's, else look further up). Keyed by name, whose hash
#: is cached, not by code object, whose hash is computed from its contents on every look-up.
_SKIP: Any = object()
_VERDICTS: dict[str, Any] = {}
_getframe = sys._getframe


def _classify(module: str) -> Any:
    if module in _PASS_THROUGH:
        verdict = _SKIP
    else:
        verdict = not (module in _TOOLING_MODULES or module.startswith(_TOOLING_PACKAGES))
    if len(_VERDICTS) < 10_000:  # names made up at run time (exec) must not grow it without end
        _VERDICTS[module] = verdict
    return verdict


def app_called(depth: int = 2) -> bool:
    """Whether the function that called this one (``depth`` 2: the hook's caller) was called by the app (any
    code but the tooling above), looking past the stdlib layers in ``_PASS_THROUGH``. False when no Python code
    called it (compiled code on a thread of its own)."""
    frame: FrameType | None
    try:
        frame = _getframe(depth)
    except ValueError:
        return False
    while frame is not None:
        module = frame.f_globals.get("__name__")
        if not isinstance(module, str):
            return True  # code run with globals of its own (exec): the app's
        verdict = _VERDICTS.get(module)
        if verdict is None:
            verdict = _classify(module)
        if verdict is not _SKIP:
            return verdict  # type: ignore[no-any-return]
        frame = frame.f_back
    return False
