"""A written request as the app's process hands it over: what was captured, before it becomes a cassette.

The app's process does as little as it can with a finished request, because every microsecond there is taken
from the app: it joins the captured payloads' chunks and copies out references and raw numbers (header bytes as
the libraries hold them, nanosecond times, integer ids). Turning those into model values and a
:class:`~timetracer_otel.cassette.model.Cassette` (decoded headers, offsets, span summaries, hex ids, ordering;
see :mod:`timetracer_otel.record.assembly`) happens where the cassette is stored, normally the writer process.
Values cross the pipe as MessagePack, which msgspec encodes from these structs in C.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import msgspec

from timetracer_otel.cassette.model import (
    Body,
    CallRequest,
    CallResponse,
    Generated,
    Headers,
    HttpRequest,
    HttpResponse,
    RecordedError,
)

__all__ = [
    "CaptureWriter",
    "CapturedBody",
    "CapturedCall",
    "CapturedCallRequest",
    "CapturedCallResponse",
    "CapturedGenerated",
    "CapturedHttpRequest",
    "CapturedHttpResponse",
    "CapturedRequest",
    "RawHeaders",
    "SpanTuple",
    "capture_generated",
    "decode_captured",
    "encode_captured",
    "header_pairs",
]

#: A span as recorded on the app thread: (name, kind, span_id, parent_span_id, start_ns, end_ns), the kind
#: as the number of its ``SpanKind``.
SpanTuple = tuple[str, int, int, int | None, int, int]

#: Header pairs as the server or client library holds them (bytes or text, a list or a tuple per pair): they
#: cross the pipe as they are, and are made text where the cassette is assembled (:func:`header_pairs`).
RawHeaders = Sequence[Sequence[Any]]


def header_pairs(raw: Iterable[Sequence[Any]]) -> Headers:
    """Header pairs as cassettes hold them: bytes decoded as Latin-1, which maps each byte to one character,
    so replay can encode them back to exactly the bytes that were sent."""
    return tuple([(_text(name), _text(value)) for name, value in raw])


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else value


class CapturedBody(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A payload as captured; see :class:`~timetracer_otel.cassette.model.Body` for the fields."""

    data: bytes
    size: int
    truncated: bool = False
    complete: bool = True
    content_coding: str | None = None

    def to_model(self) -> Body:
        return Body(self.data, self.size, self.truncated, self.complete, self.content_coding)


# The request and response structs are tagged: a call's request is one of two shapes, and msgspec tells
# array-like structs in a union apart by tag.


class CapturedHttpRequest(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="h"):
    method: str
    url: str
    headers: RawHeaders
    body: CapturedBody | None = None
    route: str | None = None

    def to_model(self) -> HttpRequest:
        return HttpRequest(
            method=self.method,
            url=self.url,
            headers=header_pairs(self.headers),
            body=None if self.body is None else self.body.to_model(),
            route=self.route,
        )


class CapturedHttpResponse(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="h"):
    status: int
    headers: RawHeaders
    body: CapturedBody | None = None
    reason: str | None = None
    http_version: str | None = None

    def to_model(self) -> HttpResponse:
        return HttpResponse(
            status=self.status,
            headers=header_pairs(self.headers),
            body=None if self.body is None else self.body.to_model(),
            reason=self.reason,
            http_version=self.http_version,
        )


#: How a captured call's ``arguments`` or ``result`` is held: ``JSON`` a JSON value already, ``BSON`` a BSON
#: document's bytes, made canonical extended JSON where the cassette is assembled (off the app's process).
JSON = ""
BSON = "bson"


def _json_value(value: Any, encoding: str) -> Any:
    if encoding == JSON:
        return value
    if encoding == BSON:
        from timetracer_otel.cassette.extended_json import bson_to_extended_json

        return bson_to_extended_json(value)
    raise ValueError(f"unknown captured value encoding {encoding!r}")


class CapturedCallRequest(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="c"):
    """A database or cache call; ``arguments`` a JSON value, or as ``encoding`` says (see :class:`CallRequest`)."""

    operation: str
    method: str | None
    target: str | None
    arguments: Any
    encoding: str = JSON

    def to_model(self) -> CallRequest:
        return CallRequest(self.operation, self.method, self.target, _json_value(self.arguments, self.encoding))


class CapturedCallResponse(msgspec.Struct, array_like=True, frozen=True, gc=False, tag="c"):
    result: Any
    encoding: str = JSON

    def to_model(self) -> CallResponse:
        return CallResponse(_json_value(self.result, self.encoding))


