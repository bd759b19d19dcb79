"""A written request as the app's process hands it over: what was captured, before it becomes a cassette.

The app's process does as little as it can with a finished request, because every microsecond there is taken
from the app: it materializes the captured payloads into model values and copies out the numbers. Turning
those into a :class:`~timetracer_otel.cassette.model.Cassette` (offsets, span summaries, hex ids, ordering;
see :mod:`timetracer_otel.record.assembly`) happens where the cassette is stored, normally the writer process.
Values cross the pipe as MessagePack, which msgspec encodes from these structs in C.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from timetracer_otel.cassette.model import Body, HttpRequest, HttpResponse, RecordedError

__all__ = ["CaptureWriter", "CapturedCall", "CapturedRequest", "SpanTuple", "decode_captured", "encode_captured"]

#: A span as recorded on the app thread: (name, kind, span_id, parent_span_id, start_ns, end_ns).
SpanTuple = tuple[str, str, int, int | None, int, int]


class CapturedCall(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One outbound call, its times in nanoseconds since the epoch and its span ids as integers."""

    kind: str
    library: str
    request: HttpRequest
    response: HttpResponse | None
    error: RecordedError | None
    start_ns: int
    end_ns: int | None
    span_id: int
    parent_span_id: int | None


class CapturedRequest(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One inbound request with everything it captured."""

    id: str
    #: Wall-clock start in seconds since the epoch, and the same instant in nanoseconds for offsets.
    started_at: float
    start_ns: int
    #: Hexadecimal: a 128-bit trace id does not fit a MessagePack integer.
    trace_id: str | None
    incomplete: bool
    request: HttpRequest
    response: HttpResponse | None
    error: RecordedError | None
    calls: tuple[CapturedCall, ...]
    spans: tuple[SpanTuple, ...]


class CaptureWriter(Protocol):
    """Turns batches of captured requests into stored cassettes. Called only from the recorder's writer thread."""

    def store_batch(self, captured: Sequence[CapturedRequest]) -> tuple[int, int]:
        """Assemble and store each request's cassette; return how many were stored and how many failed.

        Failures are logged, never raised.
        """
        ...

    def close(self) -> None: ...


def _to_wire(value: Any) -> Any:
    if isinstance(value, Body):
        return (value.data, value.size, value.truncated, value.complete, value.content_coding)
    raise TypeError(f"cannot send a {type(value).__name__} to the writer process")


def _from_wire(kind: type, value: Any) -> Any:
    if kind is Body:
        data, size, truncated, complete, content_coding = value
        return Body(data, size, truncated, complete, content_coding)
    raise TypeError(f"cannot decode a {kind.__name__}")


_ENCODER = msgspec.msgpack.Encoder(enc_hook=_to_wire)
_DECODER = msgspec.msgpack.Decoder(CapturedRequest, dec_hook=_from_wire)


def encode_captured(captured: CapturedRequest) -> bytes:
    return _ENCODER.encode(captured)


def decode_captured(data: bytes) -> CapturedRequest:
    return _DECODER.decode(data)
