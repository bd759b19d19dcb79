"""Litestar under ``opentelemetry-instrument`` with no code change: record against a live upstream, replay
without it; and the middleware the integration adds only where the app has none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from litestar import Litestar, get
from litestar.plugins.opentelemetry import (
    OpenTelemetryConfig,
    OpenTelemetryInstrumentationMiddleware,
    OpenTelemetryPlugin,
)

from tests.servers import ROOT, Server
from timetracer_otel import load_cassette
from timetracer_otel.cassette.files import iter_cassette_files
from timetracer_otel.integrations.litestar import LitestarIntegration

EXAMPLE = ROOT / "examples" / "litestar_app"
QUOTE = b'{"items": [3, 5], "quantity": 2, "note": "caf\\u00e9"}'


@pytest.fixture
def litestar_upstream(tmp_path: Path) -> Iterator[Server]:
    with Server("upstream:app", cwd=EXAMPLE, log=tmp_path / "upstream.log") as server:
        yield server


def _app(tmp_path: Path, name: str, env: dict[str, str], target: str = "app:app") -> Server:
    return Server(target, cwd=EXAMPLE, log=tmp_path / f"{name}.log", env=env, instrument=True)


def _exchange(base: str) -> list[tuple[int, str | None, bytes]]:
    with httpx.Client(base_url=base, timeout=10) as client:
        answers = [
            client.get("/users/42"),
            client.post("/quotes", content=QUOTE, headers={"content-type": "application/json"}),
            client.get("/nowhere"),
            client.get("/boom"),
            # Litestar routes "/users/43/" as "/users/43" and rewrites the scope's path to that: the cassette
            # keeps the path as the client sent it, so replay finds it.
            client.get("/users/43/"),
        ]
    return [(r.status_code, r.headers.get("content-type"), r.content) for r in answers]


@pytest.mark.slow
def test_litestar_records_and_replays_without_upstream(tmp_path: Path, litestar_upstream: Server) -> None:
    cassettes = tmp_path / "cassettes"
    env = {"TIMETRACER_MODE": "record", "TIMETRACER_DIR": str(cassettes), "UPSTREAM_URL": litestar_upstream.url}
    with _app(tmp_path, "record", env) as app:
        recorded = _exchange(app.url)
    assert [status for status, _, _ in recorded] == [200, 201, 404, 500, 200]
    assert json.loads(recorded[1][2])["received"] == QUOTE.decode(), "the app got the body unchanged"

    by_path = {c.request.url.rsplit("/", 1)[-1]: c for c in map(load_cassette, iter_cassette_files(cassettes))}
    assert sorted(by_path) == ["", "42", "boom", "nowhere", "quotes"], app.output()
    assert by_path[""].request.url.endswith("/users/43/") and by_path[""].request.route == "/users/{user_id}"
    user, quote, missing, boom = by_path["42"], by_path["quotes"], by_path["nowhere"], by_path["boom"]
    assert user.request.route == "/users/{user_id}"
    assert [i.request.url for i in user.interactions] == [f"{litestar_upstream.url}/users/42"]
    assert quote.request.route == "/quotes"
    assert quote.request.body is not None and quote.request.body.data == QUOTE
    assert sorted(i.request.url for i in quote.interactions) == [
        f"{litestar_upstream.url}/price?item=3", f"{litestar_upstream.url}/price?item=5"
    ]
    assert quote.response is not None and quote.response.status == 201
    assert missing.request.route in (None, "/nowhere") and missing.response.status == 404  # type: ignore[union-attr]
    assert missing.error is None, "a 404 is Litestar's answer, not an unhandled exception"
    # The view's exception next to the 500 Litestar's exception handler answered with.
    assert boom.error is not None and boom.error.type == "builtins.RuntimeError"
    assert boom.error.message == "the upstream answered, then this view failed"
    assert boom.response is not None and boom.response.status == 500 and len(boom.interactions) == 1
    assert len([s for s in user.spans if s.kind == "SERVER"]) == 1, "one server span: the middleware once"

    litestar_upstream.stop()
    replay_env = {"TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(cassettes),
                  "UPSTREAM_URL": litestar_upstream.url}
    with _app(tmp_path, "replay", replay_env) as app:
        replayed = _exchange(app.url)
    assert replayed == recorded, app.output()


@pytest.mark.slow
def test_an_app_with_its_own_plugin_is_recorded_through_it(tmp_path: Path, litestar_upstream: Server) -> None:
    cassettes = tmp_path / "cassettes"
    env = {"TIMETRACER_MODE": "record", "TIMETRACER_DIR": str(cassettes), "UPSTREAM_URL": litestar_upstream.url}
    with _app(tmp_path, "record", env, "plugin_app:app") as app:
        assert httpx.get(f"{app.url}/users/7", timeout=10).status_code == 200
    [cassette] = [load_cassette(p) for p in iter_cassette_files(cassettes)]
    # The plugin's default span details put "GET /users/7" into http.route; the scope's template wins.
    assert cassette.request.route == "/users/{user_id}"
    assert len(cassette.interactions) == 1
    assert [s.name for s in cassette.spans if s.kind == "SERVER"] == ["GET /users/7"], "the plugin's span only"


@pytest.fixture
def integration() -> Iterator[LitestarIntegration]:
    runtime = SimpleNamespace(recorder=object(), source=None)
    integration = LitestarIntegration(runtime)  # type: ignore[arg-type]
    integration.install()
    try:
        yield integration
    finally:
        integration.uninstall()


@get("/")
async def _index() -> str:
    return "ok"


def _otel_layers(app: Litestar) -> int:
    handler, count = app.asgi_handler, 0
    while handler is not None:
        count += isinstance(handler, OpenTelemetryInstrumentationMiddleware)
        handler = getattr(handler, "app", None)
    return count


def test_an_app_without_the_plugin_gets_its_middleware(integration: LitestarIntegration) -> None:
    assert _otel_layers(Litestar(route_handlers=[_index])) == 1


def test_an_app_with_the_plugin_or_its_middleware_is_left_alone(integration: LitestarIntegration) -> None:
    config = OpenTelemetryConfig()
    assert _otel_layers(Litestar(route_handlers=[_index], plugins=[OpenTelemetryPlugin(config)])) == 1
    assert _otel_layers(Litestar(route_handlers=[_index], middleware=[config.middleware])) == 1


def test_nothing_is_added_when_not_recording_or_replaying(integration: LitestarIntegration) -> None:
    integration.runtime = SimpleNamespace(recorder=None, source=None)  # type: ignore[assignment]
    assert _otel_layers(Litestar(route_handlers=[_index])) == 0
    integration.active = False
    integration.runtime = SimpleNamespace(recorder=object(), source=None)  # type: ignore[assignment]
    assert _otel_layers(Litestar(route_handlers=[_index])) == 0