class CapturedCall(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One outbound call, its times in nanoseconds since the epoch and its span ids as integers."""

    kind: str
    library: str
    request: CapturedHttpRequest | CapturedCallRequest
    response: CapturedHttpResponse | CapturedCallResponse | None
    error: RecordedError | None
    start_ns: int
    end_ns: int | None
    span_id: int
    parent_span_id: int | None


#: Integers MessagePack carries; a larger ``getrandbits`` result crosses as its decimal text.
_MSGPACK_INTS = range(-(2**63), 2**64)


def _primitive_out(value: Any) -> Any:
    return str(value) if type(value) is int and value not in _MSGPACK_INTS else value


def _primitive_in(value: Any) -> float | int | str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        return int(value)
    number: float | int = value
    return number


class CapturedGenerated(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """Values the app generated, as the hooks kept them: ``uuid4``, ``urandom`` and ``objectid`` bytes;
    ``random`` and ``secrets`` floats, integers and bytes (an integer beyond 64 bits as decimal text); ``clock``
    readings in nanoseconds."""

    uuid4: tuple[bytes, ...] = ()
    random: tuple[Any, ...] = ()
    secrets: tuple[Any, ...] = ()
    urandom: tuple[bytes, ...] = ()
    objectid: tuple[bytes, ...] = ()
    #: The app's clock readings, in nanoseconds since the epoch.
    clock: tuple[int, ...] = ()

    def to_model(self) -> Generated:
        return Generated(
            uuid4=tuple([str(uuid.UUID(bytes=value)) for value in self.uuid4]),
            random=tuple([_primitive_in(value) for value in self.random]),
            secrets=tuple([_primitive_in(value) for value in self.secrets]),
            urandom=tuple([value.hex() for value in self.urandom]),
            objectid=tuple([value.hex() for value in self.objectid]),
            clock=self.clock,
        )


def capture_generated(kept: Mapping[str, Sequence[Any]] | None) -> CapturedGenerated | None:
    """What a recording's generation hooks kept (see ``RequestRecording.add_generated``), ready to cross to the
    writer; None when nothing was generated."""
    if not kept:
        return None
    return CapturedGenerated(
        uuid4=tuple(kept.get("uuid4", ())),
        random=tuple([_primitive_out(value) for value in kept.get("random", ())]),
        secrets=tuple([_primitive_out(value) for value in kept.get("secrets", ())]),
        urandom=tuple(kept.get("urandom", ())),
        objectid=tuple(kept.get("objectid", ())),
        clock=tuple(kept.get("clock", ())),
    )


class CapturedRequest(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One inbound request with everything it captured, or (``request`` None) a segment of the process's
    session: calls made outside any inbound request."""

    id: str
    #: Wall-clock start in seconds since the epoch, and the same instant in nanoseconds for offsets.
    started_at: float
    start_ns: int
    #: Hexadecimal: a 128-bit trace id does not fit a MessagePack integer.
    trace_id: str | None
    incomplete: bool
    request: CapturedHttpRequest | None
    response: CapturedHttpResponse | None
    error: RecordedError | None
    calls: tuple[CapturedCall, ...]
    spans: tuple[SpanTuple, ...]
    #: Values the app generated while it ran (uuid4, random, ...), or None.
    generated: CapturedGenerated | None = None


class CaptureWriter(Protocol):
    """Turns batches of captured requests into stored cassettes. Called only from the recorder's writer thread.

    Failures are logged and counted, never raised.
    """

    def store_batch(self, captured: Sequence[CapturedRequest]) -> tuple[int, int]:
        """Store each request's cassette, now or soon; return how many cassettes were stored and how many
        failed since the previous call (of this batch, or of earlier ones still being stored then)."""
        ...

    def drain(self, timeout: float | None = None) -> tuple[int, int]:
        """Wait until every batch handed over is stored, or ``timeout`` seconds; counts as ``store_batch``."""
        ...

    def take_counts(self) -> dict[str, int]:
        """The exporter's own counters that changed since the previous call (see ``Exporter.take_counts``)."""
        ...

    def close(self) -> None: ...


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(CapturedRequest)


def encode_captured(captured: CapturedRequest) -> bytes:
    return _ENCODER.encode(captured)


def decode_captured(data: bytes) -> CapturedRequest:
    return _DECODER.decode(data)
