"""The pieces that make loading and replaying a large cassette cheap, and that they change no behaviour.

Loading decodes the file with msgspec and keeps structured JSON bodies as their raw JSON text until their
bytes (or values) are first needed; the cassette's calls are grouped by request key once, and each replayed
inbound request gets cursors over those groups. None of it is timed here (see benchmarks/replay_cost.py).
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import random
import struct
from pathlib import Path

import orjson
import pytest

from tests.factories import cassette, interaction, json_response, request
from timetracer_otel.cassette import codec, json_bodies
from timetracer_otel.cassette.codec import cassette_from_bytes, cassette_to_json
from timetracer_otel.cassette.files import dump_cassette, load_cassette
from timetracer_otel.cassette.model import Body, Cassette, HttpRequest, HttpResponse
from timetracer_otel.errors import CassetteFormatError, ReplayMismatchError
from timetracer_otel.replay import index as index_module
from timetracer_otel.replay.index import RecordedCalls, ReplayIndex
from timetracer_otel.replay.matching import http_key, request_key
from timetracer_otel.replay.source import CassetteSource
from timetracer_otel.settings import Compression, OnExhausted

# 1e-05 is written 0.00001 by orjson: with it, the standard library's styles are told apart from orjson's.
VALUE = {"id": 7, "name": "Zoë ✓", "tags": ["a", "b"], "price": 12.5, "nested": {"ok": True, "none": None}, "e": 1e-05}
STYLED = {
    "orjson": orjson.dumps(VALUE),
    "compact": json.dumps(VALUE, separators=(",", ":"), ensure_ascii=False).encode(),
    "compact_ascii": json.dumps(VALUE, separators=(",", ":")).encode(),
    "spaced": json.dumps(VALUE, ensure_ascii=False).encode(),
    "spaced_ascii": json.dumps(VALUE).encode(),
    "indent2": json.dumps(VALUE, indent=2, ensure_ascii=False).encode(),
}
# Numbers orjson writes differently from json.dumps: stored in a standard library style.
AWKWARD = b'{"small":1e-05,"large":1e+16,"tiny":5e-324,"max":1.7976931348623157e+308,"third":0.3333333333333333}'
BIG_INTEGERS = [
    b'{"id":123456789012345678901234567890}',
    b'{"n":-9223372036854775809}',  # one below the smallest int64: 19 digits
    b'{"n":18446744073709551616}',  # one above the largest uint64
    b"[18446744073709551615,-9223372036854775808,9223372036854775807]",  # the extremes orjson keeps exact
]


def _round_trip(tmp_path: Path, original: Cassette, compression: Compression = Compression.NONE) -> Cassette:
    path = tmp_path / "c.json"
    path.write_bytes(dump_cassette(original, compression))
    return load_cassette(path)


def _with_bodies(*bodies: bytes) -> Cassette:
    return cassette(
        *[
            interaction(request("POST", f"http://api.test/{n}", data), HttpResponse(200, body=Body.of(data)))
            for n, data in enumerate(bodies)
        ]
    )


# -- lazy JSON bodies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", list(STYLED))
def test_a_loaded_json_body_gives_back_exactly_the_recorded_bytes(tmp_path: Path, style: str) -> None:
    data = STYLED[style]
    assert codec._encode_bytes(data) == {"json": VALUE, "json_style": style}  # really stored structured
    loaded = _round_trip(tmp_path, _with_bodies(data))
    body = loaded.interactions[0].response.body  # type: ignore[union-attr]
    assert body is not None
    eager = Body.of(data)
    assert body == eager and eager == body
    assert hash(body) == hash(eager)
    assert repr(body) == repr(eager)
    assert body.data == data and body.size == len(data)
    assert (body.truncated, body.complete, body.content_coding) == (False, True, None)


@pytest.mark.parametrize("style", list(STYLED))
def test_json_bodies_are_parsed_and_rendered_on_first_use_only(tmp_path: Path, style: str) -> None:
    data = STYLED[style]
    body = _round_trip(tmp_path, _with_bodies(data)).interactions[0].response.body  # type: ignore[union-attr]
    assert body is not None
    assert body.unrendered_json() == (VALUE,)  # still the stored JSON after loading
    assert body.data == data
    assert body.unrendered_json() is None  # rendered once, then plain bytes
    assert body.data is body.data


def test_numbers_orjson_writes_differently_round_trip_exactly(tmp_path: Path) -> None:
    assert orjson.dumps(json.loads(AWKWARD)) != AWKWARD  # why they take a standard library style
    assert codec.encode_body(Body.of(AWKWARD))["json_style"] == "compact"
    body = _round_trip(tmp_path, _with_bodies(AWKWARD)).interactions[0].response.body  # type: ignore[union-attr]
    assert body is not None and body.data == AWKWARD


def test_a_deferred_body_whose_size_is_wrong_fails_when_used() -> None:
    style = json_bodies.STYLES["compact"]
    body = Body.from_json(b'{"a": 1}', style, 99, source="c.json")
    with pytest.raises(CassetteFormatError, match=r"c\.json: a JSON body renders to 7 bytes but its size says 99"):
        _ = body.data
    truncated = Body.from_json(b'{"a": 1}', style, 99, truncated=True)
    assert truncated.data == b'{"a":1}' and truncated.size == 99
    broken = Body.from_json(b'{"a": ', style, 6, source="c.json")
    with pytest.raises(CassetteFormatError, match=r"c\.json: a JSON body cannot be rendered in style compact"):
        _ = broken.data


def test_an_edited_size_or_value_is_caught_when_the_body_is_used_for_every_style(tmp_path: Path) -> None:
    for style, data in STYLED.items():
        document = cassette_to_json(_with_bodies(data))
        document["interactions"][0]["response"]["body"]["size"] += 1
        document["interactions"][0]["request"]["body"]["json"]["id"] = 8
        path = tmp_path / f"{style}.json"
        path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        loaded = load_cassette(path)  # checked lazily: loading never renders a JSON body
        with pytest.raises(CassetteFormatError, match=r"renders to \d+ bytes but its size says \d+ \(was the cas"):
            _ = loaded.interactions[0].response.body.data  # type: ignore[union-attr]
        assert loaded.interactions[0].request.body.data == data.replace(b"7", b"8", 1)  # type: ignore[union-attr]


def test_bodies_stay_immutable_and_pickle_like_values() -> None:
    body = Body.from_json(b"[1, 2]", json_bodies.STYLES["compact"], 5)
    with pytest.raises(AttributeError):
        body.size = 3  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(body)) == Body.of(b"[1,2]")
    assert copy.copy(body) == copy.deepcopy(body) == body
    assert Body(b"x", 1) != Body(b"x", 1, truncated=True)
    assert Body(b"x", 1).__eq__("x") is NotImplemented
    match Body.of(b"ab"):
        case Body(data, size):
            assert (data, size) == (b"ab", 2)


# -- parsing with orjson ------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", BIG_INTEGERS)
def test_integers_beyond_64_bits_load_exactly(tmp_path: Path, data: bytes) -> None:
    loaded = _round_trip(tmp_path, _with_bodies(data))
    assert loaded.interactions[0].response.body.data == data  # type: ignore[union-attr]
    assert loaded.interactions[0].request.body.data == data  # type: ignore[union-attr]
    assert json_bodies.parse_json(data) == json.loads(data)  # ints compare exactly with ints, never with floats


def test_big_integers_anywhere_in_the_file_use_the_exact_parser(tmp_path: Path) -> None:
    big = 2**70 + 1  # not a float exactly
    text = json.dumps({"a": [1.5, {"b": big}], "c": -big}).encode()
    assert json_bodies.parse_json(text) == {"a": [1.5, {"b": big}], "c": -big}
    assert orjson.loads(text) != json.loads(text)  # what the scan protects against


def test_what_orjson_refuses_falls_back_to_the_standard_library() -> None:
    parsed = json_bodies.parse_json(b'{"a": NaN, "b": "\\ud800"}')
    assert isinstance(parsed, dict) and math.isnan(parsed["a"]) and parsed["b"] == "\ud800"
    assert json_bodies.parse_json(b'\xef\xbb\xbf{"bom": 1}') == {"bom": 1}
    with pytest.raises(json.JSONDecodeError) as caught:
        json_bodies.parse_json(b'{\n  "a": 1,\n  "b": ')
    assert type(caught.value) is json.JSONDecodeError and (caught.value.lineno, caught.value.colno) == (3, 8)


def test_long_digit_runs_never_reach_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refuses:
        JSONDecodeError = orjson.JSONDecodeError

        @staticmethod
        def loads(data: bytes) -> object:
            raise AssertionError("orjson used")

    monkeypatch.setattr(json_bodies, "orjson", Refuses)
    assert json_bodies.parse_json(b'{"id": "1234567890123456789"}') == {"id": "1234567890123456789"}  # in a string
    with pytest.raises(AssertionError, match="orjson used"):
        json_bodies.parse_json(b"[1]")


def test_orjson_reads_every_float_as_the_standard_library_does() -> None:
    rng = random.Random(20261128)
    samples = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(20_000)]
    samples += [rng.uniform(-1e6, 1e6) for _ in range(5_000)] + [round(rng.uniform(0, 1000), 2) for _ in range(5_000)]
    finite = [x for x in samples if math.isfinite(x)]
    text = json.dumps(finite).encode()
    assert [struct.pack("<d", x) for x in orjson.loads(text)] == [struct.pack("<d", x) for x in json.loads(text)]


# -- decoding -----------------------------------------------------------------------------------------------


def _rich() -> Cassette:
    gz = Body(data=b"\x1f\x8b\x08\x00", size=4, content_coding="gzip")
    return cassette(
        interaction(request("POST", "http://a.test/x?q=1", STYLED["spaced_ascii"], (("x-a", "1"), ("x-a", "2"))),
                    json_response({"n": 1}, status=201)),
        interaction(request(), HttpResponse(200, body=Body(b"partial", size=100, truncated=True), reason="OK")),
        interaction(request(body=b"\xff\x00"), HttpResponse(204, body=gz, http_version="HTTP/1.1")),
        interaction(request(body=b"plain"), HttpResponse(200, body=Body(b"str", size=3, complete=False))),
    )


def test_every_field_of_a_rich_cassette_decodes_back() -> None:
    assert cassette_from_bytes(json.dumps(cassette_to_json(_rich())).encode()) == _rich()
    assert cassette_from_bytes(dump_cassette(_rich(), Compression.NONE)) == _rich()
    document = orjson.loads(dump_cassette(_rich(), Compression.NONE))
    document["interactions"][0]["from_a_newer_writer"] = {"ignored": True}
    assert cassette_from_bytes(orjson.dumps(document)) == _rich()


def test_a_wrong_field_deep_in_a_cassette_is_named_with_its_path() -> None:
    document = orjson.loads(dump_cassette(_rich(), Compression.NONE))
    document["interactions"][1]["response"]["headers"] = [["a", "b", "c"]]
    with pytest.raises(CassetteFormatError, match=r"x\.json: interactions\[1\]\.response\.headers\[0\]: expected `ar"):
        cassette_from_bytes(orjson.dumps(document), source="x.json")
    document = orjson.loads(dump_cassette(_rich(), Compression.NONE))
    document["interactions"][2]["request"]["body"]["text"] = "also"
    with pytest.raises(CassetteFormatError, match=r"interactions\[2\]\.request\.body\.json\|text\|base64: exp"):
        cassette_from_bytes(orjson.dumps(document))


# -- request keys from parsed values ------------------------------------------------------------------------


def test_keys_of_deferred_json_bodies_equal_the_keys_of_their_bytes(tmp_path: Path) -> None:
    loaded = _round_trip(tmp_path, _with_bodies(*STYLED.values(), b'[{"b":1,"a":[2,1]}]', b"{}"))
    deferred = 0
    for recorded in loaded.interactions:
        body = recorded.request.body
        assert body is not None
        deferred += body.unrendered_json() is not None
        key = http_key(recorded.request)  # from the parsed value while there is one
        live = HttpRequest(recorded.request.method, recorded.request.url, body=Body.of(body.data))
        assert http_key(live) == key
    assert deferred >= 3  # compact, compact_ascii and indent2 at least


def test_a_multipart_body_that_parses_as_json_keeps_its_boundary_masking(tmp_path: Path) -> None:
    data = b'{"x":"--abc"}'
    headers = (("content-type", "multipart/form-data; boundary=abc"),)
    original = cassette(interaction(HttpRequest("POST", "http://a.test/u", headers, Body.of(data))))
    loaded = _round_trip(tmp_path, original)
    assert loaded.interactions[0].request.body.unrendered_json() is not None  # type: ignore[union-attr]
    assert http_key(loaded.interactions[0].request) == http_key(original.interactions[0].request)


# -- sessions over calls grouped once -----------------------------------------------------------------------


def _polls(count: int) -> Cassette:
    return cassette(*[interaction(request(url="http://api.test/poll"), json_response(n)) for n in range(count)],
                    interaction(request(url="http://api.test/other"), json_response("other")))


def _answer(taken: object) -> bytes:
    return taken.response.body.data  # type: ignore[attr-defined, no-any-return]


def test_sessions_from_one_source_have_independent_cursors() -> None:
    source = CassetteSource([_polls(3)], single=True, on_exhausted=OnExhausted.ERROR)
    first, second = source.session_for(request()), source.session_for(request())
    assert [_answer(first.take(request(url="http://api.test/poll"))) for _ in range(3)] == [b"0", b"1", b"2"]
    with pytest.raises(ReplayMismatchError, match="recorded 3 time"):
        first.take(request(url="http://api.test/poll"))
    assert _answer(second.take(request(url="http://api.test/poll"))) == b"0"
    assert [i.request.url for i in second.index.unused()] == ["http://api.test/poll"] * 2 + ["http://api.test/other"]
    assert [i.request.url for i in first.index.unused()] == ["http://api.test/other"]
    assert source.session_for(request()).index.unused() == list(_polls(3).interactions)


def test_starting_a_session_neither_keys_nor_groups_the_cassette(monkeypatch: pytest.MonkeyPatch) -> None:
    source = CassetteSource([_polls(50)], single=True, on_exhausted=OnExhausted.ERROR)
    work: list[str] = []
    monkeypatch.setattr(index_module, "request_key", lambda k, r: work.append("key") or request_key(k, r))
    monkeypatch.setattr(RecordedCalls, "__init__", lambda *a, **k: work.append("group"))
    sessions = [source.session_for(request()) for _ in range(5)]
    assert work == []
    assert _answer(sessions[-1].take(request(url="http://api.test/poll"))) == b"0"
    assert work == ["key"]  # the live call only


def test_repeat_last_and_unused_over_shared_groups() -> None:
    calls = RecordedCalls(_polls(2).interactions)
    repeat = ReplayIndex(calls, OnExhausted.REPEAT_LAST)
    strict = ReplayIndex(calls)
    assert [_answer(repeat.take(request(url="http://api.test/poll"))) for _ in range(4)] == [b"0", b"1", b"1", b"1"]
    assert [i.request.url for i in repeat.unused()] == ["http://api.test/other"]
    assert len(strict.unused()) == len(strict) == 3
    with pytest.raises(TypeError):
        ReplayIndex(calls, keys=calls.keys)


def test_a_miss_names_the_same_nearest_calls_with_or_without_precomputed_keys() -> None:
    recorded = [interaction(request(url=f"http://api.test/users/{n}"), json_response(n)) for n in range(5)]
    live = request(url="http://api.test/users/x")
    with_keys = ReplayIndex(RecordedCalls(recorded)).mismatch(live)
    custom_keys = ReplayIndex(RecordedCalls(recorded, keys=[str(n) for n in range(5)])).mismatch(live)
    assert with_keys.candidates == custom_keys.candidates
    assert with_keys.candidates[0].startswith("#1 GET http://api.test/users/0 (path differs")
