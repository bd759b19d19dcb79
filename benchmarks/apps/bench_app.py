"""The app measured by ``benchmarks/record_overhead.py``.

Three endpoints:

* ``GET /outbound?id=N``: one outbound call, ``GET {UPSTREAM_URL}/item?id=N`` through a module-level
  ``httpx.AsyncClient`` (connection pool reused across requests, as a real service does), answering with a
  ~1 KB JSON document built from the upstream's ~1 KB JSON answer.
* ``GET /fullstack?id=N``: the same HTTP call plus 3 SQL queries (SQLAlchemy Core on asyncpg, one pooled
  connection per request), 2 Redis commands and 1 MongoDB ``find_one``, against tables and documents that
  ``record_overhead.py`` seeds (``bench_products``, ``bench.reviews``, ``bench:badge:*``).
* ``GET /empty``: an empty JSON object, no outbound call: the fixed per-request cost of each layer.

Run from this directory: ``uvicorn bench_app:app`` with ``BENCH_UPSTREAM_URL=http://127.0.0.1:PORT`` (and for
``/fullstack`` ``BENCH_DATABASE_URL``, ``BENCH_REDIS_URL``, ``BENCH_MONGO_URI``; defaults: the local servers).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import redis.asyncio as redis
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

UPSTREAM = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:8766")
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
MONGO_URI = os.environ.get("BENCH_MONGO_URI", "mongodb://127.0.0.1:27017/?directConnection=true")

client = httpx.AsyncClient(base_url=UPSTREAM, timeout=10.0)
# Created here, connected on first use (by /fullstack only).
engine = create_async_engine(DATABASE_URL, pool_size=20)
cache = redis.from_url(REDIS_URL, max_connections=64)
#: Made on first use (PyMongo's async client belongs to the event loop it is created in; the in-process driver
#: of record_cpu.py runs no lifespan).
clients: dict[str, AsyncMongoClient[dict[str, object]]] = {}


def mongo() -> AsyncMongoClient[dict[str, object]]:
    if "mongo" not in clients:
        clients["mongo"] = AsyncMongoClient(MONGO_URI, maxPoolSize=64)
    return clients["mongo"]


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await client.aclose()
    await cache.aclose()
    if "mongo" in clients:
        await clients["mongo"].close()
    await engine.dispose()


app = FastAPI(title="timetracer-bench", lifespan=lifespan)


@app.get("/outbound")
async def outbound(id: int = 1) -> dict[str, object]:
    answer = await client.get("/item", params={"id": id})
    answer.raise_for_status()
    document = answer.json()
    best = min(document["offers"], key=lambda offer: offer["price"])
    return {"item": document["item"], "name": document["name"], "best": best, "offers": document["offers"]}


@app.get("/empty")
async def empty() -> dict[str, object]:
    return {}


@app.get("/fullstack")
async def fullstack(id: int = 1) -> dict[str, object]:
    async with engine.connect() as connection:
        product = (
            await connection.execute(text("SELECT id, name, price, category FROM bench_products WHERE id = :id"),
                                     {"id": id})
        ).one()
        cheaper = await connection.scalar(text("SELECT count(*) FROM bench_products WHERE price < :price"),
                                          {"price": product.price})
        in_stock = await connection.scalar(
            text("SELECT coalesce(sum(stock), 0) FROM bench_products WHERE category = :category"),
            {"category": product.category},
        )
    views = await cache.incr(f"bench:views:{id}")
    badge = await cache.get(f"bench:badge:{id}")
    review = await mongo()["bench"]["reviews"].find_one({"product": id}, {"_id": 0})
    answer = await client.get("/item", params={"id": id})
    answer.raise_for_status()
    document = answer.json()
    return {
        "id": product.id,
        "name": product.name,
        "price": str(product.price),
        "cheaper": cheaper,
        "in_stock": in_stock,
        "views": views,
        "badge": badge.decode() if badge else None,
        "review": review,
        "offers": document["offers"],
    }
