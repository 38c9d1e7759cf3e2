"""A FastAPI app with a module-level SQLAlchemy async engine, for
tests/test_real_app.py: the engine is made at import, as many apps and
official examples do, with a small pool (1 connection, no overflow) so that
concurrent requests wait for it.

``LOOPGRID_TEST_ENGINE_DB`` names the database file (a temporary one if unset).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from typing import Any

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

DB = os.environ.get("LOOPGRID_TEST_ENGINE_DB") or os.path.join(
    tempfile.mkdtemp(prefix="loopgrid-engine-"), "engine.db"
)

engine = create_async_engine(f"sqlite+aiosqlite:///{DB}", pool_size=1, max_overflow=0)
Session = async_sessionmaker(engine, expire_on_commit=False)

app = FastAPI()


@app.post("/rows/{name}")
async def add_row(name: str) -> dict[str, Any]:
    async with Session() as session:
        await session.execute(text("CREATE TABLE IF NOT EXISTS rows (name TEXT)"))
        await session.execute(text("INSERT INTO rows (name) VALUES (:n)"), {"n": name})
        # The connection is held across an await: the next request waits for it.
        await asyncio.sleep(0)
        await session.commit()
        count = (await session.execute(text("SELECT COUNT(*) FROM rows"))).scalar_one()
    return {"count": count, "thread": threading.current_thread().name}
