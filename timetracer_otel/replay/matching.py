"""How a live call is compared with recorded ones.

:func:`request_key` is the one definition of "the same call": recorded interactions are indexed by it when a
cassette is loaded, and every live call of every integration is looked up by it. HTTP calls compare by
:class:`HttpFields`; database and cache calls by :class:`CallFields`, whose normalisation per kind is here
(SQL statements, Redis arguments, MongoDB command documents) so every library of a kind matches the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from timetracer_otel.cassette.model import Body, CallRequest, Headers, HttpRequest

__all__ = [
    "CallFields",
    "HttpFields",
    "call_differences",
    "call_fields",
    "describe_call",
    "describe_http",
    "describe_request",
    "header_value",
    "http_differences",
    "http_fields",
    "http_key",
    "normalize_sql",
    "request_key",
]

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


# -- database and cache calls -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallFields:
    """The parts of a database or cache call that decide which recorded answer it gets."""

    kind: str
    method: str | None
    #: Normalised: a SQL statement's whitespace, keyword case and placeholders; a Redis command's case.
    operation: str
    #: Compared for MongoDB (database.collection) only: a SQL statement names its tables itself.
    target: str | None
    #: The arguments as canonical JSON text.
    arguments: str
    #: The arguments as compared, kept to explain a difference.
    value: Any = field(compare=False, hash=False, repr=False)


# Tokens of a SQL statement: literals and quoted names are kept as they are; placeholders of every paramstyle
# become ``?`` (positional) or ``:name`` (named); words are upper-cased and whitespace runs collapsed.
_SQL_TOKEN = re.compile(
    r"""(?P<literal>'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`)"""
    r"|(?P<pyformat>%\((?P<pyname>\w+)\)s)"
    r"|(?P<format>%s|\$\d+|\?)"
    r"|(?P<percent>%%)"
    r"|(?P<cast>::)"
    r"|(?P<named>(?<![:\w]):(?P<name>[A-Za-z_]\w*))"
    r"|(?P<space>\s+)"
    r"|(?P<word>\w+)"
    r"|(?P<other>.)",
    re.DOTALL,
)


def normalize_sql(statement: str) -> str:
    """``statement`` with whitespace collapsed, unquoted words upper-cased (SQL keywords and unquoted names are
    case-insensitive), a trailing semicolon dropped, and placeholders unified (``$1``, ``%s``, ``?`` become
    ``?``; ``%(name)s`` and ``:name`` become ``:name``)."""
    out: list[str] = []
    for token in _SQL_TOKEN.finditer(statement):
        group = token.lastgroup
        if group == "space":
            out.append(" ")
        elif group == "word":
            out.append(token.group().upper())
        elif group == "format":
            out.append("?")
        elif group == "pyformat":
            out.append(":" + token.group("pyname"))
        elif group == "named":
            out.append(":" + token.group("name"))
        elif group == "percent":
            out.append("%")
        else:
            out.append(token.group())
    text = "".join(out).strip()
    # Spaces next to punctuation are layout, not meaning: "f( a , b )" is "f(a,b)".
    text = re.sub(r" ?([(),;=<>]) ?", r"\1", text)
    return text.rstrip(";").strip()


def _plain(value: Any) -> Any:
    """A typed JSON value (see cassette.values) with sequence kinds merged: drivers take a tuple or a list of
    parameters alike."""
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("$tuple", "$set", "$frozenset"):
            return [_plain(item) for item in next(iter(value.values()))]
        return {key: _plain(item) for key, item in value.items()}
    return value


