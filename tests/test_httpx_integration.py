"""httpx, sync and async, recorded against a real server on 127.0.0.1 and replayed with it stopped."""

from __future__ import annotations

import gzip
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
import wrapt

from tests.http_upstream import (
    BINARY,
    GZIP_DOCUMENT,
    STREAM_CHUNKS,
    closed_port,
    recording,
    replaying,
    running_upstream,
)
from timetracer_otel import recorder_stats
from timetracer_otel.errors import NetworkBlockedError, ReplayMismatchError
from timetracer_otel.runtime import installed

Seen = tuple[int, str, list[tuple[str, str]], bytes]


def _seen(response: httpx.Response) -> Seen:
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "date"]
    return response.status_code, response.reason_phrase, headers, response.content


def _without_trace_header(seen: list[Seen]) -> list[object]:
    """The echo shows request headers; OTel's httpx instrumentation adds traceparent when it is installed."""
    echo = json.loads(seen[0][3])
    echo["headers"].pop("traceparent", None)
    return [echo, *seen[1:]]


def _sync_calls(base: str) -> list[Seen]:
    with httpx.Client(base_url=base, timeout=5) as client:
        seen = [_seen(client.post("/echo?q=alpha", json={"b": 1, "a": [1, 2]}))]
        seen += [_seen(client.get(path)) for path in ("/binary", "/gzip", "/reason", "/error", "/cookies")]
        with client.stream("GET", "/stream") as response:
            body = b"".join(response.iter_bytes())
        seen.append((response.status_code, response.reason_phrase, [], body))
    return seen


async def _async_calls(base: str) -> list[Seen]:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        seen = [_seen(await client.post("/echo?q=alpha", json={"b": 1, "a": [1, 2]}))]
        for path in ("/binary", "/gzip", "/reason", "/error", "/cookies"):
            seen.append(_seen(await client.get(path)))
        async with client.stream("GET", "/stream") as response:
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
        seen.append((response.status_code, response.reason_phrase, [], body))
    return seen


def _check_recorded(seen: list[Seen]) -> None:
    status = [s[0] for s in seen]
    assert status == [200, 200, 200, 299, 500, 200, 200]
    assert json.loads(seen[0][3])["query"] == {"q": "alpha"}
    assert seen[1][3] == BINARY
    assert json.loads(seen[2][3]) == GZIP_DOCUMENT
    assert seen[3][1] == "Custom Reason Here"
    assert [v for k, v in seen[5][2] if k == "set-cookie"] == ["alpha=1; Path=/", "beta=2; Path=/"]
    assert seen[6][3] == b"".join(STREAM_CHUNKS)


def test_sync_client_round_trip(tmp_path: Path) -> None:
    with running_upstream() as upstream:
        plain = _sync_calls(upstream)
        with recording(tmp_path) as recorded:
            seen = _sync_calls(upstream)
    _check_recorded(seen)
    assert _without_trace_header(seen) == _without_trace_header(plain), "recording changed what the app got"
    assert recorded.cassette is not None
    libraries = {i.library for i in recorded.cassette.interactions}
    assert libraries == {"httpx"} and len(recorded.cassette.interactions) == 7
    gz = recorded.cassette.interactions[2].response
    assert gz is not None and gz.body is not None and json.loads(gz.body.data) == GZIP_DOCUMENT, "stored decoded"
    assert recorded.path is not None
    with replaying(recorded.path):
        assert _sync_calls(upstream) == seen  # upstream is stopped


async def test_async_client_round_trip(tmp_path: Path) -> None:
    with running_upstream() as upstream, recording(tmp_path) as recorded:
        seen = await _async_calls(upstream)
    _check_recorded(seen)
    assert recorded.path is not None
    with replaying(recorded.path):
        assert await _async_calls(upstream) == seen


