"""The clock and generated values replay as recorded (docs/determinism.md).

End to end: a FastAPI app under ``opentelemetry-instrument`` (tests/apps/determinism) recorded against
PostgreSQL and MongoDB, replayed with both unreachable. In process: the cassette field, the settings, the replay
session's hand-back, and the hooks' and the clock's rules, on real objects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
import time_machine
from bson import ObjectId
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from pymongo import MongoClient

from tests.servers import ROOT, Server
from tests.services import MONGO_URI, POSTGRES_DSN
from timetracer_otel._context import attach_request_state
from timetracer_otel.cassette.codec import cassette_from_bytes, cassette_to_json
from timetracer_otel.cassette.files import dump_cassette, iter_cassette_files, load_cassette
from timetracer_otel.cassette.model import GENERATED_SOURCES, Cassette, Generated, HttpRequest, Metadata
from timetracer_otel.errors import CassetteFormatError, ConfigurationError
from timetracer_otel.record.assembly import assemble
from timetracer_otel.record.captured import CapturedRequest, capture_generated, decode_captured, encode_captured
from timetracer_otel.record.recorder import RecorderStats
from timetracer_otel.record.recording import ByteBudget, RequestRecording
from timetracer_otel.replay.session import NOT_RECORDED, ReplaySession
from timetracer_otel.runtime import Runtime
from timetracer_otel.settings import Compression, Mode, OnExhausted, Settings

APP = ROOT / "tests" / "apps" / "determinism"
#: Nothing listens there: replay must not need the databases.
UNREACHABLE = {"DETERMINISM_POSTGRES_DSN": "postgresql://root@127.0.0.1:9/test",
               "DETERMINISM_MONGO_URI": "mongodb://127.0.0.1:9/?directConnection=true"}
ORDERS = 3


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- end to end -----------------------------------------------------------------------------------------------


@dataclass
class Recorded:
    cassettes: Path
    table: str
    orders: list[dict[str, Any]]
    #: /now?n=1 and, over a second later, /now?n=2.
    clocks: list[dict[str, Any]]
    #: POST /events: an INSERT carrying datetime.now().
    event: dict[str, Any]
    #: GET /ticks: two clock readings.
    ticks: list[int]
    log: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    table = f"determinism_{os.getpid()}_{int(time.time() * 1000) % 100_000_000}"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY, token text, slug text, created_at timestamptz)")
    directory = tmp_path_factory.mktemp("determinism")
    cassettes = directory / "cassettes"
    env = {"TIMETRACER_MODE": "record", "TIMETRACER_DIR": str(cassettes), "DETERMINISM_TABLE": table,
           "TIMETRACER_RECORD_CLOCK": "true",
           "DETERMINISM_POSTGRES_DSN": POSTGRES_DSN, "DETERMINISM_MONGO_URI": MONGO_URI}
    try:
        with Server("app:app", cwd=APP, log=directory / "record.log", env=env, instrument=True) as app, \
                httpx.Client(base_url=app.url, timeout=20) as client:
            orders = [client.post("/orders") for _ in range(ORDERS)]
            clocks = [client.get("/now", params={"n": 1, "pause": 0.3})]
            time.sleep(1.2)
            clocks.append(client.get("/now", params={"n": 2, "pause": 0.3}))
            event, ticks = client.post("/events"), client.get("/ticks")
        assert [r.status_code for r in [*orders, *clocks, event, ticks]] == [200] * (ORDERS + 4), app.output()
        with psycopg.connect(POSTGRES_DSN) as connection:
            stored = {str(row[0]) for row in connection.execute(f"SELECT id FROM {table}")}
        assert stored == {r.json()["id"] for r in [*orders, event]}, "the recording ran against the real database"
        time.sleep(1.1)  # replay more than a second after the recording: its clock must not be the real one
        yield Recorded(cassettes, table, [r.json() for r in orders], [r.json() for r in clocks], event.json(),
                       ticks.json()["readings"], app.output())
    finally:
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
            connection.execute(f"DROP TABLE IF EXISTS {table}")
        with MongoClient(MONGO_URI, serverSelectionTimeoutMS=5000) as mongo:
            mongo.get_database("test").drop_collection(table)


def _replay(recorded: Recorded, tmp_path: Path, name: str, **settings: str) -> Server:
    env = {"TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(recorded.cassettes),
           "DETERMINISM_TABLE": recorded.table, **UNREACHABLE, **settings}
    return Server("app:app", cwd=APP, log=tmp_path / f"{name}.log", env=env, instrument=True)


def _without_clock(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "now"}


@pytest.mark.slow
def test_a_replayed_request_generates_what_its_recording_did_and_reads_its_clock(
    recorded: Recorded, tmp_path: Path
) -> None:
    # /ticks reads the clock 5 times more than it did when recorded.
    with _replay(recorded, tmp_path, "replay", DETERMINISM_EXTRA_READS="5") as app, \
            httpx.Client(base_url=app.url, timeout=20) as client:
        answers = [client.post("/orders") for _ in range(ORDERS)]
        event, ticks = client.post("/events"), client.get("/ticks")
    assert [a.status_code for a in [*answers, event, ticks]] == [200] * (ORDERS + 2), app.output()
    assert "ReplayMismatchError" not in app.output()
    # Ids, token, slug, urandom bytes, random float, the day and datetime.now(): exactly as recorded, so the
    # INSERT carrying the uuid and the document carrying the ObjectId matched their recorded calls.
    assert [a.json() for a in answers] == recorded.orders
    # The INSERT carrying datetime.now() matched its recorded call too.
    assert event.json() == recorded.event
    real_now = datetime.now(UTC)
    assert all(real_now - _instant(a.json()["now"]) > timedelta(seconds=1) for a in answers)
    readings = ticks.json()["readings"]
    assert readings[:2] == recorded.ticks, "the recorded readings, then the clock runs on from the last one"
    assert readings == sorted(readings) and len(readings) == 7
    assert real_now.timestamp() - readings[-1] / 1e9 > 1, "still the recording's time"


@pytest.mark.slow
def test_concurrent_replayed_requests_each_read_their_own_recorded_clock(recorded: Recorded, tmp_path: Path) -> None:
    with _replay(recorded, tmp_path, "replay-concurrent") as app, \
            httpx.Client(base_url=app.url, timeout=20) as client, ThreadPoolExecutor(2) as pool:
        # Both handlers sleep 0.3 s on the one event loop at the same time.
        futures = [pool.submit(client.get, "/now", params={"n": n, "pause": 0.3}) for n in (1, 2)]
        answers = [future.result().json() for future in futures]
    for was, now in zip(recorded.clocks, answers, strict=True):
        assert _without_monotonic(now) == _without_monotonic(was), "the recorded readings, each its own request's"
        assert now["monotonic"] > was["monotonic"], "time.monotonic() is never shifted"


def _without_monotonic(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "monotonic"}


def _without_clock_readings(source: Path, target: Path) -> Path:
    """A copy of a recording's cassettes as if recorded with TIMETRACER_RECORD_CLOCK off."""
    for path in iter_cassette_files(source):
        cassette = load_cassette(path)
        if cassette.generated is not None:
            generated = msgspec.structs.replace(cassette.generated, clock=())
            cassette = msgspec.structs.replace(cassette, generated=generated or None)
        copy = target / path.relative_to(source)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(dump_cassette(cassette, Compression.NONE))
    return target


