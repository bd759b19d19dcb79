"""redis-py, sync and asyncio: recorded against the real Redis server, replayed with the client pointed at a closed
port (so any connection attempt would fail), and the app-visible values compared with their exact types."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError, WatchError

from tests.http_upstream import closed_port, recording, replaying
from tests.services import REDIS_URL
from timetracer_otel import recorder_stats
from timetracer_otel.cassette.model import CallRequest, CallResponse
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.integrations.registry import OUTBOUND


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"timetracer-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def _closed_url() -> str:
    return f"redis://127.0.0.1:{closed_port()}/0"


def _shape(value: Any) -> Any:
    """The value's types, nested: equal values of other types (bytes vs str, tuple vs list) differ here."""
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_shape(item) for item in value])
    if isinstance(value, set | frozenset):
        return (type(value).__name__, sorted(repr(_shape(item)) for item in value))
    if isinstance(value, dict):
        return ("dict", sorted(repr((_shape(k), _shape(v))) for k, v in value.items()))
    if isinstance(value, BaseException):
        return (type(value).__name__, str(value))
    return type(value).__name__


def _assert_same(replayed: Any, live: Any) -> None:
    assert _shape(replayed) == _shape(live)
    assert [_plain(v) for v in replayed] == [_plain(v) for v in live]


def _plain(value: Any) -> Any:
    """Exceptions compared by type and message (instances never compare equal)."""
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, BaseException):
        return (type(value), str(value))
    return value


# -- plain commands ------------------------------------------------------------------------------------------------


def _sync_commands(url: str, p: str, decode: bool) -> list[Any]:
    client = redis.Redis.from_url(url, decode_responses=decode)
    seen = [
        client.set(f"{p}s", "héllo"),
        client.get(f"{p}s"),
        client.incr(f"{p}n", 5),
        client.incrbyfloat(f"{p}f", 1.25),
        client.get(f"{p}missing"),
        client.rpush(f"{p}l", "a", 1, 2.5),
        client.lrange(f"{p}l", 0, -1),
        client.hset(f"{p}h", mapping={"a": 1, "b": "x"}),
        client.hgetall(f"{p}h"),
        client.sadd(f"{p}set", "a", "b"),
        client.smembers(f"{p}set"),
        client.zadd(f"{p}z", {"a": 1.5, "b": 2}),
        client.zrange(f"{p}z", 0, -1, withscores=True),
        client.expire(f"{p}s", 100),
        client.ttl(f"{p}s"),
        client.exists(f"{p}s", f"{p}missing"),
    ]
    if not decode:
        seen += [client.set(f"{p}bin", b"\xff\x00raw"), client.get(f"{p}bin")]
    client.close()
    return seen


async def _async_commands(url: str, p: str, decode: bool) -> list[Any]:
    client = aredis.Redis.from_url(url, decode_responses=decode)
    seen = [
        await client.set(f"{p}s", "héllo"),
        await client.get(f"{p}s"),
        await client.incr(f"{p}n", 5),
        await client.incrbyfloat(f"{p}f", 1.25),
        await client.get(f"{p}missing"),
        await client.rpush(f"{p}l", "a", 1, 2.5),
        await client.lrange(f"{p}l", 0, -1),
        await client.hset(f"{p}h", mapping={"a": 1, "b": "x"}),
        await client.hgetall(f"{p}h"),
        await client.sadd(f"{p}set", "a", "b"),
        await client.smembers(f"{p}set"),
        await client.zadd(f"{p}z", {"a": 1.5, "b": 2}),
        await client.zrange(f"{p}z", 0, -1, withscores=True),
        await client.expire(f"{p}s", 100),
        await client.ttl(f"{p}s"),
        await client.exists(f"{p}s", f"{p}missing"),
    ]
    if not decode:
        seen += [await client.set(f"{p}bin", b"\xff\x00raw"), await client.get(f"{p}bin")]
    await client.aclose()
    return seen


async def _commands(use_async: bool, url: str, p: str, decode: bool) -> list[Any]:
    return await _async_commands(url, p, decode) if use_async else _sync_commands(url, p, decode)


