"""Small builders for model values used across tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from timetracer_otel.cassette.model import (
    Body,
    Cassette,
    HttpRequest,
    HttpResponse,
    Interaction,
    Metadata,
    RecordedError,
)


def request(method: str = "GET", url: str = "http://api.test/items", body: bytes | None = None,
            headers: tuple[tuple[str, str], ...] = ()) -> HttpRequest:
    return HttpRequest(method=method, url=url, headers=headers, body=None if body is None else Body.of(body))


def json_response(value: object, status: int = 200) -> HttpResponse:
    data = json.dumps(value, separators=(",", ":")).encode()
    return HttpResponse(status=status, headers=(("content-type", "application/json"),), body=Body.of(data))


def interaction(req: HttpRequest, response: HttpResponse | None = None,
                error: RecordedError | None = None) -> Interaction:
    return Interaction(kind="http", library="httpx", request=req, response=response, error=error)


def cassette(*interactions: Interaction, inbound: HttpRequest | None = None,
             recorded_at: datetime | None = None) -> Cassette:
    return Cassette(
        metadata=Metadata(id="0123456789abcdef0123456789abcdef",
                          recorded_at=recorded_at or datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
                          service="test", tool_version="0.1.0"),
        request=inbound or request("POST", "http://app.test/checkout", b'{"item":3}'),
        response=json_response({"ok": True}),
        interactions=interactions,
    )
