"""redis-py's RedisCluster, sync and asyncio: recorded against a real 3-master cluster started for this module, then
replayed with the client's startup node on a closed port, so any discovery or command reaching the network would
fail; the app-visible values are compared with their exact types."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio.cluster as acluster
import redis.cluster as scluster
from redis.exceptions import ResponseError

from tests.http_upstream import closed_port, recording, replaying
from tests.test_redis_integration import _assert_same
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.integrations.registry import OUTBOUND


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free too."""
    ports: list[int] = []
    port = 21000 + uuid.uuid4().int % 20000
    while len(ports) < count:
        port = 21000 + (port - 21000 + 7) % 20000
        if port not in ports and _port_is_free(port) and _port_is_free(port + 10000):
            ports.append(port)
    return ports


def _cluster_ok(port: int) -> bool:
    info = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "cluster", "info"],
                          capture_output=True, text=True, check=False).stdout
    return "cluster_state:ok" in info


@pytest.fixture(scope="module")
def cluster_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private 3-master cluster on 127.0.0.1; yields one node's port. The servers are stopped by PID."""
    directory = tmp_path_factory.mktemp("redis-cluster")
    ports = _cluster_ports(3)
    servers = [
        subprocess.Popen(
            ["redis-server", "--port", str(port), "--cluster-enabled", "yes",
             "--cluster-config-file", str(directory / f"nodes-{port}.conf"), "--dir", str(directory),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in ports
    ]
    try:
        for port in ports:
            deadline = time.monotonic() + 10
            while _port_is_free(port):
                assert time.monotonic() < deadline, f"redis-server on {port} did not start"
                time.sleep(0.05)
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{port}" for port in ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while not all(_cluster_ok(port) for port in ports):
            assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok"
            time.sleep(0.1)
        yield ports[0]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(10)


@pytest.fixture
def prefix() -> str:
    return f"tt:{uuid.uuid4().hex[:10]}:"


def _url(port: int) -> str:
    return f"redis://127.0.0.1:{port}"


def _keys(p: str) -> list[str]:
    return [f"{p}{name}" for name in ("a", "b", "c", "d", "e", "f")]


# -- the app code, sync and async ---------------------------------------------------------------------------------


def _sync_app(url: str, p: str, decode: bool) -> list[Any]:
    client = scluster.RedisCluster.from_url(url, decode_responses=decode)
    a, b, c, d, e, f = _keys(p)
    seen: list[Any] = [
        client.set(a, "héllo"), client.get(a), client.incr(b, 5), client.incrbyfloat(c, 1.25), client.get(f"{p}no"),
        client.hset(d, mapping={"x": 1, "y": "z"}), client.hgetall(d),
        client.sadd(e, "m", "n"), client.smembers(e),
        client.zadd(f, {"m": 1.5, "n": 2}), client.zrange(f, 0, -1, withscores=True),
        client.mget_nonatomic(a, b, f"{p}no"), client.exists(a, b, c, f"{p}no"),
    ]
    pipe = client.pipeline()
    pipe.set(f"{p}pipe1", b"raw\x00").get(f"{p}pipe1").incr(b).hgetall(d)
    seen.append(pipe.execute())
    seen.append(client.delete(a, c))
    client.close()
    return seen


async def _async_app(url: str, p: str, decode: bool) -> list[Any]:
    client = acluster.RedisCluster.from_url(url, decode_responses=decode)
    a, b, c, d, e, f = _keys(p)
    seen: list[Any] = [
        await client.set(a, "héllo"), await client.get(a), await client.incr(b, 5),
        await client.incrbyfloat(c, 1.25), await client.get(f"{p}no"),
        await client.hset(d, mapping={"x": 1, "y": "z"}), await client.hgetall(d),
        await client.sadd(e, "m", "n"), await client.smembers(e),
        await client.zadd(f, {"m": 1.5, "n": 2}), await client.zrange(f, 0, -1, withscores=True),
        await client.mget_nonatomic(a, b, f"{p}no"), await client.exists(a, b, c, f"{p}no"),
    ]
    pipe = client.pipeline()
    pipe.set(f"{p}pipe1", b"raw\x00").get(f"{p}pipe1").incr(b).hgetall(d)
    seen.append(await pipe.execute())
    seen.append(await client.delete(a, c))
    await client.aclose()
    return seen


async def _app(use_async: bool, url: str, p: str, decode: bool) -> list[Any]:
    return await _async_app(url, p, decode) if use_async else _sync_app(url, p, decode)


# -- tests ----------------------------------------------------------------------------------------------------------


def test_the_keys_live_on_several_masters(cluster_port: int, prefix: str) -> None:
    """The premise of the other tests: their keys are answered by different nodes."""
    client = scluster.RedisCluster.from_url(_url(cluster_port))
    try:
        assert len(client.get_primaries()) == 3
        assert len({client.get_node_from_key(key).name for key in _keys(prefix)}) >= 2
    finally:
        client.close()


@pytest.mark.parametrize("decode", [False, True], ids=["bytes", "decoded"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_cluster_replies_round_trip_with_no_connection(tmp_path: Path, cluster_port: int, prefix: str,
                                                             use_async: bool, decode: bool) -> None:
    with recording(tmp_path) as recorded:
        live = await _app(use_async, _url(cluster_port), prefix, decode)
    text = str if decode else bytes
    assert type(live[1]) is text and live[2] == 5 and type(live[3]) is float and live[4] is None
    assert type(live[6]) is dict and type(live[8]) is set and type(live[10][0]) is tuple
    assert live[11][2] is None and live[12] == 3 and live[-1] == 2
    assert live[13] == [True, "raw\x00" if decode else b"raw\x00", 6, live[6]] and type(live[13][1]) is text
    assert recorded.cassette is not None and recorded.path is not None
    interactions = recorded.cassette.interactions
    operations = [i.request.operation for i in interactions]  # type: ignore[union-attr]
    # Discovery (CLUSTER SLOTS), the COMMAND table and node-level retries are not the app's calls.
    assert not {"CLUSTER SLOTS", "CLUSTER SHARDS", "COMMAND", "COMMAND GETKEYS", "READONLY"} & set(operations)
    assert all(i.kind == "redis" for i in interactions)
    assert operations[:3] == ["SET", "GET", "INCRBY"] and "PIPELINE" in operations

    # Replay: the startup node is a closed port; a connection attempt or discovery would raise.
    with replaying(recorded.path):
        replayed = await _app(use_async, _url(closed_port()), prefix, decode)
    _assert_same(replayed, live)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_changed_cluster_argument_is_a_mismatch(tmp_path: Path, cluster_port: int, prefix: str,
                                                        use_async: bool) -> None:
    key = f"{prefix}k"
    with recording(tmp_path) as recorded:
        if use_async:
            client = acluster.RedisCluster.from_url(_url(cluster_port))
            await client.set(key, "recorded")
            await client.aclose()
        else:
            scluster.RedisCluster.from_url(_url(cluster_port)).set(key, "recorded")
    assert recorded.path is not None
    with replaying(recorded.path), pytest.raises(ReplayMismatchError) as raised:
        if use_async:
            client = await acluster.RedisCluster(host="127.0.0.1", port=closed_port())  # initialize(): no discovery
            assert [node.port for node in client.get_primaries()] == [client.get_default_node().port]
            await client.set(key, "changed")
        else:
            with scluster.RedisCluster(host="127.0.0.1", port=closed_port()) as client:  # __init__: no discovery
                client.set(key, "changed")
    assert "argument 2 differs" in str(raised.value) and "changed" in str(raised.value)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_recorded_cluster_errors_are_raised_again(tmp_path: Path, cluster_port: int, prefix: str,
                                                        use_async: bool) -> None:
    """A command error and a pipeline's error replies, kept in place or raised first, come back as redis' types."""
    text, listed = f"{prefix}text", f"{prefix}list"

    async def app(url: str) -> list[Any]:
        seen: list[Any] = []
        client: Any = acluster.RedisCluster.from_url(url) if use_async else scluster.RedisCluster.from_url(url)

        async def run(value: Any) -> Any:
            return await value if use_async else value

        await run(client.set(text, "not a number"))
        try:
            await run(client.incr(text))
        except ResponseError as exc:
            seen.append(exc)
        pipe = client.pipeline()
        pipe.incr(text).rpush(listed, "x").lpush(text, "y")
        seen.append(await run(pipe.execute(raise_on_error=False)))
        pipe = client.pipeline()
        pipe.get(text).incr(text)
        try:
            await run(pipe.execute())
        except ResponseError as exc:
            seen.append(exc)
        if use_async:
            await client.aclose()
        else:
            client.close()
        return seen

    with recording(tmp_path) as recorded:
        live = await app(_url(cluster_port))
    assert [type(v) for v in live] == [ResponseError, list, ResponseError]
    assert type(live[1][0]) is ResponseError and live[1][1] == 1 and "WRONGTYPE" in str(live[1][2])
    assert str(live[2]).startswith("Command # 2 (INCRBY")
    assert recorded.path is not None
    with replaying(recorded.path):
        replayed = await app(_url(closed_port()))
    _assert_same(replayed, live)


def test_a_live_redis_plugin_talks_to_the_cluster_in_replay(tmp_path: Path, cluster_port: int, prefix: str) -> None:
    key = f"{prefix}live"
    with recording(tmp_path) as recorded:
        client = scluster.RedisCluster.from_url(_url(cluster_port))
        client.set(key, "recorded")
        client.close()
    assert recorded.path is not None
    with replaying(recorded.path, mocked_plugins=frozenset(OUTBOUND) - {"redis"}):
        client = scluster.RedisCluster.from_url(_url(cluster_port))
        assert client.set(key, "live") is True  # not recorded: only a live call can answer it
        assert len(client.get_primaries()) == 3  # discovery ran for real
        client.close()
    check = scluster.RedisCluster.from_url(_url(cluster_port))
    assert check.get(key) == b"live"
    check.close()
