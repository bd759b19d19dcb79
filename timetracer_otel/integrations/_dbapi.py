"""What the DB-API driver integrations (psycopg, sqlite3) share: one SQL call as a request, its recorded result,
and the cursor a replayed connection hands out.

A call's result is recorded as ``{"description", "rows", "rowcount", "lastrowid", "status", "more"}``: the
description as lists of its seven DB-API fields, every row as a list of the driver's Python values (before any
row factory: replay applies the app's row factory again, so ``dict_row`` or ``sqlite3.Row`` give the same rows),
and under ``more`` the further result sets (several statements, ``executemany(returning=True)``). A server-side
cursor's result also has ``complete``: whether its rows reached the end of the result (else they are only the rows
the app fetched, and replay cannot answer a fetch past them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from timetracer_otel.cassette.model import CallRequest, Interaction
from timetracer_otel.cassette.values import from_json_value, to_json_value
from timetracer_otel.integrations._sql import SQL
from timetracer_otel.record.recording import DataCall
from timetracer_otel.replay.session import replay_call

__all__ = ["BufferedRows", "ReplayedCursor", "ResultSet", "SqlCall", "SqlRequest", "copy_parameters", "replay_sql",
           "result_value"]

logger = logging.getLogger("timetracer")


@dataclass(frozen=True)
class SqlRequest:
    """One SQL call as both modes see it: record keeps it (encoded later), replay looks it up."""

    statement: str
    parameters: Any
    method: str | None
    target: str | None

    def model(self) -> CallRequest:
        return CallRequest(self.statement, self.method, self.target, to_json_value(self.parameters))


def copy_parameters(parameters: Any, many: bool = False) -> Any:
    """Parameters as the cassette keeps them: a copy (they are encoded later, the app may reuse its list)."""
    if many:
        return [copy_parameters(item) for item in parameters]
    if parameters is None:
        return None
    if isinstance(parameters, Mapping):
        return dict(parameters)
    if isinstance(parameters, list | tuple):
        return list(parameters)
    return parameters


class SqlCall(DataCall):
    """A recorded SQL call; ``details`` turns the driver's exception into its JSON error details."""

    __slots__ = ("_details",)

    def __init__(self, library: str, request: SqlRequest, details: Callable[[BaseException], Any]) -> None:
        super().__init__(SQL, library, request.statement, request.parameters, method=request.method,
                         target=request.target)
        self._details = details

    def error_details(self) -> Any:
        if self.error is None:
            return None
        try:
            return self._details(self.error)
        except Exception:
            logger.debug("timetracer: could not keep the details of %r", self.error, exc_info=True)
            return None


@dataclass
class ResultSet:
    """One result set of a call, as the driver gave it."""

    description: list[list[Any]] | None
    rows: list[list[Any]]
    rowcount: int
    lastrowid: Any = None
    status: str | None = None
    #: Server-side cursors only: whether ``rows`` reach the end of the result (None: a client-side result, whole).
    complete: bool | None = None

    def value(self) -> dict[str, Any]:
        value = {"description": self.description, "rows": self.rows, "rowcount": self.rowcount,
                 "lastrowid": self.lastrowid, "status": self.status}
        if self.complete is not None:
            value["complete"] = self.complete
        return value


def result_value(sets: Sequence[ResultSet]) -> dict[str, Any]:
    """The recorded result of a call (a plain value; ``to_json_value`` encodes it on the writer thread)."""
    if not sets:
        return ResultSet(None, [], -1).value()
    value = sets[0].value()
    if len(sets) > 1:
        value["more"] = [result.value() for result in sets[1:]]
    return value


def _sets_of(result: Any) -> list[ResultSet]:
    if not isinstance(result, dict):
        return [ResultSet(None, [], -1)]
    sets = [result, *result.get("more", ())]
    return [
        ResultSet(
            description=item.get("description"),
            rows=[list(row) for row in item.get("rows") or ()],
            rowcount=item.get("rowcount", -1),
            lastrowid=item.get("lastrowid"),
            status=item.get("status"),
            complete=item.get("complete"),
        )
        for item in sets
    ]


