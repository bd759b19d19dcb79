"""A bare ASGI app wrapped only in OpenTelemetry's middleware, as apps without a framework instrumentor are."""

from __future__ import annotations

from typing import Any

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello " + scope["path"].encode()})


app = OpenTelemetryMiddleware(hello)
