"""The cassette: one inbound request, its response, and every outbound call it made.

Plain immutable values: frozen msgspec structs (built in C, several times faster than dataclasses, which
counts when recording and when loading large cassettes), except :class:`Body`. They are not tracked by the
garbage collector (``gc=False``), which is safe because they hold only strings, numbers, tuples, bodies and
other values, so they cannot form reference cycles. How they become JSON lives in
:mod:`timetracer_otel.cassette.codec`; how they reach a file lives in :mod:`timetracer_otel.cassette.files`.
"""

from __future__ import annotations

import traceback
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from timetracer_otel.cassette.json_bodies import parse_json
from timetracer_otel.errors import CassetteFormatError

if TYPE_CHECKING:
    from timetracer_otel.cassette.json_bodies import JsonStyle

__all__ = [
    "GENERATED_FIELDS",
    "GENERATED_SOURCES",
    "HTTP",
    "SCHEMA_VERSION",
    "Body",
    "CallRequest",
    "CallResponse",
    "Cassette",
    "Generated",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "Interaction",
    "Metadata",
    "RecordedError",
    "SpanSummary",
]

#: Bumped on any change a reader of an older version would misunderstand. Version 2 added database and cache
#: calls (:class:`CallRequest`) and session cassettes; version 1 files are still read.
SCHEMA_VERSION = 2

#: Header pairs in the order they were sent, duplicates kept.
Headers = tuple[tuple[str, str], ...]


class Body:
    """A payload as it crossed the wire.

    ``content_coding`` is the content-coding ``data`` is still encoded with (``None`` = identity). Cassettes
    store bodies decoded when they can, so they stay readable; replay re-encodes them to the coding the
    recorded ``Content-Encoding`` header names, so clients decode exactly the recorded bytes.

    An immutable value that behaves like a frozen dataclass of ``data``, ``size``, ``truncated``, ``complete``
    and ``content_coding`` (construction, ``==``, ``hash``, ``repr``, pickling; assigning a field raises
    ``AttributeError``). It is written by hand so that a body loaded from a cassette as structured JSON can
    produce its bytes on first use (see :meth:`from_json`): most recorded bodies are never read, and parsing
    and rendering them all made loading slow.
    """

    # Read-only properties over private slots rather than a __setattr__ that refuses: assigning the slots
    # directly in __init__ makes a body about twice as cheap to build, which counts when loading a cassette.
    __slots__ = ("_coding", "_complete", "_data", "_pending", "_size", "_truncated")
    __match_args__ = ("data", "size", "truncated", "complete", "content_coding")

    _data: bytes | None
    #: ``(style, stored JSON text, source)`` until ``data`` is first read.
    _pending: tuple[JsonStyle, bytes, str | None] | None

    def __init__(
        self,
        data: bytes,
        size: int,
        truncated: bool = False,
        complete: bool = True,
        content_coding: str | None = None,
    ) -> None:
        self._data = data
        self._pending = None
        self._size = size
        self._truncated = truncated
        self._complete = complete
        self._coding = content_coding

    @property
    def size(self) -> int:
        """Size of the whole payload; larger than ``len(data)`` when the body was truncated at the size cap."""
        return self._size

    @property
    def truncated(self) -> bool:
        return self._truncated

    @property
    def complete(self) -> bool:
        """False when the reader stopped before the end of a streamed body."""
        return self._complete

    @property
    def content_coding(self) -> str | None:
        return self._coding

    @classmethod
    def of(cls, data: bytes) -> Body:
        return cls(data=data, size=len(data))

    @classmethod
    def from_json(
        cls,
        stored: bytes,
        style: JsonStyle,
        size: int,
        *,
        truncated: bool = False,
        complete: bool = True,
        content_coding: str | None = None,
        source: str | None = None,
    ) -> Body:
        """A body stored as structured JSON: ``stored`` is its value as JSON text (as the cassette has it, so
        indented), and its bytes are ``style.render`` of that value. Neither is parsed nor rendered until
        :attr:`data` is first read; the bytes are kept then.

        Unless ``truncated``, the rendered length must equal ``size``; if it does not, reading ``data`` raises
        :class:`~timetracer_otel.errors.CassetteFormatError` naming ``source``.
        """
        body = cls.__new__(cls)
        body._data = None
        body._pending = (style, stored, source)
        body._size = size
        body._truncated = truncated
        body._complete = complete
        body._coding = content_coding
        return body

    @property
    def data(self) -> bytes:
        data = self._data
        return data if data is not None else self._render()

    def unrendered_json(self) -> tuple[Any] | None:
        """``(value,)`` while this body is still held as the structured JSON given to :meth:`from_json`
        (``json.loads(self.data)`` would give back ``value``); None once it is bytes (or always was)."""
        pending = self._pending
        return None if pending is None else (parse_json(pending[1]),)

    def _render(self) -> bytes:
        pending = self._pending
        if pending is None:  # another thread rendered it between our two reads
            data = self._data
            assert data is not None
            return data
        style, stored, source = pending
        try:
            data = style.render(parse_json(stored))
        except (TypeError, ValueError) as exc:  # malformed JSON, or a value the style cannot write
            raise CassetteFormatError(source, f"a JSON body cannot be rendered in style {style.name} ({exc})") from None
        if not self.truncated and len(data) != self.size:
            raise CassetteFormatError(
                source,
                f"a JSON body renders to {len(data)} bytes but its size says {self.size} (was the cassette edited?)",
            )
        self._data = data  # before dropping the pending form: a concurrent reader finds one or the other
        self._pending = None
        return data

    def as_tuple(self) -> tuple[bytes, int, bool, bool, str | None]:
        """``(data, size, truncated, complete, content_coding)``, the arguments that build this body again."""
        return (self.data, self._size, self._truncated, self._complete, self._coding)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Body)
        return self.as_tuple() == other.as_tuple()

    def __hash__(self) -> int:
        return hash(self.as_tuple())

    def __repr__(self) -> str:
        return (
            f"Body(data={self.data!r}, size={self.size!r}, truncated={self.truncated!r}, "
            f"complete={self.complete!r}, content_coding={self.content_coding!r})"
        )

    def __reduce__(self) -> tuple[type[Body], tuple[bytes, int, bool, bool, str | None]]:
        return (Body, self.as_tuple())