def replay_sql(request: SqlRequest) -> Interaction:
    """The recorded interaction of a SQL call (raises ``ReplayMismatchError`` when there is none)."""
    return replay_call(request.model(), SQL)


def recorded_sets(interaction: Interaction) -> list[ResultSet]:
    response = interaction.response
    result = None if response is None else from_json_value(getattr(response, "result", None))
    return _sets_of(result)


class BufferedRows:
    """The DB-API fetch and iteration protocol over rows already in hand: ``_rows`` served from ``_pos`` on, each
    built by ``_make_row``. A cursor's ``fetch*`` decide when there are no such rows, then take them from here."""

    _rows: list[tuple[Any, ...]]
    _pos: int

    def _make_row(self, values: tuple[Any, ...]) -> Any:
        return values

    def _next_row(self) -> Any:
        if self._pos >= len(self._rows):
            return None
        self._pos += 1
        return self._make_row(self._rows[self._pos - 1])

    def _next_rows(self, size: int) -> list[Any]:
        chosen = self._rows[self._pos:self._pos + size]
        self._pos += len(chosen)
        return [self._make_row(row) for row in chosen]

    def _other_rows(self) -> list[Any]:
        chosen = self._rows[self._pos:]
        self._pos = len(self._rows)
        return [self._make_row(row) for row in chosen]

    #: Each cursor's own (it decides what happens when the rows in hand run out); iteration calls it.
    fetchone: Callable[[], Any]

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row


class ReplayedCursor(BufferedRows):
    """A DB-API cursor answering from a recorded result. Drivers subclass it: ``execute``, row factories and
    what fetching without a result does differ between them."""

    arraysize = 1

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self._sets: list[ResultSet] = []
        self._index = 0
        self._rows: list[tuple[Any, ...]] = []
        self._pos = 0
        self.rowcount = -1
        self.lastrowid: Any = None
        self.closed = False

    # -- driver hooks (and ``_make_row``) ---------------------------------------------------------------------

    def _no_result(self) -> list[Any]:
        """Fetching when the current statement returned no rows: sqlite3 gives nothing, psycopg raises."""
        return []

    def _selected(self) -> None:
        """Called after a result set became the current one."""

    # -- results --------------------------------------------------------------------------------------------

    def _load(self, interaction: Interaction) -> None:
        self._sets = recorded_sets(interaction)
        self._select(0)

    def _select(self, index: int) -> None:
        self._index = index
        current = self._sets[index]
        self._rows = [tuple(row) for row in current.rows]
        self._pos = 0
        self.rowcount = current.rowcount
        self.lastrowid = current.lastrowid
        self._selected()

    @property
    def _current(self) -> ResultSet | None:
        return self._sets[self._index] if self._sets else None

    @property
    def description(self) -> list[Any] | None:
        current = self._current
        if current is None or current.description is None:
            return None
        return [Column(*field) for field in current.description]

    def nextset(self) -> bool | None:
        if self._index + 1 < len(self._sets):
            self._select(self._index + 1)
            return True
        return None

    def fetchone(self) -> Any:
        if self._current is None or self._current.description is None:
            return self._no_result() or None
        return self._next_row()

    def fetchmany(self, size: int | None = None) -> list[Any]:
        if self._current is None or self._current.description is None:
            return self._no_result()
        return self._next_rows(size or self.arraysize)

    def fetchall(self) -> list[Any]:
        if self._current is None or self._current.description is None:
            return self._no_result()
        return self._other_rows()

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass


class Column(tuple[Any, ...]):
    """A description entry: the seven DB-API fields, also by name (as psycopg's ``Column`` offers them)."""

    def __new__(cls, *fields: Any) -> Column:
        padded = (list(fields) + [None] * 7)[:7]
        return super().__new__(cls, padded)

    @property
    def name(self) -> str:
        return str(self[0])

    @property
    def type_code(self) -> Any:
        return self[1]

    @property
    def display_size(self) -> Any:
        return self[2]

    @property
    def internal_size(self) -> Any:
        return self[3]

    @property
    def precision(self) -> Any:
        return self[4]

    @property
    def scale(self) -> Any:
        return self[5]

    @property
    def null_ok(self) -> Any:
        return self[6]
