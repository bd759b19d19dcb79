"""requests: record against a real server on 127.0.0.1, then replay with that server stopped."""

from __future__ import annotations

import gzip
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import wrapt
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

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
from timetracer_otel.cassette.model import Body, Interaction
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.runtime import install, installed, uninstall
from timetracer_otel.settings import Mode, Settings

Snapshot = tuple[int, str, tuple[tuple[str, str], ...], bytes, str]


@pytest.fixture
def origin() -> Iterator[Upstream]:
    assert installed() is None
    with running_upstream() as upstream:
        yield upstream


def _exact(response: requests.Response) -> Snapshot:
    """Everything the app can see of a response."""
    return (
        response.status_code,
        response.reason,
        tuple(response.headers.items()),
        response.content,
        response.url,
    )


def _comparable(response: requests.Response) -> Snapshot:
    """What must not differ between two live calls: the Date, and the echo of per-call trace headers, may."""
    headers = tuple((k, v) for k, v in response.headers.items() if k.lower() != "date")
    body = response.content
    if "/echo" in response.url:
        headers = tuple((k, v) for k, v in headers if k.lower() != "content-length")
        body = json.dumps({k: v for k, v in response.json().items() if k != "headers"}).encode()
    return (response.status_code, response.reason, headers, body, response.url)


def _assert_stopped(upstream: Upstream) -> None:
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", upstream.port)) != 0, "the upstream server still answers"


def _plain_calls(base: str) -> list[requests.Response]:
    with requests.Session() as session:
        return [
            session.get(f"{base}/echo", params={"q": "alpha"}),
            session.post(f"{base}/echo?q=post", json={"name": "ada", "tags": ["x", "y"]}),
            session.put(f"{base}/echo", data=b"\xff\xfe raw \x00 bytes", headers={"Content-Type": "text/plain"}),
            session.get(f"{base}/binary"),
            session.get(f"{base}/gzip"),
            session.get(f"{base}/stream"),
            session.get(f"{base}/reason"),
            session.get(f"{base}/error"),
        ]


def test_plain_calls_round_trip(origin: Upstream, tmp_path: Path) -> None:
    baseline = [_comparable(r) for r in _plain_calls(origin)]

    with recording(tmp_path) as recorded:
        live = _plain_calls(origin)
    assert [_comparable(r) for r in live] == baseline, "recording changed what the app received"

    cassette = recorded.cassette
    assert cassette is not None and recorded.path is not None
    assert [i.library for i in cassette.interactions] == ["requests"] * 8
    by_path = {_path(i): i for i in cassette.interactions}
    assert by_path["/binary"].response is not None
    assert by_path["/binary"].response.body is not None
    assert by_path["/binary"].response.body.data == BINARY
    gzipped = by_path["/gzip"].response
    assert gzipped is not None and gzipped.body is not None
    assert ("Content-Encoding", "gzip") in gzipped.headers
    assert gzipped.body.content_coding is None, "stored decoded (what the app read), re-encoded on replay"
    assert json.loads(gzipped.body.data) == GZIP_DOCUMENT
    assert by_path["/stream"].response is not None
    assert by_path["/stream"].response.body == Body.of(b"".join(STREAM_CHUNKS))
    assert by_path["/reason"].response is not None and by_path["/reason"].response.reason == CUSTOM_REASON
    posted = next(i for i in cassette.interactions if i.request.method == "POST")
    assert posted.request.body is not None
    assert json.loads(posted.request.body.data) == {"name": "ada", "tags": ["x", "y"]}

    origin.stop()
    _assert_stopped(origin)
    with replaying(recorded.path):
        replayed = _plain_calls(origin)
    assert [_exact(r) for r in replayed] == [_exact(r) for r in live]
    assert replayed[0].json()["query"] == {"q": "alpha"}
    assert replayed[4].json() == GZIP_DOCUMENT
    assert replayed[4].headers["Content-Encoding"] == "gzip"
    assert (replayed[6].status_code, replayed[6].reason) == (CUSTOM_STATUS, CUSTOM_REASON)
    assert replayed[7].status_code == 500
    with pytest.raises(requests.HTTPError):
        replayed[7].raise_for_status()


