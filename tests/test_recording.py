"""Record-mode policies: exclusions, sampling, errors-only, compression, size caps, capacity, late work, fork."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http_upstream import Upstream, running_upstream
from timetracer_otel import Settings, TruncatedBodyError, load_cassette, recorder_stats
from timetracer_otel.cassette.files import iter_cassette_files
from timetracer_otel.runtime import Runtime, install, uninstall
from timetracer_otel.settings import Compression, Mode


def make_app(upstream: str) -> Any:
    from fastapi import FastAPI, HTTPException  # imported after install(): the instrumentor patches FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, object]:
        async with httpx.AsyncClient() as client:
            echo = await client.get(f"{upstream}/echo", params={"id": item_id})
        return {"id": item_id, "query": echo.json()["query"]}

    @app.get("/big")
    async def big() -> dict[str, object]:
        async with httpx.AsyncClient() as client:
            return {"size": len((await client.get(f"{upstream}/binary")).content)}

    @app.post("/keys")
    async def keys(payload: dict[str, int]) -> dict[str, int]:
        return {"keys": len(payload)}

    @app.get("/fail")
    async def fail() -> None:
        raise HTTPException(status_code=503, detail="down")

    @app.get("/crash")
    async def crash() -> None:
        raise ValueError("boom")

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(0.3)
        return {"slow": True}

    @app.get("/fire-and-forget")
    async def fire_and_forget(delay: float) -> dict[str, bool]:
        async def later() -> None:
            await asyncio.sleep(delay)
            async with httpx.AsyncClient() as client:
                await client.get(f"{upstream}/echo", params={"late": "yes"})

        app.state.task = asyncio.create_task(later())
        return {"scheduled": True}

    return app


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with running_upstream() as server:
        yield server


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    def _start(**overrides: Any) -> Runtime:
        return install(Settings(mode=Mode.RECORD, directory=tmp_path / "cassettes", **overrides))

    yield _start
    uninstall()


@pytest.fixture
async def client_for() -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def _client(app: Any) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                   base_url="http://app.test")
        clients.append(client)
        return client

    yield _client
    for client in clients:
        await client.aclose()


def written(runtime: Runtime, tmp_path: Path) -> list[Any]:
    assert runtime.recorder is not None and runtime.recorder.flush(10)
    directory = tmp_path / "cassettes"
    return [load_cassette(p) for p in iter_cassette_files(directory)] if directory.exists() else []


async def test_excluded_paths_are_not_recorded(start: Any, client_for: Any, upstream: str, tmp_path: Path) -> None:
    runtime = start()
    client = client_for(make_app(upstream))
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/items/1")).status_code == 200
    cassettes = written(runtime, tmp_path)
    assert [c.request.route for c in cassettes] == ["/items/{item_id}"]
    assert recorder_stats().excluded == 1  # type: ignore[union-attr]
    body = cassettes[0].request.body
    assert body is not None and body.complete and body.size == 0, "a GET without a body is complete"


@pytest.mark.parametrize(("rate", "expected"), [(0.0, 0), (1.0, 5)])
async def test_sample_rate(start: Any, client_for: Any, upstream: str, tmp_path: Path, rate: float,
                           expected: int) -> None:
    runtime = start(sample_rate=rate)
    client = client_for(make_app(upstream))
    answers = [await client.get(f"/items/{n}") for n in range(5)]
    assert [a.json()["id"] for a in answers] == list(range(5)), "sampling never changes the answers"
    assert len(written(runtime, tmp_path)) == expected
    assert recorder_stats().not_sampled == 5 - expected  # type: ignore[union-attr]


async def test_errors_only_keeps_server_errors_and_exceptions(start: Any, client_for: Any, upstream: str,
                                                              tmp_path: Path) -> None:
    runtime = start(errors_only=True)
    client = client_for(make_app(upstream))
    assert (await client.get("/items/1")).status_code == 200
    assert (await client.get("/fail")).status_code == 503
    assert (await client.get("/crash")).status_code == 500
    cassettes = {c.request.route: c for c in written(runtime, tmp_path)}
    assert set(cassettes) == {"/fail", "/crash"}
    crash = cassettes["/crash"]
    assert crash.error is not None and crash.error.type == "builtins.ValueError" and crash.error.message == "boom"
    assert crash.response is not None and crash.response.status == 500
    assert recorder_stats().skipped_not_error == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("compression", [Compression.GZIP, Compression.ZSTD])
async def test_compressed_cassettes(start: Any, client_for: Any, upstream: str, tmp_path: Path,
                                    compression: Compression) -> None:
    runtime = start(compression=compression)
    await client_for(make_app(upstream)).get("/items/7")
    [cassette] = written(runtime, tmp_path)
    [path] = iter_cassette_files(tmp_path / "cassettes")
    assert path.name.endswith({"gzip": ".json.gz", "zstd": ".json.zst"}[compression.value])
    assert cassette.interactions[0].request.url.endswith("/echo?id=7")


async def test_bodies_over_the_cap_are_flagged_and_refuse_to_replay(start: Any, client_for: Any, upstream: str,
                                                                     tmp_path: Path) -> None:
    runtime = start(max_body_bytes=100)
    assert (await client_for(make_app(upstream)).get("/big")).json() == {"size": 1024}, "the app got everything"
    [cassette] = written(runtime, tmp_path)
    body = cassette.interactions[0].response.body
    assert body.truncated and body.size == 1024 and len(body.data) == 100
    uninstall()
    from tests.http_upstream import replaying

    [path] = iter_cassette_files(tmp_path / "cassettes")
    with replaying(path), pytest.raises(TruncatedBodyError, match="1024 bytes but only 100 were stored"):
        httpx.get(f"{upstream}/binary")


async def test_over_capacity_requests_are_served_but_not_recorded(start: Any, client_for: Any, upstream: str,
                                                                   tmp_path: Path) -> None:
    runtime = start(max_pending_requests=1, quiet_period=0.5)
    client = client_for(make_app(upstream))
    slow, fast = await asyncio.gather(client.get("/slow"), client.get("/items/2"))
    assert slow.json() == {"slow": True} and fast.json()["id"] == 2
    assert recorder_stats().dropped_capacity == 1  # type: ignore[union-attr]
    assert len(written(runtime, tmp_path)) == 1


@pytest.mark.parametrize(("quiet_ms", "included"), [(1000, True), (10, False)])
async def test_work_after_the_response_is_kept_within_the_quiet_period(
    start: Any, client_for: Any, upstream: str, tmp_path: Path, quiet_ms: int, included: bool
) -> None:
    runtime = start(quiet_period=quiet_ms / 1000)
    app = make_app(upstream)
    assert (await client_for(app).get("/fire-and-forget?delay=0.2")).json() == {"scheduled": True}
    await app.state.task
    [cassette] = written(runtime, tmp_path)
    assert any("late=yes" in i.request.url for i in cassette.interactions) is included
    assert recorder_stats().late_calls == (0 if included else 1)  # type: ignore[union-attr]


FORK_SCRIPT = """
import asyncio, os, sys
import httpx
from timetracer_otel import Settings, install
from timetracer_otel.settings import Mode
runtime = install(Settings(mode=Mode.RECORD, directory=sys.argv[1]))
from fastapi import FastAPI
app = FastAPI()