def _check_live(seen: list[Any], decode: bool) -> None:
    text = str if decode else bytes
    assert type(seen[1]) is text and seen[1] == text("héllo".encode() if not decode else "héllo")  # type: ignore[call-arg]
    assert seen[2] == 5 and type(seen[3]) is float and seen[3] == 1.25 and seen[4] is None
    assert type(seen[6]) is list and all(type(item) is text for item in seen[6])
    assert type(seen[8]) is dict and type(seen[10]) is set
    assert all(type(pair) is tuple and type(pair[1]) is float for pair in seen[12])
    assert 0 < seen[14] <= 100
    if not decode:
        assert seen[-1] == b"\xff\x00raw"


@pytest.mark.parametrize("decode", [False, True], ids=["bytes", "decoded"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_replies_round_trip_with_their_exact_types(tmp_path: Path, prefix: str, use_async: bool,
                                                         decode: bool) -> None:
    with recording(tmp_path) as recorded:
        live = await _commands(use_async, REDIS_URL, prefix, decode)
    _check_live(live, decode)
    assert recorded.cassette is not None and recorded.path is not None
    first = recorded.cassette.interactions[0]
    assert first.kind == "redis" and first.library == "redis"
    assert first.request == CallRequest("SET", None, None, [f"{prefix}s", "héllo"])
    assert first.response == CallResponse(True)

    with replaying(recorded.path):
        replayed = await _commands(use_async, _closed_url(), prefix, decode)
    _assert_same(replayed, live)


# -- pipelines -----------------------------------------------------------------------------------------------------


def _sync_pipelines(url: str, p: str) -> list[Any]:
    client = redis.Redis.from_url(url)
    seen: list[Any] = []
    with client.pipeline(transaction=False) as pipe:
        pipe.set(f"{p}a", "1").incr(f"{p}a").lpush(f"{p}a", "x").get(f"{p}a").hgetall(f"{p}none")
        seen.append(pipe.execute(raise_on_error=False))
        seen.append((len(pipe), pipe.watching))
    with client.pipeline() as pipe:
        pipe.hset(f"{p}h", "f", 1).hgetall(f"{p}h").zadd(f"{p}z", {"m": 3}).zrange(f"{p}z", 0, -1, withscores=True)
        seen.append(pipe.execute())
    with client.pipeline(transaction=False) as pipe:
        pipe.get(f"{p}a").hget(f"{p}a", "f")
        with pytest.raises(ResponseError) as raised:
            pipe.execute()
        seen.append(raised.value)
        seen.append(len(pipe))
    client.close()
    return seen


async def _async_pipelines(url: str, p: str) -> list[Any]:
    client = aredis.Redis.from_url(url)
    seen: list[Any] = []
    async with client.pipeline(transaction=False) as pipe:
        pipe.set(f"{p}a", "1").incr(f"{p}a").lpush(f"{p}a", "x").get(f"{p}a").hgetall(f"{p}none")
        seen.append(await pipe.execute(raise_on_error=False))
        seen.append((len(pipe), pipe.watching))
    async with client.pipeline() as pipe:
        pipe.hset(f"{p}h", "f", 1).hgetall(f"{p}h").zadd(f"{p}z", {"m": 3}).zrange(f"{p}z", 0, -1, withscores=True)
        seen.append(await pipe.execute())
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(f"{p}a").hget(f"{p}a", "f")
        with pytest.raises(ResponseError) as raised:
            await pipe.execute()
        seen.append(raised.value)
        seen.append(len(pipe))
    await client.aclose()
    return seen


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_pipelines_and_transactions_replay_their_replies_and_errors(tmp_path: Path, prefix: str,
                                                                         use_async: bool) -> None:
    async def run(url: str) -> list[Any]:
        return await _async_pipelines(url, prefix) if use_async else _sync_pipelines(url, prefix)

    with recording(tmp_path) as recorded:
        live = await run(REDIS_URL)
    plain, state, transaction, raised, left = live
    assert plain[:2] == [True, 2] and type(plain[2]) is ResponseError and plain[3:] == [b"2", {}]
    assert "WRONGTYPE" in str(plain[2]) and state == (0, False)
    assert transaction == [1, {b"f": b"1"}, 1, [(b"m", 3.0)]]
    assert type(raised) is ResponseError and "Command # 2" in str(raised) and left == 0

    assert recorded.cassette is not None and recorded.path is not None
    pipelines = [i.request for i in recorded.cassette.interactions]
    assert [(r.method, r.operation) for r in pipelines] == [  # type: ignore[union-attr]
        ("pipeline", "PIPELINE"), ("transaction", "MULTI"), ("pipeline", "PIPELINE")]
    assert pipelines[0].arguments[0] == ["SET", f"{prefix}a", "1"]  # type: ignore[union-attr]

    with replaying(recorded.path):
        replayed = await run(_closed_url())
    _assert_same(replayed, live)
    assert replayed[2][3][0] == (b"m", 3.0)


def _sync_watch(url: str, p: str) -> list[Any]:
    client = redis.Redis.from_url(url)
    other = redis.Redis.from_url(url)
    seen: list[Any] = []
    with client.pipeline() as pipe:
        seen.append(pipe.watch(f"{p}w"))
        current = pipe.get(f"{p}w")  # sent at once: the pipeline is watching
        seen.append(current)
        pipe.multi()
        pipe.set(f"{p}w", int(current or 0) + 1).get(f"{p}w")
        seen.append(pipe.execute())
        seen.append((len(pipe), pipe.watching))
    with client.pipeline() as pipe:
        pipe.watch(f"{p}w")
        pipe.get(f"{p}w")
        other.set(f"{p}w", "changed by someone else")
        pipe.multi()
        pipe.set(f"{p}w", "mine")
        with pytest.raises(WatchError) as raised:
            pipe.execute()
        seen.append(raised.value)
        seen.append((len(pipe), pipe.watching))
    with client.pipeline() as pipe:
        pipe.watch(f"{p}w")
        seen.append(pipe.unwatch())
        seen.append(pipe.watching)
    seen.append(client.get(f"{p}w"))
    client.close()
    other.close()
    return seen


async def _async_watch(url: str, p: str) -> list[Any]:
    client = aredis.Redis.from_url(url)
    other = aredis.Redis.from_url(url)
    seen: list[Any] = []
    async with client.pipeline() as pipe:
        seen.append(await pipe.watch(f"{p}w"))
        current = await pipe.get(f"{p}w")
        seen.append(current)
        pipe.multi()
        pipe.set(f"{p}w", int(current or 0) + 1).get(f"{p}w")
        seen.append(await pipe.execute())
        seen.append((len(pipe), pipe.watching))
    async with client.pipeline() as pipe:
        await pipe.watch(f"{p}w")
        await pipe.get(f"{p}w")
        await other.set(f"{p}w", "changed by someone else")
        pipe.multi()
        pipe.set(f"{p}w", "mine")
        with pytest.raises(WatchError) as raised:
            await pipe.execute()
        seen.append(raised.value)
        seen.append((len(pipe), pipe.watching))
    async with client.pipeline() as pipe:
        await pipe.watch(f"{p}w")
        seen.append(await pipe.unwatch())
        seen.append(pipe.watching)
    seen.append(await client.get(f"{p}w"))
    await client.aclose()
    await other.aclose()
    return seen


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_watch_then_multi_exec_succeeds_or_raises_watch_error(tmp_path: Path, prefix: str,
                                                                    use_async: bool) -> None:
    async def run(url: str) -> list[Any]:
        return await _async_watch(url, prefix) if use_async else _sync_watch(url, prefix)

    with recording(tmp_path) as recorded:
        live = await run(REDIS_URL)
    assert live[:4] == [True, None, [True, b"1"], (0, False)]
    assert type(live[4]) is WatchError and live[5] == (0, False)
    assert live[6:] == [True, False, b"changed by someone else"]
    assert recorded.path is not None

    with replaying(recorded.path):
        replayed = await run(_closed_url())
    _assert_same(replayed, live)


# -- errors, mismatches ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_recorded_error_is_raised_again_as_redis_own_type(tmp_path: Path, prefix: str,
                                                                  use_async: bool) -> None:
    unknown_sha = "0" * 40

    async def run(url: str) -> list[Exception]:
        raised: list[Exception] = []
        if use_async:
            aclient = aredis.Redis.from_url(url)
            await aclient.set(f"{prefix}k", "text")
            for call in (lambda: aclient.lpush(f"{prefix}k", "x"), lambda: aclient.evalsha(unknown_sha, 0)):
                with pytest.raises(ResponseError) as araised:
                    await call()
                raised.append(araised.value)
            await aclient.aclose()
            return raised
        client = redis.Redis.from_url(url)
        client.set(f"{prefix}k", "text")
        for sync_call in (lambda: client.lpush(f"{prefix}k", "x"), lambda: client.evalsha(unknown_sha, 0)):
            with pytest.raises(ResponseError) as sraised:
                sync_call()
            raised.append(sraised.value)
        client.close()
        return raised

    with recording(tmp_path) as recorded:
        live = await run(REDIS_URL)
    wrongtype, noscript = live
    assert type(wrongtype) is ResponseError and str(wrongtype).startswith("WRONGTYPE")
    assert type(noscript) is NoScriptError and noscript.status_code == "NOSCRIPT"  # type: ignore[attr-defined]
    assert recorded.cassette is not None and recorded.path is not None
    errors = [i.error for i in recorded.cassette.interactions[1:]]
    assert [e.type for e in errors if e] == ["redis.exceptions.ResponseError", "redis.exceptions.NoScriptError"]
    assert errors[1] is not None and errors[1].details == {"status_code": "NOSCRIPT"}

    with replaying(recorded.path):
        replayed = await run(_closed_url())
    assert [(type(e), str(e), getattr(e, "status_code", None)) for e in replayed] == [
        (type(e), str(e), getattr(e, "status_code", None)) for e in live]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_changed_argument_is_a_mismatch_naming_it(tmp_path: Path, prefix: str, use_async: bool) -> None:
    async def run(url: str, value: str) -> None:
        if use_async:
            aclient = aredis.Redis.from_url(url)
            await aclient.set(f"{prefix}k", value, ex=60)
            await aclient.aclose()
        else:
            client = redis.Redis.from_url(url)
            client.set(f"{prefix}k", value, ex=60)
            client.close()

    with recording(tmp_path) as recorded:
        await run(REDIS_URL, "recorded")
    assert recorded.path is not None
    with replaying(recorded.path), pytest.raises(ReplayMismatchError) as raised:
        await run(_closed_url(), "changed")
    message = str(raised.value)
    assert "argument 2 differs" in message and '"recorded"' in message and '"changed"' in message


def test_a_changed_pipeline_names_the_command_and_argument(tmp_path: Path, prefix: str) -> None:
    def run(url: str, value: int) -> None:
        with redis.Redis.from_url(url).pipeline() as pipe:
            pipe.set(f"{prefix}a", 1).incrby(f"{prefix}a", value)
            pipe.execute()

    with recording(tmp_path) as recorded:
        run(REDIS_URL, 2)
    assert recorded.path is not None
    with replaying(recorded.path), pytest.raises(ReplayMismatchError, match=r"argument 2\[2\] differs"):
        run(_closed_url(), 3)


# -- connections -----------------------------------------------------------------------------------------------------


def test_a_single_connection_client_makes_no_connection_in_replay(tmp_path: Path, prefix: str) -> None:
    closed = _closed_url()
    with pytest.raises(RedisConnectionError):  # outside replay it connects in __init__
        redis.Redis.from_url(closed, single_connection_client=True)

    with recording(tmp_path) as recorded:
        client = redis.Redis.from_url(REDIS_URL, single_connection_client=True)
        live = [client.set(f"{prefix}k", "v"), client.get(f"{prefix}k")]
        client.close()
    assert recorded.path is not None
    with replaying(recorded.path):
        client = redis.Redis.from_url(closed, single_connection_client=True)
        replayed = [client.set(f"{prefix}k", "v"), client.get(f"{prefix}k")]
        assert client.connection is None
        client.close()
    assert replayed == live == [True, b"v"]


async def test_an_async_single_connection_client_makes_no_connection_in_replay(tmp_path: Path, prefix: str) -> None:
    closed = _closed_url()
    with pytest.raises(RedisConnectionError):  # outside replay, entering it connects
        async with aredis.Redis.from_url(closed, single_connection_client=True):
            pass

    async def run(url: str) -> list[Any]:
        async with aredis.Redis.from_url(url, single_connection_client=True) as client:
            return [await client.set(f"{prefix}k", "v"), await client.get(f"{prefix}k")]

    with recording(tmp_path) as recorded:
        live = await run(REDIS_URL)
    assert recorded.path is not None
    with replaying(recorded.path):
        replayed = await run(closed)
        awaited = await aredis.Redis.from_url(closed, single_connection_client=True)
        assert awaited.connection is None
    assert replayed == live == [True, b"v"]


def test_a_live_redis_plugin_talks_to_the_server_in_replay(tmp_path: Path, prefix: str) -> None:
    with recording(tmp_path) as recorded:
        client = redis.Redis.from_url(REDIS_URL)
        client.set(f"{prefix}k", "recorded")
        assert client.get(f"{prefix}k") == b"recorded"
    assert recorded.path is not None
    redis.Redis.from_url(REDIS_URL).set(f"{prefix}k", "changed since")

    with replaying(recorded.path, mocked_plugins=frozenset(OUTBOUND) - {"redis"}):
        assert client.get(f"{prefix}k") == b"changed since"
        assert client.set(f"{prefix}fresh", "new") is True  # never recorded: only a live call can answer
    assert redis.Redis.from_url(REDIS_URL).get(f"{prefix}fresh") == b"new"

    with replaying(recorded.path):  # and mocked, the cassette answers
        assert client.get(f"{prefix}k") == b"recorded"


def test_client_spans_still_appear_during_replay(tmp_path: Path, prefix: str) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    def run(url: str) -> None:
        client = redis.Redis.from_url(url)
        client.get(f"{prefix}k")
        with client.pipeline() as pipe:
            pipe.incr(f"{prefix}n").execute()

    with recording(tmp_path) as recorded:
        run(REDIS_URL)
    assert recorded.path is not None
    spans = InMemorySpanExporter()
    with replaying(recorded.path):
        trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(spans))  # type: ignore[attr-defined]
        run(_closed_url())
    spans.shutdown()
    client_spans = [s for s in spans.get_finished_spans() if s.kind is trace.SpanKind.CLIENT]
    assert [s.name for s in client_spans] == ["GET", "INCRBY"]  # the command, then the pipeline


