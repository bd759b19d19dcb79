"""MongoDB (PyMongo MongoClient / AsyncMongoClient, Motor) recorded against the real test server and replayed
with the app's client pointed at a port nothing answers on: replay goes to timetracer's in-process server."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import socket
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pymongo
import pytest
from bson import Binary, Decimal128, Int64, ObjectId, Regex
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient, InsertOne, MongoClient, UpdateOne
from pymongo.errors import DuplicateKeyError, OperationFailure
from pymongo.write_concern import WriteConcern

from tests.http_upstream import recording, replaying
from tests.services import MONGO_URI
from timetracer_otel.errors import ReplayMismatchError

#: High on purpose: replay must not wait for server selection (it never reaches this timeout).
SLOW_SELECTION = {"serverSelectionTimeoutMS": 30000}

FIXED_ID = ObjectId("65a000000000000000000001")
TYPED = {
    "_id": FIXED_ID,
    "when": datetime.datetime(2024, 5, 6, 7, 8, 9, 123000),
    "price": Decimal128(Decimal("12.3400")),
    "blob": Binary(b"\x00\xffbinary", 0),
    "uuid": Binary(uuid.UUID("12345678-1234-5678-1234-567812345678").bytes, 4),
    "pattern": Regex("^ab.*c$", "i"),
    "big": Int64(2**40),
    "small": Int64(7),
    "ratio": 0.5,
    "nested": {"list": [1, "two", None, True]},
}


def _same(a: Any, b: Any, path: str = "$") -> None:
    """Equal, and every value of the same type (bytes vs str, Int64 vs int, aware vs naive datetime...)."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for key in a:
            _same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), f"{path}: {len(a)} != {len(b)} items"
        for n, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{n}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
        if isinstance(a, datetime.datetime):
            assert a.tzinfo == b.tzinfo, path


class _TrapPort:
    """A port that listens but never accepts: the app's replayed client is pointed here, so any connection
    attempt shows up in its accept queue (and would hang, not fail fast, if replay tried it)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])

    def uri(self, database: str = "") -> str:
        return f"mongodb://127.0.0.1:{self.port}/{database}?directConnection=true"

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def trap() -> Iterator[_TrapPort]:
    port = _TrapPort()
    yield port
    port.sock.close()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every address a socket connects to during the test (the replay network guard wraps this spy)."""
    seen: list[Any] = []
    original = socket.socket.connect

    def spy(sock: socket.socket, address: Any) -> Any:
        seen.append(address)
        return original(sock, address)

    monkeypatch.setattr(socket.socket, "connect", spy)
    return seen


def _name() -> str:
    return f"tt_{uuid.uuid4().hex[:12]}"


def _server_ports() -> set[int]:
    return {int(MONGO_URI.split("://", 1)[1].split("/", 1)[0].split("?")[0].rsplit(":", 1)[1])}


# -- the app, sync ----------------------------------------------------------------------------------------


