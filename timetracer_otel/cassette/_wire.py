"""The cassette file's layout as msgspec types, for decoding (``schema.json`` is the same layout for people).

Decoding straight into these types checks every field's type in C and names the path of the first wrong
one. A structured JSON body's value stays as its raw JSON text (``msgspec.Raw``): it is parsed only if the
body is used, and most recorded bodies never are. Unknown fields are ignored, so newer writers can add some.
"""

from __future__ import annotations

from typing import Any

import msgspec

Headers = tuple[tuple[str, str], ...]


class Body(msgspec.Struct, gc=False):
    size: int
    json: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    json_style: str | None = None
    text: str | None = None
    base64: str | None = None
    truncated: bool = False
    incomplete: bool = False
    content_coding: str | None = None


class Request(msgspec.Struct, gc=False):
    method: str
    url: str
    headers: Headers
    body: Body | None = None
    route: str | None = None


class Response(msgspec.Struct, gc=False):
    status: int
    headers: Headers
    body: Body | None = None
    reason: str | None = None
    http_version: str | None = None


class CallRequest(msgspec.Struct, gc=False):
    operation: str
    method: str | None = None
    target: str | None = None
    arguments: Any = None


class CallResponse(msgspec.Struct, gc=False):
    result: Any = None


class Error(msgspec.Struct, gc=False):
    type: str
    message: str
    details: Any = None
    traceback: str | None = None


class Interaction(msgspec.Struct, gc=False):
    kind: str
    library: str
    #: A Request for kind http, else a CallRequest (and the same for response): decoded by kind, see the codec.
    request: msgspec.Raw
    start_ms: float
    duration_ms: float
    response: msgspec.Raw = msgspec.Raw(b"null")
    error: Error | None = None
    span_id: str | None = None
    parent_span_id: str | None = None


class Span(msgspec.Struct, gc=False):
    name: str
    kind: str
    span_id: str
    start_ms: float
    duration_ms: float
    parent_span_id: str | None = None


class Metadata(msgspec.Struct, gc=False):
    id: str
    recorded_at: str
    service: str
    tool_version: str
    duration_ms: float
    trace_id: str | None = None
    incomplete: bool = False
    scope: str = "request"


class Schema(msgspec.Struct):
    """Read first, on its own, so a file of another version gets a message about versions."""

    schema: int


class Generated(msgspec.Struct, gc=False):
    uuid4: list[str] = []
    random: list[float | int | str] = []
    secrets: list[float | int | str] = []
    urandom: list[str] = []
    objectid: list[str] = []
    clock: list[int] = []


class Cassette(msgspec.Struct, gc=False):
    schema: int
    metadata: Metadata
    request: Request | None
    interactions: list[Interaction]
    spans: list[Span]
    response: Response | None = None
    error: Error | None = None
    generated: Generated | None = None


CASSETTE = msgspec.json.Decoder(Cassette)
REQUEST = msgspec.json.Decoder(Request)
RESPONSE = msgspec.json.Decoder(Response | None)
CALL_REQUEST = msgspec.json.Decoder(CallRequest)
CALL_RESPONSE = msgspec.json.Decoder(CallResponse | None)
SCHEMA = msgspec.json.Decoder(Schema)
