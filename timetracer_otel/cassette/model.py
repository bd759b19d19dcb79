"""The cassette: one inbound request, its response, and every outbound call it made.

Plain immutable values. How they become JSON lives in :mod:`timetracer_otel.cassette.codec`; how they reach a
file lives in :mod:`timetracer_otel.cassette.files`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "SCHEMA_VERSION",
    "Body",
    "Cassette",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "Interaction",
    "Metadata",
    "RecordedError",
    "SpanSummary",
]

#: Bumped on any change a reader of an older version would misunderstand.
SCHEMA_VERSION = 1

#: Header pairs in the order they were sent, duplicates kept.
Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Body:
    """A payload as it crossed the wire.

    ``content_coding`` is the content-coding ``data`` is still encoded with (``None`` = identity). Cassettes
    store bodies decoded when they can, so they stay readable; replay re-encodes them to the coding the
    recorded ``Content-Encoding`` header names, so clients decode exactly the recorded bytes.
    """

    data: bytes
    #: Size of the whole payload; larger than ``len(data)`` when the body was truncated at the size cap.
    size: int
    truncated: bool = False
    #: False when the reader stopped before the end of a streamed body.
    complete: bool = True
    content_coding: str | None = None

    @classmethod
    def of(cls, data: bytes) -> Body:
        return cls(data=data, size=len(data))


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str
    headers: Headers = ()
    body: Body | None = None
    #: Route template of an inbound request, e.g. ``/users/{user_id}``.
    route: str | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Headers = ()
    body: Body | None = None
    reason: str | None = None
    http_version: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedError:
    """An exception a call raised: replay raises the same type again."""

    #: Module-qualified type, e.g. ``httpx.ConnectTimeout``.
    type: str
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> RecordedError:
        kind = type(exc)
        return cls(type=f"{kind.__module__}.{kind.__qualname__}", message=str(exc))


@dataclass(frozen=True, slots=True)
class Interaction:
    """One outbound call made while serving the inbound request."""

    kind: str
    library: str
    request: HttpRequest
    response: HttpResponse | None = None
    error: RecordedError | None = None
    #: Offset from the start of the inbound request, and duration, in milliseconds.
    start_ms: float = 0.0
    duration_ms: float = 0.0
    span_id: str | None = None
    parent_span_id: str | None = None


@dataclass(frozen=True, slots=True)
class SpanSummary:
    """A light span tree for timelines: no attributes, no payloads."""

    name: str
    kind: str
    span_id: str
    parent_span_id: str | None
    start_ms: float
    duration_ms: float


@dataclass(frozen=True, slots=True)
class Metadata:
    id: str
    recorded_at: datetime
    service: str
    tool_version: str
    trace_id: str | None = None
    duration_ms: float = 0.0
    #: The request did not settle before TIMETRACER_REQUEST_TIMEOUT_S; calls after that are missing.
    incomplete: bool = False


@dataclass(frozen=True, slots=True)
class Cassette:
    metadata: Metadata
    request: HttpRequest
    response: HttpResponse | None = None
    #: The app raised instead of answering (the framework's error response, if any, is in ``response``).
    error: RecordedError | None = None
    interactions: tuple[Interaction, ...] = ()
    spans: tuple[SpanSummary, ...] = field(default=())
