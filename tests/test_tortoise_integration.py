"""Tortoise ORM recorded against the real PostgreSQL (asyncpg backend) and a sqlite file (aiosqlite backend), then
replayed with the DSN pointing at a closed port / the sqlite file deleted.

Each test builds its own models (a fresh module with unique table names), so tests run in any order and again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import re
import sys
import types
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tortoise import Tortoise, fields
from tortoise.exceptions import IntegrityError
from tortoise.models import Model
from tortoise.transactions import in_transaction

from tests.http_upstream import closed_port, recording, replaying
from tests.services import POSTGRES_DSN as DSN
from timetracer_otel.errors import ReplayMismatchError
from timetracer_otel.integrations.registry import OUTBOUND

#: Tortoise's asyncpg backend is chosen by the ``postgres://`` scheme.
POSTGRES_URL = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgres://", DSN)

Scenario = Callable[[types.ModuleType], Awaitable[Any]]


def _down_url() -> str:
    """The same URL with the port of nothing: a replayed query that tried to connect would fail."""
    return re.sub(r"@([^/:?]+)(:\d+)?", rf"@\1:{closed_port()}", POSTGRES_URL, count=1)


def _models() -> types.ModuleType:
    """A fresh models module: an author and its books (int, str, Decimal, datetime, JSON and FK fields)."""
    suffix = uuid.uuid4().hex[:10]
    module = types.ModuleType(f"tt_tortoise_models_{suffix}")

    class Author(Model):
        id = fields.IntField(primary_key=True)
        name = fields.CharField(max_length=50, unique=True)
        age = fields.IntField(default=0)

        class Meta:
            table = f"tt_tor_author_{suffix}"

    class Book(Model):
        id = fields.IntField(primary_key=True)
        title = fields.CharField(max_length=100)
        price = fields.DecimalField(max_digits=10, decimal_places=2)
        published = fields.DatetimeField()
        extra = fields.JSONField(default=dict)
        author: fields.ForeignKeyRelation[Author] = fields.ForeignKeyField("models.Author", related_name="books")

        class Meta:
            table = f"tt_tor_book_{suffix}"

    module.Author = Author  # type: ignore[attr-defined]
    module.Book = Book  # type: ignore[attr-defined]
    module.__models__ = [Author, Book]  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module  # Tortoise imports its models modules by name
    return module


async def _session(url: str, models: types.ModuleType, scenario: Scenario, *, schemas: bool = True) -> Any:
    """Init Tortoise on ``url``, create the tables, run ``scenario``, and tear Tortoise down (tortoise 1.1 keeps
    the apps on the model classes: they are reset so the same models can be initialised again)."""
    await Tortoise.init(db_url=url, modules={"models": [models.__name__]})
    try:
        if schemas:
            await Tortoise.generate_schemas()
        return await scenario(models)
    finally:
        await Tortoise.close_connections()
        await Tortoise._reset_apps()


def _same(left: Any, right: Any) -> None:
    """Equal, with the same types all the way down (Decimal, aware datetime, dict from JSON, int, ...)."""
    assert type(left) is type(right), (left, right)
    if isinstance(left, list | tuple):
        assert len(left) == len(right)
        for a, b in zip(left, right, strict=True):
            _same(a, b)
    elif isinstance(left, dict):
        assert list(left) == list(right)
        for key in left:
            _same(left[key], right[key])
    else:
        assert left == right
        if isinstance(left, dt.datetime):
            assert left.tzinfo == right.tzinfo


def _fields(instance: Model) -> dict[str, Any]:
    """A model instance as the app sees it: every field value (the FK as its id)."""
    return {name: getattr(instance, name) for name in instance._meta.db_fields | {"pk"}}


PUBLISHED = dt.datetime(2024, 2, 29, 10, 11, 12, 345678, tzinfo=dt.UTC)


async def _crud(models: types.ModuleType) -> dict[str, Any]:
    """Everything an app does: create, get, filter + values, FK traversal, update, delete, count, transactions,
    and a unique violation."""
    author_model, book_model = models.Author, models.Book
    out: dict[str, Any] = {}
    ada = await author_model.create(name="Ada", age=36)
    bob = await author_model.create(name="Bob", age=41)
    book = await book_model.create(title="Notes", price=decimal.Decimal("12.50"), published=PUBLISHED,
                                   extra={"tags": ["math", "engines"], "pages": 40, "x": None}, author=ada)
    await book_model.create(title="Sketch", price=decimal.Decimal("3.05"), published=PUBLISHED, author=bob)
    out["created"] = [_fields(ada), _fields(book)]
    got = await book_model.get(title="Notes")
    out["got"] = _fields(got)
    out["fk"] = _fields(await got.author)
    out["values"] = await book_model.filter(price__gte=decimal.Decimal("1")).order_by("id").values(
        "id", "title", "price", "published", "extra", "author__name")
    out["values_list"] = await author_model.filter(age__gt=30).order_by("name").values_list("name", "age")
    out["related"] = [_fields(b) for b in await book_model.filter(author__name="Ada").prefetch_related("author")]
    out["updated"] = await author_model.filter(name="Bob").update(age=42)
    out["updated_row"] = _fields(await author_model.get(name="Bob"))
    book.price = decimal.Decimal("13.75")
    await book.save()
    out["saved"] = _fields(await book_model.get(pk=book.pk))
    async with in_transaction() as connection:
        carol = await author_model.create(name="Carol", age=29, using_db=connection)
        await book_model.create(title="Poems", price=decimal.Decimal("0.99"), published=PUBLISHED, author=carol,
                                using_db=connection)
    try:
        async with in_transaction() as connection:
            await author_model.create(name="Dan", age=50, using_db=connection)
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    out["after_transactions"] = await author_model.all().order_by("id").values_list("name", flat=True)
    try:
        await author_model.create(name="Ada", age=1)
    except IntegrityError as exc:
        out["integrity"] = [type(exc).__name__, type(exc.args[0]).__name__, str(exc)]  # and the driver's error
    out["deleted"] = await book_model.filter(title="Sketch").delete()
    out["count"] = await book_model.all().count()
    out["exists"] = await author_model.filter(name="Dan").exists()
    return out


def _record_then_replay_postgres(tmp_path: Path, scenario: Scenario) -> tuple[Any, Any, Any]:
    models = _models()
    with recording(tmp_path) as recorded:
        live = asyncio.run(_session(POSTGRES_URL, models, scenario))
    assert recorded.path is not None
    with replaying(recorded.path):
        replayed = asyncio.run(_session(_down_url(), models, scenario))
    return live, replayed, recorded.cassette


def test_postgres_crud_transactions_and_errors_replay_equal(tmp_path: Path) -> None:
    live, replayed, cassette = _record_then_replay_postgres(tmp_path, _crud)
    assert live["integrity"][:2] == ["IntegrityError", "UniqueViolationError"]
    assert live["after_transactions"] == ["Ada", "Bob", "Carol"]
    assert live["count"] == 2 and live["deleted"] == 1 and live["updated"] == 1
    assert type(live["values"][0]["price"]) is decimal.Decimal and live["values"][0]["extra"]["pages"] == 40
    _same(live, replayed)
    libraries = {interaction.library for interaction in cassette.interactions}
    assert libraries == {"asyncpg"}  # each query once, by the driver


def test_sqlite_crud_transactions_and_errors_replay_equal(tmp_path: Path) -> None:
    database = tmp_path / "app.sqlite3"
    models = _models()
    with recording(tmp_path / "cassettes") as recorded:
        live = asyncio.run(_session(f"sqlite://{database}", models, _crud))
    assert recorded.path is not None and recorded.cassette is not None
    database.unlink()
    for leftover in tmp_path.glob("app.sqlite3-*"):  # WAL files
        leftover.unlink()
    with replaying(recorded.path):
        replayed = asyncio.run(_session(f"sqlite://{database}", models, _crud))
    assert not database.exists()  # replay opened no database file
    assert live["integrity"][:2] == ["IntegrityError", "IntegrityError"]
    assert live["after_transactions"] == ["Ada", "Bob", "Carol"]
    assert live["count"] == 2
    _same(live, replayed)
    assert {interaction.library for interaction in recorded.cassette.interactions} == {"sqlite3"}


def test_changed_filter_is_a_mismatch_naming_the_parameter(tmp_path: Path) -> None:
    async def find(models: types.ModuleType, name: str) -> Any:
        await models.Author.create(name="Ada", age=36)
        return await models.Author.filter(name=name).values_list("age", flat=True)

    models = _models()
    with recording(tmp_path) as recorded:
        assert asyncio.run(_session(POSTGRES_URL, models, lambda m: find(m, "Ada"))) == [36]
    assert recorded.path is not None
    with replaying(recorded.path), pytest.raises(ReplayMismatchError) as raised:
        asyncio.run(_session(_down_url(), models, lambda m: find(m, "Grace")))
    assert 'parameter 1 differs: recorded "Ada", got "Grace"' in str(raised.value)


def test_live_tortoise_talks_to_the_database_while_other_sql_replays(tmp_path: Path) -> None:
    """TIMETRACER_LIVE_PLUGINS=tortoise: Tortoise's queries reach PostgreSQL in replay, while plain asyncpg code
    in the same request is still answered from the cassette."""
    models = _models()

    async def plain_asyncpg(dsn: str) -> Any:
        connection = await asyncpg.connect(dsn)
        try:
            return await connection.fetchval("SELECT $1::int * 2", 21)
        finally:
            await connection.close()

    async def scenario(models: types.ModuleType, dsn: str) -> Any:
        await models.Author.create(name=f"live-{uuid.uuid4().hex[:6]}", age=7)
        names = await models.Author.all().values_list("name", flat=True)
        return names, await plain_asyncpg(dsn)

    with recording(tmp_path) as recorded:
        live_names, doubled = asyncio.run(_session(POSTGRES_URL, models, lambda m: scenario(m, DSN)))
    assert recorded.path is not None and doubled == 42 and len(live_names) == 1
    down_dsn = re.sub(r"@([^/:?]+)(:\d+)?", rf"@\1:{closed_port()}", DSN, count=1)
    # The live database keeps the first run's row: uuid4() must give a new name, not the recorded one.
    with replaying(recorded.path, mocked_plugins=frozenset(OUTBOUND) - {"tortoise"}, generated=frozenset()):
        # The tables exist now (generate_schemas is safe): the live insert adds a second author with a new name.
        names, replayed_double = asyncio.run(_session(POSTGRES_URL, models, lambda m: scenario(m, down_dsn)))
    assert replayed_double == 42  # answered from the cassette: nothing listens on down_dsn
    assert len(names) == 2 and names[0] == live_names[0] and names[1] != live_names[0]

    async def count() -> Any:  # outside the harness: what the server really holds
        connection = await asyncpg.connect(DSN)
        try:
            return await connection.fetchval(f'SELECT count(*) FROM "{models.Author._meta.db_table}"')
        finally:
            await connection.close()

    assert asyncio.run(count()) == 2


def test_raw_sql_through_the_client_replays_without_a_server(tmp_path: Path) -> None:
    """Raw SQL through Tortoise's client (``execute_query_dict`` / ``execute_query``) replays with Tortoise
    pointed at a closed port; the pool's connection set-up is served from the session cassette."""

    async def raw(models: types.ModuleType) -> Any:
        connection = Tortoise.get_connection("default")
        rows = await connection.execute_query_dict("SELECT 1 AS one, 'x'::text AS letter")
        count, listed = await connection.execute_query("SELECT $1::numeric AS n", [decimal.Decimal("1.50")])
        return rows, count, [dict(row) for row in listed]

    models = _models()
    with recording(tmp_path) as recorded:
        live = asyncio.run(_session(POSTGRES_URL, models, raw, schemas=False))
    assert recorded.path is not None
    with replaying(recorded.path):
        replayed = asyncio.run(_session(_down_url(), models, raw, schemas=False))
    assert live == ([{"one": 1, "letter": "x"}], 1, [{"n": decimal.Decimal("1.50")}])
    _same(live, replayed)
    session_files = list((tmp_path).rglob("_session/*"))
    assert session_files, "the pool's connection set-up goes to the session cassette"


