"""A FastAPI app written as many real ones are: a module-level SQLAlchemy async engine.

What it shows: ``engine`` and ``Session`` are made once, at import, and every
request uses them, as in FastAPI's and SQLAlchemy's own examples. The
engine's connection pool (``pool_size=5, max_overflow=10``) makes requests
wait for a free connection on an ``asyncio.Queue``, which belongs to one event
loop: served from several loops with one shared pool, the first request that
has to wait on another loop than the queue's fails with "... is bound to a
different event loop". ``loopgrid serve`` finds the engine at startup and
gives it one pool per loop behind the same object
(``loopgrid.integrations.sqlalchemy``), so the app runs unchanged.

Routes: ``GET /items/{id}`` (one row of ``items``, ids 1 to 1000, read through
an ORM session; 404 if absent) and ``GET /ping``.

The database is the SQLite file named by ``DBAPP_DB`` (default
``loopgrid-dbapp.db`` in the temporary directory, the same for every process
that imports the app). The lifespan creates and fills the table. It may run
several times at once: once per loop under ``loopgrid serve`` (the default
``--lifespan loop``), once per process under ``uvicorn --workers N``; so it
only writes, idempotently (``CREATE TABLE IF NOT EXISTS``, ``INSERT OR
IGNORE`` with fixed ids), and SQLite waits up to 30 s for a lock
(``timeout``) instead of failing with "database is locked".

Run it (from the repository root)::

    loopgrid serve examples.dbapp.app:app              # one loop per CPU
    loopgrid serve examples.dbapp.app:app --loops 2
    uvicorn examples.dbapp.app:app                     # the same app, one loop
    curl http://127.0.0.1:8000/items/42

``bench/web_engine.py`` measures it under load.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import PlainTextResponse
from sqlalchemy import String, insert
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateTable

DB = os.environ.get("DBAPP_DB") or os.path.join(tempfile.gettempdir(), "loopgrid-dbapp.db")
ROWS = 1000

engine = create_async_engine(
    f"sqlite+aiosqlite:///{DB}",
    pool_size=5,
    max_overflow=10,
    connect_args={"timeout": 30},
)
Session = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    price_cents: Mapped[int]


async def create_items() -> None:
    """Create and fill ``items``; safe to run concurrently and repeatedly."""
    async with engine.begin() as conn:
        # Writes only, each safe to run twice: with create_all(), two loops
        # could both find no table and both CREATE it. And no read first: in a
        # transaction that has read, SQLite does not wait (timeout) for the
        # write lock but answers "database is locked" at once.
        await conn.execute(CreateTable(Base.metadata.tables["items"], if_not_exists=True))
        rows = [
            {"id": i, "name": f"item {i}", "price_cents": 100 + i % 900} for i in range(1, ROWS + 1)
        ]
        await conn.execute(insert(Item).prefix_with("OR IGNORE"), rows)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await create_items()
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/ping", response_class=PlainTextResponse)
async def ping() -> str:
    return "pong"


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, Any]:
    async with Session() as session:
        item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(status_code=404, detail=f"no item {item_id}")
    return {"id": item.id, "name": item.name, "price_cents": item.price_cents}
