"""What the corpus apps share: the descriptions their views answer with, and the bodies they send.

A description is canonical JSON (sorted keys, no spaces), so the same observations give the same bytes in every
framework, and the test can compute the answer it expects for what it sent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import NoReturn

JSON = "application/json"
OCTETS = "application/octet-stream"
#: Where ``GET /redirect`` points.
REDIRECT_TARGET = "/items/1"
ETAG = '"corpus-v1"'
CACHED_BODY = b"the cached representation\n"
HEALTHY = b"ok"
BOOM_MESSAGE = "the corpus view failed on purpose"
STREAM_CHUNKS = tuple(f"chunk-{n}\n".encode() for n in range(5))
SSE_EVENTS = tuple(f"id: {n}\nevent: tick\ndata: tick {n}\n\n".encode() for n in range(3))
EVENT_STREAM_HEADERS = {"cache-control": "no-cache"}


class CorpusFailure(RuntimeError):
    """What ``GET /boom`` raises: a type of our own, so the cassette's error names exactly it."""


def _render(document: object) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> dict[str, object]:
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def raw_body(method: str, content_type: str | None, body: bytes) -> bytes:
    """``POST /echo/raw``: the body's bytes, as a length and a digest (a 5 MiB body stays a small answer)."""
    return _render({"method": method, "content_type": content_type, "body": _digest(body)})


def json_body(method: str, content_type: str | None, value: object) -> bytes:
    """``POST /echo/json``: the value the framework's JSON parser gave the view."""
    return _render({"method": method, "content_type": content_type, "json": value})


def uploaded_file(field: str, filename: str | None, content_type: str | None, data: bytes) -> dict[str, object]:
    return {"field": field, "filename": filename, "content_type": content_type, "data": _digest(data)}


def form(
    method: str, content_type: str | None, fields: Iterable[tuple[str, str]], files: Iterable[dict[str, object]]
) -> bytes:
    """``POST /echo/form``: the fields in the order the framework parsed them, and each file (see
    :func:`uploaded_file`)."""
    return _render({"method": method, "content_type": content_type, "fields": [list(f) for f in fields],
                    "files": list(files)})


def item(item_id: int) -> bytes:
    """``GET /items/{item_id}``: the path parameter, converted to an int by the framework's router."""
    return _render({"item_id": item_id})


def blob(size: int) -> bytes:
    """``GET /blob?size=N``: N bytes of every value, for a response body over the cassette's size cap."""
    whole, rest = divmod(size, 256)
    return bytes(range(256)) * whole + bytes(range(rest))


def is_fresh(if_none_match: str | None) -> bool:
    """``GET /cached`` answers 304 Not Modified when the client already holds this ETag."""
    return if_none_match == ETAG


def stream_chunks() -> Iterator[bytes]:
    yield from STREAM_CHUNKS


async def astream_chunks() -> AsyncIterator[bytes]:
    for chunk in STREAM_CHUNKS:
        yield chunk


def sse_events() -> Iterator[bytes]:
    yield from SSE_EVENTS


async def asse_events() -> AsyncIterator[bytes]:
    for event in SSE_EVENTS:
        yield event


def boom() -> NoReturn:
    raise CorpusFailure(BOOM_MESSAGE)
