"""A stand-in for the shipping service the example calls (run with uvicorn on 127.0.0.1)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def quote(request: Request) -> JSONResponse:
    product = int(request.query_params["product"])
    return JSONResponse({"product": product, "days": 1 + product % 4, "carrier": "parcel-co"})


async def ship(request: Request) -> JSONResponse:
    order = await request.json()
    return JSONResponse({"order": order["order_id"], "tracking": f"PC{order['order_id']:06d}"}, status_code=201)


app = Starlette(routes=[Route("/quote", quote), Route("/ship", ship, methods=["POST"])])
