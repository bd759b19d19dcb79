"""The JSON Schema of the cassette format, shipped with the package for other tools to validate against."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

__all__ = ["cassette_schema"]


@cache
def _schema_text() -> str:
    return files("timetracer_otel.cassette").joinpath("schema.json").read_text(encoding="utf-8")


def cassette_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of cassette format version 1.

    Parsed afresh on every call so a caller that edits the dict cannot change what the next caller sees.
    """
    schema = json.loads(_schema_text())
    if not isinstance(schema, dict):  # only a broken install could get here
        raise TypeError("timetracer_otel/cassette/schema.json is not a JSON object")
    return schema
