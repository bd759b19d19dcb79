"""Cassette <-> JSON-ready dicts.

Bodies are stored in the most readable form that still gives back the exact bytes:

* ``{"json": value, "json_style": "compact"}`` when re-serialising the parsed value reproduces the bytes
  byte for byte (so cassettes diff well in git),
* ``{"text": "..."}`` for other valid UTF-8,
* ``{"base64": "..."}`` otherwise.

Decoding is strict: anything malformed raises :class:`CassetteFormatError` naming the field at fault.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from timetracer_otel.cassette.content_coding import decode_content
from timetracer_otel.cassette.model import (
    SCHEMA_VERSION,
    Body,
    Cassette,
    Headers,
    HttpRequest,
    HttpResponse,
    Interaction,
    Metadata,
    RecordedError,
    SpanSummary,
)
from timetracer_otel.errors import CassetteFormatError

__all__ = ["cassette_from_json", "cassette_to_json"]

_T = TypeVar("_T")

#: Serialisers a JSON body may have been written with, tried in order; the first that reproduces the bytes wins.
_JSON_STYLES: dict[str, Callable[[Any], str]] = {
    "compact": lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False),
    "compact_ascii": lambda v: json.dumps(v, separators=(",", ":")),
    "spaced": lambda v: json.dumps(v, ensure_ascii=False),
    "spaced_ascii": json.dumps,
    "indent2": lambda v: json.dumps(v, indent=2, ensure_ascii=False),
}


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


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
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            value = json.loads(text, parse_constant=_reject_constant)
        except ValueError:
            pass
        else:
            for style, dumps in _JSON_STYLES.items():
                if dumps(value) == text:
                    return {"json": value, "json_style": style}
    return {"text": text}


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
    return None if error is None else {"type": error.type, "message": error.message}


def _encode_interaction(interaction: Interaction) -> dict[str, Any]:
    return {
        "kind": interaction.kind,
        "library": interaction.library,
        "start_ms": round(interaction.start_ms, 3),
        "duration_ms": round(interaction.duration_ms, 3),
        "span_id": interaction.span_id,
        "parent_span_id": interaction.parent_span_id,
        "request": _encode_request(interaction.request),
        "response": _encode_response(interaction.response),
        "error": _encode_error(interaction.error),
    }


def _encode_span(span: SpanSummary) -> dict[str, Any]:
    return {
        "name": span.name,
        "kind": span.kind,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "start_ms": round(span.start_ms, 3),
        "duration_ms": round(span.duration_ms, 3),
    }


def cassette_to_json(cassette: Cassette) -> dict[str, Any]:
    meta = cassette.metadata
    return {
        "schema": SCHEMA_VERSION,
        "metadata": {
            "id": meta.id,
            "recorded_at": meta.recorded_at.isoformat(),
            "service": meta.service,
            "tool_version": meta.tool_version,
            "trace_id": meta.trace_id,
            "duration_ms": round(meta.duration_ms, 3),
            "incomplete": meta.incomplete,
        },
        "request": _encode_request(cassette.request),
        "response": _encode_response(cassette.response),
        "error": _encode_error(cassette.error),
        "interactions": [_encode_interaction(i) for i in cassette.interactions],
        "spans": [_encode_span(s) for s in cassette.spans],
    }


# -- decoding ---------------------------------------------------------------------------------------------


class _Fields:
    """Typed access to one JSON object, naming the path of whatever is wrong."""

    def __init__(self, value: object, path: str, source: str | None) -> None:
        if not isinstance(value, Mapping):
            raise CassetteFormatError(source, f"{path or 'document'}: expected an object")
        self.value = value
        self.path = path
        self.source = source

    def _fail(self, key: str, expected: str) -> CassetteFormatError:
        return CassetteFormatError(self.source, f"{self.path}.{key}: expected {expected}".lstrip("."))

    def get(self, key: str, kind: type[_T] | tuple[type, ...], *, optional: bool = False) -> Any:
        if key not in self.value:
            if optional:
                return None
            raise self._fail(key, "a value (field missing)")
        value = self.value[key]
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self._fail(key, names)
        return value

    def child(self, key: str, *, optional: bool = False) -> _Fields | None:
        value = self.get(key, dict, optional=optional)
        return None if value is None else _Fields(value, f"{self.path}.{key}".lstrip("."), self.source)

    def children(self, key: str) -> list[_Fields]:
        items = self.get(key, list)
        return [_Fields(item, f"{self.path}.{key}[{n}]".lstrip("."), self.source) for n, item in enumerate(items)]


def _decode_body(fields: _Fields | None) -> Body | None:
    if fields is None:
        return None
    if "json" in fields.value:
        style = fields.get("json_style", str)
        dumps = _JSON_STYLES.get(style)
        if dumps is None:
            raise fields._fail("json_style", f"one of {', '.join(_JSON_STYLES)}")
        data = dumps(fields.value["json"]).encode("utf-8")
    elif "text" in fields.value:
        data = fields.get("text", str).encode("utf-8")
    elif "base64" in fields.value:
        try:
            data = base64.b64decode(fields.get("base64", str), validate=True)
        except binascii.Error:
            raise fields._fail("base64", "valid base64") from None
    else:
        raise fields._fail("json|text|base64", "one of the three body forms")
    size = fields.get("size", int)
    truncated = bool(fields.get("truncated", bool, optional=True))
    if not truncated and size != len(data):
        raise fields._fail("size", f"{len(data)}, the length of the stored body (was the cassette edited?)")
    return Body(
        data=data,
        size=size,
        truncated=truncated,
        complete=not fields.get("incomplete", bool, optional=True),
        content_coding=fields.get("content_coding", str, optional=True),
    )


def _decode_headers(fields: _Fields) -> Headers:
    pairs = fields.get("headers", list)
    for n, pair in enumerate(pairs):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise fields._fail(f"headers[{n}]", "a [name, value] pair of strings")
    return tuple((name, value) for name, value in pairs)


def _decode_request(fields: _Fields) -> HttpRequest:
    return HttpRequest(
        method=fields.get("method", str),
        url=fields.get("url", str),
        headers=_decode_headers(fields),
        body=_decode_body(fields.child("body", optional=True)),
        route=fields.get("route", str, optional=True),
    )


def _decode_response(fields: _Fields | None) -> HttpResponse | None:
    if fields is None:
        return None
    return HttpResponse(
        status=fields.get("status", int),
        headers=_decode_headers(fields),
        body=_decode_body(fields.child("body", optional=True)),
        reason=fields.get("reason", str, optional=True),
        http_version=fields.get("http_version", str, optional=True),
    )


def _decode_error(fields: _Fields | None) -> RecordedError | None:
    if fields is None:
        return None
    return RecordedError(type=fields.get("type", str), message=fields.get("message", str))


def _decode_interaction(fields: _Fields) -> Interaction:
    kind = fields.get("kind", str)
    if kind != "http":
        raise fields._fail("kind", "a kind this version replays: http")
    request = fields.child("request")
    assert request is not None
    return Interaction(
        kind=kind,
        library=fields.get("library", str),
        request=_decode_request(request),
        response=_decode_response(fields.child("response", optional=True)),
        error=_decode_error(fields.child("error", optional=True)),
        start_ms=float(fields.get("start_ms", (int, float))),
        duration_ms=float(fields.get("duration_ms", (int, float))),
        span_id=fields.get("span_id", str, optional=True),
        parent_span_id=fields.get("parent_span_id", str, optional=True),
    )


def _decode_span(fields: _Fields) -> SpanSummary:
    return SpanSummary(
        name=fields.get("name", str),
        kind=fields.get("kind", str),
        span_id=fields.get("span_id", str),
        parent_span_id=fields.get("parent_span_id", str, optional=True),
        start_ms=float(fields.get("start_ms", (int, float))),
        duration_ms=float(fields.get("duration_ms", (int, float))),
    )


def cassette_from_json(document: object, source: str | None = None) -> Cassette:
    """Build a :class:`Cassette` from parsed JSON; ``source`` names the file in errors."""
    root = _Fields(document, "", source)
    schema = root.get("schema", int)
    if schema != SCHEMA_VERSION:
        raise CassetteFormatError(
            source,
            f"schema version {schema} is not supported (this timetracer reads version {SCHEMA_VERSION}); "
            "upgrade timetracer-otel or re-record the cassette",
        )
    meta = root.child("metadata")
    request = root.child("request")
    assert meta is not None and request is not None
    recorded_at_text = meta.get("recorded_at", str)
    try:
        recorded_at = datetime.fromisoformat(recorded_at_text)
    except ValueError:
        raise meta._fail("recorded_at", "an ISO 8601 timestamp") from None
    return Cassette(
        metadata=Metadata(
            id=meta.get("id", str),
            recorded_at=recorded_at,
            service=meta.get("service", str),
            tool_version=meta.get("tool_version", str),
            trace_id=meta.get("trace_id", str, optional=True),
            duration_ms=float(meta.get("duration_ms", (int, float))),
            incomplete=bool(meta.get("incomplete", bool, optional=True)),
        ),
        request=_decode_request(request),
        response=_decode_response(root.child("response", optional=True)),
        error=_decode_error(root.child("error", optional=True)),
        interactions=tuple(_decode_interaction(f) for f in root.children("interactions")),
        spans=tuple(_decode_span(f) for f in root.children("spans")),
    )
