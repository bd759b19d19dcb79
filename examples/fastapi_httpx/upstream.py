"""A stand-in for the pricing service the example calls (run with uvicorn on 127.0.0.1)."""

from __future__ import annotations

import itertools

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_audit_ids = itertools.count(1)


async def price(request: Request) -> JSONResponse:
    item = int(request.query_params["item"])
    return JSONResponse({"item": item, "price": round(9.99 + item * 1.5, 2), "currency": "EUR"})


async def stock(request: Request) -> JSONResponse:
    item = int(request.query_params["item"])
    return JSONResponse({"item": item, "available": item % 5 != 0})


async def slot(request: Request) -> JSONResponse:
    return JSONResponse({"slot": f"W{int(request.query_params['item']) % 7}"})


async def audit(request: Request) -> JSONResponse:
    await request.json()
    return JSONResponse({"audit_id": next(_audit_ids)}, status_code=201)


async def user(request: Request) -> JSONResponse:
    user_id = int(request.path_params["user_id"])
    return JSONResponse({"id": user_id, "name": f"user-{user_id}"})


app = Starlette(
    routes=[
        Route("/price", price),
        Route("/stock", stock),
        Route("/slot", slot),
        Route("/audit", audit, methods=["POST"]),
        Route("/users/{user_id:int}", user),
    ]
)
