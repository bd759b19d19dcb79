"""An app whose answers carry what it generated and the time it read, as real apps' do: a new order gets a uuid4
key, an ObjectId, a token and a slug, and is written to PostgreSQL (the uuid in the INSERT) and MongoDB (the
ObjectId). Replayed, every answer must be the recorded one, the queries must match, and the clock must be the
recording's: an event's INSERT carries ``datetime.now()``. Run under ``opentelemetry-instrument`` by
tests/test_determinism.py."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from bson import ObjectId
from fastapi import FastAPI
from pymongo import MongoClient

TABLE = os.environ["DETERMINISM_TABLE"]
POSTGRES_DSN = os.environ["DETERMINISM_POSTGRES_DSN"]

app = FastAPI()
mongo: MongoClient[dict[str, Any]] = MongoClient(os.environ["DETERMINISM_MONGO_URI"], serverSelectionTimeoutMS=5000)


@app.post("/orders")
def create_order() -> dict[str, Any]:
    # A sync endpoint: it runs on a worker thread, where the request's state must follow.
    order_id = uuid.uuid4()
    document_id = ObjectId()
    token = secrets.token_urlsafe()
    slug = "".join(random.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(6))
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(f"INSERT INTO {TABLE} (id, token, slug) VALUES (%s, %s, %s)",
                           (order_id, token, slug))
    mongo.get_database("test")[TABLE].insert_one({"_id": document_id, "order": str(order_id)})
    return {
        "id": str(order_id),
        "document": str(document_id),
        "token": token,
        "slug": slug,
        "nonce": os.urandom(4).hex(),
        "score": random.random(),
        "now": datetime.now(UTC).isoformat(),
        "today": datetime.now().date().isoformat(),
    }


@app.get("/now")
async def now(pause: float = 0.0) -> dict[str, Any]:
    # Async: the clock of concurrent requests on one event loop, each its own; and durations still measure.
    before = time.time()
    await asyncio.sleep(pause)
    return {"before": before, "after": time.time(), "now": datetime.now(UTC).isoformat(),
            "monotonic": time.monotonic()}


@app.post("/events")
def create_event() -> dict[str, Any]:
    # The clock's reading is a query parameter: the INSERT matches on replay only if the reading is the recorded one.
    event_id = uuid.uuid4()
    created_at = datetime.now(UTC)
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(f"INSERT INTO {TABLE} (id, token, slug, created_at) VALUES (%s, %s, %s, %s)",
                           (event_id, "event", "event", created_at))
    return {"id": str(event_id), "created_at": created_at.isoformat()}


@app.get("/ticks")
def ticks() -> dict[str, Any]:
    # Reads the clock twice, and DETERMINISM_EXTRA_READS more times (set in replay: more readings than recorded).
    reads = 2 + int(os.environ.get("DETERMINISM_EXTRA_READS", "0"))
    return {"readings": [time.time_ns() for _ in range(reads)]}
