"""Record the full-stack example against real PostgreSQL, Redis, MongoDB and an HTTP upstream, then replay it with
every one of them unreachable, and compare every response.

    python examples/fullstack/demo.py [--workdir DIR] [--live-redis]

Needs the servers the app uses (defaults: PostgreSQL 127.0.0.1:5432 database ``test``, Redis 127.0.0.1:6379, a
MongoDB wire server at 127.0.0.1:27017; override with DATABASE_URL, REDIS_URL, MONGO_URI). Everything listens on
127.0.0.1. Exit status 0 means every replayed response was byte-identical.

With ``--live-redis`` the replay is hybrid (``TIMETRACER_LIVE_PLUGINS=redis``): SQL, MongoDB and HTTP are answered
from the cassettes while Redis is the real server, where the demo's keys are gone by then (so views count from 1
again and there is no badge). Both runs' answers are written to ``recorded.json`` and ``replayed.json`` in the work
directory.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from demo_support import BIN, free_port, report, start, stop  # noqa: E402

REQUESTS = [
    ("GET", "/products/1", None),
    ("GET", "/products/2", None),
    ("POST", "/orders", {"product_id": 1, "quantity": 2}),
    ("GET", "/products/1", None),
    ("GET", "/products/99", None),
]
DEFAULTS = {
    "DATABASE_URL": "postgresql+asyncpg://root@127.0.0.1:5432/test",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "MONGO_URI": "mongodb://127.0.0.1:27017/?directConnection=true",
}


def exchange(port: int) -> list[tuple[int, bytes]]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
        answers = [client.request(method, path, json=body) for method, path, body in REQUESTS]
    return [(answer.status_code, answer.content) for answer in answers]


def seed(env: dict[str, str], prefix: str) -> None:
    """Reviews and a badge the app only reads (written here, not by the app)."""
    import redis
    from pymongo import MongoClient

    with MongoClient(env["MONGO_URI"]) as client:
        client[f"{prefix}_db"]["reviews"].insert_many([
            {"product": 1, "stars": 5, "text": "boils fast", "at": dt.datetime(2026, 11, 1, 9, 30, tzinfo=dt.UTC)},
            {"product": 1, "stars": 3, "text": "loud", "at": dt.datetime(2026, 11, 2, 18, 5, tzinfo=dt.UTC)},
            {"product": 2, "stars": 4, "text": "pretty", "at": dt.datetime(2026, 11, 3, 12, 0, tzinfo=dt.UTC)},
        ])
    redis.Redis.from_url(env["REDIS_URL"]).set(f"{prefix}:badge:1", "bestseller")


def clean_up(env: dict[str, str], prefix: str) -> None:
    import asyncpg
    import redis
    from pymongo import MongoClient

    with MongoClient(env["MONGO_URI"]) as client:
        client.drop_database(f"{prefix}_db")
    client_redis = redis.Redis.from_url(env["REDIS_URL"])
    for key in client_redis.scan_iter(f"{prefix}:*"):
        client_redis.delete(key)

    async def drop() -> None:
        connection = await asyncpg.connect(env["DATABASE_URL"].replace("+asyncpg", ""))
        await connection.execute(f"DROP TABLE IF EXISTS {prefix}_orders, {prefix}_products")
        await connection.close()

    asyncio.run(drop())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(".demo-fullstack"))
    parser.add_argument("--live-redis", action="store_true", help="replay with Redis live (hybrid replay)")
    args = parser.parse_args()
    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    cassettes = workdir / "cassettes"
    workdir.mkdir(parents=True)
    for name in ("TIMETRACER_MODE", "OTEL_TRACES_EXPORTER"):
        os.environ.pop(name, None)
    servers = {name: os.environ.get(name, default) for name, default in DEFAULTS.items()}
    prefix = f"shop_{secrets.token_hex(4)}"  # this run's tables, keys and database
    seed(servers, prefix)
    try:
        upstream_port, app_port = free_port(), free_port()
        upstream_url = f"http://127.0.0.1:{upstream_port}"
        upstream = start("upstream:app", upstream_port, {}, workdir / "upstream.log", cwd=HERE, instrument=False)
        print(f"1. shipping upstream on {upstream_url}; PostgreSQL, Redis and MongoDB up")
        common = {"UPSTREAM_URL": upstream_url, "SHOP_TABLE_PREFIX": prefix, "TIMETRACER_SERVICE": "shop"}
        record_env = {**common, **servers, "TIMETRACER_MODE": "record", "TIMETRACER_DIR": str(cassettes)}
        app = start("app:app", app_port, record_env, workdir / "record.log", cwd=HERE, instrument=True)
        recorded = exchange(app_port)
        stop(app)
        stop(upstream)
        print(f"2. recorded {len(recorded)} requests under opentelemetry-instrument into {cassettes}:")
        subprocess.run([str(BIN / "timetracer"), "list", str(cassettes)], check=True)
    finally:
        clean_up(servers, prefix)

    # Every server unreachable: addresses where nothing listens (and the upstream is stopped).
    nowhere = free_port()
    unreachable = {
        "DATABASE_URL": f"postgresql+asyncpg://root@127.0.0.1:{nowhere}/test",
        "REDIS_URL": f"redis://127.0.0.1:{nowhere}/0",
        "MONGO_URI": f"mongodb://127.0.0.1:{nowhere}/?directConnection=true",
    }
    replay_env = {**common, **unreachable, "TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(cassettes)}
    if args.live_redis:
        replay_env.update(REDIS_URL=servers["REDIS_URL"], TIMETRACER_LIVE_PLUGINS="redis")
        print("3. replaying with Redis live and PostgreSQL, MongoDB and the upstream unreachable")
    else:
        print(f"3. replaying with PostgreSQL, Redis, MongoDB and the upstream unreachable (127.0.0.1:{nowhere})")
    app = start("app:app", app_port, replay_env, workdir / "replay.log", cwd=HERE, instrument=True)
    replayed = exchange(app_port)
    stop(app)
    for name, answers in (("recorded", recorded), ("replayed", replayed)):
        (workdir / f"{name}.json").write_text(json.dumps([[status, body.decode()] for status, body in answers]))
    if args.live_redis:
        for (method, path, _), (status, body) in zip(REQUESTS, replayed, strict=True):
            print(f"   {method} {path}: {status} {body.decode()[:100]}")
        clean_up(servers, prefix)  # what live Redis wrote
        return 0
    return report(REQUESTS, recorded, replayed, workdir, "no server reachable")

if __name__ == "__main__":
    sys.exit(main())
