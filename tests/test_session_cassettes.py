"""Calls made outside any inbound request (start-up, schedulers) and connection set-up: the session cassette.

Recorded with a real HTTP server on 127.0.0.1 and replayed with it stopped; httpx stands in for any client
library, since every integration records through the same ``current_recording()`` and replays through the same
``replay_call()``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from tests.http_upstream import recording, replaying, running_upstream
from timetracer_otel._context import connection_setup
from timetracer_otel.cassette.files import iter_cassette_files, load_cassette
from timetracer_otel.cassette.model import HttpRequest
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.runtime import install, uninstall
from timetracer_otel.settings import Mode, Settings


def _echo(client: httpx.Client, base: str, text: str) -> str:
    response = client.post(f"{base}/echo", content=text.encode())
    return str(json.loads(response.content)["body"])


def _urls(cassette_path: Path) -> list[str]:
    cassette = load_cassette(cassette_path)
    return [i.request.url for i in cassette.interactions if isinstance(i.request, HttpRequest)]


def test_calls_outside_requests_are_recorded_in_order_and_replayed_with_the_server_down(tmp_path: Path) -> None:
    with running_upstream() as upstream:
        install(Settings(mode=Mode.RECORD, directory=tmp_path))
        try:
            with httpx.Client() as client:
                recorded = [_echo(client, upstream, f"start-up {n}") for n in range(3)]
                # A scheduler thread, between requests.
                worker = threading.Thread(target=lambda: recorded.append(_echo(client, upstream, "tick")))
                worker.start()
                worker.join()
        finally:
            uninstall()
    assert not list(iter_cassette_files(tmp_path))
    sessions = list(iter_cassette_files(tmp_path, sessions=True))
    assert len(sessions) == 1 and sessions[0].relative_to(tmp_path).parts[0] == "_session"
    session = load_cassette(sessions[0])
    assert session.metadata.scope == "session" and session.request is None and session.response is None
    bodies = [i.request.body.data for i in session.interactions]  # type: ignore[union-attr]
    assert bodies == [b"start-up 0", b"start-up 1", b"start-up 2", b"tick"]

    install(Settings(mode=Mode.REPLAY, cassette=tmp_path))
    try:
        with httpx.Client() as client:
            replayed = [_echo(client, upstream, f"start-up {n}") for n in range(3)]
            replayed.append(_echo(client, upstream, "tick"))
            with pytest.raises(ReplayMismatchError) as caught:
                _echo(client, upstream, "never recorded")
            assert "made outside any replayed inbound request, so answered from the session" in str(caught.value)
            assert "body differs: recorded 'start-up 0', got 'never recorded'" in str(caught.value)
    finally:
        uninstall()
    assert replayed == recorded


def test_connection_set_up_inside_a_request_goes_to_the_session_and_repeats_in_replay(tmp_path: Path) -> None:
    with running_upstream() as upstream, httpx.Client() as client, recording(tmp_path) as recorded:
        with connection_setup():
            handshake = _echo(client, upstream, "handshake")
        answer = _echo(client, upstream, "query")
    assert recorded.path is not None
    assert _urls(recorded.path) == [f"{upstream}/echo"]  # the query only
    (session_path,) = iter_cassette_files(tmp_path, sessions=True)
    (setup_call,) = load_cassette(session_path).interactions
    assert setup_call.request.body.data == b"handshake"  # type: ignore[union-attr]

    # The request cassette replays with the session next to it; a pool opening three connections where the
    # recording opened one gets the recorded set-up answer each time.
    with replaying(recorded.path), httpx.Client() as client:
        with connection_setup():
            assert [_echo(client, upstream, "handshake") for _ in range(3)] == [handshake] * 3
        assert _echo(client, upstream, "query") == answer


def test_a_session_cassette_lists_and_shows_in_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from timetracer_otel.cli import main

    with running_upstream() as upstream:
        install(Settings(mode=Mode.RECORD, directory=tmp_path))
        try:
            with httpx.Client() as client:
                _echo(client, upstream, "warm the cache")
        finally:
            uninstall()
    (session_path,) = iter_cassette_files(tmp_path, sessions=True)
    shown = CliRunner().invoke(main, ["show", "--events", str(session_path)])
    assert shown.exit_code == 0, shown.output
    assert "none: calls made outside requests" in shown.output and f"{upstream}/echo" in shown.output
