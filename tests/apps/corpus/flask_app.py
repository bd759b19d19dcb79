"""The corpus on Flask (served by ``flask run``, Werkzeug's development server)."""

from __future__ import annotations

from flask import Flask, Response, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from tests.apps.corpus import seen

app = Flask(__name__)  # debug stays off: Werkzeug's plain 500 page, not the debugger


def _json(body: bytes) -> Response:
    return Response(body, mimetype=seen.JSON)


@app.post("/echo/raw")
def echo_raw() -> Response:
    return _json(seen.raw_body(request.method, request.content_type, request.get_data()))


@app.post("/echo/json")
def echo_json() -> Response:
    return _json(seen.json_body(request.method, request.content_type, request.get_json()))


@app.post("/echo/form")
def echo_form() -> Response:
    files = [seen.uploaded_file(name, upload.filename, upload.content_type, upload.read())
             for name, upload in request.files.items(multi=True)]
    return _json(seen.form(request.method, request.content_type, request.form.items(multi=True), files))


@app.get("/items/<int:item_id>")  # Flask answers HEAD for GET routes
def item(item_id: int) -> Response:
    return _json(seen.item(item_id))


@app.get("/blob")
def blob() -> Response:
    return Response(seen.blob(int(request.args["size"])), mimetype=seen.OCTETS)


@app.route("/nothing", methods=["GET", "DELETE"])
def nothing() -> Response:
    return Response(status=204)


@app.get("/cached")
def cached() -> Response:
    if seen.is_fresh(request.headers.get("if-none-match")):
        return Response(status=304, headers={"etag": seen.ETAG})
    return Response(seen.CACHED_BODY, mimetype="text/plain", headers={"etag": seen.ETAG})


@app.get("/redirect")
def redirect_to_item() -> BaseResponse:
    return redirect(seen.REDIRECT_TARGET, code=302)


@app.get("/stream")
def stream() -> Response:
    return Response(seen.stream_chunks(), mimetype="text/plain")


@app.get("/events")
def events() -> Response:
    return Response(seen.sse_events(), mimetype="text/event-stream", headers=seen.EVENT_STREAM_HEADERS)


@app.get("/boom")
def boom() -> Response:
    seen.boom()


@app.get("/health")
def health() -> Response:
    return Response(seen.HEALTHY, mimetype="text/plain")
