"""How a live call is compared with recorded ones.

:func:`http_key` is the one definition of "the same HTTP call": recorded interactions are indexed by it when a
cassette is loaded, and every live call of every HTTP client integration is looked up by it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from timetracer_otel.cassette.model import Body, Headers, HttpRequest

__all__ = ["HttpFields", "describe_http", "header_value", "http_differences", "http_fields", "http_key"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_BOUNDARY = re.compile(r"boundary=\"?([^\";]+)\"?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class HttpFields:
    """The parts of an HTTP request that decide which recorded answer it gets."""

    method: str
    scheme: str
    host: str
    port: int | None
    path: str
    query: tuple[tuple[str, str], ...]
    body: Hashable


def header_value(headers: Headers, name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive)."""
    name = name.lower()
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def body_key(body: Body | None, headers: Headers) -> Hashable:
    """JSON compared by structure (key order ignored), multipart with its random boundary masked, else bytes."""
    if body is None:
        return b""
    content_type = header_value(headers, "content-type") or ""
    parsed = body.unrendered_json()
    if parsed is not None and isinstance(parsed[0], dict | list) and "multipart/" not in content_type.lower():
        # A body loaded as structured JSON: its bytes would start with { or [ and parse back to this value,
        # so the key below is what they would give, without rendering and parsing them again.
        return ("json", json.dumps(parsed[0], sort_keys=True, separators=(",", ":")))
    data = body.data
    if not data:
        return b""
    if "multipart/" in content_type.lower() and (found := _BOUNDARY.search(content_type)):
        return data.replace(found.group(1).encode("latin-1"), b"<boundary>")
    if data[:1] in (b"{", b"[") or "json" in content_type.lower():
        try:
            return ("json", json.dumps(json.loads(data), sort_keys=True, separators=(",", ":")))
        except ValueError:
            pass
    return data


def http_fields(request: HttpRequest) -> HttpFields:
    parts = urlsplit(request.url)
    scheme = parts.scheme.lower()
    return HttpFields(
        method=request.method.upper(),
        scheme=scheme,
        host=(parts.hostname or "").lower(),
        port=parts.port or _DEFAULT_PORTS.get(scheme),
        path=parts.path or "/",
        query=tuple(sorted(parse_qsl(parts.query, keep_blank_values=True))),
        body=body_key(request.body, request.headers),
    )


def http_key(request: HttpRequest) -> Hashable:
    return http_fields(request)


def http_differences(live: HttpFields, recorded: HttpFields) -> list[str]:
    """Names and values of the fields that differ, most significant first."""
    differences = []
    for name in ("method", "host", "port", "scheme", "path", "query", "body"):
        mine, theirs = getattr(live, name), getattr(recorded, name)
        if mine != theirs:
            differences.append(f"{name} differs: recorded {_show(name, theirs)}, got {_show(name, mine)}")
    return differences


def _show(name: str, value: object) -> str:
    if name == "query":
        return "&".join(f"{k}={v}" for k, v in value) or "(none)"  # type: ignore[attr-defined]
    if name == "body":
        text = value[1] if isinstance(value, tuple) else value
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        text = str(text)
        return repr(text if len(text) <= 120 else text[:117] + "...")
    return repr(value)


def describe_http(request: HttpRequest) -> str:
    return f"{request.method.upper()} {request.url}"
