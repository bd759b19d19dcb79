"""aiohttp: record against a real server on 127.0.0.1, then replay with that server stopped."""

from __future__ import annotations

import gzip
import io
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import wrapt
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.http_upstream import (
    BINARY,
    CUSTOM_REASON,
    CUSTOM_STATUS,
    GZIP_DOCUMENT,
    STREAM_CHUNKS,
    Upstream,
    assert_only_in_the_session_cassette,
    closed_port,
    recording,
    replaying,
    running_upstream,
)
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.runtime import install, installed, uninstall
from timetracer_otel.settings import Mode, Settings

Snapshot = tuple[int, str | None, tuple[tuple[str, str], ...], bytes, str]
STREAMED = b"".join(STREAM_CHUNKS)


@pytest.fixture
def origin() -> Iterator[Upstream]:
    assert installed() is None
    with running_upstream() as upstream:
        yield upstream


async def _exact(response: aiohttp.ClientResponse) -> Snapshot:
    """Everything the app can see of a response."""
    body = await response.read()
    return (response.status, response.reason, tuple(response.headers.items()), body, str(response.url))


async def _comparable(response: aiohttp.ClientResponse) -> Snapshot:
    """What must not differ between two live calls: the Date, and the echo of per-call trace headers, may."""
    status, reason, headers, body, url = await _exact(response)
    headers = tuple((k, v) for k, v in headers if k.lower() != "date")
    if "/echo" in url:
        headers = tuple((k, v) for k, v in headers if k.lower() != "content-length")
        body = json.dumps({k: v for k, v in json.loads(body).items() if k != "headers"}).encode()
    return (status, reason, headers, body, url)


def _assert_stopped(upstream: Upstream) -> None:
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", upstream.port)) != 0, "the upstream server still answers"


async def _plain_calls(base: str, snapshot: Any = _exact) -> list[Any]:
    seen: list[Any] = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/echo", params={"q": "alpha"}) as response:
            seen.append(await snapshot(response))
            seen.append((await response.json())["query"])
        async with session.post(f"{base}/echo?q=post", json={"name": "ada", "tags": ["x", "y"]}) as response:
            seen.append(await snapshot(response))
        async with session.put(f"{base}/echo", data=b"\xff\xfe raw \x00 bytes") as response:
            seen.append(await snapshot(response))
            seen.append((await response.json())["body"])
        async with session.get(f"{base}/binary") as response:
            seen.append(await snapshot(response))
        async with session.get(f"{base}/gzip") as response:
            seen.append(await snapshot(response))
            seen.append(await response.json())
        async with session.get(f"{base}/stream") as response:
            seen.append(await snapshot(response))
            seen.append(await response.text())
        async with session.get(f"{base}/reason") as response:
            seen.append(await snapshot(response))
        async with session.get(f"{base}/error") as response:
            seen.append(await snapshot(response))
            with pytest.raises(aiohttp.ClientResponseError) as caught:
                response.raise_for_status()
            seen.append((caught.value.status, caught.value.message))
    return seen


async def test_plain_calls_round_trip(origin: Upstream, tmp_path: Path) -> None:
    baseline = await _plain_calls(origin, _comparable)

    with recording(tmp_path) as recorded:
        live = await _plain_calls(origin)
        compared = await _plain_calls(origin, _comparable)
    assert compared == baseline, "recording changed what the app received"

    cassette = recorded.cassette
    assert cassette is not None and recorded.path is not None
    interactions = cassette.interactions[:9]
    assert [i.library for i in interactions] == ["aiohttp"] * 9
    by_path = {urlsplit(i.request.url).path: i for i in interactions}
    binary = by_path["/binary"].response
    assert binary is not None and binary.body is not None and binary.body.data == BINARY
    gzipped = by_path["/gzip"].response
    assert gzipped is not None and gzipped.body is not None
    assert ("Content-Encoding", "gzip") in gzipped.headers
    assert gzipped.body.content_coding is None and json.loads(gzipped.body.data) == GZIP_DOCUMENT
    streamed = by_path["/stream"].response
    assert streamed is not None and streamed.body is not None
    assert streamed.body.data == STREAMED and streamed.body.complete
    reason = by_path["/reason"].response
    assert reason is not None and (reason.status, reason.reason) == (CUSTOM_STATUS, CUSTOM_REASON)
    posted = next(i for i in interactions if i.request.method == "POST")
    assert posted.request.body is not None
    assert json.loads(posted.request.body.data) == {"name": "ada", "tags": ["x", "y"]}

    origin.stop()
    _assert_stopped(origin)
    with replaying(recorded.path):
        replayed = await _plain_calls(origin)
    assert replayed == live
    assert replayed[1] == {"q": "alpha"}
    assert replayed[4] == "\ufffd\ufffd raw \x00 bytes"
    assert replayed[7] == GZIP_DOCUMENT
    assert replayed[9] == STREAMED.decode()
    assert replayed[-1] == (500, "Internal Server Error")