def test_gzip_body_is_re_encoded_so_raw_readers_still_decode(tmp_path: Path) -> None:
    with (
        running_upstream() as upstream,
        recording(tmp_path) as recorded,
        httpx.Client() as client,
        client.stream("GET", upstream.url("/gzip")) as live,
    ):
        raw = b"".join(live.iter_raw())
    assert recorded.path is not None
    with replaying(recorded.path), httpx.Client() as client, client.stream("GET", upstream.url("/gzip")) as replayed:
        assert replayed.headers["content-encoding"] == "gzip"
        assert gzip.decompress(b"".join(replayed.iter_raw())) == gzip.decompress(raw)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_recorded_errors_are_raised_again_as_the_same_type(tmp_path: Path, use_async: bool) -> None:
    async def call(url: str, timeout: float) -> Any:
        if use_async:
            async with httpx.AsyncClient(timeout=timeout) as client:
                return await client.get(url)
        with httpx.Client(timeout=timeout) as client:
            return client.get(url)

    refused = f"http://127.0.0.1:{closed_port()}/nothing"
    with running_upstream() as upstream:
        slow = upstream.url("/slow?delay=1")
        with recording(tmp_path) as recorded:
            with pytest.raises(httpx.ConnectError) as connect_error:
                await call(refused, 2)
            with pytest.raises(httpx.ReadTimeout):
                await call(slow, 0.1)
    assert recorded.cassette is not None
    assert [i.error.type for i in recorded.cassette.interactions if i.error] == [
        "httpx.ConnectError", "httpx.ReadTimeout"]
    assert recorded.path is not None
    with replaying(recorded.path):
        with pytest.raises(httpx.ConnectError, match=re.escape(str(connect_error.value))) as replayed:
            await call(refused, 2)
        assert replayed.value.request.url == refused
        with pytest.raises(httpx.ReadTimeout):
            await call(slow, 0.1)


def test_a_changed_query_is_a_miss_that_explains_itself(tmp_path: Path) -> None:
    with running_upstream() as upstream, recording(tmp_path) as recorded:
        httpx.get(upstream.url("/echo?q=alpha"))
    assert recorded.path is not None
    with replaying(recorded.path), pytest.raises(ReplayMismatchError) as miss:
        httpx.get(upstream.url("/echo?q=BETA"))
    assert "query differs: recorded q=alpha, got q=BETA" in str(miss.value)


async def test_gather_in_reversed_order_gets_each_call_its_own_answer(tmp_path: Path) -> None:
    import asyncio

    paths = [f"/echo?n={n}" for n in range(6)]
    with running_upstream() as upstream, recording(tmp_path) as recorded:
        async with httpx.AsyncClient(base_url=upstream) as client:
            live = await asyncio.gather(*(client.get(p) for p in paths))
    assert recorded.path is not None
    with replaying(recorded.path):
        async with httpx.AsyncClient(base_url=upstream) as client:
            replayed = await asyncio.gather(*(client.get(p) for p in reversed(paths)))
    assert [r.json()["query"] for r in reversed(replayed)] == [r.json()["query"] for r in live]


def test_live_plugin_talks_to_the_server_during_replay(tmp_path: Path) -> None:
    with running_upstream() as upstream:
        with recording(tmp_path) as recorded:
            httpx.get(upstream.url("/echo?q=recorded"))
        assert recorded.path is not None
        with replaying(recorded.path, mocked_plugins=frozenset({"requests", "aiohttp"})):
            response = httpx.get(upstream.url("/echo?q=never-recorded"))
    assert response.json()["query"] == {"q": "never-recorded"}


def test_replay_blocks_unrecorded_network_access(tmp_path: Path) -> None:
    with running_upstream() as upstream, recording(tmp_path) as recorded:
        httpx.get(upstream.url("/echo"))
    assert recorded.path is not None
    with replaying(recorded.path), pytest.raises(NetworkBlockedError, match=r"192\.0\.2\.10:80"):
        urllib.request.urlopen("http://192.0.2.10/", timeout=1)


def test_a_capture_failure_is_counted_and_never_reaches_the_app(tmp_path: Path, monkeypatch: Any) -> None:
    import timetracer_otel.integrations.httpx as integration

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("capture bug")

    with running_upstream() as upstream, recording(tmp_path) as recorded:
        monkeypatch.setattr(integration, "CapturedHttpRequest", broken)
        assert httpx.get(upstream.url("/echo?q=1")).json()["query"] == {"q": "1"}
        stats = recorder_stats()
    assert stats is not None and stats.capture_errors == 1
    assert recorded.cassette is not None and recorded.cassette.interactions == ()


def _our_wrappers(function: Any) -> list[Any]:
    """The timetracer integrations whose wrappers are in ``function``'s chain of wrapt wrappers."""
    from timetracer_otel.integrations._base import Integration

    found = []
    while isinstance(function, wrapt.FunctionWrapper):
        owner = getattr(function._self_wrapper, "__self__", None)
        if isinstance(owner, Integration):
            found.append(owner)
        function = function.__wrapped__
    return found


