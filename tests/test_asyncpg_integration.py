"""asyncpg recorded against the real PostgreSQL on 127.0.0.1 and replayed with the DSN pointing at a closed port."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import re
import textwrap
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.http_upstream import closed_port, recording, replaying
from tests.servers import Server
from tests.services import POSTGRES_DSN as DSN
from timetracer_otel.cassette.files import iter_cassette_files, load_cassette
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.integrations.registry import OUTBOUND

Work = Callable[[asyncpg.Connection], Awaitable[Any]]


def _down_dsn() -> str:
    """The same DSN with the port of nothing: a replayed call that tried to connect would fail."""
    return re.sub(r"@([^/:?]+)(:\d+)?", rf"@\1:{closed_port()}", DSN, count=1)


def _table() -> str:
    return f"tt_apg_{uuid.uuid4().hex[:10]}"


def _record_then_replay(tmp_path: Path, work: Work, **replay_settings: Any) -> tuple[Any, Any, Any]:
    """Run ``work`` on a fresh connection while recording, then while replaying; returns both results and the
    recorded cassette."""

    async def run(dsn: str) -> Any:
        connection = await asyncpg.connect(dsn)
        try:
            return await work(connection)
        finally:
            await connection.close()

    with recording(tmp_path) as recorded:
        live = asyncio.run(run(DSN))
    assert recorded.path is not None
    with replaying(recorded.path, **replay_settings):
        replayed = asyncio.run(run(_down_dsn()))
    return live, replayed, recorded.cassette


def _same(left: Any, right: Any) -> None:
    """Equal, with the same types all the way down (Record, Decimal, pgproto UUID, bytes vs str, ...)."""
    assert type(left) is type(right), (left, right)
    if isinstance(left, list | tuple | asyncpg.Record):
        assert len(left) == len(right)
        for a, b in zip(left, right, strict=True):
            _same(a, b)
        if isinstance(left, asyncpg.Record):
            assert list(left.keys()) == list(right.keys()) and repr(left) == repr(right)
    elif isinstance(left, dict):
        assert list(left) == list(right)
        for key in left:
            _same(left[key], right[key])
    elif isinstance(left, decimal.Decimal) and left.is_nan():
        assert right.is_nan()
    else:
        assert left == right


def test_execute_executemany_fetch_and_record_access(tmp_path: Path) -> None:
    table = _table()

    async def work(con: asyncpg.Connection) -> list[Any]:
        seen: list[Any] = [await con.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, score float8)")]
        seen.append(await con.execute(f"INSERT INTO {table} VALUES ($1, $2, $3)", 1, "ada", 1.5))
        rows = [(2, "bob", 2.5), (3, "cy", None)]
        seen.append(await con.executemany(f"INSERT INTO {table} VALUES ($1, $2, $3)", rows))
        seen.append(await con.execute(f"UPDATE {table} SET score = score + 1 WHERE id < 3"))
        rows = await con.fetch(f"SELECT id, name, score FROM {table} ORDER BY id")
        row = await con.fetchrow(f"SELECT id, name FROM {table} WHERE id = $1", 2)
        assert row is not None
        seen += [rows, row, row[0], row["name"], row.get("name"), row.get("missing", "default"), dict(row),
                 len(row), list(row), list(row.items()), repr(row), "name" in row]
        seen.append(await con.fetchval(f"SELECT count(*) FROM {table}"))
        seen.append(await con.fetchval(f"SELECT name FROM {table} WHERE id = $1", 1, column=0))
        seen.append(await con.fetchrow(f"SELECT * FROM {table} WHERE id = $1", 99))
        seen.append(await con.fetchmany(f"INSERT INTO {table} VALUES ($1, $2) RETURNING id, name",
                                        [(4, "di"), (5, "ed")]))
        seen.append(await con.execute(f"DROP TABLE {table}"))
        return seen

    live, replayed, cassette = _record_then_replay(tmp_path, work)
    _same(live, replayed)
    assert live[:4] == ["CREATE TABLE", "INSERT 0 1", None, "UPDATE 2"]
    assert type(live[4][0]) is asyncpg.Record and live[6] == 2 and live[8] == "bob" and live[9] == "default"
    methods = [(i.request.method, i.kind, i.library) for i in cassette.interactions]
    assert methods[:3] == [("execute", "sql", "asyncpg"), (None, "sql", "asyncpg"), ("executemany", "sql", "asyncpg")]
    fetch = cassette.interactions[4]
    assert fetch.response.result["columns"] == [["id", 23], ["name", 25], ["score", 701]]
    assert fetch.response.result["rows"][0] == [1, "ada", 2.5]


def test_prepared_statements_cursors_and_transactions(tmp_path: Path) -> None:
    table = _table()

    async def work(con: asyncpg.Connection) -> list[Any]:
        await con.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, label text)")
        seen: list[Any] = []
        async with con.transaction():
            await con.executemany(f"INSERT INTO {table} VALUES ($1, $2)", [(n, f"l{n}") for n in range(1, 8)])
        try:
            async with con.transaction():
                await con.execute(f"DELETE FROM {table}")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        seen.append(await con.fetchval(f"SELECT count(*) FROM {table}"))  # the rollback kept every row
        statement = await con.prepare(f"SELECT id, label FROM {table} WHERE id > $1 ORDER BY id")
        seen += [statement.get_attributes(), statement.get_parameters(), await statement.fetch(5),
                 statement.get_statusmsg(), await statement.fetchrow(6), await statement.fetchval(1, column=1),
                 statement.get_query()]
        insert = await con.prepare(f"INSERT INTO {table} VALUES ($1, $2)")
        seen.append(await insert.executemany([(20, "x"), (21, "y")]))
        async with con.transaction():
            seen.append([r async for r in con.cursor(f"SELECT id FROM {table} ORDER BY id", prefetch=3)])
            cursor = await con.cursor(f"SELECT id, label FROM {table} WHERE id >= $1 ORDER BY id", 2)
            seen += [await cursor.fetch(2), await cursor.forward(2), await cursor.fetchrow(), await cursor.fetch(50)]
            seen.append(con.is_in_transaction())
        seen.append(con.is_in_transaction())
        await con.execute(f"DROP TABLE {table}")
        return seen

    live, replayed, cassette = _record_then_replay(tmp_path, work)
    _same(live, replayed)
    assert live[0] == 7
    assert [a.name for a in live[1]] == ["id", "label"] and live[2][0].name == "int4"
    assert [r["id"] for r in live[3]] == [6, 7] and live[4] == "SELECT 2"
    assert [r["id"] for r in live[9]] == [1, 2, 3, 4, 5, 6, 7, 20, 21]
    assert [r["id"] for r in live[10]] == [2, 3] and live[11] == 2 and live[12]["id"] == 6
    assert live[-2:] == [True, False]
    statements = [i.request.operation for i in cassette.interactions if i.request.method == "execute"]
    assert statements.count("BEGIN;") == 3 and "ROLLBACK;" in statements and statements.count("COMMIT;") == 2
    cursors = [i for i in cassette.interactions if i.request.method == "cursor"]
    assert len(cursors) == 2, "one interaction per cursor, holding all its fetches"
    assert [step.get("limit", step.get("move")) for step in cursors[1].response.result["steps"]] == [2, 2, 1, 50]


def test_replayed_cursor_fetching_differently_is_a_mismatch(tmp_path: Path) -> None:
    async def work(con: asyncpg.Connection, size: int) -> Any:
        async with con.transaction():
            cursor = await con.cursor("SELECT generate_series(1, 10) AS n")
            return await cursor.fetch(size)

    async def run(dsn: str, size: int) -> Any:
        con = await asyncpg.connect(dsn)
        try:
            return await work(con, size)
        finally:
            await con.close()

    with recording(tmp_path) as recorded:
        assert [r["n"] for r in asyncio.run(run(DSN, 3))] == [1, 2, 3]
    assert recorded.path is not None
    with replaying(recorded.path), pytest.raises(ReplayMismatchError, match="fetch of 3 rows, got a fetch of 4"):
        asyncio.run(run(_down_dsn(), 4))


def test_exact_types(tmp_path: Path) -> None:
    query = """SELECT 1.25::numeric AS price, 'NaN'::numeric AS nan, now() AS at, '2024-02-29'::date AS day,
                      '10:11:12'::time AS clock, gen_random_uuid() AS id, '{"a": [1, 2], "b": null}'::jsonb AS doc,
                      '{"x": 1}'::json AS plain_json, '\\x00ff10'::bytea AS blob, ARRAY[1, 2, 3] AS ints,
                      ARRAY['a', NULL] AS texts, '1 day 02:03:04.5'::interval AS span, 'inf'::float8 AS inf,
                      9223372036854775807::int8 AS big, true AS flag, NULL::text AS nothing,
                      '192.168.0.1/32'::inet AS addr, ROW(1, 'x') AS pair, $1::uuid[] AS ids"""

    async def work(con: asyncpg.Connection) -> Any:
        return await con.fetchrow(query, [uuid.UUID(int=7), uuid.UUID(int=8)])

    live, replayed, _ = _record_then_replay(tmp_path, work)
    _same(live, replayed)
    assert type(live["price"]) is decimal.Decimal and live["nan"].is_nan()
    assert type(live["at"]) is dt.datetime and live["at"].tzinfo is not None
    assert type(live["day"]) is dt.date and type(live["clock"]) is dt.time
    assert isinstance(live["id"], uuid.UUID) and type(replayed["id"]) is type(live["id"])
    assert type(live["doc"]) is str and type(live["blob"]) is bytes and live["blob"] == b"\x00\xff\x10"
    assert live["ints"] == [1, 2, 3] and live["texts"] == ["a", None]
    assert live["span"] == dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5)
    assert live["pair"] == (1, "x")  # an anonymous record decodes as a tuple


def test_unique_violation_is_reraised_with_its_fields(tmp_path: Path) -> None:
    table = _table()

    async def work(con: asyncpg.Connection) -> Any:
        await con.execute(f"CREATE TABLE {table} (id int CONSTRAINT {table}_pk PRIMARY KEY)")
        await con.execute(f"INSERT INTO {table} VALUES ($1)", 1)
        try:
            with pytest.raises(asyncpg.UniqueViolationError) as raised:
                await con.execute(f"INSERT INTO {table} VALUES ($1)", 1)
            with pytest.raises(asyncpg.UndefinedTableError):
                await con.fetch("SELECT * FROM tt_apg_no_such_table")
        finally:
            await con.execute(f"DROP TABLE {table}")
        error = raised.value
        return [type(error), str(error), error.sqlstate, error.constraint_name, error.detail, error.table_name]

    live, replayed, _ = _record_then_replay(tmp_path, work)
    assert live == replayed
    assert live[2:4] == ["23505", f"{table}_pk"] and "already exists" in live[4]


def test_changed_parameter_is_a_mismatch_naming_it(tmp_path: Path) -> None:
    async def run(dsn: str, wanted: int) -> Any:
        con = await asyncpg.connect(dsn)
        try:
            return await con.fetch("SELECT n FROM generate_series(1, 5) AS n WHERE n > $1", wanted)
        finally:
            await con.close()

    with recording(tmp_path) as recorded:
        assert len(asyncio.run(run(DSN, 3))) == 2
    assert recorded.path is not None
    with replaying(recorded.path), pytest.raises(ReplayMismatchError) as raised:
        asyncio.run(run(_down_dsn(), 4))
    assert "parameter 1 differs: recorded 3, got 4" in str(raised.value)


def test_fetchrow_recording_cannot_answer_a_fetch_of_every_row(tmp_path: Path) -> None:
    query = "SELECT n FROM generate_series(1, 3) AS n"

    async def run(dsn: str, every: bool) -> Any:
        con = await asyncpg.connect(dsn)
        try:
            return await (con.fetch(query) if every else con.fetchrow(query))
        finally:
            await con.close()

    with recording(tmp_path) as recorded:
        asyncio.run(run(DSN, every=True))
        asyncio.run(run(DSN, every=False))
    assert recorded.path is not None
    with replaying(recorded.path):
        # A fetchrow may be answered from a recorded fetch of every row: the first row is known.
        first = asyncio.run(run(_down_dsn(), every=False))
        assert first is not None and first["n"] == 1
        with pytest.raises(ReplayMismatchError, match="row limit"):
            asyncio.run(run(_down_dsn(), every=True))  # only the fetchrow's answer is left: it read 1 row


def test_pool_acquire_release_and_pool_fetch(tmp_path: Path) -> None:
    table = _table()

    async def run(dsn: str) -> list[Any]:
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=3)
        try:
            async with pool.acquire() as con:
                await con.execute(f"CREATE TABLE {table} (id int, name text)")
                await con.execute(f"INSERT INTO {table} VALUES ($1, $2), ($3, $4)", 1, "a", 2, "b")
                server = con.get_server_version()
            rows = await pool.fetch(f"SELECT * FROM {table} ORDER BY id")
            one = await pool.fetchval(f"SELECT name FROM {table} WHERE id = $1", 2)
            con = await pool.acquire()
            status = await con.execute(f"DROP TABLE {table}")
            await pool.release(con)
            return [rows, one, status, server, pool.get_size(), pool.get_idle_size()]
        finally:
            await pool.close()

    with recording(tmp_path) as recorded:
        live = asyncio.run(run(DSN))
    assert recorded.path is not None
    sessions = [load_cassette(p) for p in iter_cassette_files(tmp_path, sessions=True)]
    connects = [i for s in sessions for i in s.interactions if i.request.method == "connect"]
    assert len(connects) >= 2 and "server_version" in connects[0].response.result["settings"]
    operations = [i.request.operation for i in recorded.cassette.interactions]
    assert not any("RESET ALL" in op for op in operations), "pool resets are not recorded"
    with replaying(recorded.path):
        replayed = asyncio.run(run(_down_dsn()))
    _same(live, replayed)
    assert live[1] == "b" and live[2] == "DROP TABLE" and live[4] == 2


def test_live_plugin_talks_to_the_server_in_replay(tmp_path: Path) -> None:
    async def run(dsn: str) -> Any:
        con = await asyncpg.connect(dsn)
        try:
            return await con.fetchval("SELECT pg_backend_pid()")
        finally:
            await con.close()

    with recording(tmp_path) as recorded:
        recorded_pid = asyncio.run(run(DSN))
    assert recorded.path is not None
    with replaying(recorded.path, mocked_plugins=frozenset(OUTBOUND) - {"asyncpg"}):
        live_pid = asyncio.run(run(DSN))
        with pytest.raises(OSError):
            asyncio.run(run(_down_dsn()))  # really connecting: the closed port refuses
    assert isinstance(live_pid, int) and live_pid != recorded_pid


def test_no_connection_is_attempted_in_replay(tmp_path: Path) -> None:
    async def run(dsn: str) -> Any:
        con = await asyncpg.connect(dsn)
        try:
            return [await con.fetchval("SELECT 41 + 1"), con.get_server_version(), con.get_settings().server_encoding,
                    con.is_closed()]
        finally:
            await con.close()

    with recording(tmp_path) as recorded:
        live = asyncio.run(run(DSN))
    assert recorded.path is not None
    # A host that does not resolve: any attempt to connect would fail.
    with replaying(recorded.path):
        replayed = asyncio.run(run("postgresql://nobody@timetracer-no-such-host.invalid:5432/nowhere"))
    assert live == replayed and live[0] == 42 and live[3] is False


_LIFESPAN_APP = textwrap.dedent('''
    import contextlib, os
    import asyncpg
    from fastapi import FastAPI

    TABLE = os.environ["APP_TABLE"]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.pool = await asyncpg.create_pool(os.environ["APP_DSN"], min_size=2)
        app.state.version = await app.state.pool.fetchval("SELECT current_setting('server_version_num')::int")
        yield
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        row = await app.state.pool.fetchrow(f"SELECT id, name, price FROM {TABLE} WHERE id = $1", item_id)
        return {"id": row["id"], "name": row["name"], "price": str(row["price"]), "version": app.state.version}
''')


@pytest.mark.slow
def test_app_whose_lifespan_opens_a_pool_starts_in_replay_with_postgres_down(tmp_path: Path) -> None:
    table = _table()

    async def setup(sql: str) -> None:
        con = await asyncpg.connect(DSN)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    asyncio.run(setup(f"CREATE TABLE {table} (id int, name text, price numeric); "
                      f"INSERT INTO {table} VALUES (1, 'lamp', 12.50), (2, 'desk', 99.00)"))
    (tmp_path / "lifespan_app.py").write_text(_LIFESPAN_APP)
    cassettes = tmp_path / "cassettes"
    env = {"APP_TABLE": table, "APP_DSN": DSN, "TIMETRACER_MODE": "record", "TIMETRACER_DIR": str(cassettes)}
    try:
        with Server("lifespan_app:app", cwd=tmp_path, log=tmp_path / "record.log", env=env, instrument=True) as app:
            recorded = [httpx.get(f"{app.url}/items/{n}", timeout=10).json() for n in (1, 2)]
    finally:
        asyncio.run(setup(f"DROP TABLE {table}"))
    assert [r["name"] for r in recorded] == ["lamp", "desk"] and recorded[0]["price"] == "12.50"
    assert len(list(iter_cassette_files(cassettes))) == 2
    session = [i.request.operation for p in iter_cassette_files(cassettes, sessions=True)
               for i in load_cassette(p).interactions]
    assert "SELECT current_setting('server_version_num')::int" in session

    replay_env = {**env, "TIMETRACER_MODE": "replay", "TIMETRACER_CASSETTE": str(cassettes), "APP_DSN": _down_dsn()}
    with Server("lifespan_app:app", cwd=tmp_path, log=tmp_path / "replay.log", env=replay_env, instrument=True) as app:
        replayed = [httpx.get(f"{app.url}/items/{n}", timeout=10).json() for n in (1, 2)]
    assert replayed == recorded, app.output()
