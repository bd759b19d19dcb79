"""A checkout service: every request calls a pricing upstream over httpx, in the ways real apps do.

Run it unchanged under timetracer (see README.md next to this file).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import httpx
from fastapi import BackgroundTasks, FastAPI
from pydantic import BaseModel

UPSTREAM = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8765")

app = FastAPI(title="checkout")
_pool = ThreadPoolExecutor(max_workers=2)


class Order(BaseModel):
    item: int
    quantity: int = 1


def _warehouse_slot(item: int) -> dict[str, object]:
    # Runs on a worker thread with a sync client, as legacy code often does.
    with httpx.Client(base_url=UPSTREAM) as client:
        return client.get("/slot", params={"item": item}).json()


async def _audit(item: int, total: float) -> None:
    async with httpx.AsyncClient(base_url=UPSTREAM) as client:
        await client.post("/audit", json={"item": item, "total": total})


@app.post("/checkout")
async def checkout(order: Order, background: BackgroundTasks) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=UPSTREAM) as client:
        price, stock = await asyncio.gather(
            client.get("/price", params={"item": order.item}),
            client.get("/stock", params={"item": order.item}),
        )
    slot = await asyncio.get_running_loop().run_in_executor(_pool, _warehouse_slot, order.item)
    total = round(price.json()["price"] * order.quantity, 2)
    background.add_task(_audit, order.item, total)
    return {"item": order.item, "total": total, "in_stock": stock.json()["available"], "slot": slot["slot"]}


@app.get("/users/{user_id}")
async def user(user_id: int) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=UPSTREAM) as client:
        profile = await client.get(f"/users/{user_id}")
    return {"id": user_id, "name": profile.json()["name"]}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
