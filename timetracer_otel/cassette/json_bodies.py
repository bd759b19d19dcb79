"""JSON bodies stored as structured JSON: which serialiser gives back their exact bytes, and parsing them.

A body is stored structured only if one of :data:`STYLES` reproduces its bytes exactly from the parsed value;
the style's name is stored next to the value, so replay can render the same bytes again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["STYLES", "JsonStyle", "parse_json", "structured"]


@dataclass(frozen=True, slots=True)
class JsonStyle:
    """A serialiser a JSON body may have been written with."""

    name: str
    #: The exact bytes of a value in this style.
    render: Callable[[Any], bytes]


def _stdlib(**options: Any) -> Callable[[Any], bytes]:
    def render(value: Any) -> bytes:
        return json.dumps(value, **options).encode("utf-8")

    return render


#: Tried in this order when recording; the first that reproduces the bytes is stored. ``orjson`` comes first
#: because checking it costs a few microseconds where the standard library's serialisers cost tens, and the
#: writer thread that checks shares the GIL with the app. It writes what most services send (compact, UTF-8),
#: and differs from ``compact`` only in how some floats are written (``0.00001`` where json.dumps gives
#: ``1e-05``), so the two are separate styles.
STYLES: dict[str, JsonStyle] = {
    style.name: style
    for style in (
        JsonStyle("orjson", orjson.dumps),
        JsonStyle("compact", _stdlib(separators=(",", ":"), ensure_ascii=False)),
        JsonStyle("compact_ascii", _stdlib(separators=(",", ":"))),
        JsonStyle("spaced", _stdlib(ensure_ascii=False)),
        JsonStyle("spaced_ascii", _stdlib()),
        JsonStyle("indent2", _stdlib(indent=2, ensure_ascii=False)),
    )
}
#: The styles checked against the standard library's parse (which, unlike orjson's, keeps big integers exact).
_STDLIB_STYLES = tuple(style for style in STYLES.values() if style.name != "orjson")


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def structured(data: bytes) -> tuple[Any, JsonStyle] | None:
    """``(value, style)`` such that ``style.render(value) == data``, or None if no style reproduces ``data``."""
    if data.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        # orjson reads integers beyond 64 bits as floats; those never render back to the same bytes.
        if orjson.dumps(value) == data:
            return value, STYLES["orjson"]
    try:
        value = json.loads(data, parse_constant=_reject_constant)
    except ValueError:  # also UnicodeDecodeError
        return None
    for style in _STDLIB_STYLES:
        if style.render(value) == data:
            return value, style
    return None


#: Every decimal digit as "0", so a run of them is one substring search away.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
#: orjson reads an integer beyond 64 bits as a float, silently; the shortest such run is 19 digits
#: (-9223372036854775809). Floats and ids with 19 digits in a row only cost the slower parser.
_LONG_DIGIT_RUN = b"0" * 19


def parse_json(data: bytes) -> Any:
    """``json.loads(data)``, with orjson (several times faster) when it gives the same result (nearly always)."""
    if _LONG_DIGIT_RUN not in data.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the standard library accepts more (NaN, lone surrogates) or says where and why it cannot
    return json.loads(data)
