"""``bench_app`` with timetracer monkeypatched in-process, to split record mode's cost.

Nothing here changes timetracer's files. ``BENCH_VARIANT`` selects:

* ``pathonly``: every request is captured on the request path as shipped, but dropped when it settles instead
  of being assembled and written: the cost of the request path alone (writes no cassettes).
* ``captureonly``: each settled request is captured on the writer thread as shipped (its payloads materialized
  into a ``CapturedRequest``), then dropped instead of being handed to the writer process.
* ``encodeonly``: as ``captureonly``, but each captured request is also encoded to MessagePack as for the pipe:
  everything in the app's process but the pipe itself.
* ``notrack``: the span processor does nothing (recordings settle when the app answers; cassettes carry no span
  tree): what span tracking costs.
* ``nohttpx``: httpx calls pass straight through, not captured: what capturing an outbound call costs.
* ``nosql``, ``noredis``, ``nomongo``, ``nodata``: asyncpg, Redis, MongoDB, or all three, see no recording
  (their calls pass through uncaptured): what capturing ``/fullstack``'s database and cache calls costs.

Run under ``opentelemetry-instrument`` with ``TIMETRACER_MODE=record`` (the runtime is installed before this
module is imported, so patching the class reaches the live recorder).
"""

from __future__ import annotations

import os
from typing import Any

from bench_app import app

from timetracer_otel.integrations import asyncpg as asyncpg_module
from timetracer_otel.integrations import mongo as mongo_module
from timetracer_otel.integrations import redis as redis_module
from timetracer_otel.integrations.httpx import HttpxIntegration
from timetracer_otel.record import recorder as recorder_module
from timetracer_otel.record.captured import encode_captured
from timetracer_otel.record.recording import RequestRecording
from timetracer_otel.record.tracker import RequestSpanTracker

__all__ = ["app"]


def _drop(self: recorder_module.Recorder, recording: RequestRecording) -> None:
    recording.finalized = True
    self._pending.pop(id(recording), None)
    recording.release()


if "pathonly" in os.environ.get("BENCH_VARIANT", ""):
    recorder_module.Recorder.settle = _drop  # type: ignore[method-assign]


def _drop_batch(self: recorder_module.Recorder) -> None:
    self.stats.written += len(self._batch)
    self._batch = []


def _encode_and_drop_batch(self: recorder_module.Recorder) -> None:
    for captured in self._batch:
        encode_captured(captured)
    _drop_batch(self)


if "captureonly" in os.environ.get("BENCH_VARIANT", ""):
    recorder_module.Recorder._store_batch = _drop_batch  # type: ignore[method-assign]
if "encodeonly" in os.environ.get("BENCH_VARIANT", ""):
    recorder_module.Recorder._store_batch = _encode_and_drop_batch  # type: ignore[method-assign]


def _ignore_span(self: RequestSpanTracker, span: object, parent_context: object = None) -> None:
    return None


def _ignore_ended(self: RequestSpanTracker, span: object) -> None:
    return None


def _ignore_tracked(self: RequestSpanTracker, span: object, recording: RequestRecording) -> None:
    return None


if "notrack" in os.environ.get("BENCH_VARIANT", ""):
    RequestSpanTracker.on_start = _ignore_span  # type: ignore[assignment]
    RequestSpanTracker.on_end = _ignore_ended  # type: ignore[assignment]
    RequestSpanTracker.track = _ignore_tracked  # type: ignore[assignment]


async def _pass_through(self: HttpxIntegration, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return await wrapped(*args, **kwargs)


if "nohttpx" in os.environ.get("BENCH_VARIANT", ""):
    HttpxIntegration._handle_async_request = _pass_through  # type: ignore[method-assign]


def _no_recording() -> None:
    return None


# The data integrations look current_recording up in their module when a call starts.
_VARIANT = os.environ.get("BENCH_VARIANT", "")
for _name, _module in (("nosql", asyncpg_module), ("noredis", redis_module), ("nomongo", mongo_module)):
    if _name in _VARIANT or "nodata" in _VARIANT:
        _module.current_recording = _no_recording  # type: ignore[attr-defined]