class HttpRequest(msgspec.Struct, frozen=True, gc=False):
    method: str
    url: str
    headers: Headers = ()
    body: Body | None = None
    #: Route template of an inbound request, e.g. ``/users/{user_id}``.
    route: str | None = None


class HttpResponse(msgspec.Struct, frozen=True, gc=False):
    status: int
    headers: Headers = ()
    body: Body | None = None
    reason: str | None = None
    http_version: str | None = None


class CallRequest(msgspec.Struct, frozen=True, gc=False):
    """A database or cache call as sent: a SQL statement, a Redis command, a MongoDB command.

    ``arguments`` is a JSON value: for SQL and Redis in the typed form of :mod:`timetracer_otel.cassette.values`,
    for MongoDB the command document as canonical extended JSON. See ``docs/cassette-format.md`` per kind.
    """

    #: The SQL statement, the Redis command name, or the MongoDB command name.
    operation: str
    #: The client API that made the call when it changes the answer's shape, e.g. ``executemany``, ``pipeline``.
    method: str | None = None
    #: The database (SQL), ``database.collection`` (MongoDB); informative, not part of the match for SQL.
    target: str | None = None
    arguments: Any = None


class CallResponse(msgspec.Struct, frozen=True, gc=False):
    """What a database or cache call answered, as a JSON value (rows and row counts, a reply, a reply document)."""

    result: Any = None


class RecordedError(msgspec.Struct, frozen=True, gc=False):
    """An exception a call raised: replay raises the same type again."""

    #: Module-qualified type, e.g. ``httpx.ConnectTimeout``.
    type: str
    message: str
    #: What the library's exception carries besides its message (a SQLSTATE, a server error document), as a JSON
    #: value, so the replayed exception is built with it.
    details: Any = None
    #: The formatted traceback of an exception the app raised while serving the request (calls' errors have
    #: none: replay raises them again, and their stack is the app's, which the request's error shows).
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, details: Any = None, *, with_traceback: bool = False) -> RecordedError:
        kind = type(exc)
        trace = "".join(traceback.format_exception(exc)) if with_traceback else None
        return cls(type=f"{kind.__module__}.{kind.__qualname__}", message=str(exc), details=details, traceback=trace)


