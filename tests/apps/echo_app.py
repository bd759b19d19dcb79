"""An app that reports exactly what its views received, to prove recording changes nothing."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

app = FastAPI()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@app.post("/echo/raw")
async def echo_raw(request: Request) -> Response:
    body = await request.body()
    return Response(content=body, media_type=request.headers.get("content-type", "application/octet-stream"),
                    headers={"x-seen-sha256": _digest(body), "x-seen-length": str(len(body))})


@app.post("/echo/form")
async def echo_form(request: Request) -> dict[str, object]:
    form = await request.form()
    seen: dict[str, object] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            seen[key] = value
        else:
            data = await value.read()
            seen[key] = {"filename": value.filename, "sha256": _digest(data), "size": len(data),
                         "content_type": value.content_type}
    return seen


@app.get("/blob")
async def blob(size: int) -> Response:
    return Response(content=bytes((n * 7 + 3) % 256 for n in range(size)), media_type="application/octet-stream")


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for n in range(5):
            yield f"chunk-{n}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@app.delete("/nothing", status_code=204)
async def nothing() -> Response:
    return Response(status_code=204)
