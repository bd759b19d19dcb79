"""Flask and plain WSGI apps under ``opentelemetry-instrument``: record against a live upstream, replay without it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
import pytest

from tests.servers import BIN, EXAMPLE, ROOT, Answer, Server, ServerProcess, answer, free_port
from timetracer_otel import load_cassette
from timetracer_otel.cassette.files import iter_cassette_files
from timetracer_otel.cassette.model import Cassette

pytestmark = pytest.mark.slow

FLASK_EXAMPLE = ROOT / "examples" / "flask_requests"


def _instrumented(command: Sequence[str], *, port: int, log: Path, env: Mapping[str, str]) -> ServerProcess:
    """A WSGI server in a subprocess under ``opentelemetry-instrument`` (``flask run`` or ``python wsgi_app.py``)."""
    return ServerProcess([str(BIN / "opentelemetry-instrument"), *command], port=port, cwd=FLASK_EXAMPLE, log=log,
                         env=env, dropped=("FLASK_",))


def _flask(tmp_path: Path, name: str, env: Mapping[str, str]) -> ServerProcess:
    port = free_port()
    return _instrumented([str(BIN / "flask"), "--app", "app", "run", "--host", "127.0.0.1", "--port", str(port)],
                         port=port, log=tmp_path / f"{name}.log", env=env)


def _plain(tmp_path: Path, name: str, env: Mapping[str, str]) -> ServerProcess:
    port = free_port()
    return _instrumented([str(BIN / "python"), "wsgi_app.py", str(port)], port=port, log=tmp_path / f"{name}.log",
                         env=env)


def _record_env(directory: Path, upstream: Server) -> dict[str, str]:
    return {"TIMETRACER_MODE": "record", "TIMETRACER_DIR": str(directory), "UPSTREAM_URL": upstream.url}


def _replay_env(directory: Path, upstream: Server) -> dict[str, str]:
    return {"TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(directory), "UPSTREAM_URL": upstream.url}


def _flask_exchange(base: str) -> list[Answer]:
    with httpx.Client(base_url=base, timeout=10) as client:
        return [
            answer(client.get("/users/42")),
            answer(client.post("/checkout", json={"item": 3, "quantity": 2})),
            answer(client.post("/form", data={"item": "5", "colour": "blue"}, files={"note": ("n.txt", b"hi")})),
            answer(client.post("/form", data={"item": "6", "colour": "red"})),
            answer(client.get("/stream")),
            # A chunked request body (no Content-Length): the dev server de-chunks it for the app.
            answer(client.post("/checkout", content=iter([b'{"item": ', b'4}']),
                                headers={"content-type": "application/json"})),
            answer(client.get("/boom")),
        ]


def _cassettes(directory: Path) -> list[Cassette]:
    return [load_cassette(p) for p in iter_cassette_files(directory)]


def _by_path(cassettes: list[Cassette], path: str) -> list[Cassette]:
    return [c for c in cassettes if c.request is not None and httpx.URL(c.request.url).path == path]


def test_flask_record_then_replay_without_upstream(tmp_path: Path, upstream: Server) -> None:
    cassettes = tmp_path / "cassettes"
    # Without recording, against a fresh upstream of its own (the upstream counts audits).
    with Server("upstream:app", cwd=EXAMPLE, log=tmp_path / "upstream2.log") as fresh, \
            _flask(tmp_path, "plain", {"UPSTREAM_URL": fresh.url}) as app:
        plain = _flask_exchange(app.url)
    with _flask(tmp_path, "record", _record_env(cassettes, upstream)) as app:
        recorded = _flask_exchange(app.url)
    assert [status for status, _, _ in recorded] == [200, 200, 200, 200, 200, 200, 500], recorded
    assert recorded == plain, "recording changes nothing the client sees"
    assert b'"colour":"blue"' in recorded[2][2] and b'"note":"hi"' in recorded[2][2], "form and file unchanged"
    assert b'"quantity":2' in recorded[1][2] and b'"item":4' in recorded[5][2], "JSON bodies unchanged"

    found = _cassettes(cassettes)
    assert len(found) == 7, "one cassette per inbound request"
    [user] = _by_path(found, "/users/42")
    assert user.request is not None and user.request.route == "/users/<int:user_id>"
    assert [i.request.url for i in user.interactions] == [f"{upstream.url}/users/42"]  # type: ignore[union-attr]
    assert user.response is not None and user.response.body.data == recorded[0][2]  # type: ignore[union-attr]

    checkouts = _by_path(found, "/checkout")
    bodies = sorted(c.request.body.data for c in checkouts)  # type: ignore[union-attr]
    assert bodies == [b'{"item": 4}', b'{"item":3,"quantity":2}']
    assert all(len(c.interactions) == 2 for c in checkouts)

    multipart, urlencoded = sorted(_by_path(found, "/form"), key=lambda c: c.request.body.data)  # type: ignore[union-attr]
    assert b'name="colour"\r\n\r\nblue' in multipart.request.body.data  # type: ignore[union-attr]
    assert urlencoded.request.body.data == b"item=6&colour=red"  # type: ignore[union-attr]
    assert b'"colour":"red"' in recorded[3][2]
    [stream] = _by_path(found, "/stream")
    assert len(stream.interactions) == 3, "calls made while the body streams belong to the request"
    assert stream.response is not None and stream.response.body.data == recorded[4][2]  # type: ignore[union-attr]

    [boom] = _by_path(found, "/boom")
    assert boom.error is not None and boom.error.type == "builtins.RuntimeError"
    assert boom.error.message == "the upstream answered, then this view failed"
    assert boom.response is not None and boom.response.status == 500
    assert len(boom.interactions) == 1

    upstream.stop()
    with _flask(tmp_path, "replay", _replay_env(cassettes, upstream)) as app:
        replayed = _flask_exchange(app.url)
    assert replayed == recorded, app.output()
    assert "ReplayMismatchError" not in app.output()


def test_flask_replay_miss_is_explained(tmp_path: Path, upstream: Server) -> None:
    cassettes = tmp_path / "cassettes"
    with _flask(tmp_path, "record", _record_env(cassettes, upstream)) as app:
        httpx.get(f"{app.url}/users/7", timeout=10)
    upstream.stop()
    with _flask(tmp_path, "replay", _replay_env(cassettes, upstream)) as app:
        assert httpx.get(f"{app.url}/users/7", timeout=10).json() == {"id": 7, "name": "user-7"}
        assert httpx.get(f"{app.url}/users/8", timeout=10).status_code == 500
    assert "ReplayMismatchError" in app.output()


def _plain_exchange(base: str) -> list[Answer]:
    with httpx.Client(base_url=base, timeout=10) as client:
        return [answer(client.get("/users/9")), answer(client.post("/echo", json={"item": 2}))]


def test_plain_wsgi_middleware_record_then_replay(tmp_path: Path, upstream: Server) -> None:
    cassettes = tmp_path / "cassettes"
    with _plain(tmp_path, "plain", {"UPSTREAM_URL": upstream.url}) as app:
        plain = _plain_exchange(app.url)
    with _plain(tmp_path, "record", _record_env(cassettes, upstream)) as app:
        recorded = _plain_exchange(app.url)
    assert recorded == plain
    assert [status for status, _, _ in recorded] == [200, 200]
    found = _cassettes(cassettes)
    assert len(found) == 2, app.output()
    [echo] = _by_path(found, "/echo")
    assert echo.request.body.data == b'{"item":2}'  # type: ignore[union-attr]
    assert len(echo.interactions) == 1
    assert echo.metadata.trace_id is not None, "the middleware's server span is the request's root"

    upstream.stop()
    with _plain(tmp_path, "replay", _replay_env(cassettes, upstream)) as app:
        replayed = _plain_exchange(app.url)
    assert replayed == recorded, app.output()