#: The kind of an HTTP interaction; every other kind (``sql``, ``redis``, ``mongo``) holds a :class:`CallRequest`.
HTTP = "http"


class Interaction(msgspec.Struct, frozen=True, gc=False):
    """One outbound call made while serving the inbound request (or, in a session cassette, outside any)."""

    kind: str
    library: str
    #: An :class:`HttpRequest` when ``kind`` is ``http``, else a :class:`CallRequest`.
    request: HttpRequest | CallRequest
    response: HttpResponse | CallResponse | None = None
    error: RecordedError | None = None
    #: Offset from the start of the inbound request, and duration, in milliseconds.
    start_ms: float = 0.0
    duration_ms: float = 0.0
    span_id: str | None = None
    parent_span_id: str | None = None


class SpanSummary(msgspec.Struct, frozen=True, gc=False):
    """A light span tree for timelines: no attributes, no payloads."""

    name: str
    kind: str
    span_id: str
    parent_span_id: str | None
    start_ms: float
    duration_ms: float


class Metadata(msgspec.Struct, frozen=True, gc=False):
    id: str
    recorded_at: datetime
    service: str
    tool_version: str
    trace_id: str | None = None
    duration_ms: float = 0.0
    #: The request did not settle before TIMETRACER_REQUEST_TIMEOUT_S; calls after that are missing.
    incomplete: bool = False
    #: ``request`` for an inbound request's cassette; ``session`` for calls a process made outside any request
    #: (start-up, schedulers), and ``test`` for the calls one test made (the pytest plugin's cassettes): these
    #: two have no inbound request.
    scope: str = "request"


class Generated(msgspec.Struct, frozen=True, gc=False):
    """What the app generated while serving the request, per source, in the order it was generated; replay
    hands the values back in that order (see ``docs/determinism.md``).

    ``uuid4`` holds canonical UUID strings; ``urandom`` (``os.urandom``) and ``objectid`` (``bson.ObjectId()``)
    lowercase hexadecimal. ``random`` (the ``random`` module's functions) and ``secrets`` (the ``secrets``
    module's) hold what their generator's primitives returned: a float for ``random()``, an integer for
    ``getrandbits(k)`` (which ``randint``, ``choice``, ``shuffle`` and the others draw on), hexadecimal text for
    ``randbytes(n)`` (``secrets.token_bytes``, ``token_hex``, ``token_urlsafe``).

    ``clock`` holds the app's clock readings (``time.time()``, ``datetime.now()``...), in nanoseconds since the
    epoch, when ``TIMETRACER_RECORD_CLOCK`` was on: replay answers the app's readings with them.
    """

    uuid4: tuple[str, ...] = ()
    random: tuple[float | int | str, ...] = ()
    secrets: tuple[float | int | str, ...] = ()
    urandom: tuple[str, ...] = ()
    objectid: tuple[str, ...] = ()
    clock: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return any(getattr(self, field) for field in GENERATED_FIELDS)


#: The sources of generated values, as ``TIMETRACER_GENERATED`` and the cassette's ``generated`` name them.
GENERATED_SOURCES: tuple[str, ...] = ("uuid4", "random", "secrets", "urandom", "objectid")
#: Every field of ``generated``: the sources and the clock readings (``TIMETRACER_RECORD_CLOCK``).
GENERATED_FIELDS: tuple[str, ...] = Generated.__struct_fields__


class Cassette(msgspec.Struct, frozen=True, gc=False):
    metadata: Metadata
    #: None only in a session cassette.
    request: HttpRequest | None
    response: HttpResponse | None = None
    #: The app raised instead of answering (the framework's error response, if any, is in ``response``).
    error: RecordedError | None = None
    interactions: tuple[Interaction, ...] = ()
    spans: tuple[SpanSummary, ...] = ()
    #: Values the app generated while serving the request (None: none were recorded).
    generated: Generated | None = None

