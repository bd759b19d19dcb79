"""Cassettes to JSON-ready dicts, and cassette files' bytes back to cassettes.

Bodies are stored in the most readable form that still gives back the exact bytes:

* ``{"json": value, "json_style": "orjson"}`` when one of the serialisers in
  :data:`~timetracer_otel.cassette.json_bodies.STYLES` reproduces the bytes byte for byte from the parsed
  value (so cassettes diff well in git),
* ``{"text": "..."}`` for other valid UTF-8,
* ``{"base64": "..."}`` otherwise.

Decoding is strict: anything malformed raises :class:`CassetteFormatError` naming the field at fault. A
structured JSON body is checked against its size when it is first used, not at load (see ``_wire``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any

import msgspec

from timetracer_otel.cassette import _wire
from timetracer_otel.cassette.content_coding import decode_content
from timetracer_otel.cassette.json_bodies import STYLES, structured
from timetracer_otel.cassette.model import (
    GENERATED_FIELDS,
    HTTP,
    SCHEMA_VERSION,
    Body,
    CallRequest,
    CallResponse,
    Cassette,
    Generated,
    Headers,
    HttpRequest,
    HttpResponse,
    Interaction,
    Metadata,
    RecordedError,
    SpanSummary,
)
from timetracer_otel.errors import CassetteFormatError

__all__ = ["cassette_from_bytes", "cassette_to_json", "encode_body"]


# -- encoding ---------------------------------------------------------------------------------------------


def encode_body(body: Body) -> dict[str, Any]:
    if body.content_coding is not None and not body.truncated:
        decoded = decode_content(body.data, body.content_coding)
        if decoded is not None:
            body = Body(data=decoded, size=len(decoded), complete=body.complete)
    out: dict[str, Any] = {"size": body.size}
    if body.truncated:
        out["truncated"] = True
    if not body.complete:
        out["incomplete"] = True
    if body.content_coding is not None:
        out["content_coding"] = body.content_coding
    out.update(_encode_bytes(body.data))
    return out


def _encode_bytes(data: bytes) -> dict[str, Any]:
    found = structured(data)
    if found is not None:
        value, style = found
        return {"json": value, "json_style": style.name}
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def _encode_headers(headers: Headers) -> list[list[str]]:
    return [[name, value] for name, value in headers]


def _encode_request(request: HttpRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"method": request.method, "url": request.url}
    if request.route is not None:
        out["route"] = request.route
    out["headers"] = _encode_headers(request.headers)
    out["body"] = None if request.body is None else encode_body(request.body)
    return out


def _encode_response(response: HttpResponse | None) -> dict[str, Any] | None:
    if response is None:
        return None
    out: dict[str, Any] = {"status": response.status}
    if response.reason is not None:
        out["reason"] = response.reason
    if response.http_version is not None:
        out["http_version"] = response.http_version
    out["headers"] = _encode_headers(response.headers)
    out["body"] = None if response.body is None else encode_body(response.body)
    return out


def _encode_error(error: RecordedError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    out: dict[str, Any] = {"type": error.type, "message": error.message}
    if error.details is not None:
        out["details"] = error.details
    if error.traceback is not None:
        out["traceback"] = error.traceback
    return out


def _encode_call_request(request: CallRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"operation": request.operation}
    if request.method is not None:
        out["method"] = request.method
    if request.target is not None:
        out["target"] = request.target
    out["arguments"] = request.arguments
    return out


def _encode_interaction(interaction: Interaction) -> dict[str, Any]:
    request, response = interaction.request, interaction.response
    out: dict[str, Any] = {
        "kind": interaction.kind,
        "library": interaction.library,
        "start_ms": round(interaction.start_ms, 3),
        "duration_ms": round(interaction.duration_ms, 3),
        "span_id": interaction.span_id,
        "parent_span_id": interaction.parent_span_id,
    }
    if isinstance(request, CallRequest):
        out["request"] = _encode_call_request(request)
        out["response"] = {"result": response.result} if isinstance(response, CallResponse) else None
    else:
        out["request"] = _encode_request(request)
        out["response"] = _encode_response(response if isinstance(response, HttpResponse) else None)
    out["error"] = _encode_error(interaction.error)
    return out


def _encode_span(span: SpanSummary) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": span.kind,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "start_ms": round(span.start_ms, 3),
        "duration_ms": round(span.duration_ms, 3),
    }


def _encode_generated(generated: Generated) -> dict[str, list[Any]]:
    return {field: list(values) for field in GENERATED_FIELDS if (values := getattr(generated, field))}


def cassette_to_json(cassette: Cassette) -> dict[str, Any]:
    meta = cassette.metadata
    document: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "metadata": {
            "id": meta.id,
            "recorded_at": meta.recorded_at.isoformat(),
            "service": meta.service,
            "tool_version": meta.tool_version,
            "trace_id": meta.trace_id,
            "duration_ms": round(meta.duration_ms, 3),
            "incomplete": meta.incomplete,
            "scope": meta.scope,
        },
        "request": None if cassette.request is None else _encode_request(cassette.request),
        "response": _encode_response(cassette.response),
        "error": _encode_error(cassette.error),
        "interactions": [_encode_interaction(i) for i in cassette.interactions],
        "spans": [_encode_span(s) for s in cassette.spans],
    }
    if cassette.generated:  # left out when nothing was generated, as in files older than the field
        document["generated"] = _encode_generated(cassette.generated)
    return document


# -- decoding ---------------------------------------------------------------------------------------------
#
# msgspec decodes the file into the types of `_wire`, checking every field's type on the way; what is left
# is what types cannot say (one body form, a known style, sizes, base64), and building the model.


class _Reject(Exception):
    """A field is wrong: where (a path relative to the object being built) and what was expected."""

    def __init__(self, where: str, expected: str, *, problem: str | None = None) -> None:
        super().__init__(where, expected)
        self.where = where
        #: The whole message, when it is not "expected ...".
        self.problem = problem if problem is not None else f"expected {expected}"

    def under(self, prefix: str) -> _Reject:
        return _Reject(f"{prefix}.{self.where}", "", problem=self.problem)


def _body(body: _wire.Body | None, source: str | None) -> Body | None:
    if body is None:
        return None
    size = body.size
    truncated = body.truncated
    if body.json is not msgspec.UNSET:
        style = STYLES.get(body.json_style) if body.json_style is not None else None
        if style is None or body.text is not None or body.base64 is not None:
            raise _Reject("json_style", f"one of {', '.join(STYLES)}, and no text or base64 next to json")
        # Parsed, rendered and checked against size on first use only (Body.from_json).
        return Body.from_json(
            bytes(body.json),
            style,
            size,
            truncated=truncated,
            complete=not body.incomplete,
            content_coding=body.content_coding,
            source=source,
        )
    if body.text is not None and body.base64 is None:
        data = body.text.encode("utf-8")
    elif body.base64 is not None and body.text is None:
        try:
            data = base64.b64decode(body.base64, validate=True)
        except binascii.Error:
            raise _Reject("base64", "valid base64") from None
    else:
        raise _Reject("json|text|base64", "exactly one of the three body forms")
    if not truncated and size != len(data):
        raise _Reject("size", f"{len(data)}, the length of the stored body (was the cassette edited?)")
    return Body(data, size, truncated, not body.incomplete, body.content_coding)


def _request(request: _wire.Request, source: str | None) -> HttpRequest:
    try:
        body = _body(request.body, source)
    except _Reject as bad:
        raise bad.under("body") from None
    return HttpRequest(request.method, request.url, request.headers, body, request.route)


def _response(response: _wire.Response | None, source: str | None) -> HttpResponse | None:
    if response is None:
        return None
    try:
        body = _body(response.body, source)
    except _Reject as bad:
        raise bad.under("body") from None
    return HttpResponse(response.status, response.headers, body, response.reason, response.http_version)


def _exchange(
    request: _wire.Request, response: _wire.Response | None, source: str | None
) -> tuple[HttpRequest, HttpResponse | None]:
    try:
        built_request = _request(request, source)
    except _Reject as bad:
        raise bad.under("request") from None
    try:
        return built_request, _response(response, source)
    except _Reject as bad:
        raise bad.under("response") from None


def _error(error: _wire.Error | None) -> RecordedError | None:
    return None if error is None else RecordedError(error.type, error.message, error.details, error.traceback)


#: Kinds this version replays besides http; each holds a CallRequest and CallResponse.
CALL_KINDS = frozenset({"sql", "redis", "mongo"})


def _decode_part(decoder: msgspec.json.Decoder[Any], raw: msgspec.Raw, where: str) -> Any:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        found = _VALIDATION_MESSAGE.fullmatch(str(exc))
        path, what = (found["path"], found["what"]) if found else ("", str(exc))
        raise _Reject(f"{where}.{path}" if path else where, "", problem=f"{what[:1].lower()}{what[1:]}") from None


def _call_exchange(item: _wire.Interaction) -> tuple[CallRequest, CallResponse | None]:
    request = _decode_part(_wire.CALL_REQUEST, item.request, "request")
    response = _decode_part(_wire.CALL_RESPONSE, item.response, "response")
    return (
        CallRequest(request.operation, request.method, request.target, request.arguments),
        None if response is None else CallResponse(response.result),
    )


def _interaction(item: _wire.Interaction, source: str | None) -> Interaction:
    request: HttpRequest | CallRequest
    response: HttpResponse | CallResponse | None
    if item.kind == HTTP:
        wire_request = _decode_part(_wire.REQUEST, item.request, "request")
        wire_response = _decode_part(_wire.RESPONSE, item.response, "response")
        request, response = _exchange(wire_request, wire_response, source)
    elif item.kind in CALL_KINDS:
        request, response = _call_exchange(item)
    else:
        raise _Reject("kind", f"a kind this version replays: {', '.join(sorted({HTTP, *CALL_KINDS}))}")
    return Interaction(
        item.kind,
        item.library,
        request,
        response,
        _error(item.error),
        item.start_ms,
        item.duration_ms,
        item.span_id,
        item.parent_span_id,
    )


_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_OBJECT_ID = re.compile(r"[0-9a-f]{24}")
_TEXT_FORMS = {"uuid4": (_UUID_TEXT, "a UUID in canonical form"), "urandom": (_HEX, "lowercase hexadecimal bytes"),
               "objectid": (_OBJECT_ID, "24 lowercase hexadecimal digits")}


def _primitive(value: float | int | str) -> bool:
    """A value of a random generator's primitives: random() in [0, 1), getrandbits() >= 0, randbytes() as hex."""
    if isinstance(value, float):
        return 0.0 <= value < 1.0
    if isinstance(value, int):
        return value >= 0
    return _HEX.fullmatch(value) is not None