async def _streamed_calls(base: str) -> list[Any]:
    """Every way an app reads a response body as a stream; returns what it read."""
    seen: list[Any] = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/stream") as response:
            pieces = [piece async for piece in response.content.iter_chunked(5)]
            assert all(0 < len(piece) <= 5 for piece in pieces)
            seen.append(b"".join(pieces))
        async with session.get(f"{base}/stream") as response:
            seen.append([line async for line in response.content])
        async with session.get(f"{base}/stream") as response:
            seen.append(b"".join([piece async for piece in response.content.iter_any()]))
        async with session.get(f"{base}/stream") as response:
            seen.append(b"".join([data async for data, _ in response.content.iter_chunks()]))
        async with session.get(f"{base}/binary") as response:
            first = await response.content.readexactly(10)
            line = await response.content.readuntil(b"\x00")
            seen.append([first, line, await response.content.read(100), await response.content.read()])
        async with session.get(f"{base}/gzip") as response:
            seen.append(await response.content.read())
        async with session.get(f"{base}/binary") as response:
            seen.append(response.status)  # body never read
        async with session.get(f"{base}/binary") as response:
            seen.append(await response.content.read(300))  # part of the body only
    async with aiohttp.ClientSession(auto_decompress=False) as raw, raw.get(f"{base}/gzip") as response:
        seen.append(await response.read())  # undecoded: the gzip bytes as sent
    return seen


async def test_streamed_responses_round_trip(origin: Upstream, tmp_path: Path) -> None:
    baseline = await _streamed_calls(origin)
    assert baseline[1] == STREAM_CHUNKS
    assert json.loads(baseline[5]) == GZIP_DOCUMENT
    assert gzip.decompress(baseline[-1]) == baseline[5]

    with recording(tmp_path) as recorded:
        live = await _streamed_calls(origin)
    assert live == baseline

    assert recorded.cassette is not None and recorded.path is not None
    bodies = [i.response.body for i in recorded.cassette.interactions if i.response is not None]
    assert [b.data if b else None for b in bodies[:4]] == [STREAMED] * 4
    assert bodies[4] is not None and bodies[4].data == BINARY and bodies[4].complete
    assert bodies[6] is not None and bodies[6].data == b"" and not bodies[6].complete
    assert bodies[7] is not None and bodies[7].data == BINARY[:300] and not bodies[7].complete
    # A raw read got the gzip bytes; the cassette keeps them decoded, readable, like every other body.
    assert bodies[8] is not None and json.loads(bodies[8].data) == GZIP_DOCUMENT

    origin.stop()
    with replaying(recorded.path):
        replayed = await _streamed_calls(origin)
    # Undecoded bytes are re-encoded from the decoded body: the same content, not the same compression.
    assert gzip.decompress(replayed[-1]) == gzip.decompress(live[-1])
    assert replayed[:-1] == live[:-1]


