"""The full-stack example end to end: FastAPI with httpx, SQLAlchemy on asyncpg, Redis and MongoDB, recorded under
``opentelemetry-instrument`` against the real servers and replayed with every one of them unreachable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import MONGO_URI, POSTGRES_DSN, REDIS_URL
from timetracer_otel.cassette.files import iter_cassette_files, load_cassette
from timetracer_otel.cassette.model import CallRequest, HttpRequest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "fullstack" / "demo.py"


def _demo(workdir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": POSTGRES_DSN.replace("postgresql://", "postgresql+asyncpg://"),
        "REDIS_URL": REDIS_URL,
        "MONGO_URI": MONGO_URI,
    }
    run = subprocess.run([sys.executable, str(DEMO), "--workdir", str(workdir), *options], env=env,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr + (workdir / "replay.log").read_text()
    return run


def test_every_kind_of_call_records_into_one_cassette_and_replays_byte_identical(tmp_path: Path) -> None:
    run = _demo(tmp_path)
    assert "every replayed response is byte-identical" in run.stdout

    cassettes = [load_cassette(path) for path in iter_cassette_files(tmp_path / "cassettes")]
    products = [c for c in cassettes if c.request is not None and c.request.url.endswith("/products/1")]
    assert len(products) == 2
    for cassette in products:
        assert cassette.metadata.incomplete is False  # every span ended: the request settled by itself
        # One cassette holds the four kinds, in the order the endpoint makes them.
        kinds = [i.kind for i in cassette.interactions if not _transaction_control(i.request)]
        assert kinds == ["sql", "sql", "sql", "redis", "redis", "mongo", "http"]
    # The lifespan's start-up queries (create tables, seed the catalogue) are in the session cassette.
    sessions = [load_cassette(p) for p in iter_cassette_files(tmp_path / "cassettes", sessions=True)]
    statements = [
        i.request.operation.strip() for s in sessions for i in s.interactions if isinstance(i.request, CallRequest)
    ]
    assert any(s.startswith("CREATE TABLE") for s in statements)
    assert any(s.startswith("INSERT INTO") and "_products" in s for s in statements)
    (order,) = [c for c in cassettes if isinstance(c.request, HttpRequest) and c.request.method == "POST"]
    assert [i.kind for i in order.interactions if not _transaction_control(i.request)] == [
        "sql", "redis", "mongo", "http"
    ]


def _transaction_control(request: HttpRequest | CallRequest) -> bool:
    return isinstance(request, CallRequest) and request.operation.rstrip(";").upper() in {"BEGIN", "COMMIT", "ROLLBACK"}


def test_hybrid_replay_talks_to_a_live_redis_while_sql_mongo_and_http_replay(tmp_path: Path) -> None:
    _demo(tmp_path, "--live-redis")
    recorded = json.loads((tmp_path / "recorded.json").read_text())
    replayed = json.loads((tmp_path / "replayed.json").read_text())
    first_recorded, first_replayed = json.loads(recorded[0][1]), json.loads(replayed[0][1])
    # Redis answered live: the demo's keys were deleted after recording, so views start again and no badge.
    assert (first_recorded["badge"], first_replayed["badge"]) == ("bestseller", None)
    assert first_replayed["views"] == 1
    # PostgreSQL and MongoDB were unreachable: their answers are the recorded ones.
    for field in ("name", "price", "ordered", "cheaper_products", "reviews", "delivery_days"):
        assert first_replayed[field] == first_recorded[field], field
    assert replayed[2] == recorded[2]  # POST /orders: SQL, Redis INCRBY (its reply is not in the answer), MongoDB
