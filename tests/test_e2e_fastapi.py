"""The example FastAPI app under ``opentelemetry-instrument``: record against a live upstream, replay without it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.servers import EXAMPLE, Server
from timetracer_otel import load_cassette
from timetracer_otel.cassette.files import iter_cassette_files

pytestmark = pytest.mark.slow

CHECKOUTS = [{"item": 3}, {"item": 5, "quantity": 2}]


def _record_env(directory: Path, upstream: Server) -> dict[str, str]:
    return {"TIMETRACER_MODE": "record", "TIMETRACER_DIR": str(directory), "UPSTREAM_URL": upstream.url}


def _app(tmp_path: Path, name: str, env: dict[str, str], *extra_args: str) -> Server:
    return Server("app:app", cwd=EXAMPLE, log=tmp_path / f"{name}.log", env=env, instrument=True,
                  extra_args=extra_args)


def _exchange(base: str) -> list[tuple[int, str | None, bytes]]:
    with httpx.Client(base_url=base, timeout=10) as client:
        answers = [client.post("/checkout", json=order) for order in CHECKOUTS]
        answers.append(client.get("/users/42"))
    return [(r.status_code, r.headers.get("content-type"), r.content) for r in answers]


def test_record_then_replay_without_upstream(tmp_path: Path, upstream: Server) -> None:
    cassettes = tmp_path / "cassettes"
    with _app(tmp_path, "record", _record_env(cassettes, upstream)) as app:
        recorded = _exchange(app.url)
    assert [status for status, _, _ in recorded] == [200, 200, 200]

    files = list(iter_cassette_files(cassettes))
    assert len(files) == 3, "one cassette per inbound request"
    checkout = next(load_cassette(f) for f in files if "checkout" in f.name and b'"item":3' in
                    load_cassette(f).response.body.data)  # type: ignore[union-attr]
    assert checkout.request.route == "/checkout"
    urls = [i.request.url.split("?")[0].rsplit("/", 1)[-1] for i in checkout.interactions]
    # gather() pair, the thread-pool call, then the background task that runs after the response.
    assert sorted(urls[:2]) == ["price", "stock"]
    assert urls[2:] == ["slot", "audit"]
    assert checkout.interactions[-1].start_ms > next(
        s.start_ms for s in checkout.spans if s.name.endswith("http send")
    ), "the background task's call happened after the response was sent"
    user = next(load_cassette(f) for f in files if "users" in f.name)
    assert user.request.route == "/users/{user_id}"

    upstream.stop()
    with _app(tmp_path, "replay", {"TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(cassettes),
                                   "UPSTREAM_URL": upstream.url}) as app:
        replayed = _exchange(app.url)
    assert replayed == recorded


def test_replay_miss_is_explained_in_the_log(tmp_path: Path, upstream: Server) -> None:
    cassettes = tmp_path / "cassettes"
    with _app(tmp_path, "record", _record_env(cassettes, upstream)) as app:
        httpx.get(f"{app.url}/users/7", timeout=10)
    upstream.stop()
    with _app(tmp_path, "replay", {"TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(cassettes),
                                   "UPSTREAM_URL": upstream.url}) as app:
        assert httpx.get(f"{app.url}/users/7", timeout=10).json() == {"id": 7, "name": "user-7"}
        assert httpx.get(f"{app.url}/users/8", timeout=10).status_code == 500
    log = app.output()
    assert "ReplayMismatchError" in log
    assert "path differs: recorded '/users/7', got '/users/8'" in log


@pytest.mark.parametrize("lifespan", ["on", "off"], ids=["lifespan-flush", "sigterm-handler"])
def test_sigterm_still_writes_every_answered_request(tmp_path: Path, upstream: Server, lifespan: str) -> None:
    cassettes = tmp_path / "cassettes"
    # A long quiet period means nothing would be written yet without the shutdown flush.
    env = {**_record_env(cassettes, upstream), "TIMETRACER_QUIET_PERIOD_MS": "30000"}
    app = _app(tmp_path, "record", env, "--lifespan", lifespan)
    try:
        with httpx.Client(base_url=app.url, timeout=10) as client:
            for n in range(6):
                assert client.get(f"/users/{n}").status_code == 200
    finally:
        returncode = app.stop(signal.SIGTERM)
    assert returncode in (0, -signal.SIGTERM), app.output()
    written = sorted(json.loads(p.read_text())["request"]["url"].rsplit("/", 1)[-1]
                     for p in iter_cassette_files(cassettes))
    assert written == [str(n) for n in range(6)]


def test_works_next_to_other_exporters_with_the_distro_selected(tmp_path: Path, upstream: Server) -> None:
    cassettes = tmp_path / "cassettes"
    env = {**_record_env(cassettes, upstream), "OTEL_PYTHON_DISTRO": "timetracer",
           "OTEL_TRACES_EXPORTER": "console,timetracer", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    with _app(tmp_path, "record", env) as app:
        assert httpx.get(f"{app.url}/users/5", timeout=10).status_code == 200
    assert '"name": "GET /users/{user_id}"' in app.output(), "the console exporter still gets every span"
    [cassette] = [load_cassette(p) for p in iter_cassette_files(cassettes)]
    assert cassette.request.route == "/users/{user_id}"
    assert len(cassette.interactions) == 1


def test_sdk_disabled_still_records_and_replays_without_spans(tmp_path: Path, upstream: Server) -> None:
    cassettes = tmp_path / "cassettes"
    env = {**_record_env(cassettes, upstream), "OTEL_SDK_DISABLED": "true"}
    with _app(tmp_path, "record", env) as app:
        recorded = httpx.get(f"{app.url}/users/5", timeout=10).content
    assert "OTEL_SDK_DISABLED=true, so there are no spans" in app.output()
    [cassette] = [load_cassette(p) for p in iter_cassette_files(cassettes)]
    assert len(cassette.interactions) == 1 and cassette.spans == ()
    upstream.stop()
    replay_env = {"TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(cassettes), "UPSTREAM_URL": upstream.url,
                  "OTEL_SDK_DISABLED": "true"}
    with _app(tmp_path, "replay", replay_env) as app:
        assert httpx.get(f"{app.url}/users/5", timeout=10).content == recorded


def test_requests_are_recorded_even_when_their_spans_are_not_sampled(tmp_path: Path, upstream: Server) -> None:
    cassettes = tmp_path / "cassettes"
    env = {**_record_env(cassettes, upstream), "OTEL_TRACES_SAMPLER": "always_off"}
    with _app(tmp_path, "record", env) as app:
        assert httpx.get(f"{app.url}/users/9", timeout=10).status_code == 200
    [cassette] = [load_cassette(p) for p in iter_cassette_files(cassettes)]
    assert [i.request.url for i in cassette.interactions] == [f"{upstream.url}/users/9"]
    assert cassette.spans == () and cassette.metadata.trace_id is None