async def test_redirects_and_cookies_replay(origin: Upstream, tmp_path: Path) -> None:
    async def calls() -> tuple[Any, ...]:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            async with session.get(f"{origin}/redirect") as redirected:
                query = (await redirected.json())["query"]
                history = [(r.status, r.headers["Location"]) for r in redirected.history]
            async with session.get(f"{origin}/cookies") as response:
                cookies = sorted((name, morsel.value) for name, morsel in response.cookies.items())
            async with session.get(f"{origin}/echo") as echoed:
                sent = (await echoed.json())["headers"].get("cookie")
            return (str(redirected.url), history, query, cookies, sent)

    with recording(tmp_path) as recorded:
        live = await calls()
    assert live[1] == [(302, "/echo?redirected=yes")]
    assert live[3] == [("alpha", "1"), ("beta", "2")]
    assert live[4] is not None and "alpha=1" in live[4]
    assert recorded.cassette is not None and len(recorded.cassette.interactions) == 4, "one call per hop"

    origin.stop()
    assert recorded.path is not None
    with replaying(recorded.path):
        assert await calls() == live


async def test_streamed_uploads_are_recorded_as_sent(origin: Upstream, tmp_path: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"one,", b"two,", b"three"):
            yield chunk

    async def calls() -> list[Any]:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{origin}/echo", data=chunks()) as generated:
                seen = [(await generated.json())["body"]]
            async with session.post(f"{origin}/echo", data=io.BytesIO(b"file body " * 100)) as from_file:
                seen.append((await from_file.json())["body"])
            form = aiohttp.FormData()
            form.add_field("title", "photo")
            form.add_field("upload", BINARY[:64], filename="p.bin", content_type="application/octet-stream")
            async with session.post(f"{origin}/echo", data=form) as multipart:
                seen.append(len((await multipart.json())["body"]) > 64)
            return seen

    with recording(tmp_path) as recorded:
        live = await calls()
    assert live == ["one,two,three", "file body " * 100, True]
    assert recorded.cassette is not None and recorded.path is not None
    sent = [i.request.body for i in recorded.cassette.interactions]
    assert sent[0] is not None and sent[0].data == b"one,two,three" and sent[0].complete
    assert sent[1] is not None and sent[1].data == b"file body " * 100
    assert sent[2] is not None and b'name="title"' in sent[2].data

    origin.stop()
    with replaying(recorded.path):
        assert await calls() == live  # a new multipart boundary still matches


async def test_recorded_exceptions_are_raised_again(origin: Upstream, tmp_path: Path) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/nothing"

    async def calls() -> list[tuple[type[BaseException], str]]:
        raised: list[tuple[type[BaseException], str]] = []
        attempts: list[tuple[str, aiohttp.ClientTimeout]] = [
            (f"{origin}/slow?delay=1", aiohttp.ClientTimeout(sock_read=0.2)),
            (f"{origin}/slow?delay=1", aiohttp.ClientTimeout(total=0.2)),
            (refused, aiohttp.ClientTimeout(total=5)),
        ]
        async with aiohttp.ClientSession() as session:
            for url, timeout in attempts:
                with pytest.raises(Exception) as caught:  # the type is what is compared
                    async with session.get(url, timeout=timeout):
                        pass
                raised.append((type(caught.value), str(caught.value)))
        return raised

    with recording(tmp_path) as recorded:
        live = await calls()
    assert [kind for kind, _ in live] == [
        aiohttp.SocketTimeoutError,
        TimeoutError,
        aiohttp.ClientConnectorError,
    ]
    assert recorded.cassette is not None and recorded.path is not None
    errors = [i.error for i in recorded.cassette.interactions]
    assert [e.type if e else None for e in errors] == [
        "aiohttp.client_exceptions.SocketTimeoutError",
        "builtins.TimeoutError",
        "aiohttp.client_exceptions.ClientConnectorError",
    ]

    origin.stop()
    with replaying(recorded.path):
        assert await calls() == live