def _streamed_calls(base: str) -> list[Any]:
    """Every way an app reads a stream=True response; returns what it read."""
    seen: list[Any] = []
    with requests.Session() as session:
        with session.get(f"{base}/stream", stream=True) as response:
            seen.append(list(response.iter_lines()))
        with session.get(f"{base}/stream", stream=True) as response:
            pieces = list(response.iter_content(chunk_size=7))
            # Piece boundaries follow the HTTP chunks live and are even on replay; the bytes are the same.
            assert all(0 < len(piece) <= 7 for piece in pieces)
            seen.append(b"".join(pieces))
        with session.get(f"{base}/binary", stream=True) as response:
            seen.append([response.raw.read(100), response.raw.read(1000), response.raw.read(10)])
        with session.get(f"{base}/gzip", stream=True) as response:
            seen.append(b"".join(response.iter_content(chunk_size=16)))
        with session.get(f"{base}/gzip", stream=True) as response:
            seen.append(response.raw.read())  # undecoded: the gzip bytes as sent
        with session.get(f"{base}/gzip", stream=True) as response:
            seen.append(response.raw.read(decode_content=True))
        with session.get(f"{base}/stream", stream=True) as response:
            seen.append(list(response.raw))
        with session.get(f"{base}/binary", stream=True) as response:
            seen.append(response.status_code)  # body never read
        with session.get(f"{base}/binary", stream=True) as response:
            seen.append(response.raw.read(300))  # part of the body only
    return seen


def test_streamed_responses_round_trip(origin: Upstream, tmp_path: Path) -> None:
    baseline = _streamed_calls(origin)
    assert baseline[0] == [c.rstrip(b"\n") for c in STREAM_CHUNKS]
    assert gzip.decompress(baseline[4]) == baseline[3]

    with recording(tmp_path) as recorded:
        live = _streamed_calls(origin)
    assert live == baseline

    cassette = recorded.cassette
    assert cassette is not None and recorded.path is not None
    bodies = [i.response.body for i in cassette.interactions if i.response is not None]
    assert all(b is not None for b in bodies)
    assert bodies[2] is not None and bodies[2].data == BINARY and bodies[2].complete
    assert bodies[3] is not None and bodies[3].content_coding is None
    # A raw read got the gzip bytes; the cassette keeps them decoded, readable, like every other body.
    assert bodies[4] is not None and json.loads(bodies[4].data) == GZIP_DOCUMENT
    assert bodies[7] is not None and bodies[7].data == b"" and not bodies[7].complete
    assert bodies[8] is not None and bodies[8].data == BINARY[:300] and not bodies[8].complete

    origin.stop()
    with replaying(recorded.path):
        replayed = _streamed_calls(origin)
    # Undecoded bytes are re-encoded from the decoded body: the same content, not the same compression.
    assert gzip.decompress(replayed[4]) == gzip.decompress(live[4])
    assert replayed[:4] + replayed[5:] == live[:4] + live[5:]


def test_redirects_and_cookies_replay(origin: Upstream, tmp_path: Path) -> None:
    def calls() -> tuple[Any, ...]:
        with requests.Session() as session:
            redirected = session.get(f"{origin}/redirect")
            session.get(f"{origin}/cookies")
            echoed = session.get(f"{origin}/echo")
            return (
                redirected.url,
                [(r.status_code, r.headers["Location"]) for r in redirected.history],
                redirected.json()["query"],
                sorted(session.cookies.items()),
                echoed.json()["headers"].get("cookie"),
            )

    with recording(tmp_path) as recorded:
        live = calls()
    assert live[1] == [(302, "/echo?redirected=yes")]
    assert live[3] == [("alpha", "1"), ("beta", "2")]
    assert recorded.cassette is not None and len(recorded.cassette.interactions) == 4, "one call per hop"

    origin.stop()
    assert recorded.path is not None
    with replaying(recorded.path):
        assert calls() == live


