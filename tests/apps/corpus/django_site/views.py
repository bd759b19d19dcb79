"""The corpus views on Django: the same views serve WSGI and ASGI (Django runs sync views in a thread)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping

from django.core.handlers.asgi import ASGIRequest
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from tests.apps.corpus import seen


def _json(body: bytes) -> HttpResponse:
    return HttpResponse(body, content_type=seen.JSON)


@require_POST
def echo_raw(request: HttpRequest) -> HttpResponse:
    return _json(seen.raw_body(request.method or "", request.headers.get("content-type"), request.body))


@require_POST
def echo_json(request: HttpRequest) -> HttpResponse:
    value = json.loads(request.body)  # Django has no JSON parser of its own
    return _json(seen.json_body(request.method or "", request.headers.get("content-type"), value))


@require_POST
def echo_form(request: HttpRequest) -> HttpResponse:
    fields = [(name, value) for name, values in request.POST.lists() for value in values]
    files = [seen.uploaded_file(name, upload.name, upload.content_type, upload.read())
             for name, uploads in request.FILES.lists() for upload in uploads]
    return _json(seen.form(request.method or "", request.headers.get("content-type"), fields, files))


@require_safe  # GET and HEAD, as the other frameworks route it
def item(request: HttpRequest, item_id: int) -> HttpResponse:
    return _json(seen.item(item_id))


@require_safe
def blob(request: HttpRequest) -> HttpResponse:
    return HttpResponse(seen.blob(int(request.GET["size"])), content_type=seen.OCTETS)


@require_http_methods(["GET", "HEAD", "DELETE"])
def nothing(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=204)


@require_safe
def cached(request: HttpRequest) -> HttpResponse:
    if seen.is_fresh(request.headers.get("if-none-match")):
        return HttpResponseNotModified(headers={"etag": seen.ETAG})
    return HttpResponse(seen.CACHED_BODY, content_type="text/plain", headers={"etag": seen.ETAG})


@require_safe
def redirect(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect(seen.REDIRECT_TARGET)


def _streaming(
    request: HttpRequest,
    chunks: Callable[[], Iterator[bytes]],
    async_chunks: Callable[[], AsyncIterator[bytes]],
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> StreamingHttpResponse:
    # Django serves a sync iterator under ASGI (and an async one under WSGI) only by consuming it whole, with
    # a warning: hand each server the kind it streams.
    body = async_chunks() if isinstance(request, ASGIRequest) else chunks()
    return StreamingHttpResponse(body, content_type=content_type, headers=headers)


@require_safe
def stream(request: HttpRequest) -> StreamingHttpResponse:
    return _streaming(request, seen.stream_chunks, seen.astream_chunks, "text/plain")


@require_safe
def events(request: HttpRequest) -> StreamingHttpResponse:
    return _streaming(request, seen.sse_events, seen.asse_events, "text/event-stream", seen.EVENT_STREAM_HEADERS)


def boom(request: HttpRequest) -> HttpResponse:
    seen.boom()


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse(seen.HEALTHY, content_type="text/plain")