def _redis_argument(value: Any) -> Any:
    """A Redis argument as the server receives it: bytes, text and numbers that encode the same are equal."""
    if isinstance(value, dict) and len(value) == 1 and "$bytes" in value:
        try:
            return base64.b64decode(value["$bytes"]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return _plain(value)


#: Fields of a MongoDB command that belong to the session, the cluster or the connection, not to the query.
MONGO_SESSION_FIELDS = frozenset(
    {"lsid", "$clusterTime", "txnNumber", "$db", "$readPreference", "signature", "autocommit", "startTransaction",
     "$client", "apiVersion", "apiStrict", "apiDeprecationErrors"}
)


def _mongo_command(operation: str, document: Any) -> Any:
    if not isinstance(document, dict):
        return document
    command = {key: value for key, value in document.items() if key not in MONGO_SESSION_FIELDS}
    if operation == "insert" and isinstance(command.get("documents"), list):
        # The driver makes up each new document's ObjectId: it differs in every run.
        command["documents"] = [
            {**doc, "_id": "<generated ObjectId>"}
            if isinstance(doc, dict) and isinstance(doc.get("_id"), dict) and "$oid" in doc["_id"]
            else doc
            for doc in command["documents"]
        ]
    return command


def _canonical(value: Any, *, sort_keys: bool) -> str:
    return json.dumps(value, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False)


def call_fields(kind: str, request: CallRequest) -> CallFields:
    value: Any
    if kind == "sql":
        value = _plain(request.arguments)
        return CallFields(kind, request.method, normalize_sql(request.operation), None,
                          _canonical(value, sort_keys=True), value)
    if kind == "redis":
        arguments = request.arguments
        if request.method is None and isinstance(arguments, list):
            value = [_redis_argument(item) for item in arguments]
        elif isinstance(arguments, list):  # a pipeline: one [name, *arguments] list per command
            value = [[_redis_argument(item) for item in command] if isinstance(command, list) else command
                     for command in arguments]
        else:
            value = _plain(arguments)
        return CallFields(kind, request.method, request.operation.upper(), None,
                          _canonical(value, sort_keys=True), value)
    if kind == "mongo":
        value = _mongo_command(request.operation, request.arguments)
        # Key order is kept: it is meaningful in MongoDB (a sort specification, a compound index).
        return CallFields(kind, request.method, request.operation, request.target,
                          _canonical(value, sort_keys=False), value)
    value = _plain(request.arguments)
    return CallFields(kind, request.method, request.operation, request.target,
                      _canonical(value, sort_keys=True), value)


def request_key(kind: str, request: HttpRequest | CallRequest) -> Hashable:
    """The key a recorded or live call is matched by (``kind`` is the interaction's)."""
    if isinstance(request, HttpRequest):
        return http_fields(request)
    return call_fields(kind, request)


def _leaf_differences(recorded: Any, live: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(recorded, dict) and isinstance(live, dict) and not _is_tag(recorded) and not _is_tag(live):
        for key in [*recorded, *(k for k in live if k not in recorded)]:
            yield from _leaf_differences(recorded.get(key, _MISSING), live.get(key, _MISSING), f"{path}.{key}")
    elif isinstance(recorded, list) and isinstance(live, list):
        for n in range(max(len(recorded), len(live))):
            yield from _leaf_differences(
                recorded[n] if n < len(recorded) else _MISSING, live[n] if n < len(live) else _MISSING, f"{path}[{n}]"
            )
    elif recorded != live:
        yield path, recorded, live


def _is_tag(value: dict[str, Any]) -> bool:
    return len(value) == 1 and next(iter(value)).startswith("$")


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


_MISSING = _Missing()


def _argument_name(kind: str, path: str) -> str:
    """A path into the arguments as users name it: ``parameter 2`` / ``parameter :name`` for SQL, ``argument 3``
    for Redis, the document path for MongoDB (``filter.age``)."""
    path = path.lstrip(".")
    if kind in ("sql", "redis") and (found := re.fullmatch(r"\[(\d+)\](.*)", path)):
        noun = "parameter" if kind == "sql" else "argument"
        return f"{noun} {int(found.group(1)) + 1}{found.group(2)}"
    if kind == "sql" and path and not path.startswith("["):
        name, _, rest = path.partition(".")
        return f"parameter :{name}{'.' + rest if rest else ''}"
    return path or "arguments"


def call_differences(live: CallFields, recorded: CallFields, limit: int = 3) -> list[str]:
    """What differs, most significant first; differing arguments are named one by one."""
    differences = []
    if live.method != recorded.method:
        differences.append(
            f"method differs: recorded {recorded.method or 'plain call'}, got {live.method or 'plain call'}"
        )
    if live.operation != recorded.operation:
        differences.append(f"{'statement' if live.kind == 'sql' else 'command'} differs: recorded "
                           f"{_clip(recorded.operation)}, got {_clip(live.operation)}")
    if live.target != recorded.target:
        differences.append(f"target differs: recorded {recorded.target!r}, got {live.target!r}")
    if live.arguments != recorded.arguments:
        leaves = list(_leaf_differences(recorded.value, live.value, ""))
        for path, theirs, mine in leaves[:limit]:
            differences.append(f"{_argument_name(live.kind, path)} differs: recorded {_clip(_json(theirs))}, "
                               f"got {_clip(_json(mine))}")
        if len(leaves) > limit:
            differences.append(f"and {len(leaves) - limit} more differences in the arguments")
    return differences


def _json(value: Any) -> str:
    return repr(value) if isinstance(value, _Missing) else _canonical(value, sort_keys=False)


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_call(kind: str, request: CallRequest) -> str:
    """One line naming a call, e.g. ``sql SELECT ... [5]`` or ``mongo find app.users {...}``."""
    parts = [kind, request.method or "", request.operation, request.target or "",
             _clip(_canonical(request.arguments, sort_keys=False), 160) if request.arguments is not None else ""]
    return _clip(" ".join(part for part in parts if part), 240)


def describe_request(kind: str, request: HttpRequest | CallRequest) -> str:
    return describe_http(request) if isinstance(request, HttpRequest) else describe_call(kind, request)
