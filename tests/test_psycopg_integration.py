"""psycopg 3, recorded against the PostgreSQL server on 127.0.0.1 and replayed with the DSN pointing at a closed
port (so any connection attempt would fail)."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row, namedtuple_row
from psycopg.types.json import Jsonb

from tests.http_upstream import closed_port, recording, replaying
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.integrations.registry import OUTBOUND

DSN = os.environ.get("TIMETRACER_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/test")


def closed_dsn() -> str:
    return psycopg.conninfo.make_conninfo(DSN, host="127.0.0.1", port=str(closed_port()), connect_timeout="2")


@pytest.fixture
def table() -> Iterator[str]:
    name = f"tt_items_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id serial PRIMARY KEY, name text UNIQUE NOT NULL, price numeric(10, 2), "
                     "made timestamp, ref uuid, doc jsonb, data bytea)")
    yield name
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


REF = uuid.UUID("12345678-1234-5678-1234-567812345678")
MADE = dt.datetime(2024, 2, 29, 13, 14, 15, 123456)


def _calls(dsn: str, table: str) -> list[Any]:
    seen: list[Any] = []
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {table} (name, price, made, ref, doc, data) VALUES (%s, %s, %s, %s, %s, %s)",
                            [("apple", Decimal("1.50"), MADE, REF, Jsonb({"tags": ["a", "b"], "n": 1}), b"\x00\xff"),
                             ("pear", Decimal("2.25"), None, None, Jsonb([1, 2.5, None]), None),
                             ("plum", Decimal("0.10"), MADE, uuid.UUID(int=7), None, b"")])
            seen.append(cur.rowcount)
            cur.execute(f"SELECT name, price, made, ref, doc, data FROM {table} WHERE price > %s ORDER BY id",
                        (Decimal("0.05"),))
            seen.append([(c.name, c.type_code) for c in cur.description or ()])
            seen.append(cur.fetchone())
            seen.append(cur.fetchmany(1))
            seen.append(cur.fetchall())
            seen.append(cur.fetchone())
        conn.commit()
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(f"SELECT id, name FROM {table} WHERE name = %(name)s", {"name": "pear"})
            seen.append(cur.fetchall())
        conn.row_factory = namedtuple_row
        row = conn.execute(f"UPDATE {table} SET price = price * 2 WHERE name <> %s RETURNING name, price",
                           ["pear"]).fetchall()
        seen.append(([type(r).__name__ for r in row], [tuple(r) for r in row], row[0]._fields))
        conn.rollback()
        seen.append(conn.execute(f"SELECT sum(price) FROM {table}").fetchone())
        try:
            conn.execute(f"INSERT INTO {table} (name) VALUES ('apple')")
        except psycopg.errors.UniqueViolation as exc:
            seen.append((type(exc), exc.sqlstate, exc.diag.sqlstate, exc.diag.constraint_name, str(exc)))
        conn.rollback()
        cur2 = conn.cursor()
        cur2.execute(f"DELETE FROM {table} WHERE name = %s", ("plum",))
        seen.append((cur2.rowcount, cur2.statusmessage, cur2.description))
        conn.commit()
    return seen


def test_psycopg_round_trip(tmp_path: Path, table: str) -> None:
    with recording(tmp_path / "cassettes") as recorded:
        seen = _calls(DSN, table)
    assert seen[0] == 3
    assert seen[2] == ("apple", Decimal("1.50"), MADE, REF, {"tags": ["a", "b"], "n": 1}, b"\x00\xff")
    assert seen[4] == [("plum", Decimal("0.10"), MADE, uuid.UUID(int=7), None, b"")]
    assert seen[6] == [{"id": 2, "name": "pear"}]
    assert seen[7][0] == ["Row", "Row"]
    assert seen[8] == (Decimal("3.85"),)
    assert seen[9][0] is psycopg.errors.UniqueViolation and seen[9][1] == "23505"
    assert seen[10] == (1, "DELETE 1", None)
    assert recorded.cassette is not None
    kinds = {(i.kind, i.library) for i in recorded.cassette.interactions}
    assert kinds == {("sql", "psycopg")}
    assert len(recorded.cassette.interactions) == 7

    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = _calls(closed_dsn(), table)
    assert replayed == seen
    for recorded_row, replayed_row in zip(seen[2:5], replayed[2:5], strict=True):
        assert repr(recorded_row) == repr(replayed_row)  # the same types, all the way down


def test_psycopg_changed_parameter_is_a_mismatch(tmp_path: Path, table: str) -> None:
    query = f"SELECT name FROM {table} WHERE price > %s"
    with recording(tmp_path / "cassettes") as recorded, psycopg.connect(DSN) as conn:
        conn.execute(query, (Decimal("1"),)).fetchall()
    with replaying(recorded.path), psycopg.connect(closed_dsn()) as conn, \
            pytest.raises(ReplayMismatchError) as info:  # type: ignore[arg-type]
        conn.execute(query, (Decimal("2"),))
    assert "parameter 1" in str(info.value)


def test_psycopg_live_plugin_talks_to_the_server(tmp_path: Path, table: str) -> None:
    with recording(tmp_path / "cassettes") as recorded, psycopg.connect(DSN) as conn:
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {table} (name) VALUES ('live')")
    with replaying(recorded.path, mocked_plugins=frozenset(OUTBOUND) - {"psycopg"}), psycopg.connect(DSN) as conn:  # type: ignore[arg-type]
        assert not type(conn).__module__.startswith("timetracer")
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)  # the server's answer, not (0,)