def _sync_app(uri: str, database: str) -> list[Any]:
    """Every operation an app commonly does; returns what the app saw."""
    seen: list[Any] = []
    with MongoClient(uri, **SLOW_SELECTION) as client:
        col = client[database]["items"]
        seen.append(col.insert_one(dict(TYPED)).inserted_id)
        generated = col.insert_one({"name": "no id", "n": 0})
        seen.append(type(generated.inserted_id).__name__)  # made up by the driver: differs in every run
        seen.append(col.insert_many([{"_id": n, "n": n, "group": n % 3} for n in range(1, 8)]).inserted_ids)
        seen.append(len(col.insert_many([{"n": 100 + n} for n in range(3)]).inserted_ids))
        seen.append(list(col.find({"n": {"$gte": 1, "$lt": 100}}, batch_size=2).sort("n", 1)))  # find + getMores
        seen.append(col.find_one({"_id": FIXED_ID}))
        seen.append(list(col.aggregate([{"$match": {"group": {"$exists": True}}},
                                        {"$group": {"_id": "$group", "total": {"$sum": "$n"}}},
                                        {"$sort": {"_id": 1}}])))
        updated = col.update_one({"_id": 1}, {"$set": {"tag": "one"}})
        seen.append((updated.matched_count, updated.modified_count, updated.upserted_id))
        many = col.update_many({"group": 1}, {"$inc": {"n": 10}})
        seen.append((many.matched_count, many.modified_count))
        replaced = col.replace_one({"_id": 2}, {"n": 2, "replaced": True})
        seen.append((replaced.matched_count, replaced.modified_count))
        upserted = col.update_one({"_id": "up"}, {"$set": {"n": -1}}, upsert=True)
        seen.append(upserted.upserted_id)
        seen.append(col.find_one_and_update({"_id": 3}, {"$set": {"tag": "three"}},
                                            return_document=pymongo.ReturnDocument.AFTER))
        bulk = col.bulk_write([InsertOne({"_id": "b1", "n": 50}), UpdateOne({"_id": 4}, {"$set": {"tag": "four"}}),
                               pymongo.DeleteOne({"_id": 5})])
        seen.append((bulk.inserted_count, bulk.modified_count, bulk.deleted_count))
        seen.append(col.count_documents({"group": {"$exists": True}}))
        seen.append(col.estimated_document_count())
        seen.append(sorted(col.distinct("group")))
        seen.append(col.delete_one({"_id": 6}).deleted_count)
        seen.append(col.delete_many({"n": {"$gte": 100}}).deleted_count)
        with client.start_session() as session, session.start_transaction():
            col.insert_one({"_id": "txn", "n": 1}, session=session)
            col.update_one({"_id": "txn"}, {"$inc": {"n": 1}}, session=session)
        seen.append(col.find_one({"_id": "txn"}))
        try:
            col.insert_one({"_id": 1})
        except DuplicateKeyError as exc:
            seen.append((type(exc), exc.code, exc.details is not None and exc.details.get("code")))
        try:
            client[database].command("noSuchCommandAtAll")
        except OperationFailure as exc:
            seen.append((type(exc), exc.code))
        seen.append(client[database].command("ping"))
    return seen


def test_sync_client_round_trip(tmp_path: Path, trap: _TrapPort, connects: list[Any]) -> None:
    database = _name()
    with recording(tmp_path) as recorded:
        live = _sync_app(MONGO_URI, database)
    assert live[2] == list(range(1, 8)) and live[-3][1] == 11000 and live[-3][0] is DuplicateKeyError
    assert isinstance(live[-2][0], type) and issubclass(live[-2][0], OperationFailure)
    assert recorded.cassette is not None and recorded.path is not None
    operations = [i.request.operation for i in recorded.cassette.interactions]
    assert {"insert", "find", "getMore", "aggregate", "update", "findAndModify", "delete", "count", "distinct",
            "commitTransaction", "ping"} <= set(operations)
    assert not {"endSessions", "killCursors", "hello", "isMaster", "saslStart"} & set(operations)
    assert {i.kind for i in recorded.cassette.interactions} == {"mongo"}
    assert {i.library for i in recorded.cassette.interactions} == {"pymongo"}
    connects.clear()
    started = time.monotonic()
    with replaying(recorded.path):
        replayed = _sync_app(trap.uri(), database)
    elapsed = time.monotonic() - started
    _same(live, replayed)
    assert replayed[0] == FIXED_ID and replayed[5]["when"] == TYPED["when"]
    assert elapsed < 10, f"replay took {elapsed:.1f} s: it waited for server selection"
    assert trap.connections() == 0
    assert connects and all(address[0] == "127.0.0.1" and address[1] not in {trap.port, *_server_ports()}
                            for address in connects), connects


def test_exact_bson_types_with_a_tz_aware_client(tmp_path: Path, trap: _TrapPort) -> None:
    database = _name()

    def app(uri: str) -> Any:
        with MongoClient(uri, tz_aware=True, **SLOW_SELECTION) as client:
            client[database].t.insert_one(dict(TYPED))
            return client[database].t.find_one({"_id": FIXED_ID})

    with recording(tmp_path) as recorded:
        live = app(MONGO_URI)
    assert recorded.path is not None
    with replaying(recorded.path):
        replayed = app(trap.uri())
    _same(live, replayed)
    assert replayed["when"].tzinfo is not None
    expected = {"_id": ObjectId, "price": Decimal128, "blob": bytes, "uuid": Binary, "pattern": Regex, "big": Int64,
                "small": Int64, "ratio": float}
    assert {key: type(replayed[key]) for key in expected} == expected
    assert trap.connections() == 0


