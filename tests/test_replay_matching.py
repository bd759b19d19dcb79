from __future__ import annotations

import socket

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation

from tests.factories import cassette, interaction, json_response, request
from timetracer_otel.cassette.model import Body, Cassette, HttpRequest
from timetracer_otel.errors import NetworkBlockedError, ReplayMismatchError
from timetracer_otel.replay.guard import NetworkGuard, live_call
from timetracer_otel.replay.index import ReplayIndex
from timetracer_otel.replay.matching import http_key
from timetracer_otel.replay.source import CassetteSource
from timetracer_otel.settings import OnExhausted


def _index(*pairs: tuple[str, object], on_exhausted: OnExhausted = OnExhausted.ERROR) -> ReplayIndex:
    return ReplayIndex([interaction(request(url=url), json_response(value)) for url, value in pairs], on_exhausted)


def _answer(index: ReplayIndex, url: str, **kwargs: object) -> object:
    taken = index.take(request(url=url, **kwargs))  # type: ignore[arg-type]
    return taken.response.body.data  # type: ignore[union-attr]


def test_query_values_must_match() -> None:
    index = _index(("http://api.test/search?q=alpha", "a"))
    with pytest.raises(ReplayMismatchError) as caught:
        index.take(request(url="http://api.test/search?q=BETA"))
    assert "query differs: recorded q=alpha, got q=BETA" in str(caught.value)
    assert caught.value.candidates and caught.value.candidates[0].startswith("#1 GET http://api.test/search?q=alpha")


def test_query_order_and_default_ports_do_not_matter() -> None:
    index = _index(("http://api.test:80/s?a=1&b=2", "x"))
    assert _answer(index, "http://API.test/s?b=2&a=1") == b'"x"'


def test_json_bodies_match_by_structure() -> None:
    recorded = interaction(request("POST", "http://api.test/o", b'{"a": 1, "b": [1, 2]}'), json_response(1))
    index = ReplayIndex([recorded])
    assert index.take(request("POST", "http://api.test/o", b'{"b":[1,2],"a":1}')) is recorded


def test_json_bodies_with_other_values_do_not_match() -> None:
    index = ReplayIndex([interaction(request("POST", "http://api.test/o", b'{"a": 1}'), json_response(1))])
    with pytest.raises(ReplayMismatchError, match="body differs"):
        index.take(request("POST", "http://api.test/o", b'{"a": 2}'))


def test_multipart_boundaries_are_masked() -> None:
    def form(boundary: str) -> tuple[bytes, tuple[tuple[str, str], ...]]:
        body = f'--{boundary}\r\ncontent-disposition: form-data; name="f"\r\n\r\nv\r\n--{boundary}--\r\n'.encode()
        return body, (("content-type", f"multipart/form-data; boundary={boundary}"),)

    first, second = form("aaaa1111"), form("bbbb2222")
    assert http_key(request("POST", body=first[0], headers=first[1])) == http_key(
        request("POST", body=second[0], headers=second[1]))


def test_identical_calls_get_their_answers_in_recorded_order() -> None:
    index = _index(*[("http://api.test/poll", f"state-{n}") for n in range(3)])
    assert [_answer(index, "http://api.test/poll") for _ in range(3)] == [b'"state-0"', b'"state-1"', b'"state-2"']
    with pytest.raises(ReplayMismatchError, match="recorded 3 time"):
        index.take(request(url="http://api.test/poll"))


def test_repeat_last_policy() -> None:
    index = _index(("http://api.test/p", 1), ("http://api.test/p", 2), on_exhausted=OnExhausted.REPEAT_LAST)
    assert [_answer(index, "http://api.test/p") for _ in range(4)] == [b"1", b"2", b"2", b"2"]


def test_any_call_order_gets_each_call_its_own_answer() -> None:
    urls = [f"http://api.test/item/{n}" for n in range(5)]
    index = _index(*[(url, url) for url in urls])
    for url in reversed(urls):  # as gather() might run them
        assert _answer(index, url) == f'"{url}"'.encode()
    assert index.unused() == []


def test_miss_lists_the_nearest_candidates_first() -> None:
    index = _index(("http://api.test/users/41", 1), ("http://other.test/orders", 2), ("http://api.test/users", 3))
    with pytest.raises(ReplayMismatchError) as caught:
        index.take(request(url="http://api.test/users/42"))
    assert "GET http://api.test/users/42: no recorded call matches" in str(caught.value)
    assert "users/41 (path differs: recorded '/users/41', got '/users/42')" in caught.value.candidates[0]
    assert "other.test" in caught.value.candidates[-1]


