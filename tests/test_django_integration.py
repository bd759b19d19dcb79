"""Django (``examples/django_app``) under ``opentelemetry-instrument``: ``runserver --noreload`` and an ASGI server,
the ORM on PostgreSQL (psycopg) and on SQLite; recorded against live services, replayed with them gone."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.servers import BIN, ROOT, Answer, Server, ServerProcess, answer, free_port
from tests.services import POSTGRES_DSN
from timetracer_otel import load_cassette
from timetracer_otel.cassette.files import iter_cassette_files
from timetracer_otel.cassette.model import Cassette

pytestmark = pytest.mark.slow

DJANGO_EXAMPLE = ROOT / "examples" / "django_app"
_POSTGRES = urlsplit(POSTGRES_DSN)


@dataclass(frozen=True)
class Setup:
    """How the example is served, and which database its ORM talks to."""

    server: str  # "runserver" (WSGI) or "uvicorn" (ASGI)
    database: str  # "postgresql" or "sqlite"

    def database_env(self, workdir: Path, *, reachable: bool = True) -> dict[str, str]:
        if self.database == "sqlite":
            return {"SHOP_DB_ENGINE": "sqlite", "SHOP_DB_NAME": str(workdir / "shop.sqlite3")}
        port = str(_POSTGRES.port or 5432) if reachable else str(free_port())
        return {"SHOP_DB_HOST": _POSTGRES.hostname or "127.0.0.1", "SHOP_DB_PORT": port,
                "SHOP_DB_USER": _POSTGRES.username or "root", "SHOP_DB_NAME": _POSTGRES.path.lstrip("/") or "test"}

    def start(self, log: Path, env: Mapping[str, str]) -> ServerProcess:
        port = free_port()
        if self.server == "runserver":
            command = [str(BIN / "python"), "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
        else:
            command = [str(BIN / "uvicorn"), "shop.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                       "--log-level", "warning"]
        return ServerProcess([str(BIN / "opentelemetry-instrument"), *command], port=port, cwd=DJANGO_EXAMPLE,
                             log=log, env={"DJANGO_SETTINGS_MODULE": "shop.settings", **env}, dropped=("SHOP_",))


SETUPS = [Setup("runserver", "postgresql"), Setup("uvicorn", "postgresql"), Setup("runserver", "sqlite")]


def _migrate(env: Mapping[str, str]) -> None:
    subprocess.run([str(BIN / "python"), "manage.py", "migrate", "--verbosity", "0"], cwd=DJANGO_EXAMPLE,
                   env={**_base_env(), **env}, check=True)


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TIMETRACER_", "OTEL_", "SHOP_"))}


@pytest.fixture
def shop_upstream(tmp_path: Path) -> Iterator[Server]:
    with Server("upstream:app", cwd=DJANGO_EXAMPLE, log=tmp_path / "upstream.log") as server:
        yield server


def _exchange(base: str) -> list[Answer]:
    with httpx.Client(base_url=base, timeout=15) as client:
        return [
            answer(client.get("/products/1/")),
            answer(client.get("/async/products/2/")),
            answer(client.post("/orders/", json={"product": 1, "quantity": 2})),
            answer(client.post("/orders/", json={"product": 2, "quantity": 99})),
            answer(client.get("/products/999/")),
            answer(client.get("/report/")),
            answer(client.get("/boom/")),
            # Over Django's DATA_UPLOAD_MAX_MEMORY_SIZE: request.body refuses it, with or without recording.
            answer(client.post("/orders/", content=b"x" * (3 * 1024 * 1024))),
        ]


def _by_path(cassettes: list[Cassette], path: str) -> list[Cassette]:
    return [c for c in cassettes if c.request is not None and httpx.URL(c.request.url).path == path]


@pytest.mark.parametrize("setup", SETUPS, ids=lambda s: f"{s.server}-{s.database}")
def test_django_records_and_replays_without_database_or_upstream(
    tmp_path: Path, shop_upstream: Server, setup: Setup
) -> None:
    _migrate(setup.database_env(tmp_path))
    cassettes = tmp_path / "cassettes"
    env = {**setup.database_env(tmp_path), "UPSTREAM_URL": shop_upstream.url}
    with setup.start(tmp_path / "record.log", {**env, "TIMETRACER_MODE": "record",
                                               "TIMETRACER_DIR": str(cassettes)}) as app:
        recorded = _exchange(app.url)
    assert [status for status, _, _ in recorded] == [200, 200, 201, 409, 404, 200, 500, 400], app.output()
    assert b'"async": true' in recorded[1][2]

    found = [load_cassette(p) for p in iter_cassette_files(cassettes)]
    assert len(found) == 8, app.output()
    routes = {httpx.URL(c.request.url).path: c.request.route for c in found if c.request is not None}
    assert routes == {"/products/1/": "/products/<int:pk>/", "/async/products/2/": "/async/products/<int:pk>/",
                      "/orders/": "/orders/", "/products/999/": "/products/<int:pk>/", "/report/": "/report/",
                      "/boom/": "/boom/"}
    [product] = _by_path(found, "/products/1/")
    assert [i.kind for i in product.interactions][-2:] == ["sql", "http"], "the ORM query, then the upstream"
    [async_product] = _by_path(found, "/async/products/2/")
    assert [i.kind for i in async_product.interactions][-2:] == ["sql", "http"]
    created = next(c for c in _by_path(found, "/orders/") if c.response is not None and c.response.status == 201)
    operations = [i.request.operation for i in created.interactions if i.kind == "sql"]  # type: ignore[union-attr]
    assert any("INSERT" in op for op in operations), operations
    [report] = _by_path(found, "/report/")
    assert [i.kind for i in report.interactions][-4:] == ["sql", "http", "http", "http"], \
        "calls made while the streamed body is sent belong to the request"
    assert report.response is not None and report.response.body.data == recorded[5][2]  # type: ignore[union-attr]
    [missing] = _by_path(found, "/products/999/")
    assert missing.error is None, "a 404 is Django's answer, not a failure"
    [boom] = _by_path(found, "/boom/")
    assert boom.error is not None and boom.error.type == "builtins.RuntimeError"
    assert boom.error.message == "the database answered, then this view failed"
    assert "catalog/views.py" in boom.error.traceback
    assert boom.response is not None and boom.response.status == 500

    shop_upstream.stop()
    if setup.database == "sqlite":
        (tmp_path / "shop.sqlite3").unlink()
    replay_env = {**setup.database_env(tmp_path, reachable=False), "UPSTREAM_URL": shop_upstream.url,
                  "TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(cassettes)}
    with setup.start(tmp_path / "replay.log", replay_env) as app:
        replayed = _exchange(app.url)
    assert replayed == recorded, app.output()
    assert "ReplayMismatchError" not in app.output()
    assert not (tmp_path / "shop.sqlite3").exists(), "replay never opened the database"