# -- recording never breaks the app -------------------------------------------------------------------------------


def test_a_capture_failure_never_reaches_the_app(tmp_path: Path, prefix: str, monkeypatch: Any,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    import timetracer_otel.integrations.redis as integration

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("capture bug")

    client = redis.Redis.from_url(REDIS_URL)
    with caplog.at_level(logging.WARNING, logger="timetracer"), recording(tmp_path) as recorded:
        monkeypatch.setattr(integration, "_RedisCall", broken)  # fails on the app's thread
        assert client.hset(f"{prefix}h", mapping={"a": "1"}) == 1
        with client.pipeline() as pipe:
            assert pipe.hgetall(f"{prefix}h").execute() == [{b"a": b"1"}]
        monkeypatch.undo()
        monkeypatch.setattr(integration, "_encode", broken)  # fails on the writer thread
        assert client.hgetall(f"{prefix}h") == {b"a": b"1"}
        stats = recorder_stats()
    assert "could not record a redis call" in caplog.text
    assert stats is not None and stats.capture_errors == 1
    assert recorded.cassette is not None and recorded.cassette.interactions == ()


def test_lua_scripts_replay_alone_and_in_a_pipeline(tmp_path: Path, prefix: str) -> None:
    # A script text of this test's own, so the server has never cached it: NOSCRIPT, SCRIPT LOAD and the
    # pipeline's SCRIPT EXISTS all happen, and all replay.
    source = f"-- {prefix}\nreturn {{ARGV[1], redis.call('INCR', KEYS[1])}}"

    def run(url: str) -> list[Any]:
        client = redis.Redis.from_url(url)
        script = client.register_script(source)
        seen = [script(keys=[f"{prefix}n"], args=["alone"])]
        client.script_flush()
        with client.pipeline() as pipe:
            script(keys=[f"{prefix}n"], args=["piped"], client=pipe)
            seen.append(pipe.execute())
        client.close()
        return seen

    with recording(tmp_path) as recorded:
        live = run(REDIS_URL)
    assert live == [[b"alone", 1], [[b"piped", 2]]]
    assert recorded.cassette is not None and recorded.path is not None
    operations = [i.request.operation for i in recorded.cassette.interactions]  # type: ignore[union-attr]
    assert operations == ["EVALSHA", "SCRIPT LOAD", "EVALSHA", "SCRIPT FLUSH", "MULTI", "SCRIPT EXISTS",
                          "SCRIPT LOAD"]
    with replaying(recorded.path):
        assert run(_closed_url()) == live