async def test_a_different_query_is_a_mismatch(origin: Upstream, tmp_path: Path) -> None:
    with recording(tmp_path) as recorded:
        async with aiohttp.ClientSession() as session, session.get(f"{origin}/echo?q=alpha") as response:
            await response.read()
    origin.stop()
    assert recorded.path is not None
    with replaying(recorded.path):
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ReplayMismatchError) as caught:
                await session.get(f"{origin}/echo", params={"q": "BETA"})
    message = str(caught.value)
    assert "query differs" in message
    assert "q=alpha" in message and "q=BETA" in message


async def test_opentelemetry_client_spans_in_record_and_replay(origin: Upstream, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()

    async def call() -> list[tuple[str, Any]]:
        exporter.clear()
        async with aiohttp.ClientSession() as session, session.get(f"{origin}/binary") as response:
            await response.read()
        spans = [s for s in exporter.get_finished_spans() if s.kind is trace.SpanKind.CLIENT]
        return [(s.name, _status_attribute(s.attributes or {})) for s in spans]

    try:
        with recording(tmp_path) as recorded:
            provider = trace.get_tracer_provider()
            assert isinstance(provider, TracerProvider)  # the global one: every later install uses it too
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            recorded_spans = await call()
            span_ids = [s.context.span_id for s in exporter.get_finished_spans() if s.context]
        assert recorded_spans == [("GET", 200)]
        assert recorded.cassette is not None and recorded.path is not None
        interaction = recorded.cassette.interactions[0]
        assert interaction.span_id is not None and int(interaction.span_id, 16) in span_ids

        origin.stop()
        with replaying(recorded.path):
            assert await call() == recorded_spans
    finally:
        exporter.shutdown()


def _status_attribute(attributes: Any) -> Any:
    return attributes.get("http.response.status_code", attributes.get("http.status_code"))


async def test_calls_outside_a_request_pass_through_into_the_session_cassette(origin: Upstream, tmp_path: Path) -> None:
    install(Settings(mode=Mode.RECORD, directory=tmp_path))
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{origin}/binary") as response:
            assert await response.read() == BINARY
    finally:
        uninstall()
    assert_only_in_the_session_cassette(tmp_path, f"{origin}/binary")


def test_uninstall_removes_the_patch(tmp_path: Path) -> None:
    def patched() -> bool:
        return isinstance(aiohttp.ClientSession.__dict__["_request"], wrapt.FunctionWrapper)

    assert not patched()
    install(Settings(mode=Mode.RECORD, directory=tmp_path))
    try:
        assert patched()
    finally:
        uninstall()
    assert not patched()


async def test_a_body_read_only_partly_replays_that_far_and_no_further(origin: Upstream, tmp_path: Path) -> None:
    from timetracer_otel import IncompleteBodyError

    url = f"{origin}/stream"

    async def first_chunk() -> bytes:
        """Read what has arrived of a streamed body, then release the response without reading on."""
        async with aiohttp.ClientSession() as session:
            response = await session.get(url)
            chunk = await response.content.readany()
            response.release()
            return chunk

    with recording(tmp_path) as recorded:
        first = await first_chunk()
    origin.stop()
    assert first and STREAMED.startswith(first) and len(first) < len(STREAMED)
    body = recorded.only_response_body()
    assert body.data == first and not body.complete and not body.truncated
    assert recorded.path is not None

    with replaying(recorded.path):
        assert await first_chunk() == first
    with replaying(recorded.path):
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert await response.content.readexactly(len(first)) == first
    with replaying(recorded.path):
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert await response.content.readline() == first.split(b"\n")[0] + b"\n"

    with replaying(recorded.path):
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            with pytest.raises(IncompleteBodyError) as caught:
                await response.read()
    assert caught.value.recorded_bytes == len(first) and caught.value.call == f"GET {url}"
    seen: list[bytes] = []
    with replaying(recorded.path):
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            with pytest.raises(IncompleteBodyError):
                async for chunk in response.content.iter_any():
                    seen.append(chunk)
    assert seen == [first], "the recorded bytes arrive before the error"
    with replaying(recorded.path):
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert await response.content.read(len(first)) == first
            with pytest.raises(IncompleteBodyError):
                await response.content.read(1)