def test_uninstall_leaves_no_active_patch_and_reinstall_does_not_stack(tmp_path: Path) -> None:
    from timetracer_otel._context import attach_request_state
    from timetracer_otel.record.recorder import RecorderStats
    from timetracer_otel.record.recording import ByteBudget, RequestRecording

    for _ in range(2):
        with running_upstream() as upstream, recording(tmp_path / str(_)):
            httpx.get(upstream.url("/echo"))
    assert installed() is None
    for attribute in (httpx.HTTPTransport.__dict__["handle_request"],
                      httpx.AsyncHTTPTransport.__dict__["handle_async_request"]):
        integrations = _our_wrappers(attribute)
        assert len(integrations) <= 1, "installing again must reuse the wrapper, not stack another"
        assert not any(i.active for i in integrations)

    orphan = RequestRecording(RecorderStats(), ByteBudget())
    from opentelemetry import context as otel_context

    token = attach_request_state(orphan)
    try:
        with running_upstream() as upstream:
            httpx.get(upstream.url("/echo"))
    finally:
        otel_context.detach(token)  # type: ignore[arg-type]
    assert orphan.calls == [], "an uninstalled integration captures nothing"



def test_client_spans_still_appear_during_replay(tmp_path: Path) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    with running_upstream() as upstream, recording(tmp_path) as recorded:
        httpx.get(upstream.url("/echo?q=span"))
    assert recorded.path is not None
    spans = InMemorySpanExporter()
    with replaying(recorded.path):
        trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(spans))  # type: ignore[attr-defined]
        httpx.get(upstream.url("/echo?q=span"))
    spans.shutdown()  # the processor stays on the process-wide provider; make it inert
    client_spans = [s for s in spans.get_finished_spans() if s.kind is trace.SpanKind.CLIENT]
    assert [s.name for s in client_spans] == ["GET"]
    assert client_spans[0].attributes["http.status_code"] == 200  # type: ignore[index]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_redirects_are_followed_and_each_hop_recorded(tmp_path: Path, use_async: bool) -> None:
    async def call(base: str) -> httpx.Response:
        if use_async:
            async with httpx.AsyncClient(follow_redirects=True) as client:
                return await client.post(f"{base}/redirect", content=b"payload")
        with httpx.Client(follow_redirects=True) as client:
            return client.post(f"{base}/redirect", content=b"payload")

    with running_upstream() as upstream, recording(tmp_path) as recorded:
        live = await call(upstream)
    assert live.json()["query"] == {"redirected": "yes"}
    assert recorded.cassette is not None
    assert [i.response.status for i in recorded.cassette.interactions] == [302, 200]  # type: ignore[union-attr]
    assert recorded.path is not None
    with replaying(recorded.path):
        replayed = await call(upstream)
    assert replayed.json() == live.json() and len(replayed.history) == 1


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_body_read_only_partly_replays_that_far_and_no_further(tmp_path: Path, use_async: bool) -> None:
    from timetracer_otel import IncompleteBodyError

    async def first_chunk(url: str) -> bytes:
        """Read the first chunk of a streamed body, then close the response without reading on."""
        if use_async:
            async with httpx.AsyncClient() as client, client.stream("GET", url) as response:
                async for chunk in response.aiter_bytes():
                    return chunk
        else:
            with httpx.Client() as client, client.stream("GET", url) as response:
                for chunk in response.iter_bytes():
                    return chunk
        raise AssertionError("no chunk")

    async def everything(url: str) -> bytes:
        if use_async:
            async with httpx.AsyncClient() as client:
                return (await client.get(url)).content
        with httpx.Client() as client:
            return client.get(url).content

    async def to_the_end(url: str, seen: list[bytes]) -> None:
        if use_async:
            async with httpx.AsyncClient() as client, client.stream("GET", url) as response:
                async for chunk in response.aiter_bytes():
                    seen.append(chunk)
        else:
            with httpx.Client() as client, client.stream("GET", url) as response:
                for chunk in response.iter_bytes():
                    seen.append(chunk)

    with running_upstream() as upstream:
        url = upstream.url("/stream")
        with recording(tmp_path) as recorded:
            first = await first_chunk(url)
        upstream.stop()
    assert first and b"".join(STREAM_CHUNKS).startswith(first) and len(first) < len(b"".join(STREAM_CHUNKS))
    body = recorded.only_response_body()
    assert body.data == first and not body.complete and not body.truncated
    assert recorded.path is not None

    with replaying(recorded.path):
        assert await first_chunk(url) == first
    with replaying(recorded.path), pytest.raises(IncompleteBodyError) as caught:
        await everything(url)
    assert caught.value.recorded_bytes == len(first)
    assert caught.value.call == f"GET {url}"
    assert f"holds only the first {len(first)} bytes" in str(caught.value)
    seen: list[bytes] = []
    with replaying(recorded.path), pytest.raises(IncompleteBodyError):
        await to_the_end(url, seen)
    assert seen == [first], "the recorded bytes arrive before the error"
