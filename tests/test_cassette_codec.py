from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.factories import cassette, interaction, json_response, request
from timetracer_otel.cassette.codec import cassette_from_bytes, cassette_to_json, encode_body
from timetracer_otel.cassette.files import cassette_relative_path, dump_cassette, load_cassette
from timetracer_otel.cassette.model import Body, HttpRequest, HttpResponse, RecordedError
from timetracer_otel.errors import CassetteFormatError, CassetteNotFoundError
from timetracer_otel.exporters.file import FileExporter
from timetracer_otel.settings import Compression

BODIES = [
    b"",
    b'{"b":1,"a":[1,2.5,null,true],"u":"\xc3\xa9"}',
    b'{"b": 1, "a": "x"}',
    b'{\n  "pretty": true\n}',
    b'{"float": 1.10}',  # not reproducible by json.dumps: must stay text
    b'{"dup": 1, "dup": 2}',
    b"[NaN]",
    b"plain text \xe2\x9c\x93",
    bytes(range(256)),
    b"\x89PNG\r\n\x1a\n\x00\x00",
]


@pytest.mark.parametrize("data", BODIES)
def test_every_body_round_trips_byte_for_byte(data: bytes) -> None:
    original = cassette(interaction(request(body=data), HttpResponse(200, body=Body.of(data))))
    back = cassette_from_bytes(json.dumps(cassette_to_json(original)).encode())
    assert back.interactions[0].request.body == Body.of(data)
    assert back.interactions[0].response.body.data == data  # type: ignore[union-attr]


def test_json_bodies_are_stored_structured_only_when_exact() -> None:
    assert encode_body(Body.of(b'{"a":1}')) == {"size": 7, "json": {"a": 1}, "json_style": "orjson"}
    assert encode_body(Body.of(b'{"a":1e-05}')) == {"size": 11, "json": {"a": 1e-05}, "json_style": "compact"}
    assert encode_body(Body.of(b'{"a": 1}'))["json_style"] == "spaced"
    assert "json" not in encode_body(Body.of(b'{"float": 1.10}'))
    assert "base64" in encode_body(Body.of(b"\xff\xfe"))


def test_gzip_bodies_are_stored_decoded() -> None:
    raw = gzip.compress(b'{"a":1}')
    stored = encode_body(Body(data=raw, size=len(raw), content_coding="gzip"))
    assert stored == {"size": 7, "json": {"a": 1}, "json_style": "orjson"}
    truncated = Body(data=raw[:5], size=len(raw), truncated=True, content_coding="gzip")
    assert encode_body(truncated)["content_coding"] == "gzip"


def test_the_whole_cassette_round_trips() -> None:
    original = cassette(
        interaction(request("POST", "http://a.test/x?q=1", b"{}", (("x-a", "1"), ("x-a", "2"))),
                    json_response({"n": 1}, status=201)),
        interaction(request(), error=RecordedError("httpx.ConnectError", "refused")),
    )
    assert cassette_from_bytes(json.dumps(cassette_to_json(original)).encode()) == original


@pytest.mark.parametrize("compression", list(Compression))
def test_files_round_trip_in_every_compression(tmp_path: Path, compression: Compression) -> None:
    original = cassette(interaction(request(), json_response({"n": 1})))
    where = FileExporter(tmp_path).store(cassette_relative_path(original, compression),
                                         dump_cassette(original, compression))
    assert load_cassette(where) == original


def test_file_names_are_safe_and_bounded() -> None:
    long = HttpRequest("GET", "http://app.test/" + "../a b/" * 200)
    name = cassette_relative_path(cassette(inbound=long), Compression.GZIP)
    day, file_name = name.split("/")
    assert day == "2026-11-28"
    assert file_name.startswith("GET__a-b-a-b") and file_name.endswith("__0123456789ab.json.gz")
    assert len(file_name) < 120 and ".." not in name


def test_exporter_never_overwrites_and_never_escapes(tmp_path: Path) -> None:
    exporter = FileExporter(tmp_path)
    first = exporter.store("d/a.json", b"one")
    second = exporter.store("d/a.json", b"two")
    assert first != second
    assert Path(first).read_bytes() == b"one" and Path(second).read_bytes() == b"two"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["a-1.json", "a.json"]
    for bad in ("../evil.json", "/etc/evil.json"):
        with pytest.raises(ValueError, match="refusing to write outside"):
            exporter.store(bad, b"x")


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "c.json"
    path.write_bytes(data)
    return path


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(CassetteNotFoundError, match="record one first"):
        load_cassette(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[: len(b) // 2], "not valid JSON at line"),
        (lambda b: gzip.compress(b)[:40], "corrupt or truncated gzip data"),
        (lambda b: b.replace(b'"schema": 2', b'"schema": 7'), "schema version 7 is not supported"),
        (  # another version whose layout differs too: the version is what the message names
            lambda b: b.replace(b'"schema": 2', b'"schema": 3').replace(b'"method"', b'"verb"'),
            "schema version 3 is not supported",
        ),
        (
            lambda b: b.replace(b'"method": "GET"', b'"method": 5'),
            "interactions[0].request.method: expected `str`, got `int`",
        ),
        (lambda b: b.replace(b'"size": 5', b'"size": 9'), "response.body.size: expected 5, the length of the stored"),
        (lambda b: b.replace(b'"status": 200', b'"status": true'), "response.status: expected `int`, got `bool`"),
        (lambda b: b.replace(b'"status": 200,', b""), "response: object missing required field `status`"),
        (lambda b: b.replace(b'"text": "plain"', b'"base64": "plain"'), "response.body.base64: expected valid base64"),
        (lambda b: b.replace(b'"text"', b'"json_style": "x", "json"'), "response.body.json_style: expected one of"),
        (lambda b: b.replace(b'"kind": "http"', b'"kind": "ftp"'), "interactions[0].kind: expected a kind this"),
        (  # an http interaction must hold an HTTP request
            lambda b: b.replace(b'"kind": "http"', b'"kind": "sql"'),
            "interactions[0].request: object missing required field `operation`",
        ),
        (lambda b: b"\xff\xfe" + b, "not UTF-8"),
        (lambda b: b"[]", "document: expected `object`, got `array`"),
        (lambda b: b.replace(b'"schema": 2', b'"schema": NaN'), "not strict JSON"),
    ],
)
def test_corrupt_truncated_or_tampered_cassettes_are_named_errors(tmp_path: Path, mangle, message: str) -> None:
    good = dump_cassette(
        cassette(interaction(request(), HttpResponse(200, body=Body.of(b"plain")))), Compression.NONE
    )
    assert b'"size": 5' in good and b'"text": "plain"' in good  # the tamper cases below rely on the exact text
    path = _write(tmp_path, mangle(good))
    with pytest.raises(CassetteFormatError) as caught:
        load_cassette(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_encoding_is_indented_json_and_big_integers_survive() -> None:
    big = b'{"id":123456789012345678901234567890}'
    original = cassette(interaction(request(), HttpResponse(200, body=Body.of(big))))
    data = dump_cassette(original, Compression.NONE)
    assert data.startswith(b'{\n  "schema": 2,\n') and data.endswith(b"}\n")
    assert json.loads(data) == cassette_to_json(original)
    assert cassette_from_bytes(data).interactions[0].response.body.data == big  # type: ignore[union-attr]


def test_cassettes_are_private_to_their_owner_and_leave_no_temp_files(tmp_path: Path) -> None:
    exporter = FileExporter(tmp_path)
    written = Path(exporter.store("2026-01-01/a.json", b"{}"))
    assert written.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in written.parent.iterdir()] == ["a.json"]
