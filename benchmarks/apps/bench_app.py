"""The app measured by ``benchmarks/record_overhead.py``.

Two endpoints:

* ``GET /outbound?id=N``: one outbound call, ``GET {UPSTREAM_URL}/item?id=N`` through a module-level
  ``httpx.AsyncClient`` (connection pool reused across requests, as a real service does), answering with a
  ~1 KB JSON document built from the upstream's ~1 KB JSON answer.
* ``GET /empty``: an empty JSON object, no outbound call: the fixed per-request cost of each layer.

Run from this directory: ``uvicorn bench_app:app`` with ``BENCH_UPSTREAM_URL=http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

UPSTREAM = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:8766")

client = httpx.AsyncClient(base_url=UPSTREAM, timeout=10.0)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await client.aclose()


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
