"""sqlite3 and aiosqlite, recorded against a database file in tmp_path and replayed with the file deleted."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from tests.http_upstream import recording, replaying
from timetracer_otel.errors import ReplayMismatchError

SCHEMA = "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, price REAL, data BLOB, seen TEXT)"


def _create(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(SCHEMA)
        conn.executemany("INSERT INTO items (name, price, data) VALUES (?, ?, ?)",
                         [("apple", 1.5, b"\x00\xff"), ("pear", 2.25, None), ("plum", 0.5, b"")])
    conn.close()


def _direct_calls(path: Path) -> list[Any]:
    seen: list[Any] = []
    conn = sqlite3.connect(path)
    cur = conn.cursor()
    cur.execute("SELECT id, name, price, data FROM items WHERE price > ? ORDER BY id", (0.1,))
    seen.append([d[0] for d in cur.description])
    seen.append(cur.fetchone())
    seen.append(cur.fetchmany(1))
    seen.append(cur.fetchall())
    seen.append(cur.fetchone())
    cur.execute("INSERT INTO items (name, price) VALUES (:name, :price)", {"name": "kiwi", "price": 3.0})
    seen.append((cur.rowcount, cur.lastrowid, cur.description))
    cur.executemany("UPDATE items SET seen = ? WHERE name = ?", [("yes", "apple"), ("yes", "pear")])
    seen.append(cur.rowcount)
    conn.commit()
    seen.append(list(conn.execute("SELECT name, seen FROM items WHERE seen IS NOT NULL ORDER BY name")))
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT id, name AS label FROM items WHERE name = ?", ["kiwi"]).fetchone()
    seen.append((type(row), row.keys(), tuple(row), row["label"]))
    conn.row_factory = lambda cursor, values: {d[0]: v for d, v in zip(cursor.description, values, strict=True)}
    seen.append(conn.execute("SELECT name, data FROM items WHERE id = 1").fetchall())
    conn.row_factory = None
    try:
        conn.execute("INSERT INTO items (name) VALUES ('apple')")
    except sqlite3.IntegrityError as exc:
        seen.append((type(exc), str(exc), exc.sqlite_errorcode, exc.sqlite_errorname))
    with conn:
        conn.execute("DELETE FROM items WHERE name = ?", ("plum",))
    seen.append(conn.execute("SELECT count(*) FROM items").fetchone())
    conn.close()
    return seen


def test_sqlite3_direct_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    _create(path)
    with recording(tmp_path / "cassettes") as recorded:
        seen = _direct_calls(path)
    assert seen[1] == (1, "apple", 1.5, b"\x00\xff")
    assert seen[5][0] == 1 and seen[5][1] == 4
    assert seen[6] == 2
    assert seen[8][0] is sqlite3.Row and seen[8][1] == ["id", "label"]
    assert seen[9] == [{"name": "apple", "data": b"\x00\xff"}]
    assert seen[10][0] is sqlite3.IntegrityError and seen[10][3] == "SQLITE_CONSTRAINT_UNIQUE"
    assert seen[11] == (3,)
    assert recorded.cassette is not None
    assert [i.kind for i in recorded.cassette.interactions] == ["sql"] * 9
    assert {i.library for i in recorded.cassette.interactions} == {"sqlite3"}
    assert recorded.cassette.interactions[2].request.method == "executemany"

    path.unlink()
    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = _direct_calls(path)
    assert not path.exists()
    assert replayed == seen
    assert [[type(v) for v in row] for row in replayed[3]] == [[type(v) for v in row] for row in seen[3]]


def test_sqlite3_changed_parameter_is_a_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    _create(path)
    with recording(tmp_path / "cassettes") as recorded:
        sqlite3.connect(path).execute("SELECT name FROM items WHERE price > ?", (1.0,)).fetchall()
    with replaying(recorded.path) as _, pytest.raises(ReplayMismatchError) as info:  # type: ignore[arg-type]
        sqlite3.connect(path).execute("SELECT name FROM items WHERE price > ?", (2.0,)).fetchall()
    assert "parameter 1" in str(info.value)


def test_sqlite3_converted_types_exact(tmp_path: Path) -> None:
    """Values made by sqlite3's converters (detect_types) replay as the same types."""
    path = tmp_path / "types.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (d DATE, ts TIMESTAMP, n INTEGER, f REAL, b BLOB, s TEXT)")
        conn.execute("INSERT INTO t VALUES ('2024-02-29', '2024-02-29 13:14:15.123456', ?, 0.1, ?, 'é')",
                     (2**62, b"\x00\xff"))
    conn.close()

    def calls() -> list[Any]:
        conn = sqlite3.connect(path, detect_types=sqlite3.PARSE_DECLTYPES)
        rows = conn.execute("SELECT d, ts, n, f, b, s, NULL FROM t").fetchall()
        conn.close()
        return rows

    with recording(tmp_path / "cassettes") as recorded:
        seen = calls()
    assert seen == [(dt.date(2024, 2, 29), dt.datetime(2024, 2, 29, 13, 14, 15, 123456), 2**62, 0.1, b"\x00\xff",
                     "é", None)]
    path.unlink()
    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = calls()
    assert replayed == seen
    assert [type(v) for v in replayed[0]] == [dt.date, dt.datetime, int, float, bytes, str, type(None)]


async def _aiosqlite_calls(path: Path) -> list[Any]:
    async with aiosqlite.connect(path) as db:
        db.row_factory = aiosqlite.Row
        async with db.execute("SELECT id, name FROM items ORDER BY id") as cursor:
            rows = [tuple(row) async for row in cursor]
        await db.execute("UPDATE items SET price = ? WHERE name = ?", (9.5, "pear"))
        await db.commit()
        async with db.execute("SELECT price FROM items WHERE name = ?", ("pear",)) as cursor:
            price = await cursor.fetchone()
    return [rows, tuple(price) if price else None]


def test_aiosqlite_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "async.db"
    _create(path)
    with recording(tmp_path / "cassettes") as recorded:
        seen = asyncio.run(_aiosqlite_calls(path))
    assert seen == [[(1, "apple"), (2, "pear"), (3, "plum")], (9.5,)]
    assert recorded.cassette is not None and len(recorded.cassette.interactions) == 3
    path.unlink()
    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = asyncio.run(_aiosqlite_calls(path))
    assert replayed == seen
    assert not path.exists()
