"""Database and cache calls in the cassette: typed values, the v2 format, and how calls match and miss."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.factories import cassette
from timetracer_otel.cassette.codec import cassette_from_bytes, cassette_to_json
from timetracer_otel.cassette.files import dump_cassette, load_cassette
from timetracer_otel.cassette.model import CallRequest, CallResponse, Interaction, RecordedError
from timetracer_otel.cassette.values import UnsupportedValueError, from_json_value, to_json_value
from timetracer_otel.errors import CassetteFormatError, ReplayError, ReplayMismatchError
from timetracer_otel.replay.index import ReplayIndex
from timetracer_otel.replay.matching import call_fields, normalize_sql
from timetracer_otel.settings import Compression

# -- typed values ------------------------------------------------------------------------------------------

VALUES: list[Any] = [
    None,
    True,
    0,
    -(2**63),
    2**63,  # beyond 64 bits: stored as text
    1.5,
    float("inf"),
    "text",
    "",
    b"\x00\xffbytes",
    bytearray(b"ba"),
    Decimal("12.340"),
    Decimal("NaN"),
    dt.datetime(2026, 11, 29, 1, 2, 3, 456789, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 29, 1, 2, 3),
    dt.date(2026, 11, 29),
    dt.time(23, 59, 1, 5),
    dt.timedelta(days=-1, seconds=5, microseconds=7),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    ipaddress.ip_address("10.0.0.1"),
    ipaddress.ip_network("10.0.0.0/8"),
    (1, "a", b"b"),
    [1, [2, (3,)]],
    {"a": 1, "b": [b"x"]},
    {"$set": 1},  # a key that looks like a tag
    {1: "one", b"k": (2,)},  # keys that are not text
    {1, 2, 3},
    frozenset({"x"}),
]


@pytest.mark.parametrize("value", VALUES, ids=[f"{type(v).__name__}-{n}" for n, v in enumerate(VALUES)])
def test_values_come_back_equal_and_of_the_same_type(value: Any) -> None:
    stored = json.loads(json.dumps(to_json_value(value)))  # through JSON text, as a cassette keeps it
    back = from_json_value(stored)
    assert type(back) is type(value)
    if isinstance(value, Decimal) and value.is_nan():
        assert back.is_nan()
    else:
        assert back == value
    if isinstance(value, list):
        assert type(back[1][1]) is tuple


def test_nan_float_survives() -> None:
    back = from_json_value(json.loads(json.dumps(to_json_value(float("nan")))))
    assert isinstance(back, float) and back != back


def test_an_unknown_type_is_kept_as_text_and_refused_only_when_replayed() -> None:
    class Point:
        def __repr__(self) -> str:
            return "Point(1, 2)"

    stored = to_json_value([Point()])
    assert stored == [{"$unsupported": [f"{__name__}.{Point.__qualname__}", "Point(1, 2)"]}]
    with pytest.raises(UnsupportedValueError, match=r"Point\(1, 2\).*cannot be replayed"):
        from_json_value(stored)


def test_a_malformed_tag_is_a_replay_error_naming_the_value() -> None:
    with pytest.raises(ReplayError, match=r"\$decimal value is malformed \('one'"):
        from_json_value({"$decimal": "one"})


# -- the cassette format -----------------------------------------------------------------------------------


def _sql(statement: str, params: Any, rows: Any = (), *, method: str | None = None) -> Interaction:
    return Interaction(
        kind="sql",
        library="asyncpg",
        request=CallRequest(statement, method=method, target="shop", arguments=to_json_value(params)),
        response=CallResponse({"rows": to_json_value(list(rows)), "status": "SELECT 1"}),
    )


def test_call_interactions_round_trip_through_a_file(tmp_path: Path) -> None:
    failing = Interaction(
        kind="redis",
        library="redis",
        request=CallRequest("INCR", arguments=to_json_value(["k"])),
        error=RecordedError("redis.exceptions.ResponseError", "WRONGTYPE", details={"code": "WRONGTYPE"}),
    )
    original = cassette(_sql("select $1::numeric", [Decimal("1.5")], [(Decimal("1.5"),)]), failing)
    path = tmp_path / "c.json"
    path.write_bytes(dump_cassette(original, Compression.NONE))
    loaded = load_cassette(path)
    assert loaded == original
    stored = json.loads(path.read_bytes())
    assert stored["schema"] == 2
    assert stored["interactions"][0]["request"] == {
        "operation": "select $1::numeric",
        "target": "shop",
        "arguments": [{"$decimal": "1.5"}],
    }
    assert stored["interactions"][1]["error"]["details"] == {"code": "WRONGTYPE"}


def test_a_version_1_file_still_loads() -> None:
    document = cassette_to_json(cassette())
    document["schema"] = 1
    del document["metadata"]["scope"]
    loaded = cassette_from_bytes(json.dumps(document).encode())
    assert loaded.metadata.scope == "request" and loaded.request is not None


def test_a_call_with_a_wrongly_typed_field_names_the_field() -> None:
    document = cassette_to_json(cassette(_sql("select 1", [])))
    document["interactions"][0]["request"]["operation"] = 5
    with pytest.raises(CassetteFormatError, match=r"interactions\[0\]\.request\.operation: expected `str`, got `int`"):
        cassette_from_bytes(json.dumps(document).encode())


def test_only_a_session_cassette_may_lack_a_request() -> None:
    document = cassette_to_json(cassette())
    document["request"] = None
    with pytest.raises(CassetteFormatError, match="request: expected an inbound request"):
        cassette_from_bytes(json.dumps(document).encode())
    document["metadata"]["scope"] = "session"
    assert cassette_from_bytes(json.dumps(document).encode()).request is None


# -- matching ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("select * from users where id = $1", "SELECT *\n  FROM users\n WHERE id = %s;"),
        ("SELECT a, b FROM t WHERE x = ?", "select a,b from t where x=$1"),
        ("insert into t (a) values (%(name)s)", "INSERT INTO t(a) VALUES(:name)"),
        ("select x::int from t", "SELECT X::INT FROM T"),
    ],
)
def test_sql_statements_that_differ_only_in_layout_match(one: str, other: str) -> None:
    assert normalize_sql(one) == normalize_sql(other)


def test_sql_literals_and_quoted_names_keep_their_case_and_spaces() -> None:
    assert normalize_sql("select 'a  B' from \"Mixed  Case\"") == "SELECT 'a  B' FROM \"Mixed  Case\""
    assert normalize_sql("select 'a'") != normalize_sql("select 'A'")


def test_sql_parameters_match_whether_passed_as_tuple_or_list() -> None:
    as_tuple = call_fields("sql", CallRequest("select $1", arguments=to_json_value((1, "a"))))
    as_list = call_fields("sql", CallRequest("select $1", arguments=to_json_value([1, "a"])))
    assert as_tuple == as_list


def test_redis_arguments_match_by_what_goes_over_the_wire() -> None:
    def key(*args: Any) -> Any:
        return call_fields("redis", CallRequest("set", arguments=to_json_value(list(args))))

    assert key("k", "1") == key(b"k", 1)
    assert key("k", "1") != key("k", "2")


def test_mongo_session_fields_and_generated_ids_do_not_count() -> None:
    def key(document: dict[str, Any]) -> Any:
        return call_fields("mongo", CallRequest("insert", target="db.users", arguments=document))

    recorded = {"insert": "users", "documents": [{"_id": {"$oid": "6560" * 6}, "n": 1}], "lsid": {"id": 1}}
    live = {"insert": "users", "documents": [{"_id": {"$oid": "9999" * 6}, "n": 1}], "$db": "db", "txnNumber": 3}
    assert key(recorded) == key(live)
    assert key(recorded) != key({**live, "documents": [{"n": 2}]})


def test_a_changed_sql_parameter_is_a_miss_naming_the_parameter() -> None:
    index = ReplayIndex([_sql("select * from t where a = $1 and b = $2", [1, "x"], [(1,)])])
    live = CallRequest("SELECT * FROM t WHERE a = $1 AND b = $2", target="shop", arguments=to_json_value([1, "y"]))
    with pytest.raises(ReplayMismatchError) as caught:
        index.take(live, "sql")
    message = str(caught.value)
    assert "parameter 2 differs: recorded \"x\", got \"y\"" in message
    assert "parameter 1" not in message


def test_a_changed_mongo_filter_is_a_miss_naming_the_path() -> None:
    def find(age: int) -> CallRequest:
        return CallRequest("find", target="app.users", arguments={"find": "users", "filter": {"age": age}})

    index = ReplayIndex([Interaction("mongo", "pymongo", find(30), CallResponse({"ok": 1.0}))])
    with pytest.raises(ReplayMismatchError, match=r"filter\.age differs: recorded 30, got 31"):
        index.take(find(31), "mongo")


def test_a_miss_ranks_candidates_of_its_own_kind_only() -> None:
    index = ReplayIndex([_sql("select 1", [])])
    with pytest.raises(ReplayMismatchError, match="the cassette holds no recorded redis calls"):
        index.take(CallRequest("GET", arguments=["k"]), "redis")


def test_executemany_and_execute_of_one_statement_are_different_calls() -> None:
    index = ReplayIndex([_sql("insert into t values ($1)", [[1], [2]], method="executemany")])
    with pytest.raises(ReplayMismatchError, match="method differs: recorded executemany, got plain call"):
        index.take(CallRequest("insert into t values ($1)", target="shop", arguments=[[1], [2]]), "sql")
    taken = index.take(
        CallRequest("insert into t values ($1)", method="executemany", arguments=to_json_value([[1], [2]])), "sql"
    )
    assert taken.library == "asyncpg"
