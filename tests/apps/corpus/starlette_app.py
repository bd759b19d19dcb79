"""The corpus on Starlette; its views serve the FastAPI app too (FastAPI routes plain Starlette views)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.apps.corpus import seen


def _json(body: bytes) -> Response:
    return Response(body, media_type=seen.JSON)


async def echo_raw(request: Request) -> Response:
    return _json(seen.raw_body(request.method, request.headers.get("content-type"), await request.body()))


async def echo_json(request: Request) -> Response:
    return _json(seen.json_body(request.method, request.headers.get("content-type"), await request.json()))


async def echo_form(request: Request) -> Response:
    fields, files = [], []
    async with request.form() as form:  # closes the spooled upload files afterwards
        for name, value in form.multi_items():
            if isinstance(value, str):
                fields.append((name, value))
            else:
                files.append(seen.uploaded_file(name, value.filename, value.content_type, await value.read()))
    return _json(seen.form(request.method, request.headers.get("content-type"), fields, files))


async def item(request: Request) -> Response:
    return _json(seen.item(request.path_params["item_id"]))


async def blob(request: Request) -> Response:
    return Response(seen.blob(int(request.query_params["size"])), media_type=seen.OCTETS)


async def nothing(request: Request) -> Response:
    return Response(status_code=204)


async def cached(request: Request) -> Response:
    if seen.is_fresh(request.headers.get("if-none-match")):
        return Response(status_code=304, headers={"etag": seen.ETAG})
    return Response(seen.CACHED_BODY, media_type="text/plain", headers={"etag": seen.ETAG})


async def redirect(request: Request) -> Response:
    return RedirectResponse(seen.REDIRECT_TARGET, status_code=302)


async def stream(request: Request) -> Response:
    return StreamingResponse(seen.astream_chunks(), media_type="text/plain")


async def events(request: Request) -> Response:
    return StreamingResponse(seen.asse_events(), media_type="text/event-stream", headers=seen.EVENT_STREAM_HEADERS)


async def boom(request: Request) -> Response:
    seen.boom()


async def health(request: Request) -> Response:
    return Response(seen.HEALTHY, media_type="text/plain")


async def echo_websocket(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text("echo: " + await websocket.receive_text())
    except WebSocketDisconnect:
        pass


app = Starlette(
    debug=False,  # Starlette's own plain 500, not a traceback page
    routes=[
        Route("/echo/raw", echo_raw, methods=["POST"]),
        Route("/echo/json", echo_json, methods=["POST"]),
        Route("/echo/form", echo_form, methods=["POST"]),
        Route("/items/{item_id:int}", item, methods=["GET"]),  # Starlette answers HEAD for GET routes
        Route("/blob", blob),
        Route("/nothing", nothing, methods=["GET", "DELETE"]),
        Route("/cached", cached),
        Route("/redirect", redirect),
        Route("/stream", stream),
        Route("/events", events),
        Route("/boom", boom),
        Route("/health", health),
        WebSocketRoute("/ws", echo_websocket),
        Mount("/sub", app=Starlette(routes=[Route("/items/{item_id:int}", item)])),
    ],
)
