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

import orjson

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
#
# Two decoders build the same Cassette. The fast one expects what a JSON parser gives (exactly dict, list,
# str, int, float, bool, None), checks it inline with `type(x) is ...` and keeps no field paths. At the first
# thing it does not accept it gives up and the checked one (`_Fields`) runs: it accepts everything the fast
# one does (and a little more, e.g. str subclasses) and names the field at fault. Loading a large cassette is
# mostly this work, so the common case must not pay for good error messages.

def _renderer(dumps: Callable[[Any], str]) -> Callable[[Any], bytes]:
    def render(value: Any) -> bytes:
        return dumps(value).encode("utf-8")

    return render


#: The exact bytes of a JSON body stored in each style.
_RENDERERS: dict[str, Callable[[Any], bytes]] = {style: _renderer(dumps) for style, dumps in _JSON_STYLES.items()}


def _ascii_length(value: Any) -> int:
    rendered = orjson.dumps(value)
    return len(rendered) if rendered.isascii() else -1


#: For some styles orjson (~10x faster) renders a body to the same length as the exact renderer, except in
#: rare cases (floats written with an exponent, for one) where the exact renderer is then used to check.
_QUICK_LENGTHS: dict[str, Callable[[Any], int]] = {
    "compact": lambda value: len(orjson.dumps(value)),
    "compact_ascii": _ascii_length,
    "indent2": lambda value: len(orjson.dumps(value, option=orjson.OPT_INDENT_2)),
}


class _Reject(Exception):
    """A field of a JSON body is wrong: ``key`` and what was expected."""

    def __init__(self, key: str, expected: str) -> None:
        super().__init__(key, expected)
        self.key = key
        self.expected = expected


def _json_body_bytes(value: Any, style: str, size: int, truncated: bool) -> bytes | None:
    """Check a structured JSON body against its ``size``: its exact bytes when they had to be rendered to do
    so, None when the quick check passed and rendering can wait until the body is used (most never are)."""
    render = _RENDERERS[style]
    if truncated:
        return None  # nothing to check: the stored part is shorter than size by definition
    quick = _QUICK_LENGTHS.get(style)
    if quick is not None:
        try:
            if quick(value) == size:
                return None
        except TypeError:  # orjson refuses integers beyond 64 bits, lone surrogates, deep nesting
            pass
    try:
        data = render(value)
    except ValueError:  # a lone surrogate cannot be UTF-8
        raise _Reject("json", f"a value {style} JSON can render as UTF-8") from None
    if len(data) != size:
        raise _Reject("size", f"{len(data)}, the length of the stored body (was the cassette edited?)")
    return data


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
    data: bytes | None = None
    style: str | None = None
    if "json" in fields.value:
        style = fields.get("json_style", str)
        if style not in _RENDERERS:
            raise fields._fail("json_style", f"one of {', '.join(_JSON_STYLES)}")
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
    if style is not None:
        try:
            data = _json_body_bytes(fields.value["json"], style, size, truncated)
        except _Reject as bad:
            raise fields._fail(bad.key, bad.expected) from None
    elif data is not None and not truncated and size != len(data):
        raise fields._fail("size", f"{len(data)}, the length of the stored body (was the cassette edited?)")
    complete = not fields.get("incomplete", bool, optional=True)
    content_coding = fields.get("content_coding", str, optional=True)
    if data is None:
        assert style is not None
        return Body.from_json(
            fields.value["json"],
            _RENDERERS[style],
            size,
            truncated=truncated,
            complete=complete,
            content_coding=content_coding,
            source=fields.source,
        )
    return Body(data=data, size=size, truncated=truncated, complete=complete, content_coding=content_coding)


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


def _decode_checked(document: object, source: str | None) -> Cassette:
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


# The fast decoder: the same checks, inline, with `type(x) is ...` (documents come from a JSON parser, so
# values are exactly dict, list, str, int, float, bool or None). It raises _GiveUp, or KeyError for a
# missing field, at the first thing it does not accept; cassette_from_json then runs the checked decoder.


class _GiveUp(Exception):
    pass


_NUMBER = (int, float)  # `type(x) in _NUMBER` refuses bool, as the checked decoder does
_OPTIONAL_STR = (str, type(None))
_OPTIONAL_BOOL = (bool, type(None))


def _fast_headers(pairs: Any) -> Headers:
    if type(pairs) is not list:
        raise _GiveUp
    headers = []
    for pair in pairs:
        if type(pair) is not list:
            raise _GiveUp
        name, value = pair  # ValueError unless exactly two
        if type(name) is not str or type(value) is not str:
            raise _GiveUp
        headers.append((name, value))
    return tuple(headers)


def _fast_body(body: Any, source: str | None) -> Body | None:
    if body is None:
        return None
    if type(body) is not dict:
        raise _GiveUp
    get = body.get
    size = body["size"]
    truncated = get("truncated")
    incomplete = get("incomplete")
    content_coding = get("content_coding")
    if (
        type(size) is not int
        or type(truncated) not in _OPTIONAL_BOOL
        or type(incomplete) not in _OPTIONAL_BOOL
        or type(content_coding) not in _OPTIONAL_STR
    ):
        raise _GiveUp
    truncated = truncated is True
    if "json" in body:
        style = get("json_style")
        if type(style) is not str or style not in _RENDERERS:
            raise _GiveUp
        value = body["json"]
        data = _json_body_bytes(value, style, size, truncated)  # raises _Reject, an Exception, on a bad size
        if data is None:
            return Body.from_json(
                value,
                _RENDERERS[style],
                size,
                truncated=truncated,
                complete=incomplete is not True,
                content_coding=content_coding,
                source=source,
            )
    elif "text" in body:
        text = body["text"]
        if type(text) is not str:
            raise _GiveUp
        data = text.encode("utf-8")
    elif "base64" in body:
        encoded = body["base64"]
        if type(encoded) is not str:
            raise _GiveUp
        data = base64.b64decode(encoded, validate=True)
    else:
        raise _GiveUp
    if not truncated and size != len(data):
        raise _GiveUp
    return Body(data, size, truncated, incomplete is not True, content_coding)