def _generated(generated: _wire.Generated | None) -> Generated | None:
    if generated is None:
        return None
    for source, (form, expected) in _TEXT_FORMS.items():
        for n, text in enumerate(getattr(generated, source)):
            if form.fullmatch(text) is None:
                raise _Reject(f"generated.{source}[{n}]", expected)
    for source in ("random", "secrets"):
        for n, value in enumerate(getattr(generated, source)):
            if not _primitive(value):
                raise _Reject(f"generated.{source}[{n}]",
                              "a float in [0, 1), an integer >= 0 or lowercase hexadecimal bytes")
    for n, reading in enumerate(generated.clock):
        if reading < 0:
            raise _Reject(f"generated.clock[{n}]", "nanoseconds since the epoch (an integer >= 0)")
    return Generated(**{field: tuple(getattr(generated, field)) for field in GENERATED_FIELDS})


def _cassette(document: _wire.Cassette, source: str | None) -> Cassette:
    meta, spans = document.metadata, document.spans
    try:
        recorded_at = datetime.fromisoformat(meta.recorded_at)
    except ValueError:
        raise _Reject("metadata.recorded_at", "an ISO 8601 timestamp") from None
    interactions = []
    for n, item in enumerate(document.interactions):
        try:
            interactions.append(_interaction(item, source))
        except _Reject as bad:
            raise bad.under(f"interactions[{n}]") from None
    request: HttpRequest | None
    if document.request is None:
        if meta.scope == "request":
            raise _Reject("request", "an inbound request (only session and test cassettes have none)")
        request, response = None, _response(document.response, source)
    else:
        request, response = _exchange(document.request, document.response, source)
    return Cassette(
        Metadata(
            meta.id,
            recorded_at,
            meta.service,
            meta.tool_version,
            meta.trace_id,
            meta.duration_ms,
            meta.incomplete,
            meta.scope,
        ),
        request,
        response,
        _error(document.error),
        tuple(interactions),
        tuple([SpanSummary(s.name, s.kind, s.span_id, s.parent_span_id, s.start_ms, s.duration_ms) for s in spans]),
        _generated(document.generated),
    )


