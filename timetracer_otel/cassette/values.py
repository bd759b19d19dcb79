"""Python values as JSON, and back, with their exact types: what database and cache calls send and receive.

SQL parameters and rows and Redis arguments and replies are Python values of many types (``bytes`` vs ``str``,
``Decimal``, ``datetime``, ``UUID``, tuples, sets, ...). Cassettes keep them as JSON that reads naturally where
JSON has the type (strings, integers, finite floats, booleans, null, lists, objects with string keys), and as a
one-key tagged object where it does not, e.g. ``{"$bytes": "aGk="}`` or ``{"$decimal": "1.50"}``. An object whose
own keys start with ``$`` is stored as ``{"$map": [[key, value], ...]}`` so it can never be mistaken for a tag.

:func:`to_json_value` never fails: a value of a type it does not know becomes ``{"$unsupported": [type, repr]}``,
and only replaying it (:func:`from_json_value`) raises, naming the type. MongoDB documents do not use this module:
they are stored as MongoDB's own canonical extended JSON (``bson.json_util``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import math
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from timetracer_otel.errors import ReplayError

__all__ = ["UnsupportedValueError", "from_json_value", "to_json_value"]

_INT64 = 2**63


class UnsupportedValueError(ReplayError):
    """A recorded value of a type this version cannot rebuild."""


def _timedelta(value: dt.timedelta) -> list[int]:
    return [value.days, value.seconds, value.microseconds]


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


#: Encoders by exact type (subclasses such as bool or IntEnum are handled by the checks in to_json_value).
_TAGGED: dict[type, tuple[str, Callable[[Any], Any]]] = {
    bytes: ("$bytes", lambda v: base64.b64encode(v).decode("ascii")),
    bytearray: ("$bytearray", lambda v: base64.b64encode(v).decode("ascii")),
    memoryview: ("$bytes", lambda v: base64.b64encode(v.tobytes()).decode("ascii")),
    Decimal: ("$decimal", str),
    dt.datetime: ("$datetime", dt.datetime.isoformat),
    dt.date: ("$date", dt.date.isoformat),
    dt.time: ("$time", dt.time.isoformat),
    dt.timedelta: ("$timedelta", _timedelta),
    uuid.UUID: ("$uuid", str),
    ipaddress.IPv4Address: ("$ip", str),
    ipaddress.IPv6Address: ("$ip", str),
    ipaddress.IPv4Network: ("$network", str),
    ipaddress.IPv6Network: ("$network", str),
    ipaddress.IPv4Interface: ("$interface", str),
    ipaddress.IPv6Interface: ("$interface", str),
}


def to_json_value(value: Any) -> Any:
    """``value`` as a JSON-ready value that :func:`from_json_value` turns back into an equal value of the same
    type."""
    kind = type(value)
    if value is None or kind is str or kind is bool:
        return value
    if kind is int:
        return value if -_INT64 <= value < _INT64 else {"$int": str(value)}
    if kind is float:
        return _float(value)
    if kind is list:
        return [to_json_value(item) for item in value]
    if kind is dict:
        if all(type(key) is str and not key.startswith("$") for key in value):
            return {key: to_json_value(item) for key, item in value.items()}
        return {"$map": [[to_json_value(key), to_json_value(item)] for key, item in value.items()]}
    if kind is tuple:
        return {"$tuple": [to_json_value(item) for item in value]}
    if kind is set or kind is frozenset:
        items = [to_json_value(item) for item in value]
        return {"$set" if kind is set else "$frozenset": items}
    tagged = _TAGGED.get(kind)
    if tagged is not None:
        tag, encode = tagged
        return {tag: encode(value)}
    # Subclasses of the plain types (IntEnum, str enums, NamedTuple rows) are stored as their base value.
    for base, plain in ((bool, bool), (int, int), (float, float), (str, str)):
        if isinstance(value, base):
            return to_json_value(plain(value))
    if isinstance(value, tuple):
        return to_json_value(tuple(value))
    for base_type, (tag, encode) in _TAGGED.items():
        if isinstance(value, base_type):
            return {tag: encode(value)}
    return {"$unsupported": [f"{kind.__module__}.{kind.__qualname__}", repr(value)[:200]]}


def _bytes(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _unsupported(value: list[str]) -> Any:
    raise UnsupportedValueError(
        f"a recorded value of type {value[0]} ({value[1]}) cannot be replayed: this version of timetracer stores "
        "it only as text"
    )


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$bytes": _bytes,
    "$bytearray": lambda v: bytearray(_bytes(v)),
    "$decimal": Decimal,
    "$datetime": dt.datetime.fromisoformat,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "$uuid": uuid.UUID,
    "$ip": ipaddress.ip_address,
    "$network": ipaddress.ip_network,
    "$interface": ipaddress.ip_interface,
    "$int": int,
    "$float": float,
    "$tuple": lambda v: tuple(from_json_value(item) for item in v),
    "$set": lambda v: {from_json_value(item) for item in v},
    "$frozenset": lambda v: frozenset(from_json_value(item) for item in v),
    "$map": lambda v: {from_json_value(key): from_json_value(item) for key, item in v},
    "$unsupported": _unsupported,
}


def from_json_value(value: Any) -> Any:
    """The Python value :func:`to_json_value` stored. Raises :class:`ReplayError` for a malformed tag (an edited
    cassette) and :class:`UnsupportedValueError` for a value that was stored only as text."""
    kind = type(value)
    if kind is list:
        return [from_json_value(item) for item in value]
    if kind is not dict:
        return value
    if len(value) == 1:
        ((tag, payload),) = value.items()
        decode = _DECODERS.get(tag)
        if decode is not None:
            try:
                return decode(payload)
            except (TypeError, ValueError, InvalidOperation, binascii.Error) as exc:
                raise ReplayError(f"a recorded {tag} value is malformed ({payload!r}: {exc})") from None
    return {key: from_json_value(item) for key, item in value.items()}
