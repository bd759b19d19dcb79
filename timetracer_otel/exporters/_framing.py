"""The pipe protocol between the app's process and its writer process (see ``_writer_process``).

The app's process sends frames: ``C`` + length (8 bytes, big-endian) + one cassette as MessagePack, and ``A``
to ask how the cassettes since the previous ``A`` went. Cassettes cross as MessagePack of the model, not as
finished JSON, because msgspec encodes the model's dataclasses in C (a few microseconds a cassette) while
choosing body forms and writing JSON costs several times that: the writer process does it instead, off the
app's GIL.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from timetracer_otel.cassette.model import Body, Cassette

__all__ = ["LENGTH", "decode_cassette", "encode_cassette"]

LENGTH = struct.Struct(">Q")


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
_DECODER = msgspec.msgpack.Decoder(Cassette, dec_hook=_from_wire)


def encode_cassette(cassette: Cassette) -> bytes:
    return _ENCODER.encode(cassette)


def decode_cassette(data: bytes) -> Cassette:
    return _DECODER.decode(data)