@pytest.mark.slow
def test_without_recorded_readings_the_clock_runs_from_recorded_at(recorded: Recorded, tmp_path: Path) -> None:
    unclocked = Recorded(**{**vars(recorded), "cassettes": _without_clock_readings(recorded.cassettes,
                                                                                     tmp_path / "unclocked")})
    with _replay(unclocked, tmp_path, "replay-unclocked") as app, \
            httpx.Client(base_url=app.url, timeout=20) as client, ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(client.get, "/now", params={"n": n, "pause": 0.3}) for n in (1, 2)]
        answers = [future.result().json() for future in futures]
    first, second = answers
    assert _instant(second["now"]) - _instant(first["now"]) > timedelta(seconds=1), "each its own recording's"
    real_now = datetime.now(UTC)
    for was, now in zip(recorded.clocks, answers, strict=True):
        # The recorded instant plus the time the replayed request took to reach the reading: equal up to the
        # difference in that time; over a second away from the real one.
        assert now != was and abs(_instant(now["now"]) - _instant(was["now"])) < timedelta(milliseconds=250)
        assert abs(now["before"] - was["before"]) < 0.25
        assert real_now - _instant(now["now"]) > timedelta(seconds=1)
        # Durations measure on the replayed clock; time.monotonic() is never shifted.
        assert 0.29 <= now["after"] - now["before"] < 0.6
        assert now["monotonic"] > was["monotonic"]