def _fast_request(request: Any, source: str | None) -> HttpRequest:
    if type(request) is not dict:
        raise _GiveUp
    method = request["method"]
    url = request["url"]
    route = request.get("route")
    if type(method) is not str or type(url) is not str or type(route) not in _OPTIONAL_STR:
        raise _GiveUp
    return HttpRequest(method, url, _fast_headers(request["headers"]), _fast_body(request.get("body"), source), route)


def _fast_response(response: Any, source: str | None) -> HttpResponse | None:
    if response is None:
        return None
    if type(response) is not dict:
        raise _GiveUp
    status = response["status"]
    reason = response.get("reason")
    http_version = response.get("http_version")
    if type(status) is not int or type(reason) not in _OPTIONAL_STR or type(http_version) not in _OPTIONAL_STR:
        raise _GiveUp
    headers = _fast_headers(response["headers"])
    return HttpResponse(status, headers, _fast_body(response.get("body"), source), reason, http_version)


def _fast_error(error: Any) -> RecordedError | None:
    if error is None:
        return None
    if type(error) is not dict or type(error["type"]) is not str or type(error["message"]) is not str:
        raise _GiveUp
    return RecordedError(error["type"], error["message"])


def _fast_interaction(item: Any, source: str | None) -> Interaction:
    if type(item) is not dict:
        raise _GiveUp
    get = item.get
    kind = item["kind"]
    library = item["library"]
    start_ms = item["start_ms"]
    duration_ms = item["duration_ms"]
    span_id = get("span_id")
    parent_span_id = get("parent_span_id")
    if (
        type(kind) is not str
        or kind != "http"
        or type(library) is not str
        or type(start_ms) not in _NUMBER
        or type(duration_ms) not in _NUMBER
        or type(span_id) not in _OPTIONAL_STR
        or type(parent_span_id) not in _OPTIONAL_STR
    ):
        raise _GiveUp
    return Interaction(
        kind,
        library,
        _fast_request(item["request"], source),
        _fast_response(get("response"), source),
        _fast_error(get("error")),
        float(start_ms),
        float(duration_ms),
        span_id,
        parent_span_id,
    )


def _fast_span(item: Any) -> SpanSummary:
    if type(item) is not dict:
        raise _GiveUp
    name = item["name"]
    kind = item["kind"]
    span_id = item["span_id"]
    parent_span_id = item.get("parent_span_id")
    start_ms = item["start_ms"]
    duration_ms = item["duration_ms"]
    if (
        type(name) is not str
        or type(kind) is not str
        or type(span_id) is not str
        or type(parent_span_id) not in _OPTIONAL_STR
        or type(start_ms) not in _NUMBER
        or type(duration_ms) not in _NUMBER
    ):
        raise _GiveUp
    return SpanSummary(name, kind, span_id, parent_span_id, float(start_ms), float(duration_ms))


def _decode_fast(document: Any, source: str | None) -> Cassette:
    if type(document) is not dict:
        raise _GiveUp
    schema = document["schema"]
    meta = document["metadata"]
    interactions = document["interactions"]
    spans = document["spans"]
    if type(schema) is not int or schema != SCHEMA_VERSION or type(meta) is not dict:
        raise _GiveUp
    if type(interactions) is not list or type(spans) is not list:
        raise _GiveUp
    get = meta.get
    fields = (meta["id"], meta["recorded_at"], meta["service"], meta["tool_version"])
    trace_id = get("trace_id")
    duration_ms = meta["duration_ms"]
    incomplete = get("incomplete")
    if (
        any(type(value) is not str for value in fields)
        or type(trace_id) not in _OPTIONAL_STR
        or type(duration_ms) not in _NUMBER
        or type(incomplete) not in _OPTIONAL_BOOL
    ):
        raise _GiveUp
    id_, recorded_at, service, tool_version = fields
    return Cassette(
        Metadata(
            id_,
            datetime.fromisoformat(recorded_at),
            service,
            tool_version,
            trace_id,
            float(duration_ms),
            incomplete is True,
        ),
        _fast_request(document["request"], source),
        _fast_response(document.get("response"), source),
        _fast_error(document.get("error")),
        tuple([_fast_interaction(item, source) for item in interactions]),
        tuple([_fast_span(item) for item in spans]),
    )


def cassette_from_json(document: object, source: str | None = None) -> Cassette:
    """Build a :class:`Cassette` from parsed JSON; ``source`` names the file in errors."""
    try:
        cassette: Cassette | None = _decode_fast(document, source)
    except Exception:  # anything unexpected: the checked decoder says what and where (or accepts it after all)
        cassette = None
    return cassette if cassette is not None else _decode_checked(document, source)