def test_a_changed_filter_is_a_mismatch_naming_the_path(tmp_path: Path, trap: _TrapPort) -> None:
    database = _name()
    with recording(tmp_path) as recorded, MongoClient(MONGO_URI) as client:
        client[database].people.find_one({"name": "ada", "age": 36})
    assert recorded.path is not None
    with (replaying(recorded.path), MongoClient(trap.uri(), **SLOW_SELECTION) as client,
          pytest.raises(ReplayMismatchError, match=r"filter\.age") as raised):
        client[database].people.find_one({"name": "ada", "age": 37})
    assert "find" in str(raised.value)
    assert trap.connections() == 0


def test_a_recorded_error_is_raised_as_pymongos_own_exception(tmp_path: Path, trap: _TrapPort) -> None:
    database = _name()

    def app(uri: str) -> list[Any]:
        seen: list[Any] = []
        with MongoClient(uri, **SLOW_SELECTION) as client:
            col = client[database].unique
            col.insert_one({"_id": "k"})
            for call in (lambda: col.insert_one({"_id": "k"}),
                         lambda: col.find_one_and_update({"$bad": 1}, {"$set": {"x": 1}}),
                         lambda: col.find_one({"x": {"$unknownOperator": 1}})):
                with pytest.raises(OperationFailure) as raised:
                    call()
                seen.append((type(raised.value), raised.value.code, str(raised.value)))
        return seen

    with recording(tmp_path) as recorded:
        live = app(MONGO_URI)
    assert live[0][0] is DuplicateKeyError and live[0][1] == 11000
    assert recorded.cassette is not None and recorded.path is not None
    failed = [i for i in recorded.cassette.interactions if i.error is not None]
    assert failed and all(i.error is not None and i.error.type.startswith("pymongo.errors.") for i in failed)
    with replaying(recorded.path):
        replayed = app(trap.uri())
    assert replayed == live
    assert trap.connections() == 0


def test_live_plugin_talks_to_the_real_server_in_replay(tmp_path: Path) -> None:
    database = _name()
    with recording(tmp_path) as recorded, MongoClient(MONGO_URI) as client:
        client[database].t.insert_one({"_id": "recorded"})
    assert recorded.path is not None
    with replaying(recorded.path, mocked_plugins=frozenset({"httpx"})), MongoClient(MONGO_URI) as client:
        client[database].t.insert_one({"_id": "live-only"})  # never recorded: served by the server
        found = client[database].t.find_one({"_id": "live-only"})
    assert found == {"_id": "live-only"}
    with MongoClient(MONGO_URI) as client:
        assert sorted(doc["_id"] for doc in client[database].t.find()) == ["live-only", "recorded"]
        client.drop_database(database)


def test_commands_outside_any_request_are_not_put_in_the_request(tmp_path: Path) -> None:
    """Only the command run inside the pretend request is in its cassette (not the driver's own ones)."""
    database = _name()
    with recording(tmp_path) as recorded, MongoClient(MONGO_URI) as client:
        client[database].t.insert_many([{"n": 1}, {"n": 2}, {"n": 3}])
        cursor = client[database].t.find({}, batch_size=1)
        next(cursor)
        cursor.close()  # killCursors: housekeeping, not recorded
    assert recorded.cassette is not None
    assert [i.request.operation for i in recorded.cassette.interactions] == ["insert", "find"]
    assert recorded.cassette.interactions[1].request.target == f"{database}.t"