#: msgspec's "<what> - at `$.<path>`", e.g. "Expected `int`, got `str` - at `$.interactions[0].response.status`".
_VALIDATION_MESSAGE = re.compile(r"(?P<what>.*) - at `\$\.?(?P<path>.*)`", re.DOTALL)


#: Schema versions this version reads: version 1 is version 2 without call kinds and session cassettes.
_READABLE = frozenset({1, SCHEMA_VERSION})
_READABLE_TEXT = " and ".join(str(v) for v in sorted(_READABLE))


def _unsupported_schema(schema: int, source: str | None) -> CassetteFormatError:
    return CassetteFormatError(
        source,
        f"schema version {schema} is not supported (this timetracer reads versions {_READABLE_TEXT}); "
        "upgrade timetracer-otel or re-record the cassette",
    )


def _not_json(data: bytes, source: str | None) -> CassetteFormatError:
    """Why ``data`` is not JSON, in the standard library's words (line and column), which msgspec lacks."""
    try:
        json.loads(data)
    except UnicodeDecodeError as exc:
        return CassetteFormatError(source, f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except json.JSONDecodeError as exc:
        hint = " (the file ends early: truncated?)" if exc.pos >= len(data.rstrip()) else ""
        return CassetteFormatError(source, f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}")
    return CassetteFormatError(source, "not strict JSON (NaN, Infinity, a byte-order mark or a lone surrogate)")


def cassette_from_bytes(data: bytes, source: str | None = None) -> Cassette:
    """Decode a cassette file's (decompressed) bytes; ``source`` names the file in errors."""
    try:
        document = _wire.CASSETTE.decode(data)
    except msgspec.ValidationError as exc:
        # A file of another version is wrong for this layout anyway: say so rather than name a field.
        try:
            schema = _wire.SCHEMA.decode(data).schema
        except (msgspec.ValidationError, msgspec.DecodeError):
            schema = SCHEMA_VERSION
        if schema not in _READABLE:
            raise _unsupported_schema(schema, source) from None
        found = _VALIDATION_MESSAGE.fullmatch(str(exc))
        where, what = (found["path"] or "document", found["what"]) if found else ("document", str(exc))
        raise CassetteFormatError(source, f"{where}: {what[:1].lower()}{what[1:]}") from None
    except msgspec.DecodeError:
        raise _not_json(data, source) from None
    if document.schema not in _READABLE:
        raise _unsupported_schema(document.schema, source)
    try:
        return _cassette(document, source)
    except _Reject as bad:
        raise CassetteFormatError(source, f"{bad.where}: {bad.problem}") from None