@pytest.mark.slow
def test_opted_out_sources_and_clock_are_real(recorded: Recorded, tmp_path: Path) -> None:
    settings = {"TIMETRACER_REPLAY_CLOCK": "false", "TIMETRACER_GENERATED": "uuid4,random,secrets,objectid"}
    with _replay(recorded, tmp_path, "replay-opted-out", **settings) as app, \
            httpx.Client(base_url=app.url, timeout=20) as client:
        answers = [client.post("/orders") for _ in range(ORDERS)]
    assert [a.status_code for a in answers] == [200] * ORDERS, app.output()
    for was, now in zip(recorded.orders, [a.json() for a in answers], strict=True):
        assert now["nonce"] != was["nonce"], "os.urandom opted out: a new value"
        assert {k: now[k] for k in ("id", "document", "token", "slug", "score")} == \
               {k: was[k] for k in ("id", "document", "token", "slug", "score")}
        assert abs(_instant(now["now"]) - datetime.now(UTC)) < timedelta(seconds=5), "the real clock"
        assert _instant(now["now"]) - _instant(was["now"]) > timedelta(seconds=1)


@pytest.mark.slow
def test_only_the_apps_own_values_are_recorded(recorded: Recorded) -> None:
    cassettes = [load_cassette(path) for path in iter_cassette_files(recorded.cassettes)]
    orders = [c for c in cassettes if c.request is not None and c.request.url.endswith("/orders")]
    assert len(orders) == ORDERS
    for cassette in orders:
        generated = cassette.generated
        assert generated is not None
        assert cassette.response is not None and cassette.response.body is not None
        answer = json.loads(cassette.response.body.data)
        # One of each, though PyMongo drew a session id (uuid4) and ObjectId its process bytes (os.urandom), and
        # OpenTelemetry drew 64-bit span ids and 128-bit trace ids for every span.
        assert generated.uuid4 == (answer["id"],)
        assert generated.objectid == (answer["document"],)
        assert generated.urandom == (answer["nonce"],)
        assert len(generated.secrets) == 1
        floats = [v for v in generated.random if isinstance(v, float)]
        bits = [v for v in generated.random if isinstance(v, int)]
        assert floats == [answer["score"]]
        assert len(bits) >= 6 and all(v < 32 for v in bits), "only the slug's draws (5 bits each), no span id"
        assert len(cassette.spans) >= 3
        # The handler's two readings (datetime.now(UTC), datetime.now()), not the server's, the drivers' or
        # OpenTelemetry's.
        assert len(generated.clock) == 2
        assert generated.clock[0] // 1000 == _epoch_us(_instant(answer["now"]))
    clocks = [c for c in cassettes if c.request is not None and "/now" in c.request.url]
    assert len(clocks) == 2
    for cassette in clocks:
        assert cassette.response is not None and cassette.response.body is not None
        answer = json.loads(cassette.response.body.data)
        generated = cassette.generated
        assert generated is not None and not any(getattr(generated, source) for source in GENERATED_SOURCES)
        before, after, now = generated.clock
        assert abs(before / 1e9 - answer["before"]) < 1e-6 and abs(after / 1e9 - answer["after"]) < 1e-6
        assert now // 1000 == _epoch_us(_instant(answer["now"]))


def _epoch_us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# -- in process -------------------------------------------------------------------------------------------------


def _cassette(recorded_at: datetime, generated: Generated | None = None) -> Cassette:
    return Cassette(
        metadata=Metadata(id="0" * 32, recorded_at=recorded_at, service="svc", tool_version="0"),
        request=HttpRequest("GET", "http://app.local/x"),
        generated=generated,
    )