# -- the app, async: AsyncMongoClient and Motor share it ---------------------------------------------------


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _async_app(client: Any, database: str) -> list[Any]:
    seen: list[Any] = []
    col = client[database]["items"]
    seen.append((await col.insert_one(dict(TYPED))).inserted_id)
    seen.append((await col.insert_many([{"_id": n, "n": n, "group": n % 2} for n in range(1, 6)])).inserted_ids)
    seen.append(len((await col.insert_many([{"n": 100}, {"n": 101}])).inserted_ids))
    seen.append([doc async for doc in col.find({"n": {"$lt": 100}}, batch_size=2).sort("n", 1)])
    seen.append(await col.find_one({"_id": FIXED_ID}))
    cursor = await _maybe(col.aggregate([{"$group": {"_id": "$group", "c": {"$sum": 1}}}, {"$sort": {"_id": 1}}]))
    seen.append(await cursor.to_list(None))
    seen.append((await col.update_one({"_id": 1}, {"$set": {"t": 1}})).modified_count)
    seen.append((await col.update_many({"group": 0}, {"$set": {"even": True}})).modified_count)
    seen.append((await col.replace_one({"_id": 2}, {"n": 2})).modified_count)
    seen.append(await col.find_one_and_update({"_id": 3}, {"$set": {"t": 3}},
                                              return_document=pymongo.ReturnDocument.AFTER))
    seen.append((await col.bulk_write([InsertOne({"_id": "b"}), UpdateOne({"_id": 4}, {"$set": {"t": 4}})]))
                .modified_count)
    seen.append(await col.count_documents({}))
    seen.append(await col.estimated_document_count())
    seen.append(sorted(await col.distinct("group")))
    seen.append((await col.delete_one({"_id": 5})).deleted_count)
    seen.append((await col.delete_many({"n": {"$gte": 100}})).deleted_count)
    session = await _maybe(client.start_session())
    async with session:
        transaction = await _maybe(session.start_transaction())
        async with transaction:
            await col.insert_one({"_id": "txn"}, session=session)
    seen.append(await col.find_one({"_id": "txn"}))
    try:
        await col.insert_one({"_id": 1})
    except DuplicateKeyError as exc:
        seen.append((type(exc), exc.code))
    return seen


def _run_pymongo_async(uri: str, database: str) -> list[Any]:
    async def main() -> list[Any]:
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri, **SLOW_SELECTION)
        try:
            return await _async_app(client, database)
        finally:
            await client.close()

    return asyncio.run(main())


def _run_motor(uri: str, database: str) -> list[Any]:
    async def main() -> list[Any]:
        client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(uri, **SLOW_SELECTION)
        try:
            return await _async_app(client, database)
        finally:
            client.close()

    return asyncio.run(main())


@pytest.mark.parametrize(("run", "library"), [(_run_pymongo_async, "pymongo"), (_run_motor, "motor")],
                         ids=["AsyncMongoClient", "motor"])
def test_async_clients_round_trip(tmp_path: Path, trap: _TrapPort, connects: list[Any], run: Any,
                                  library: str) -> None:
    database = _name()
    with recording(tmp_path) as recorded:
        live = run(MONGO_URI, database)
    assert live[1] == [1, 2, 3, 4, 5] and live[-1] == (DuplicateKeyError, 11000)
    assert recorded.cassette is not None and recorded.path is not None
    interactions = recorded.cassette.interactions
    # Motor runs PyMongo on executor threads: the calls still reached this request's cassette.
    assert {i.library for i in interactions} == {library}
    assert {"insert", "find", "getMore", "commitTransaction", "distinct"} <= {i.request.operation for i in interactions}
    connects.clear()
    started = time.monotonic()
    with replaying(recorded.path):
        replayed = run(trap.uri(), database)
    assert time.monotonic() - started < 10
    _same(live, replayed)
    assert trap.connections() == 0
    assert all(address[1] not in {trap.port, *_server_ports()} for address in connects), connects


def test_replay_ignores_the_apps_hosts_credentials_and_tls(tmp_path: Path) -> None:
    """A production URI (SRV, credentials, TLS, replica set) replays without DNS, TLS or authentication; the
    URI's default database and an unacknowledged (w=0) write still behave as recorded."""
    database = _name()

    def app(uri: str) -> tuple[str, int]:
        with MongoClient(uri, **SLOW_SELECTION) as client:
            db = client.get_default_database()
            db.get_collection("t", write_concern=WriteConcern(w=0)).insert_one({"_id": 1})
            return db.name, db.t.count_documents({"_id": 1})

    with recording(tmp_path) as recorded:
        live = app(MONGO_URI.replace("/?", f"/{database}?", 1))
    assert recorded.cassette is not None and recorded.path is not None
    assert [i.request.operation for i in recorded.cassette.interactions] == ["insert", "aggregate"]
    with replaying(recorded.path):
        replayed = app(f"mongodb+srv://user:secret@cluster0.example.invalid/{database}"
                       "?replicaSet=rs0&tls=true&authSource=admin&retryWrites=true")
    assert replayed == live and replayed[0] == database
