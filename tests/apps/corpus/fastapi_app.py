"""The corpus on FastAPI: FastAPI's own routing (path parameters, a mounted FastAPI sub-app) over the Starlette
app's views, which FastAPI calls as they are since they take the request itself."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from tests.apps.corpus import seen, starlette_app


def _fastapi() -> FastAPI:
    return FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # debug stays off: FastAPI's plain 500


async def item(item_id: int) -> Response:
    return Response(seen.item(item_id), media_type=seen.JSON)


app = _fastapi()
for path, view, methods in (
    ("/echo/raw", starlette_app.echo_raw, ["POST"]),
    ("/echo/json", starlette_app.echo_json, ["POST"]),
    ("/echo/form", starlette_app.echo_form, ["POST"]),
    ("/items/{item_id}", item, ["GET", "HEAD"]),  # FastAPI, unlike Starlette, answers HEAD only when asked to
    ("/blob", starlette_app.blob, ["GET"]),
    ("/nothing", starlette_app.nothing, ["GET", "DELETE"]),
    ("/cached", starlette_app.cached, ["GET"]),
    ("/redirect", starlette_app.redirect, ["GET"]),
    ("/stream", starlette_app.stream, ["GET"]),
    ("/events", starlette_app.events, ["GET"]),
    ("/boom", starlette_app.boom, ["GET"]),
    ("/health", starlette_app.health, ["GET"]),
):
    app.add_api_route(path, view, methods=methods)
app.add_api_websocket_route("/ws", starlette_app.echo_websocket)

sub_app = _fastapi()
sub_app.add_api_route("/items/{item_id}", item, methods=["GET"])
app.mount("/sub", sub_app)