def test_directory_source_picks_the_cassette_of_the_inbound_request() -> None:
    first = cassette(inbound=request("GET", "http://app/u?id=1"))
    second = cassette(inbound=request("GET", "http://app/u?id=2"))
    source = CassetteSource([first, second], single=False, on_exhausted=OnExhausted.ERROR)
    assert source.session_for(request("GET", "http://elsewhere:9/u?id=2")).cassette is second
    missing = source.session_for(request("GET", "http://app/u?id=3"))
    assert missing.cassette is None
    assert "no cassette was recorded for the inbound request GET http://app/u?id=3" in missing.missing_reason
    with pytest.raises(ReplayMismatchError, match="query differs"):
        missing.take(request())


def test_network_guard_blocks_non_loopback_and_allows_loopback_and_live_calls() -> None:
    guard = NetworkGuard()
    guard.install()
    try:
        with socket.socket() as sock, pytest.raises(NetworkBlockedError, match=r"192\.0\.2\.1:80"):
            sock.connect(("192.0.2.1", 80))  # TEST-NET-1: the guard raises before any packet is sent
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            with socket.socket() as client:
                client.connect(server.getsockname())
        with socket.socket() as sock, pytest.raises(NetworkBlockedError, match=r"example\.com:443"):
            sock.connect(("example.com", 443))  # names are refused before any lookup
    finally:
        guard.uninstall()
    assert not hasattr(socket.socket.connect, "__wrapped__")


def test_live_plugin_calls_pass_the_guard() -> None:
    from timetracer_otel.replay.guard import _guard_connect

    reached: list[object] = []
    guarded = _guard_connect(lambda sock, address: reached.append(address))
    with socket.socket() as sock:
        with pytest.raises(NetworkBlockedError):
            guarded(sock, ("192.0.2.1", 80))
        with live_call():
            guarded(sock, ("192.0.2.1", 80))
        with suppress_instrumentation():  # how exporters send telemetry
            guarded(sock, ("192.0.2.2", 4317))
    assert reached == [("192.0.2.1", 80), ("192.0.2.2", 4317)]


def test_uvloop_connections_are_guarded_too() -> None:
    import asyncio

    import uvloop

    async def attempts() -> list[str]:
        loop = asyncio.get_running_loop()
        outcomes = []
        for host in ("192.0.2.1", "example.com", "127.0.0.1"):
            try:
                await loop.create_connection(asyncio.Protocol, host, 9)
            except NetworkBlockedError:
                outcomes.append(f"{host} blocked")
            except OSError:
                outcomes.append(f"{host} refused")  # loopback reached the real connect: nothing listens there
        with socket.socket() as sock:
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, ("192.0.2.1", 80))
            except NetworkBlockedError:
                outcomes.append("sock_connect blocked")
        return outcomes

    guard = NetworkGuard()
    guard.install()
    try:
        outcomes = uvloop.run(attempts())
    finally:
        guard.uninstall()
    assert outcomes == ["192.0.2.1 blocked", "example.com blocked", "127.0.0.1 refused", "sock_connect blocked"]
    assert "create_connection" not in uvloop.Loop.__dict__


def _inbound(body: Body | None, recorded_at: int = 0, url: str = "http://app/upload") -> Cassette:
    from datetime import UTC, datetime

    inbound = HttpRequest("POST", url, body=body)
    return cassette(inbound=inbound, recorded_at=datetime(2026, 1, 1, 0, 0, recorded_at, tzinfo=UTC))


def _source(*cassettes: Cassette) -> CassetteSource:
    return CassetteSource(list(cassettes), single=False, on_exhausted=OnExhausted.ERROR)


def test_equal_inbound_requests_use_their_cassettes_in_recorded_order_then_cycle() -> None:
    first, second = _inbound(Body.of(b"{}"), 1), _inbound(Body.of(b"{}"), 2)
    source = _source(second, first)
    picked = [source.session_for(request("POST", "http://app/upload", b"{ }")).cassette for _ in range(3)]
    assert picked == [first, second, first]


def test_a_body_the_app_never_read_matches_any_body() -> None:
    unread = _inbound(Body(data=b"", size=0, complete=False))
    assert _source(unread).session_for(request("POST", "http://app/upload", b"anything")).cassette is unread


def test_a_truncated_body_matches_by_prefix_and_size() -> None:
    cut = _inbound(Body(data=b"abc", size=6, truncated=True))
    source = _source(cut)
    assert source.session_for(request("POST", "http://app/upload", b"abcdef")).cassette is cut
    assert source.session_for(request("POST", "http://app/upload", b"abcxyz")).cassette is cut
    assert source.session_for(request("POST", "http://app/upload", b"abXdef")).cassette is None
    assert source.session_for(request("POST", "http://app/upload", b"abcdefg")).cassette is None
