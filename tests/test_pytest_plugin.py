"""The pytest plugin, driven the way users run it: a sample project run by pytest in a subprocess (pytester), its
tests calling a real HTTP server on 127.0.0.1 that is stopped before they replay."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.http_upstream import Upstream, running_upstream
from timetracer_otel import load_cassette

pytest_plugins = ["pytester"]

SAMPLE = '''
import os

import httpx
import pytest

URL = os.environ["UPSTREAM_URL"]


@pytest.mark.timetracer
def test_fetch():
    answer = httpx.get(f"{URL}/echo", params={"q": os.environ.get("QUERY", "one")}).json()
    assert answer["query"] == {"q": os.environ.get("QUERY", "one")}


@pytest.mark.timetracer
@pytest.mark.parametrize("word", ["a b", "c/d"])
def test_words(word):
    for n in range(int(os.environ.get("CALLS", "1"))):
        assert httpx.post(f"{URL}/echo", json={"word": word, "n": n}).json()["method"] == "POST"


def test_without_cassette():
    assert 1 + 1 == 2
'''


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with running_upstream() as server:
        yield server


@pytest.fixture
def project(pytester: pytest.Pytester, upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makepyfile(test_sample=SAMPLE)
    monkeypatch.setenv("UPSTREAM_URL", str(upstream))
    monkeypatch.delenv("CI", raising=False)
    return pytester


def _cassette(project: pytest.Pytester, name: str) -> Path:
    return project.path / "cassettes" / "test_sample" / f"{name}.json"


def test_records_then_replays_with_the_server_stopped(project: pytest.Pytester, upstream: Upstream) -> None:
    recorded = project.runpytest_subprocess("-p", "no:cacheprovider")
    recorded.assert_outcomes(passed=4)
    for name in ("test_fetch", "test_words[a_b]", "test_words[c_d]"):
        cassette = load_cassette(_cassette(project, name))
        assert cassette.metadata.scope == "test" and len(cassette.interactions) == 1, name
    assert "recorded 1" in recorded.stdout.str()

    upstream.stop()
    replayed = project.runpytest_subprocess("-p", "no:cacheprovider")
    replayed.assert_outcomes(passed=4)
    replayed.stdout.fnmatch_lines(["*timetracer*", "*test_fetch: replay *test_fetch.json - replayed 1, recorded 0, "
                                   "unused 0"])


def test_a_changed_parameter_fails_with_the_mismatch_explained(
    project: pytest.Pytester, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=4)
    upstream.stop()
    monkeypatch.setenv("QUERY", "two")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_fetch")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "ReplayMismatchError" in output and "no recorded call matches" in output
    assert 'q="two"' in output or "q=two" in output, output
    assert "nearest recorded calls" in output


def test_a_missing_cassette_under_ci_is_a_clear_failure(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_fetch")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_fetch.json: no cassette here and the record mode is 'none'*"])
    assert not _cassette(project, "test_fetch").exists(), "nothing recorded"


def test_new_episodes_appends_what_the_cassette_lacks(
    project: pytest.Pytester, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_words").assert_outcomes(passed=2)
    monkeypatch.setenv("CALLS", "3")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_words",
                                          "--timetracer-record-mode=new_episodes")
    result.assert_outcomes(passed=2)
    cassette = load_cassette(_cassette(project, "test_words[a_b]"))
    bodies = [json.loads(i.request.body.data)["n"] for i in cassette.interactions]  # type: ignore[union-attr]
    assert bodies == [0, 1, 2], "the recorded call kept, the two new ones appended"

    upstream.stop()
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_words").assert_outcomes(passed=2)


def test_fail_unused_catches_a_stale_cassette(
    project: pytest.Pytester, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLS", "2")
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_words").assert_outcomes(passed=2)
    upstream.stop()
    monkeypatch.setenv("CALLS", "1")
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_words").assert_outcomes(passed=2)
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_words", "--timetracer-fail-unused")
    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    assert "StaleCassetteError" in output and "1 recorded interaction(s) were never used" in output
    assert "POST" in output and "/echo" in output


def test_rewrite_replaces_and_none_never_records(
    project: pytest.Pytester, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLS", "2")
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_words").assert_outcomes(passed=2)
    monkeypatch.setenv("CALLS", "1")
    project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_words",
                                 "--timetracer-record-mode=rewrite").assert_outcomes(passed=2)
    assert len(load_cassette(_cassette(project, "test_words[a_b]")).interactions) == 1
    monkeypatch.setenv("CALLS", "2")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "test_words",
                                          "--timetracer-record-mode=none")
    result.assert_outcomes(failed=2)
    assert "body differs: recorded '{\"n\":0," in result.stdout.str(), "the second call was not recorded again"


def _pytest_in(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=directory,
                          capture_output=True, text=True, timeout=120)


def test_runs_from_another_directory_and_under_xdist(project: pytest.Pytester, upstream: Upstream,
                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    tests = str(project.path / "test_sample.py")
    recorded = _pytest_in(elsewhere, "-n", "2", tests)
    assert recorded.returncode == 0, recorded.stdout
    assert _cassette(project, "test_fetch").exists(), "next to the test file, not the working directory"
    assert not (elsewhere / "cassettes").exists()
    assert "recorded 1" in recorded.stdout, "the summary gathers the workers' reports"
    upstream.stop()
    replayed = _pytest_in(elsewhere, "-n", "2", tests)
    assert replayed.returncode == 0, replayed.stdout
    assert replayed.stdout.count("replayed 1, recorded 0, unused 0") == 3, replayed.stdout


SHOP_APP = '''
import os

import redis.asyncio as redis
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(os.environ["DB_URL"])
cache = redis.from_url(os.environ["REDIS_URL"])
app = FastAPI()


@app.get("/stock/{sku}")
async def stock(sku: str):
    key = f"timetracer-plugin-test:{os.environ['RUN']}:{sku}"
    cached = await cache.get(key)
    if cached is not None:
        return {"sku": sku, "stock": int(cached), "cached": True}
    async with engine.connect() as connection:
        row = (await connection.execute(text("SELECT :sku AS sku, length(:sku) * 7 AS stock"), {"sku": sku})).one()
    await cache.set(key, row.stock, ex=60)
    return {"sku": row.sku, "stock": row.stock, "cached": False}
'''

SHOP_TESTS = '''
import pytest
from fastapi.testclient import TestClient

from shop import app


@pytest.mark.timetracer
def test_stock_is_cached_after_the_first_read():
    with TestClient(app) as client:
        first = client.get("/stock/kettle").json()
        second = client.get("/stock/kettle").json()
    assert first == {"sku": "kettle", "stock": 42, "cached": False}
    assert second == {"sku": "kettle", "stock": 42, "cached": True}
'''


def test_an_app_tested_in_process_replays_its_database_and_cache(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.http_upstream import closed_port
    from tests.services import POSTGRES_DSN, REDIS_URL

    pytester.makepyfile(shop=SHOP_APP, test_shop=SHOP_TESTS)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("RUN", __import__("uuid").uuid4().hex)
    monkeypatch.setenv("DB_URL", POSTGRES_DSN.replace("postgresql://", "postgresql+asyncpg://", 1))
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    cassette = load_cassette(pytester.path / "cassettes" / "test_shop" /
                             "test_stock_is_cached_after_the_first_read.json")
    kinds = [i.kind for i in cassette.interactions]
    assert kinds.count("redis") >= 3 and "sql" in kinds, kinds

    # Nothing listens where the app now points: every answer comes from the cassette.
    monkeypatch.setenv("DB_URL", f"postgresql+asyncpg://root@127.0.0.1:{closed_port()}/test")
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{closed_port()}/0")
    monkeypatch.setenv("CI", "1")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "recorded 0" in result.stdout.str()


MORE = '''
import os
import socket

import httpx
import pytest

URL = os.environ["UPSTREAM_URL"]


@pytest.mark.timetracer
def test_raw_socket():
    httpx.get(f"{URL}/echo")
    if os.environ.get("PROBE"):
        host, port = URL.removeprefix("http://").split(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except ConnectionRefusedError:
            pytest.fail("the connection was attempted, and refused")


@pytest.mark.timetracer(match_on=["method", "path"], allow_playback_repeats=True)
def test_loosely_matched():
    for i in range(int(os.environ.get("CALLS", "1"))):
        assert httpx.get(f"{URL}/echo", params={"i": i}).json()["query"] == {"i": "0"}


def test_explicit_paths(timetracer_auto, timetracer_replay, timetracer_record):
    with timetracer_auto("recorded/auto.json") as auto:
        httpx.get(f"{URL}/echo", params={"e": "auto"})
    assert auto.action == os.environ["EXPECT_AUTO"]
    with timetracer_record("recorded/always.json") as always:
        pass
    assert always.action == "record"
    with timetracer_replay("recorded/auto.json") as replay:
        httpx.get(f"{URL}/echo", params={"e": "auto"})
    assert replay.replayed == 1
'''


def test_the_network_is_blocked_in_replay_unless_allowed(
    project: pytest.Pytester, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile(test_more=MORE)
    monkeypatch.setenv("EXPECT_AUTO", "record")
    project.runpytest_subprocess("-p", "no:cacheprovider", "test_more.py").assert_outcomes(passed=3)
    assert (project.path / "recorded" / "auto.json").exists(), "relative to the test file"
    upstream.stop()
    monkeypatch.setenv("PROBE", "1")
    monkeypatch.setenv("CALLS", "3")
    monkeypatch.setenv("EXPECT_AUTO", "replay")
    blocked = project.runpytest_subprocess("-p", "no:cacheprovider", "test_more.py")
    blocked.assert_outcomes(passed=2, failed=1)
    blocked.stdout.fnmatch_lines(["*NetworkBlockedError: replay blocked a live connection to 127.0.0.1:*"
                                  "--timetracer-allow-hosts*"])
    allowed = project.runpytest_subprocess("-p", "no:cacheprovider", "test_more.py", "-k", "raw_socket",
                                           "--timetracer-allow-hosts=127.0.0.1")
    allowed.assert_outcomes(failed=1)
    allowed.stdout.fnmatch_lines(["*the connection was attempted, and refused*"])


WSGI_TESTS = '''
import os

import django
import pytest
import requests
from django.conf import settings
from flask import Flask

URL = os.environ["UPSTREAM_URL"]

flask_app = Flask(__name__)


@flask_app.get("/price")
def price():
    return requests.get(f"{URL}/echo", params={"via": "flask"}, timeout=5).json()["query"]


settings.configure(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"], SECRET_KEY="test-only")
django.setup()

from django.http import JsonResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402


def django_price(request):
    return JsonResponse(requests.get(f"{URL}/echo", params={"via": "django"}, timeout=5).json()["query"])


urlpatterns = [path("price", django_price)]


@pytest.mark.timetracer
def test_flask_test_client():
    assert flask_app.test_client().get("/price").get_json() == {"via": "flask"}


@pytest.mark.timetracer
def test_django_test_client():
    assert Client().get("/price").json() == {"via": "django"}
'''


def test_flask_and_django_test_clients_replay_their_apps_calls(project: pytest.Pytester, upstream: Upstream) -> None:
    project.makepyfile(test_wsgi_apps=WSGI_TESTS)
    project.runpytest_subprocess("-p", "no:cacheprovider", "test_wsgi_apps.py").assert_outcomes(passed=2)
    upstream.stop()
    replayed = project.runpytest_subprocess("-p", "no:cacheprovider", "test_wsgi_apps.py")
    replayed.assert_outcomes(passed=2)
    assert replayed.stdout.str().count("replayed 1, recorded 0, unused 0") == 2


AIOHTTP_AND_MONGO = '''
import os

import aiohttp
import pytest
from pymongo import AsyncMongoClient

URL = os.environ["UPSTREAM_URL"]


@pytest.mark.timetracer
async def test_aiohttp_then_mongo():
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{URL}/echo", params={"via": "aiohttp"}) as response:
            query = (await response.json())["query"]
    client = AsyncMongoClient(os.environ["MONGO_URI"], serverSelectionTimeoutMS=3000)
    try:
        collection = client["timetracer_plugin"][os.environ["RUN"]]
        await collection.insert_one({"_id": 1, **query})
        assert await collection.find_one({"_id": 1}) == {"_id": 1, "via": "aiohttp"}
    finally:
        await client.close()
'''


def test_aiohttp_and_mongodb_replay_without_their_servers(
    project: pytest.Pytester, upstream: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.http_upstream import closed_port
    from tests.services import MONGO_URI

    project.makepyfile(test_async=AIOHTTP_AND_MONGO)
    project.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    monkeypatch.setenv("RUN", __import__("uuid").uuid4().hex)
    monkeypatch.setenv("MONGO_URI", MONGO_URI)
    project.runpytest_subprocess("-p", "no:cacheprovider", "test_async.py").assert_outcomes(passed=1)
    upstream.stop()
    monkeypatch.setenv("MONGO_URI", f"mongodb://127.0.0.1:{closed_port()}/?directConnection=true")
    replayed = project.runpytest_subprocess("-p", "no:cacheprovider", "test_async.py")
    replayed.assert_outcomes(passed=1)
    assert "recorded 0, unused 0" in replayed.stdout.str()


GENERATED_TESTS = '''
import datetime
import json
import os
import uuid

import psycopg
import pytest
from bson import ObjectId
from fastapi import FastAPI
from fastapi.testclient import TestClient

app = FastAPI()


@app.post("/orders")
def create_order():
    order_id, now = uuid.uuid4(), datetime.datetime.now(datetime.UTC)
    with psycopg.connect(os.environ["DSN"]) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS timetracer_plugin_orders (id uuid PRIMARY KEY, at timestamptz)")
        connection.execute("INSERT INTO timetracer_plugin_orders VALUES (%s, %s)", (order_id, now))
    return {"id": str(order_id), "at": now.isoformat(), "object_id": str(ObjectId())}


@pytest.mark.timetracer
def test_order():
    with TestClient(app) as client:
        answer = client.post("/orders").json()
    with open(os.environ["ANSWERS"], "a") as answers:
        answers.write(json.dumps(answer) + "\\n")
'''


def test_generated_ids_and_the_clock_replay_as_recorded(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.http_upstream import closed_port
    from tests.services import POSTGRES_DSN

    pytester.makepyfile(test_orders=GENERATED_TESTS)
    answers = tmp_path / "answers.jsonl"
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("ANSWERS", str(answers))
    monkeypatch.setenv("TIMETRACER_RECORD_CLOCK", "true")
    monkeypatch.setenv("DSN", POSTGRES_DSN)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    monkeypatch.setenv("DSN", f"postgresql://root@127.0.0.1:{closed_port()}/test")
    replayed = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    replayed.assert_outcomes(passed=1)
    recorded_answer, replayed_answer = answers.read_text().splitlines()
    assert replayed_answer == recorded_answer, "the same uuid (which the INSERT carried), time and ObjectId"


ASGI_TRANSPORT_TESTS = '''
import os

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

URL = os.environ["UPSTREAM_URL"]


async def proxy(request):
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"{URL}/echo", params={"via": "asgi"})
    return JSONResponse(answer.json()["query"])


app = Starlette(routes=[Route("/proxy", proxy)])


@pytest.mark.timetracer
async def test_through_asgi_transport():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app") as client:
        assert (await client.get("/proxy")).json() == {"via": "asgi"}
'''


def test_an_app_driven_through_asgi_transport_replays_its_calls(project: pytest.Pytester, upstream: Upstream) -> None:
    project.makepyfile(test_asgi_transport=ASGI_TRANSPORT_TESTS)
    project.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    project.runpytest_subprocess("-p", "no:cacheprovider", "test_asgi_transport.py").assert_outcomes(passed=1)
    upstream.stop()
    replayed = project.runpytest_subprocess("-p", "no:cacheprovider", "test_asgi_transport.py")
    replayed.assert_outcomes(passed=1)
    assert "replayed 1, recorded 0, unused 0" in replayed.stdout.str()
