"""psycopg: the one description of a call, shared by record (``psycopg.py``) and replay (``_psycopg_replay.py``).

Both modes build a call's request here, so a replayed call looks up exactly what was recorded.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql
from psycopg.types.json import Json, Jsonb

from timetracer_otel.integrations._dbapi import SqlRequest, copy_parameters

__all__ = ["CONNECT", "CURSOR", "sql_request"]

#: The pseudo-statement a connection's set-up is recorded under (with method ``connect``: never a real query).
CONNECT = "connect"
#: The method a server-side (named) cursor's statement is recorded under: one interaction per cursor.
CURSOR = "cursor"


def _statement(query: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode("utf-8", "replace")
    if isinstance(query, sql.Composable):
        return query.as_string(None)
    return str(query)


def _parameter(value: Any) -> Any:
    """psycopg's JSON wrappers are kept as the value they wrap."""
    return value.obj if isinstance(value, Json | Jsonb) else value


def _parameters(params: Any) -> Any:
    if isinstance(params, dict):
        return {key: _parameter(value) for key, value in params.items()}
    if isinstance(params, list | tuple):
        return [_parameter(value) for value in params]
    return copy_parameters(params)


def sql_request(query: Any, params: Any, method: str | None, dbname: str | None) -> SqlRequest:
    parameters = [_parameters(item) for item in params] if method == "executemany" else _parameters(params)
    return SqlRequest(_statement(query), parameters, method, dbname)
