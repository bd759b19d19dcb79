"""psycopg 3, recorded against the PostgreSQL server on 127.0.0.1 and replayed with the DSN pointing at a closed
port (so any connection attempt would fail)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.rows import dict_row, namedtuple_row
from psycopg.types.json import Jsonb

from tests.http_upstream import closed_port, recording, replaying
from tests.services import POSTGRES_DSN as DSN
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.integrations.registry import OUTBOUND


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


# -- AsyncConnection / AsyncCursor ------------------------------------------------------------------------------


async def _async_calls(dsn: str, table: str) -> list[Any]:
    """The sync scenario's operations on psycopg's async API."""
    seen: list[Any] = []
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.cursor() as cur:
            await cur.executemany(f"INSERT INTO {table} (name, price, made, ref, doc, data) "
                                  "VALUES (%s, %s, %s, %s, %s, %s)",
                                  [("apple", Decimal("1.50"), MADE, REF, Jsonb({"n": 1}), b"\x00\xff"),
                                   ("pear", Decimal("2.25"), None, None, Jsonb([1, 2.5, None]), None),
                                   ("plum", Decimal("0.10"), MADE, uuid.UUID(int=7), None, b"")])
            seen.append(cur.rowcount)
            await cur.execute(f"SELECT name, price, made, ref, doc, data FROM {table} WHERE price > %s ORDER BY id",
                              (Decimal("0.05"),))
            seen.append([(c.name, c.type_code) for c in cur.description or ()])
            seen.append(await cur.fetchone())
            seen.append(await cur.fetchmany(1))
            seen.append(await cur.fetchall())
            seen.append(await cur.fetchone())
        await conn.commit()
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(f"SELECT id, name FROM {table} ORDER BY id")
            seen.append([row async for row in cur])
        await conn.commit()
        async with conn.transaction():
            updated = await conn.execute(f"UPDATE {table} SET price = price * 2 RETURNING name, price")
            seen.append((updated.rowcount, updated.statusmessage, await updated.fetchall()))
            with contextlib.suppress(psycopg.errors.UniqueViolation):
                async with conn.transaction():  # a savepoint, rolled back by the error; the outer block goes on
                    await conn.execute(f"UPDATE {table} SET name = 'apple' WHERE name = 'pear'")
            seen.append(conn.info.transaction_status)
        seen.append(conn.info.transaction_status)
        await conn.execute(f"DELETE FROM {table} WHERE name = %s", ("pear",))
        await conn.rollback()
        seen.append(await (await conn.execute(f"SELECT sum(price) FROM {table}")).fetchone())
        try:
            await conn.execute(f"INSERT INTO {table} (name) VALUES (%s)", ("apple",))
        except psycopg.errors.UniqueViolation as exc:
            seen.append((type(exc), exc.sqlstate, exc.diag.constraint_name, str(exc)))
        seen.append(conn.info.transaction_status)
        await conn.rollback()
        seen.append(conn.info.server_version > 0)
    return seen


def test_psycopg_async_round_trip(tmp_path: Path, table: str) -> None:
    with recording(tmp_path / "cassettes") as recorded:
        seen = asyncio.run(_async_calls(DSN, table))
    assert seen[0] == 3
    assert seen[2] == ("apple", Decimal("1.50"), MADE, REF, {"n": 1}, b"\x00\xff")
    assert seen[6] == [{"id": 1, "name": "apple"}, {"id": 2, "name": "pear"}, {"id": 3, "name": "plum"}]
    assert seen[7][:2] == (3, "UPDATE 3")
    assert seen[8:10] == [psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.IDLE]
    assert seen[10] == (Decimal("7.70"),)  # the DELETE was rolled back
    assert seen[11][0] is psycopg.errors.UniqueViolation and seen[11][1] == "23505"
    assert seen[12] == psycopg.pq.TransactionStatus.INERROR
    assert recorded.cassette is not None
    assert {(i.kind, i.library) for i in recorded.cassette.interactions} == {("sql", "psycopg")}
    assert len(recorded.cassette.interactions) == 8

    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = asyncio.run(_async_calls(closed_dsn(), table))
    assert replayed == seen
    assert repr(replayed) == repr(seen)  # the same types, all the way down (Decimal, datetime, UUID, bytes, dict)


def test_psycopg_async_changed_parameter_is_a_mismatch(tmp_path: Path, table: str) -> None:
    query = f"SELECT name FROM {table} WHERE name = %(name)s"

    async def run(dsn: str, name: str) -> list[Any]:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            return await (await conn.execute(query, {"name": name})).fetchall()

    with recording(tmp_path / "cassettes") as recorded:
        asyncio.run(run(DSN, "apple"))
    with replaying(recorded.path), pytest.raises(ReplayMismatchError) as info:  # type: ignore[arg-type]
        asyncio.run(run(closed_dsn(), "pear"))
    assert "parameter :name" in str(info.value)


def test_psycopg_async_live_plugin_talks_to_the_server(tmp_path: Path, table: str) -> None:
    async def count(dsn: str) -> tuple[Any, ...]:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            assert not type(conn).__module__.startswith("timetracer")
            row = await (await conn.execute(f"SELECT count(*) FROM {table}")).fetchone()
            assert row is not None
            return row

    with recording(tmp_path / "cassettes") as recorded:
        assert asyncio.run(count(DSN)) == (0,)
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {table} (name) VALUES ('live')")
    with replaying(recorded.path, mocked_plugins=frozenset(OUTBOUND) - {"psycopg"}):  # type: ignore[arg-type]
        assert asyncio.run(count(DSN)) == (1,)  # the server's answer, not the recorded (0,)


def test_sqlalchemy_async_on_psycopg(tmp_path: Path, table: str) -> None:
    from tests.test_sqlalchemy_integration import _async_scenario, _pg_url  # here: that module imports this one

    with psycopg.connect(DSN, autocommit=True) as conn:  # the shape _async_scenario's model expects
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN price SET NOT NULL")
    with recording(tmp_path / "cassettes") as recorded:
        seen = asyncio.run(_async_scenario(_pg_url(), table))
    assert seen == [("a", Decimal("1.00")), ("b", Decimal("2.00"))]
    assert recorded.cassette is not None
    assert {i.library for i in recorded.cassette.interactions} == {"psycopg"}
    assert recorded.cassette.metadata.incomplete is False
    statements = [i.request.operation for i in recorded.cassette.interactions]  # type: ignore[union-attr]
    assert len([s for s in statements if s.startswith(("INSERT", "SELECT"))]) == 2
    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = asyncio.run(_async_scenario(_pg_url(closed_port()), table))
    assert replayed == seen
    assert [type(value) for row in replayed for value in row] == [str, Decimal, str, Decimal]


# -- server-side (named) cursors -------------------------------------------------------------------------------


def _fill(table: str, count: int) -> None:
    with psycopg.connect(DSN, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} (name, price) VALUES (%s, %s)",
                        [(f"n{i:02d}", Decimal(i) / 4) for i in range(count)])


def _named_calls(dsn: str, table: str) -> list[Any]:
    seen: list[Any] = []
    with psycopg.connect(dsn) as conn:
        with conn.cursor(name="tt_named") as cur:
            cur.execute(f"SELECT name, price FROM {table} WHERE price >= %s ORDER BY id", (Decimal("0.5"),))
            seen.append((cur.name, [c.name for c in cur.description or ()], cur.rownumber))
            seen.append(cur.fetchone())
            seen.append(cur.fetchmany(3))
            seen.append(cur.rownumber)
            seen.append(cur.fetchall())
            seen.append(cur.fetchone())
        with conn.cursor(name="tt_dicts", row_factory=dict_row) as cur:
            cur.itersize = 4
            cur.execute(f"SELECT id, price FROM {table} ORDER BY id")
            seen.append([row for row in cur if row["id"] % 3 == 0])
        with conn.cursor(name="tt_partial") as cur:
            cur.execute(f"SELECT name FROM {table} ORDER BY id")
            seen.append(cur.fetchmany(2))
    return seen


def test_psycopg_server_side_cursor_round_trip(tmp_path: Path, table: str) -> None:
    _fill(table, 10)
    with recording(tmp_path / "cassettes") as recorded:
        seen = _named_calls(DSN, table)
    assert seen[0] == ("tt_named", ["name", "price"], 0)
    assert seen[1] == ("n02", Decimal("0.50"))
    assert seen[3] == 4
    assert len(seen[4]) == 4 and seen[5] is None
    assert seen[6] == [{"id": 3, "price": Decimal("0.50")}, {"id": 6, "price": Decimal("1.25")},
                       {"id": 9, "price": Decimal("2.00")}]
    assert seen[7] == [("n00",), ("n01",)]
    assert recorded.cassette is not None
    cursors = [i for i in recorded.cassette.interactions if i.request.method == "cursor"]  # type: ignore[union-attr]
    assert len(cursors) == 3  # one interaction per cursor, holding all its fetches
    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = _named_calls(closed_dsn(), table)
    assert replayed == seen
    assert repr(replayed) == repr(seen)


def test_psycopg_server_side_cursor_fetch_past_the_recording_is_a_mismatch(tmp_path: Path, table: str) -> None:
    _fill(table, 5)
    query = f"SELECT name FROM {table} ORDER BY id"
    with recording(tmp_path / "cassettes") as recorded, psycopg.connect(DSN) as conn, conn.cursor("c") as cur:
        cur.execute(query)
        cur.fetchmany(2)
    with replaying(recorded.path), psycopg.connect(closed_dsn()) as conn, conn.cursor("c") as cur:  # type: ignore[arg-type]
        cur.execute(query)
        assert cur.fetchone() == ("n00",)
        assert cur.fetchone() == ("n01",)
        with pytest.raises(ReplayMismatchError) as info:
            cur.fetchone()
    assert "fetched only 2 rows" in str(info.value)


async def _async_named_calls(dsn: str, table: str) -> list[Any]:
    seen: list[Any] = []
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        async with conn.cursor(name="tt_async", row_factory=namedtuple_row) as cur:
            cur.itersize = 3
            await cur.execute(f"SELECT name, price FROM {table} WHERE price < %s ORDER BY id", (Decimal("1"),))
            seen.append(await cur.fetchone())
            seen.append([tuple(row) async for row in cur])
        async with conn.cursor(name="tt_async_all") as cur:
            await cur.execute(f"SELECT count(*) FROM {table}")
            seen.append(await cur.fetchall())
    return seen


def test_psycopg_async_server_side_cursor_round_trip(tmp_path: Path, table: str) -> None:
    _fill(table, 8)
    with recording(tmp_path / "cassettes") as recorded:
        seen = asyncio.run(_async_named_calls(DSN, table))
    assert type(seen[0]).__name__ == "Row" and tuple(seen[0]) == ("n00", Decimal("0.00"))
    assert seen[1] == [("n01", Decimal("0.25")), ("n02", Decimal("0.50")), ("n03", Decimal("0.75"))]
    assert seen[2] == [(8,)]
    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = asyncio.run(_async_named_calls(closed_dsn(), table))
    assert replayed == seen
    assert repr(replayed) == repr(seen)
    assert replayed[0]._fields == ("name", "price")


def test_sqlalchemy_stream_results_on_psycopg_named_cursor(tmp_path: Path, table: str) -> None:
    """SQLAlchemy's ``stream_results`` reads through a psycopg server-side cursor, a few rows at a time."""
    from tests.test_sqlalchemy_integration import _pg_url  # here: that module imports this one

    _fill(table, 7)

    def run(url: str) -> list[list[tuple[Any, ...]]]:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True, max_row_buffer=3).execute(
                    sa.text(f"SELECT name, price FROM {table} WHERE price > :low ORDER BY id"), {"low": Decimal("0.2")})
                return [[tuple(row) for row in part] for part in result.partitions(4)]
        finally:
            engine.dispose()

    with recording(tmp_path / "cassettes") as recorded:
        seen = run(_pg_url())
    assert [len(part) for part in seen] == [4, 2]
    assert seen[0][0] == ("n01", Decimal("0.25"))
    assert recorded.cassette is not None
    assert [i.request.method for i in recorded.cassette.interactions] == ["cursor"]  # type: ignore[union-attr]
    with replaying(recorded.path):  # type: ignore[arg-type]
        assert run(_pg_url(closed_port())) == seen
