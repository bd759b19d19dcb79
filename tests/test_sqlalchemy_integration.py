"""SQLAlchemy 2.0 Core and ORM on psycopg and sqlite3 (sync) and aiosqlite (async): recorded against the real
databases, replayed with the PostgreSQL URL on a closed port / the sqlite file deleted. Each statement is one
interaction, recorded by the driver's integration."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests.http_upstream import closed_port, recording, replaying
from tests.test_psycopg_integration import DSN
from timetracer_otel.cassette.model import Cassette
from timetracer_otel.errors import ReplayMismatchError


def _pg_url(port: int | None = None) -> str:
    info = psycopg.conninfo.conninfo_to_dict(DSN)
    host = info.get("host", "127.0.0.1")
    return (f"postgresql+psycopg://{info.get('user', 'postgres')}@{host}:{port or info.get('port', 5432)}"
            f"/{info.get('dbname', 'test')}")


def _models(table: str) -> tuple[type[Any], sa.Table]:
    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(sa.String(50), unique=True)
        price: Mapped[Decimal] = mapped_column(sa.Numeric(10, 2))

    return Item, Item.__table__  # type: ignore[return-value]


def _scenario(url: str, table: str) -> list[Any]:
    item, items = _models(table)
    engine = sa.create_engine(url, pool_pre_ping=True)
    seen: list[Any] = []
    try:
        with engine.begin() as conn:
            conn.execute(items.insert(), [{"name": "apple", "price": Decimal("1.50")},
                                          {"name": "pear", "price": Decimal("2.25")}])
            new_id = conn.execute(items.insert().values(name="plum", price=Decimal("0.10"))
                                  .returning(items.c.id)).scalar_one()
            seen.append(new_id)
            conn.execute(items.update().where(items.c.name == "pear").values(price=Decimal("3.00")))
            seen.append(conn.execute(sa.select(items.c.name, items.c.price).order_by(items.c.id)).all())
        with Session(engine) as session:
            session.add(item(name="kiwi", price=Decimal("4.00")))
            session.commit()
            found = session.scalars(sa.select(item).where(item.price > Decimal("1.00")).order_by(item.id)).all()
            seen.append([(i.name, i.price, type(i.price)) for i in found])
            doomed = session.scalars(sa.select(item).where(item.name == "plum")).one()
            session.delete(doomed)
            session.commit()
            seen.append(session.scalar(sa.select(sa.func.count()).select_from(item)))
        try:
            with Session(engine) as session:
                session.add(item(name="apple", price=Decimal("9.99")))
                session.commit()
        except sa_exc.IntegrityError as exc:
            seen.append((type(exc), type(exc.orig).__module__.split(".")[0], type(exc.orig).__name__))
    finally:
        engine.dispose()
    return [tuple(r) if isinstance(r, sa.Row) else r for r in seen]


def _sql_calls(cassette: Cassette | None) -> list[str]:
    assert cassette is not None
    return [i.request.operation for i in cassette.interactions if i.kind == "sql"]  # type: ignore[union-attr]


@pytest.fixture
def pg_table() -> Iterator[str]:
    name = f"tt_sa_{uuid.uuid4().hex[:10]}"
    _, items = _models(name)
    engine = sa.create_engine(_pg_url())
    items.create(engine)
    engine.dispose()
    yield name
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "sa.db"
    name = "items"
    _, items = _models(name)
    engine = sa.create_engine(f"sqlite:///{path}")
    items.create(engine)
    engine.dispose()
    return path, name


def _check(seen: list[Any], driver: str) -> None:
    assert seen[0] == 3
    assert seen[2] == [("apple", Decimal("1.50"), Decimal), ("pear", Decimal("3.00"), Decimal),
                       ("kiwi", Decimal("4.00"), Decimal)]
    assert seen[3] == 3
    assert seen[4] == (sa_exc.IntegrityError, driver, "UniqueViolation" if driver == "psycopg" else "IntegrityError")


def test_sqlalchemy_on_psycopg(tmp_path: Path, pg_table: str) -> None:
    with recording(tmp_path / "cassettes") as recorded:
        seen = _scenario(_pg_url(), pg_table)
    _check(seen, "psycopg")
    statements = _sql_calls(recorded.cassette)
    # One interaction per statement (the driver's), none of the dialect's set-up queries (session cassette).
    assert not any("version()" in s for s in statements)
    assert sum(1 for s in statements if s.startswith("INSERT")) == 4
    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = _scenario(_pg_url(closed_port()), pg_table)
    assert replayed == seen


def test_sqlalchemy_on_sqlite(tmp_path: Path, sqlite_db: tuple[Path, str]) -> None:
    path, table = sqlite_db
    with recording(tmp_path / "cassettes") as recorded:
        seen = _scenario(f"sqlite:///{path}", table)
    _check(seen, "sqlite3")
    assert {i.library for i in recorded.cassette.interactions} == {"sqlite3"}  # type: ignore[union-attr]
    path.unlink()
    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = _scenario(f"sqlite:///{path}", table)
    assert replayed == seen
    assert not path.exists()


def test_sqlalchemy_changed_where_parameter_is_a_mismatch(tmp_path: Path, pg_table: str) -> None:
    _, items = _models(pg_table)

    def query(limit: str) -> Callable[[sa.Connection], Any]:
        return lambda conn: conn.execute(sa.select(items.c.name).where(items.c.price > Decimal(limit))).all()

    engine = sa.create_engine(_pg_url())
    with recording(tmp_path / "cassettes") as recorded, engine.connect() as conn:
        query("1")(conn)
    engine.dispose()
    engine = sa.create_engine(_pg_url(closed_port()))
    with replaying(recorded.path), engine.connect() as conn, \
            pytest.raises(ReplayMismatchError) as info:  # type: ignore[arg-type]
        query("2")(conn)
    assert "parameter :price_1" in str(info.value)


async def _async_scenario(url: str, table: str) -> list[Any]:
    _, items = _models(table)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(items.insert(), [{"name": "a", "price": Decimal("1.00")},
                                                {"name": "b", "price": Decimal("2.00")}])
            rows = (await conn.execute(sa.select(items.c.name, items.c.price).order_by(items.c.id))).all()
    finally:
        await engine.dispose()
    return [tuple(r) for r in rows]


def test_sqlalchemy_async_on_aiosqlite(tmp_path: Path, sqlite_db: tuple[Path, str]) -> None:
    path, table = sqlite_db
    url = f"sqlite+aiosqlite:///{path}"
    with recording(tmp_path / "cassettes") as recorded:
        seen = asyncio.run(_async_scenario(url, table))
    assert seen == [("a", Decimal("1.00")), ("b", Decimal("2.00"))]
    assert len(_sql_calls(recorded.cassette)) == 2
    # Every span ended, so the request settled by itself.
    assert recorded.cassette.metadata.incomplete is False  # type: ignore[union-attr]
    path.unlink()
    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = asyncio.run(_async_scenario(url, table))
    assert replayed == seen
    assert not path.exists()


def test_sqlalchemy_async_on_asyncpg(tmp_path: Path, pg_table: str) -> None:
    url = _pg_url().replace("+psycopg", "+asyncpg")
    with recording(tmp_path / "cassettes") as recorded:
        seen = asyncio.run(_async_scenario(url, pg_table))
    assert seen == [("a", Decimal("1.00")), ("b", Decimal("2.00"))]
    assert {i.library for i in recorded.cassette.interactions} == {"asyncpg"}  # type: ignore[union-attr]
    assert recorded.cassette.metadata.incomplete is False  # type: ignore[union-attr]
    # One logical statement is one interaction: the insert (executemany) and the select.
    assert len([s for s in _sql_calls(recorded.cassette) if s.startswith(("INSERT", "SELECT"))]) == 2
    with replaying(recorded.path):  # type: ignore[arg-type]
        replayed = asyncio.run(_async_scenario(_pg_url(closed_port()).replace("+psycopg", "+asyncpg"), pg_table))
    assert replayed == seen