def test_streamed_uploads_are_recorded_as_sent(origin: Upstream, tmp_path: Path) -> None:
    def calls() -> list[Any]:
        with requests.Session() as session:
            parts: list[bytes | str] = [b"one,", "two,", b"three"]  # text is sent as UTF-8
            generated = session.post(f"{origin}/echo", data=(part for part in parts))
            from_file = session.post(f"{origin}/echo", data=io.BytesIO(b"file body " * 100))
            return [generated.json()["body"], from_file.json()["body"]]

    with recording(tmp_path) as recorded:
        live = calls()
    assert live == ["one,two,three", "file body " * 100]
    assert recorded.cassette is not None and recorded.path is not None
    sent = [i.request.body for i in recorded.cassette.interactions]
    assert sent[0] is not None and sent[0].data == b"one,two,three" and sent[0].complete
    assert sent[1] is not None and sent[1].data == b"file body " * 100

    origin.stop()
    with replaying(recorded.path):
        assert calls() == live


def test_a_rewound_upload_is_recorded_once(origin: Upstream, tmp_path: Path) -> None:
    """urllib3 retries re-read a file body from its start: the recording keeps what the last attempt sent."""

    def call() -> Any:
        with requests.Session() as session:
            session.mount("http://", HTTPAdapter(max_retries=Retry(total=2, allowed_methods=None)))
            return session.post(f"{origin}/flaky", data=io.BytesIO(b"sent twice")).json()["body"]

    with recording(tmp_path) as recorded:
        assert call() == "sent twice"
    assert recorded.cassette is not None and recorded.path is not None
    (interaction,) = recorded.cassette.interactions
    assert interaction.request.body is not None and interaction.request.body.data == b"sent twice"

    origin.stop()
    with replaying(recorded.path):
        assert call() == "sent twice"


def test_recorded_exceptions_are_raised_again(origin: Upstream, tmp_path: Path) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/nothing"

    def calls() -> list[tuple[type[BaseException], str]]:
        raised: list[tuple[type[BaseException], str]] = []
        for url, timeout in ((f"{origin}/slow?delay=1", 0.2), (refused, 2)):
            with pytest.raises(requests.RequestException) as caught:
                requests.get(url, timeout=timeout)
            assert caught.value.request is not None
            raised.append((type(caught.value), str(caught.value)))
        return raised

    with recording(tmp_path) as recorded:
        live = calls()
    assert [kind for kind, _ in live] == [requests.ReadTimeout, requests.ConnectionError]
    assert recorded.cassette is not None and recorded.path is not None
    errors = [i.error for i in recorded.cassette.interactions]
    assert [e.type if e else None for e in errors] == [
        "requests.exceptions.ReadTimeout",
        "requests.exceptions.ConnectionError",
    ]

    origin.stop()
    with replaying(recorded.path):
        assert calls() == live


def test_a_different_query_is_a_mismatch(origin: Upstream, tmp_path: Path) -> None:
    with recording(tmp_path) as recorded:
        requests.get(f"{origin}/echo", params={"q": "alpha"})
    origin.stop()
    assert recorded.path is not None
    with replaying(recorded.path), pytest.raises(ReplayMismatchError) as caught:
        requests.get(f"{origin}/echo", params={"q": "BETA"})
    message = str(caught.value)
    assert "query differs" in message
    assert "q=alpha" in message and "q=BETA" in message


def test_calls_outside_a_request_pass_through_into_the_session_cassette(origin: Upstream, tmp_path: Path) -> None:
    install(Settings(mode=Mode.RECORD, directory=tmp_path))
    try:
        assert requests.get(f"{origin}/binary").content == BINARY
    finally:
        uninstall()
    assert_only_in_the_session_cassette(tmp_path, f"{origin}/binary")


def test_uninstall_removes_the_patch(tmp_path: Path) -> None:
    def patched() -> bool:
        return isinstance(HTTPAdapter.__dict__["send"], wrapt.FunctionWrapper)

    assert not patched()
    install(Settings(mode=Mode.RECORD, directory=tmp_path))
    try:
        assert patched()
    finally:
        uninstall()
    assert not patched()


def _path(interaction: Interaction) -> str:
    return urlsplit(interaction.request.url).path


