"""A stand-in for the pricing service the shop calls (``uvicorn upstream:app --port 8001``)."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def price(request: Request) -> JSONResponse:
    item = int(request.query_params["item"])
    return JSONResponse({"item": item, "price": round(9.99 + item * 1.5, 2), "currency": "EUR"})


app = Starlette(routes=[Route("/price", price)])
