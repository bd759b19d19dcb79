"""A stand-in for the catalogue service the example calls (run with uvicorn on 127.0.0.1)."""

from __future__ import annotations

from litestar import Litestar, get


@get("/users/{user_id:int}")
async def user(user_id: int) -> dict[str, object]:
    return {"id": user_id, "name": f"user-{user_id}"}


@get("/price")
async def price(item: int) -> dict[str, object]:
    return {"item": item, "price": round(9.99 + item * 1.5, 2), "currency": "EUR"}


app = Litestar(route_handlers=[user, price])