def test_sqlite_pragmas_are_connection_setup(tmp_path: Path) -> None:
    """Tortoise's start-up PRAGMAs on a new sqlite connection are recorded in the session cassette, not the
    request's, and replay answers them from there."""
    database = tmp_path / "setup.sqlite3"
    models = _models()

    async def one(models: types.ModuleType) -> Any:
        return await Tortoise.get_connection("default").execute_query_dict("SELECT 7 AS seven")

    with recording(tmp_path / "cassettes") as recorded:
        live = asyncio.run(_session(f"sqlite://{database}", models, one, schemas=False))
    assert recorded.cassette is not None and recorded.path is not None
    operations = [interaction.request.operation for interaction in recorded.cassette.interactions]
    assert operations == ["SELECT 7 AS seven"], operations
    database.unlink()
    with replaying(recorded.path):
        replayed = asyncio.run(_session(f"sqlite://{database}", models, one, schemas=False))
    _same(live, replayed)
    assert live == [{"seven": 7}]


def test_live_tortoise_on_sqlite_uses_the_real_file(tmp_path: Path) -> None:
    """TIMETRACER_LIVE_PLUGINS=tortoise on sqlite: replay opens the real database file and writes to it."""
    database = tmp_path / "live.sqlite3"
    models = _models()

    async def add(models: types.ModuleType) -> Any:
        await models.Author.create(name="Ada", age=36)
        return await models.Author.all().values_list("name", "age")

    with recording(tmp_path / "cassettes") as recorded:
        assert asyncio.run(_session(f"sqlite://{database}", models, add)) == [("Ada", 36)]
    assert recorded.path is not None
    # The recorded file still holds Ada: a live insert of the same name now breaks the unique constraint, which a
    # replay from the cassette never would.
    with replaying(recorded.path, mocked_plugins=frozenset(OUTBOUND) - {"tortoise"}), pytest.raises(IntegrityError):
        asyncio.run(_session(f"sqlite://{database}", models, add))
    database.unlink()
    with replaying(recorded.path, mocked_plugins=frozenset(OUTBOUND) - {"tortoise"}):
        assert asyncio.run(_session(f"sqlite://{database}", models, add)) == [("Ada", 36)]
    assert database.exists()  # created by the live replay
