"""Stub upstream for the record-overhead benchmark: one JSON endpoint answering ~1 KB, as fast as it can.

Run uninstrumented: ``uvicorn bench_upstream:app --host 127.0.0.1 --port PORT`` (from this directory).
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _payload(item: int) -> bytes:
    # ~1 KB of JSON: a product record with a list of offers, the shape a pricing/catalog API returns.
    offers = [
        {"seller": f"seller-{n}", "price": round(9.99 + n * 1.25, 2), "currency": "EUR", "in_stock": n % 3 != 0}
        for n in range(14)
    ]
    document = {"item": item, "name": f"Item number {item}", "category": "hardware", "offers": offers}
    return json.dumps(document, separators=(",", ":")).encode()


_CACHE: dict[int, bytes] = {}


async def item(request: Request) -> Response:
    number = int(request.query_params.get("id", "1")) % 100
    body = _CACHE.get(number)
    if body is None:
        body = _CACHE[number] = _payload(number)
    return Response(body, media_type="application/json")


app = Starlette(routes=[Route("/item", item)])