def test_generated_values_cross_to_the_writer_and_round_trip_through_the_file() -> None:
    kept = {"uuid4": [uuid.UUID("8b7644f5-6c84-46c7-b19a-4bdab6fb2178").bytes], "urandom": [b"\x00\xff"],
            "objectid": [bytes.fromhex("6b0bb265050bd8a43192819f")],
            "random": [0.25, 7, 2**100, b"\x01\x02"], "secrets": [b"\xab" * 3, 5, 0.5],
            "clock": [1_798_540_805_123_456_789, 1_798_540_805_123_999_000]}
    started = time.time_ns()
    captured = CapturedRequest(id="a" * 32, started_at=started / 1e9, start_ns=started, trace_id=None,
                               incomplete=False, request=None, response=None, error=None, calls=(), spans=(),
                               generated=capture_generated(kept))
    cassette = assemble(decode_captured(encode_captured(captured)), "svc")
    assert cassette.generated == Generated(
        uuid4=("8b7644f5-6c84-46c7-b19a-4bdab6fb2178",), urandom=("00ff",), objectid=("6b0bb265050bd8a43192819f",),
        random=(0.25, 7, 2**100, "0102"), secrets=("ababab", 5, 0.5),
        clock=(1_798_540_805_123_456_789, 1_798_540_805_123_999_000))
    assert cassette_from_bytes(dump_cassette(cassette, Compression.NONE)).generated == cassette.generated
    # Nothing generated: no field, as in files written before it existed, which still load.
    plain = _cassette(datetime.now(UTC))
    document = cassette_to_json(plain)
    assert "generated" not in document
    assert cassette_from_bytes(json.dumps(document).encode()).generated is None


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("uuid4", "not-a-uuid", "generated.uuid4[0]: expected a UUID in canonical form"),
    ("objectid", "abc", "generated.objectid[0]: expected 24 lowercase hexadecimal digits"),
    ("random", -1, "generated.random[0]: expected a float in [0, 1), an integer >= 0"),
    ("secrets", "xyz", "generated.secrets[0]: expected a float in [0, 1)"),
    ("clock", -1, "generated.clock[0]: expected nanoseconds since the epoch (an integer >= 0)"),
    ("clock", 1.5, "generated.clock[0]"),
])
def test_a_bad_generated_value_is_named(field: str, value: Any, expected: str) -> None:
    document = cassette_to_json(_cassette(datetime.now(UTC)))
    document["generated"] = {field: [value]}
    with pytest.raises(CassetteFormatError) as caught:
        cassette_from_bytes(json.dumps(document).encode())
    assert expected in str(caught.value)


def test_settings_name_the_sources_and_the_clock() -> None:
    defaults = Settings.from_env({})
    assert defaults.replay_clock is True and defaults.record_clock is True
    assert defaults.generated == {"uuid4", "random", "secrets", "urandom", "objectid"}
    chosen = Settings.from_env({"TIMETRACER_GENERATED": " UUID4, objectid ", "TIMETRACER_REPLAY_CLOCK": "off"})
    assert chosen.generated == {"uuid4", "objectid"} and chosen.replay_clock is False
    assert Settings.from_env({"TIMETRACER_GENERATED": ""}).generated == frozenset()
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"TIMETRACER_GENERATED": "uuid,random"})
    assert caught.value.variable == "TIMETRACER_GENERATED"
    assert "source names from uuid4, random, secrets, urandom, objectid, or an empty value for none" in str(
        caught.value)
    assert "(unknown: 'uuid')" in str(caught.value)