@app.get("/pid")
async def pid():
    return {"pid": os.getpid()}

async def call():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return (await client.get("/pid")).json()

asyncio.run(call())  # the parent records once, which starts its writer thread
child = os.fork()
if child == 0:
    asyncio.run(call())
    runtime.recorder.shutdown()
    os._exit(0)
os.waitpid(child, 0)
runtime.recorder.shutdown()
"""


def test_recording_survives_fork(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", FORK_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    pids = {json.loads(p.read_text())["response"]["body"]["json"]["pid"] for p in iter_cassette_files(tmp_path)}
    assert len(pids) == 2, "the parent and the forked child each wrote their cassette"


async def test_written_requests_leave_no_reference_cycles(start: Any, client_for: Any, upstream: str,
                                                          tmp_path: Path) -> None:
    # A cycle would keep each request's captures alive into the collector's oldest generation, whose full
    # collections cost tens of milliseconds in a real app (docs/performance.md).
    from timetracer_otel.record.recording import BodyBuffer, RequestRecording

    runtime = start()
    client = client_for(make_app(upstream))
    assert (await client.post("/keys", json={"warm": 1})).json() == {"keys": 1}
    assert len(written(runtime, tmp_path)) == 1
    gc.collect()
    gc.disable()
    try:
        for n in range(5):
            assert (await client.post("/keys", json={str(k): k for k in range(n)})).json() == {"keys": n}
        assert len(written(runtime, tmp_path)) == 6
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage if isinstance(o, RequestRecording | BodyBuffer)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []


def test_byte_budget_is_released_and_late_chunks_are_not_kept() -> None:
    from timetracer_otel.record.recorder import RecorderStats
    from timetracer_otel.record.recording import BodyBuffer, ByteBudget, RequestRecording

    budget = ByteBudget()
    recording = RequestRecording(RecorderStats(), budget)
    buffer = BodyBuffer(limit=4, owner=recording)
    buffer.feed(b"abcdef")
    assert budget.used == 4 and buffer.to_body().truncated
    recording.finalized = True
    recording.release()
    buffer.feed(b"more")  # a stream still running after its request was written (hard timeout)
    assert budget.used == 0
    assert buffer.to_body().size == 6


async def test_buffered_bytes_bound_drops_requests_until_earlier_ones_are_written(
    start: Any, client_for: Any, upstream: str, tmp_path: Path
) -> None:
    runtime = start(max_buffered_bytes=100, quiet_period=0.3)
    client = client_for(make_app(upstream))
    assert (await client.get("/big")).json() == {"size": 1024}  # holds > 100 bytes until written
    assert (await client.get("/items/1")).status_code == 200, "a dropped request is still served"
    assert recorder_stats().dropped_capacity == 1  # type: ignore[union-attr]
    assert runtime.recorder.flush(10)
    assert runtime.recorder.budget.used == 0, "written requests release their bytes"
    assert (await client.get("/items/2")).status_code == 200
    assert [c.request.route for c in written(runtime, tmp_path)] == ["/big", "/items/{item_id}"]


class _Answered:
    """An inbound request the app answered (its response started) whose done-signal never came."""

    def __init__(self, status: int | None) -> None:
        self.status = status

    def request(self) -> Any:
        from timetracer_otel.record.captured import CapturedHttpRequest

        return CapturedHttpRequest("GET", "http://test/answered", ())

    def response(self) -> Any:
        from timetracer_otel.record.captured import CapturedHttpResponse

        return None if self.status is None else CapturedHttpResponse(self.status, ())


def test_shutdown_writes_answered_requests_whose_done_signal_never_came(tmp_path: Path) -> None:
    # A server stopped between sending a response and closing it (a WSGI server that has not called close()
    # yet): the request is written, marked incomplete, rather than lost. One the app never answered is not.
    runtime = install(Settings(mode=Mode.RECORD, directory=tmp_path))
    try:
        recorder = runtime.recorder
        assert recorder is not None
        answered, unanswered = recorder.admit("/answered"), recorder.admit("/unanswered")
        assert answered is not None and unanswered is not None
        answered.inbound, unanswered.inbound = _Answered(200), _Answered(None)
        recorder.shutdown()
    finally:
        uninstall()
    (path,) = iter_cassette_files(tmp_path)
    cassette = load_cassette(path)
    assert cassette.request is not None and cassette.request.url == "http://test/answered"
    assert cassette.metadata.incomplete is True
    assert cassette.response is not None and cassette.response.status == 200