def test_a_body_read_only_partly_replays_that_far_and_no_further(origin: Upstream, tmp_path: Path) -> None:
    from timetracer_otel import IncompleteBodyError

    url = f"{origin}/stream"

    def first_chunk() -> bytes:
        """Read the first chunk of a streamed body, then close the response without reading on."""
        with requests.get(url, stream=True) as response:
            for chunk in response.iter_content(chunk_size=1024):
                return chunk
        raise AssertionError("no chunk")

    def first_line() -> bytes:
        with requests.get(url, stream=True) as response:
            for line in response.iter_lines():
                return line
        raise AssertionError("no line")

    with recording(tmp_path) as recorded:
        first = first_chunk()
    origin.stop()
    streamed = b"".join(STREAM_CHUNKS)
    assert first and streamed.startswith(first) and len(first) < len(streamed)
    body = recorded.only_response_body()
    assert body.data == first and not body.complete and not body.truncated
    assert recorded.path is not None

    with replaying(recorded.path):
        assert first_chunk() == first
    with replaying(recorded.path):
        assert first_line() == first.split(b"\n")[0]
    with replaying(recorded.path), requests.get(url, stream=True) as response:
        assert response.raw.read(len(first)) == first

    # Reading further fails with timetracer's own error, not wrapped in a requests exception.
    with replaying(recorded.path), pytest.raises(IncompleteBodyError) as caught:
        requests.get(url)
    assert type(caught.value) is IncompleteBodyError
    assert caught.value.recorded_bytes == len(first) and caught.value.call == f"GET {url}"
    seen: list[bytes] = []
    with replaying(recorded.path), pytest.raises(IncompleteBodyError), requests.get(url, stream=True) as response:
        seen.extend(response.iter_content(chunk_size=1024))
    assert seen == [first], "the recorded bytes arrive before the error"
    with replaying(recorded.path), requests.get(url, stream=True) as response:
        assert response.raw.read(len(first)) == first
        with pytest.raises(IncompleteBodyError):
            response.raw.read(1)
    with replaying(recorded.path), requests.get(url, stream=True) as response, pytest.raises(IncompleteBodyError):
        response.raw.read()


def test_a_compressed_body_read_only_partly_replays_in_the_same_pieces(origin: Upstream, tmp_path: Path) -> None:
    from timetracer_otel import IncompleteBodyError

    url = f"{origin}/gzip"
    with recording(tmp_path) as recorded, requests.get(url, stream=True) as response:
        pieces = response.iter_content(chunk_size=20)
        read = [next(pieces), next(pieces)]
    origin.stop()
    document = json.dumps(GZIP_DOCUMENT).encode()
    assert read == [document[:20], document[20:40]]
    assert recorded.cassette is not None and recorded.path is not None
    body = recorded.cassette.interactions[0].response.body  # type: ignore[union-attr]
    assert body is not None and body.data == document[:40] and not body.complete

    with replaying(recorded.path), requests.get(url, stream=True) as response:
        pieces = response.iter_content(chunk_size=20)
        assert [next(pieces), next(pieces)] == read  # decoded from the re-encoded bytes, in the same pieces
        with pytest.raises(IncompleteBodyError):
            next(pieces)
    with replaying(recorded.path), pytest.raises(IncompleteBodyError, match="only the first 40 bytes"):
        requests.get(url).json()


def test_reading_exactly_the_content_length_is_a_complete_body(tmp_path: Path) -> None:
    with running_upstream() as upstream, recording(tmp_path) as recorded:
        response = requests.get(upstream.url("/binary"), stream=True, timeout=5)
        length = int(response.headers["content-length"])
        live = response.raw.read(length)
        response.close()
    assert recorded.cassette is not None
    body = recorded.cassette.interactions[0].response.body  # type: ignore[union-attr]
    assert body is not None and body.complete and body.data == live == BINARY
    assert recorded.path is not None
    with replaying(recorded.path):
        replayed = requests.get(upstream.url("/binary"), stream=True, timeout=5)
        assert replayed.raw.read(length) == live
        assert replayed.raw.read() == b"", "nothing more, and no error: the whole body was recorded"