def test_a_session_hands_values_back_in_order_then_falls_back_once_logged(caplog: pytest.LogCaptureFixture) -> None:
    session = ReplaySession(_cassette(datetime.now(UTC), Generated(random=(0.5, 3))))
    with caplog.at_level(logging.DEBUG, logger="timetracer.replay"):
        assert session.take_generated("random", lambda v: isinstance(v, int)) is NOT_RECORDED, "a float is next"
        assert session.take_generated("random", lambda v: isinstance(v, float)) == 0.5
        assert session.take_generated("random", lambda v: True) == 3
        for _ in range(3):
            assert session.take_generated("random", lambda v: True) is NOT_RECORDED
        assert session.take_generated("uuid4", lambda v: True) is NOT_RECORDED
    assert session.generated_fallbacks == {"random": 4, "uuid4": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, "once per source and request"
    assert "GET http://app.local/x" in messages[0] and "no recorded random value fits the call" in messages[0]


def test_a_session_hands_clock_readings_back_then_runs_on_from_the_last(caplog: pytest.LogCaptureFixture) -> None:
    recorded_at = datetime(2020, 2, 29, 12, 0, tzinfo=UTC)
    first, last = 1_582_977_600_500_000_000, 1_582_977_601_000_000_000  # 0.5 s and 1 s after recorded_at
    session = ReplaySession(_cassette(recorded_at, Generated(clock=(first, last))))
    with caplog.at_level(logging.DEBUG, logger="timetracer.replay"):
        readings = [session.clock_ns() for _ in range(6)]
    assert readings[:2] == [first, last]
    later = [reading for reading in readings[2:] if reading is not None]
    assert len(later) == 4 and later == sorted(later) and last <= later[0] < last + 1_000_000_000
    assert session.generated_fallbacks == {"clock": 4}
    assert [r.getMessage() for r in caplog.records] == [
        "timetracer: GET http://app.local/x (cassette " + "0" * 32 + "): no recorded clock reading is left; the "
        "clock runs on from the last one"]
    # Readings recorded ahead of recorded_at + elapsed (the recording waited for its databases): the clock never
    # goes back to it.
    ahead = ReplaySession(_cassette(recorded_at, Generated(clock=(first + 10**12,))))
    assert ahead.clock_ns() == first + 10**12 <= ahead.clock_ns()  # type: ignore[operator]


def test_the_process_session_hands_back_what_the_session_cassettes_recorded() -> None:
    from timetracer_otel.replay.source import CassetteSource

    def session(generated: Generated) -> Cassette:
        return Cassette(metadata=Metadata(id="1" * 32, recorded_at=datetime.now(UTC), service="svc",
                                          tool_version="0", scope="session"), request=None, generated=generated)

    source = CassetteSource([], single=False, on_exhausted=OnExhausted.ERROR, sessions=[
        session(Generated(uuid4=("8b7644f5-6c84-46c7-b19a-4bdab6fb2178",), clock=(10, 20))),
        session(Generated(uuid4=("9b7644f5-6c84-46c7-b19a-4bdab6fb2178",), clock=(30,)))])
    process = source.process_session
    assert process is not None
    assert [process.take_generated("uuid4", lambda v: True) for _ in range(3)] == [
        "8b7644f5-6c84-46c7-b19a-4bdab6fb2178", "9b7644f5-6c84-46c7-b19a-4bdab6fb2178", NOT_RECORDED]
    readings = [process.clock_ns() for _ in range(4)]
    assert readings[:3] == [10, 20, 30] and readings[3] is not None and readings[3] >= 30
    assert CassetteSource([], single=False, on_exhausted=OnExhausted.ERROR, sessions=[]).process_session is None


@contextmanager
def _installed(settings: Settings) -> Iterator[list[Any]]:
    """The clock and generated-value integrations, installed and removed after (on top of a runtime another
    test left installed, if any)."""
    from timetracer_otel.determinism.clock import ClockIntegration
    from timetracer_otel.determinism.generated import GeneratedIntegration

    runtime = Runtime(settings)
    installed = [ClockIntegration(runtime), GeneratedIntegration(runtime)]
    for integration in installed:
        integration.install()
    try:
        yield installed
    finally:
        for integration in reversed(installed):
            integration.uninstall()


@pytest.fixture
def integrations() -> Iterator[Any]:
    before = _hooked_functions()
    with _installed(Settings(mode=Mode.REPLAY)) as installed:
        yield installed, before


def _serve(recording: RequestRecording | ReplaySession, handler: Any) -> Any:
    """Run ``handler`` as the request of a recording or replay session, under an OpenTelemetry span."""
    tracer = TracerProvider().get_tracer("test")
    token = attach_request_state(recording)
    try:
        with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
            return handler()
    finally:
        otel_context.detach(token)


def _handler() -> list[Any]:
    return [time.time(), datetime.now(UTC), time.time_ns(), date.today()]


def test_the_apps_clock_readings_are_recorded_only_when_asked() -> None:
    with _installed(Settings(mode=Mode.RECORD, record_clock=True)):
        recording = RequestRecording(RecorderStats(), ByteBudget())
        answer = _serve(recording, _handler)
    assert recording.generated is not None
    clock = recording.generated["clock"]
    assert len(clock) == 4, "the handler's readings only: not the spans', not the recording's own"
    assert abs(clock[0] / 1e9 - answer[0]) < 1e-6 and clock[1] // 1000 == _epoch_us(answer[1])
    assert clock[2] == answer[2] and clock == sorted(clock)
    replayed = _replay_in_process(recording.generated, _handler)
    assert replayed == answer, "replayed exactly"
    with _installed(Settings(mode=Mode.RECORD, record_clock=False)):
        assert not time_machine.traveller_stack, "off: the clock is not patched while recording"
        recording = RequestRecording(RecorderStats(), ByteBudget())
        _serve(recording, _handler)
    assert recording.generated is None


def _replay_in_process(kept: dict[str, list[Any]], handler: Any) -> Any:
    captured = capture_generated(kept)
    assert captured is not None
    session = ReplaySession(_cassette(datetime(2020, 2, 29, tzinfo=UTC), captured.to_model()))
    with _installed(Settings(mode=Mode.REPLAY)):
        return _serve(session, handler)


def test_a_handler_reading_the_clock_more_often_than_recorded_sees_it_run_on() -> None:
    recorded = [1_582_977_600_500_000_000, 1_582_977_600_700_000_000]

    def handler() -> list[int]:
        readings = [time.time_ns(), int(datetime.now(UTC).timestamp()) * 10**9]
        for _ in range(20):
            readings.append(time.time_ns())
            time.sleep(0.001)
        return readings

    readings = _replay_in_process({"clock": recorded}, handler)
    assert readings[0] == recorded[0] and readings[1] == recorded[1] // 10**9 * 10**9
    after = readings[2:]
    assert after == sorted(after) and recorded[1] <= after[0] and after[-1] - after[0] >= 19_000_000, "it ticks"
    assert after[-1] < recorded[1] + 10**9


def _hooked_functions() -> tuple[Any, ...]:
    return (type(random._inst), random.random, uuid.uuid4, os.urandom)  # type: ignore[attr-defined]


def test_the_hooks_keep_the_apps_values_only_and_go_away(integrations: Any) -> None:
    installed, before = integrations
    assert _hooked_functions() != before
    tracer = TracerProvider().get_tracer("test")
    recording = RequestRecording(RecorderStats(), ByteBudget())
    token = attach_request_state(recording)
    try:
        with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
            values = [uuid.uuid4(), random.random(), secrets.token_hex(8), os.urandom(3), ObjectId()]
    finally:
        otel_context.detach(token)
    assert recording.generated == {
        "uuid4": [values[0].bytes], "random": [values[1]], "secrets": [bytes.fromhex(values[2])],
        "urandom": [values[3]], "objectid": [values[4].binary],
    }, "OpenTelemetry's span and trace ids are not among them"
    for integration in reversed(installed):
        integration.uninstall()
    assert _hooked_functions() == before


def test_concurrent_sessions_each_read_their_own_clock_while_spans_stay_real(integrations: Any) -> None:
    tracer = TracerProvider().get_tracer("test")
    long_ago = datetime(2020, 2, 29, 12, 0, tzinfo=UTC)
    sessions = [ReplaySession(_cassette(long_ago)), ReplaySession(_cassette(long_ago + timedelta(days=400)))]

    async def serve(session: ReplaySession) -> tuple[datetime, float, int]:
        token = session.attach()
        try:
            with tracer.start_as_current_span("request") as span:
                first = datetime.now(UTC)
                await asyncio.sleep(0.05)
                elapsed = time.time() - first.timestamp()
            return first, elapsed, span.start_time or 0  # type: ignore[attr-defined]
        finally:
            otel_context.detach(token)

    async def both() -> list[tuple[datetime, float, int]]:
        return list(await asyncio.gather(*(serve(s) for s in sessions)))

    (first, elapsed_1, span_1), (second, elapsed_2, span_2) = asyncio.run(both())
    assert timedelta(0) <= first - long_ago < timedelta(seconds=1)
    assert timedelta(0) <= second - (long_ago + timedelta(days=400)) < timedelta(seconds=1)
    assert 0.04 < elapsed_1 < 1 and 0.04 < elapsed_2 < 1, "durations still measure"
    for start in (span_1, span_2):
        assert abs(start / 1e9 - time.time()) < 5, "span timestamps are real"
    assert abs(time.time() - datetime.now(UTC).timestamp()) < 1, "outside a replayed request: the real clock"
