"""The shipped JSON Schema accepts every cassette the codec writes and rejects malformed documents."""

from __future__ import annotations

import copy
import gzip
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from timetracer_otel.cassette.codec import cassette_to_json
from timetracer_otel.cassette.files import dump_cassette
from timetracer_otel.cassette.json_bodies import STYLES
from timetracer_otel.cassette.model import (
    Body,
    Cassette,
    HttpRequest,
    HttpResponse,
    Interaction,
    Metadata,
    RecordedError,
    SpanSummary,
)
from timetracer_otel.cassette.schema import cassette_schema
from timetracer_otel.settings import Compression

VALIDATOR = Draft202012Validator(cassette_schema())
GZIPPED_JSON = gzip.compress(b'{"rate":1.08}', mtime=0)


def cassette(
    *,
    response: HttpResponse | None = None,
    error: RecordedError | None = None,
    interactions: tuple[Interaction, ...] = (),
    incomplete: bool = False,
) -> Cassette:
    return Cassette(
        metadata=Metadata(
            id="3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b",
            recorded_at=datetime(2025, 3, 14, 9, 26, 53, 589000, UTC),
            service="shop-api",
            tool_version="0.1.0",
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            duration_ms=48.2671,
            incomplete=incomplete,
        ),
        request=HttpRequest(
            method="POST",
            url="http://shop.local/orders?x=1",
            route="/orders",
            headers=(("content-type", "application/json"), ("x-dup", "1"), ("x-dup", "2")),
            body=Body.of(b'{"sku":"A-1"}'),
        ),
        response=response,
        error=error,
        interactions=interactions,
        spans=(SpanSummary("POST /orders", "SERVER", "53995c3f42cd8ad8", None, 0.0, 48.2671),),
    )


def with_response_body(body: Body) -> dict[str, Any]:
    return cassette_to_json(cassette(response=HttpResponse(status=200, body=body)))


def assert_valid(document: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(document)]
    assert errors == []


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = cassette_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_cassette_schema_returns_a_fresh_copy() -> None:
    cassette_schema()["properties"].clear()
    assert "metadata" in cassette_schema()["properties"]


def test_json_styles_match_the_codec() -> None:
    assert cassette_schema()["$defs"]["body"]["properties"]["json_style"]["enum"] == list(STYLES)


# Each case names the body form the codec must pick, so a change of form shows up here as well.
BODY_CASES = {
    "json compact": (Body.of(b'{"id":42,"tags":["a"]}'), {"json", "json_style", "size"}),
    "json indent2": (Body.of(json.dumps({"a": [1, 2]}, indent=2).encode()), {"json", "json_style", "size"}),
    "json array": (Body.of(b"[1, 2, 3]"), {"json", "json_style", "size"}),
    "text": (Body.of("héllo, not json {".encode()), {"text", "size"}),
    "empty": (Body.of(b""), {"text", "size"}),
    "base64": (Body.of(b"\x00\x01\xff\xfe binary"), {"base64", "size"}),
    "truncated": (Body(data=b'{"partial', size=90000, truncated=True), {"text", "size", "truncated"}),
    "incomplete": (Body(data=b"stream", size=6, complete=False), {"text", "size", "incomplete"}),
    "content coding decoded": (
        Body(data=GZIPPED_JSON, size=len(GZIPPED_JSON), content_coding="gzip"),
        {"json", "json_style", "size"},
    ),
    "content coding kept": (
        Body(data=b"\x1f\x8bnot really gzip", size=17, content_coding="gzip"),
        {"base64", "size", "content_coding"},
    ),
    "truncated and still encoded": (
        Body(data=GZIPPED_JSON[:10], size=len(GZIPPED_JSON), truncated=True, content_coding="gzip"),
        {"base64", "size", "truncated", "content_coding"},
    ),
}


@pytest.mark.parametrize("name", BODY_CASES)
def test_every_body_form_validates(name: str) -> None:
    body, keys = BODY_CASES[name]
    document = with_response_body(body)
    assert set(document["response"]["body"]) == keys
    assert_valid(document)


def test_error_only_interaction_and_missing_response_validate() -> None:
    document = cassette_to_json(
        cassette(
            error=RecordedError(type="builtins.RuntimeError", message="boom"),
            interactions=(
                Interaction(
                    kind="http",
                    library="httpx",
                    request=HttpRequest(method="GET", url="https://down.example.com/"),
                    error=RecordedError(type="httpx.ConnectTimeout", message="timed out"),
                    start_ms=1.5,
                    duration_ms=5000.25,
                ),
                Interaction(
                    kind="http",
                    library="requests",
                    request=HttpRequest(method="GET", url="https://ok.example.com/", body=None),
                    response=HttpResponse(status=204, reason="No Content", http_version="HTTP/1.1"),
                    span_id="00f067aa0ba902b7",
                    parent_span_id="53995c3f42cd8ad8",
                ),
            ),
            incomplete=True,
        )
    )
    assert document["response"] is None
    assert document["interactions"][0]["response"] is None
    assert_valid(document)


def test_the_file_written_to_disk_validates() -> None:
    written = dump_cassette(
        cassette(response=HttpResponse(status=201, body=Body.of(b"ok"))), Compression.NONE
    )
    assert_valid(json.loads(written))


def _valid() -> dict[str, Any]:
    return with_response_body(Body.of(b'{"id":42}'))


def _set(path: str, value: object) -> dict[str, Any]:
    """A valid document with the value at ``path`` (dot-separated; ``-`` deletes the key) replaced."""
    document = copy.deepcopy(_valid())
    *parents, last = path.split(".")
    target: Any = document
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value == "-":
        del target[last]
    else:
        target[last] = value
    return document


INVALID = {
    "headers as a dict": _set("request.headers", {"content-type": "application/json"}),
    "header pair of three": _set("request.headers", [["a", "b", "c"]]),
    "header value not a string": _set("request.headers", [["content-length", 3]]),
    "missing schema": _set("schema", "-"),
    "other schema version": _set("schema", 3),
    "session scope with an unknown name": _set("metadata.scope", "process"),
    "missing metadata id": _set("metadata.id", "-"),
    "status as text": _set("response.status", "200"),
    "body with two forms": _set("response.body", {"size": 2, "text": "ok", "base64": "b2s="}),
    "body with no form": _set("response.body", {"size": 2}),
    "json body without style": _set("response.body", {"size": 2, "json": {}}),
    "unknown json style": _set("response.body", {"size": 2, "json": {}, "json_style": "pretty"}),
    "bad base64": _set("response.body", {"size": 2, "base64": "not base64!"}),
    "negative size": _set("response.body", {"size": -1, "text": ""}),
    "interaction kind not http": {
        **_valid(),
        "interactions": [
            {
                "kind": "grpc",
                "library": "grpc",
                "start_ms": 0,
                "duration_ms": 1,
                "span_id": None,
                "parent_span_id": None,
                "request": {"method": "Get", "url": "grpc://x", "headers": [], "body": None},
                "response": None,
                "error": None,
            }
        ],
    },
    "unknown top-level key": {**_valid(), "extra": True},
    "spans missing": _set("spans", "-"),
}


@pytest.mark.parametrize("name", INVALID)
def test_malformed_documents_fail_validation(name: str) -> None:
    assert not VALIDATOR.is_valid(INVALID[name])


def test_the_unmodified_base_of_the_invalid_cases_is_valid() -> None:
    # Guards the cases above: each must fail because of its one change, not because the base is wrong.
    assert_valid(_valid())
    assert_valid(_set("response.body", {"size": 2, "base64": "b2s="}))
