"""A Litestar service that calls a catalogue upstream over httpx. Nothing here mentions OpenTelemetry or
timetracer: run it unchanged under ``opentelemetry-instrument`` (see README.md next to this file).
"""

from __future__ import annotations

import asyncio
import os

import httpx
from litestar import Litestar, Request, get, post

UPSTREAM = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8766")


@get("/users/{user_id:int}")
async def get_user(user_id: int) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=UPSTREAM) as client:
        response = await client.get(f"/users/{user_id}")
    return {"user": response.json(), "upstream_status": response.status_code}


@post("/quotes")
async def quote(request: Request) -> dict[str, object]:
    raw = await request.body()
    order = await request.json()
    async with httpx.AsyncClient(base_url=UPSTREAM) as client:
        prices = await asyncio.gather(*(client.get("/price", params={"item": item}) for item in order["items"]))
    total = round(sum(p.json()["price"] for p in prices) * order.get("quantity", 1), 2)
    # The body exactly as the app received it, so a test can tell it was not changed on the way.
    return {"total": total, "received": raw.decode("utf-8")}


@get("/boom")
async def boom() -> dict[str, object]:
    async with httpx.AsyncClient(base_url=UPSTREAM) as client:
        await client.get("/users/1")
    raise RuntimeError("the upstream answered, then this view failed")


app = Litestar(route_handlers=[get_user, quote, boom])
