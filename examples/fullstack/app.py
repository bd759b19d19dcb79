"""A shop service that uses every kind of outbound call timetracer records: HTTP (httpx), SQL (SQLAlchemy's
asyncio ORM on asyncpg), Redis (redis.asyncio) and MongoDB (PyMongo's AsyncMongoClient).

Nothing here knows about timetracer. Configuration comes from the environment (defaults: the local servers):
DATABASE_URL, REDIS_URL, MONGO_URI, UPSTREAM_URL, and SHOP_TABLE_PREFIX to keep runs apart.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import redis.asyncio as redis
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from pymongo import AsyncMongoClient
from sqlalchemy import ForeignKey, Numeric, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+asyncpg://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
MONGO_URI = os.environ.get("MONGO_URI", "mongodb://127.0.0.1:27017/?directConnection=true")
UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8766")
PREFIX = os.environ.get("SHOP_TABLE_PREFIX", "shop")


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = f"{PREFIX}_products"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2))


class Order(Base):
    __tablename__ = f"{PREFIX}_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey(Product.id))
    quantity: Mapped[int]


PRODUCTS = [Product(id=1, name="kettle", price=Decimal("24.90")), Product(id=2, name="teapot", price=Decimal("18.50")),
            Product(id=3, name="mug", price=Decimal("6.00"))]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(DATABASE_URL)
    # Start-up work against the database: the tables, and the catalogue if it is empty.
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with AsyncSession(engine) as session, session.begin():
        if not await session.scalar(select(func.count()).select_from(Product)):
            session.add_all(PRODUCTS)
    app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
    app.state.redis = redis.from_url(REDIS_URL)
    app.state.mongo = AsyncMongoClient(MONGO_URI, tz_aware=True)
    app.state.http = httpx.AsyncClient(base_url=UPSTREAM_URL, timeout=10)
    yield
    await app.state.http.aclose()
    await app.state.mongo.close()
    await app.state.redis.aclose()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


def reviews(app: FastAPI) -> Any:
    return app.state.mongo[f"{PREFIX}_db"]["reviews"]


@app.get("/products/{product_id}")
async def product(product_id: int) -> dict[str, Any]:
    """1 HTTP + 3 SQL + 2 Redis + 1 MongoDB call."""
    async with app.state.sessions() as session:
        item = await session.get(Product, product_id)
        if item is None:
            raise HTTPException(404, "no such product")
        ordered = await session.scalar(
            select(func.coalesce(func.sum(Order.quantity), 0)).where(Order.product_id == product_id)
        )
        cheaper = await session.scalar(select(func.count()).select_from(Product).where(Product.price < item.price))
    views = await app.state.redis.incr(f"{PREFIX}:views:{product_id}")
    badge = await app.state.redis.get(f"{PREFIX}:badge:{product_id}")
    found = reviews(app).find({"product": product_id}, {"_id": 0}).sort("stars", -1).limit(3)
    top = [{"stars": r["stars"], "text": r["text"], "at": r["at"].isoformat()} async for r in found]
    quote = (await app.state.http.get("/quote", params={"product": product_id})).json()
    return {
        "id": item.id,
        "name": item.name,
        "price": str(item.price),
        "ordered": ordered,
        "cheaper_products": cheaper,
        "views": views,
        "badge": badge.decode() if badge is not None else None,
        "reviews": top,
        "delivery_days": quote["days"],
    }


class NewOrder(BaseModel):
    product_id: int
    quantity: int = 1


@app.post("/orders", status_code=201)
async def order(new: NewOrder) -> dict[str, Any]:
    async with app.state.sessions() as session, session.begin():
        placed = Order(product_id=new.product_id, quantity=new.quantity)
        session.add(placed)
        await session.flush()  # INSERT ... RETURNING id
        order_id = placed.id
    await app.state.redis.incrby(f"{PREFIX}:sold:{new.product_id}", new.quantity)
    await reviews(app).database["events"].insert_one({"order": order_id, "product": new.product_id})
    shipment = (await app.state.http.post("/ship", json={"order_id": order_id})).json()
    return {"order_id": order_id, "tracking": shipment["tracking"]}
