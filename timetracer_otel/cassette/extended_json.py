"""MongoDB documents as cassettes store them: BSON <-> canonical extended JSON (``bson.json_util``).

Canonical extended JSON keeps every BSON type (``{"$oid": ...}``, ``{"$date": {"$numberLong": ...}}``,
``{"$numberDecimal": ...}``, ``{"$numberInt": ...}``, binary, regular expressions), so a replayed reply decodes to
exactly the values the driver decoded when it was recorded. Needs ``pymongo`` (its ``bson`` package): only
MongoDB recordings and replays import this module.
"""

from __future__ import annotations

import json
from typing import Any

import bson
from bson import json_util
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.json_util import JSONMode, JSONOptions

__all__ = ["bson_to_extended_json", "decode_bson", "extended_json_to_bson"]

#: BSON -> Python for storage: out-of-range dates kept as DatetimeMS, UUID binaries kept as Binary.
_DECODE: CodecOptions[dict[str, Any]] = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
_JSON = JSONOptions(json_mode=JSONMode.CANONICAL, datetime_conversion=DatetimeConversion.DATETIME_AUTO, tz_aware=True)


def bson_to_extended_json(document: bytes | dict[str, Any]) -> Any:
    """A BSON document (bytes, or already decoded) as a canonical extended-JSON value."""
    if isinstance(document, bytes):
        document = bson.decode(document, _DECODE)
    return json.loads(json_util.dumps(document, json_options=_JSON))


def extended_json_to_bson(value: Any) -> bytes:
    """A stored canonical extended-JSON document back to the BSON bytes the server sent."""
    return bson.encode(json_util.loads(json.dumps(value), json_options=_JSON))


def decode_bson(raw: bytes) -> dict[str, Any]:
    """BSON bytes as a document, with the options storage uses."""
    return bson.decode(raw, _DECODE)
