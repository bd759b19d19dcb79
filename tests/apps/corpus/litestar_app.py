"""The corpus on Litestar (which records its route as the ``path_template``: ``/items/{item_id}``)."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, MediaType, Request, Response, get, post, route
from litestar.response import Redirect, Stream

from tests.apps.corpus import seen


def _json(body: bytes) -> Response[bytes]:
    return Response(body, media_type=seen.JSON)


@post("/echo/raw", status_code=200)
async def echo_raw(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _json(seen.raw_body(request.method, request.headers.get("content-type"), await request.body()))


@post("/echo/json", status_code=200)
async def echo_json(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _json(seen.json_body(request.method, request.headers.get("content-type"), await request.json()))


@post("/echo/form", status_code=200)
async def echo_form(request: Request[Any, Any, Any]) -> Response[bytes]:
    fields, files = [], []
    # items() is multidict's, every pair in the order sent; Litestar's multi_items() walks a set of the names,
    # in an order that changes from one process to the next.
    for name, value in (await request.form()).items():
        if isinstance(value, str):
            fields.append((name, value))
        else:
            files.append(seen.uploaded_file(name, value.filename, value.content_type, await value.read()))
    return _json(seen.form(request.method, request.headers.get("content-type"), fields, files))


@route("/items/{item_id:int}", http_method=["GET", "HEAD"])
async def item(item_id: int) -> Response[bytes]:
    return _json(seen.item(item_id))


@get("/blob")
async def blob(size: int) -> Response[bytes]:
    return Response(seen.blob(size), media_type=seen.OCTETS)


@route("/nothing", http_method=["GET", "DELETE"], status_code=204)
async def nothing() -> None:
    return None


@get("/cached")
async def cached(request: Request[Any, Any, Any]) -> Response[bytes]:
    if seen.is_fresh(request.headers.get("if-none-match")):
        return Response(b"", status_code=304, headers={"etag": seen.ETAG})
    return Response(seen.CACHED_BODY, media_type=MediaType.TEXT, headers={"etag": seen.ETAG})


@get("/redirect")
async def redirect() -> Redirect:
    return Redirect(seen.REDIRECT_TARGET, status_code=302)


@get("/stream")
async def stream() -> Stream:
    return Stream(seen.astream_chunks(), media_type=MediaType.TEXT)


@get("/events")
async def events() -> Stream:
    return Stream(seen.asse_events(), media_type="text/event-stream", headers=seen.EVENT_STREAM_HEADERS)


@get("/boom")
async def boom() -> None:
    seen.boom()


@get("/health")
async def health() -> Response[bytes]:
    return Response(seen.HEALTHY, media_type=MediaType.TEXT)


# debug stays off: Litestar's plain JSON 500, not a traceback page
app = Litestar([echo_raw, echo_json, echo_form, item, blob, nothing, cached, redirect, stream, events, boom, health])
