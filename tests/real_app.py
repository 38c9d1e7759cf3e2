"""A FastAPI app as real apps are written, for tests/test_real_app.py.

Its lifespan keeps loop-bound objects on ``app.state``: an aiosqlite
connection, an ``asyncio.Lock`` and an ``httpx.AsyncClient``. ``POST /items``
writes under the lock and adds a ``BackgroundTasks`` audit write; ``GET
/upstream`` calls a local server through the shared client; there is a
streaming response, server-sent events, a websocket echo and an upload.
Nothing in it knows about loopgrid (``/where`` only reports the thread, for
the tests to see which loops served).

``SETTINGS`` is filled by the test before the server starts: the database
file and the upstream server's URL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
import httpx
from fastapi import BackgroundTasks, FastAPI, Request, UploadFile, WebSocket
from fastapi.responses import StreamingResponse

SETTINGS: dict[str, str] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    db = await aiosqlite.connect(SETTINGS["db"], timeout=30)
    await db.execute("CREATE TABLE IF NOT EXISTS items (name TEXT)")
    await db.execute("CREATE TABLE IF NOT EXISTS audit (what TEXT)")
    await db.commit()
    app.state.db = db
    app.state.lock = asyncio.Lock()
    app.state.client = httpx.AsyncClient(
        base_url=SETTINGS["upstream"], limits=httpx.Limits(max_connections=2)
    )
    try:
        yield
    finally:
        await app.state.client.aclose()
        await db.close()


app = FastAPI(lifespan=lifespan)


async def _audit(db: aiosqlite.Connection, what: str) -> None:
    await db.execute("INSERT INTO audit (what) VALUES (?)", (what,))
    await db.commit()


@app.post("/items")
async def add_item(
    item: dict[str, Any], request: Request, tasks: BackgroundTasks
) -> dict[str, Any]:
    state = request.app.state
    async with state.lock:
        # Held across awaits, so that concurrent requests wait on the lock.
        await state.db.execute("INSERT INTO items (name) VALUES (?)", (item["name"],))
        await asyncio.sleep(0)
        await state.db.commit()
    tasks.add_task(_audit, state.db, f"added {item['name']}")
    return {"added": item["name"], "thread": threading.current_thread().name}


@app.get("/upstream")
async def upstream(request: Request) -> dict[str, Any]:
    response = await request.app.state.client.get("/data")
    response.raise_for_status()
    return {"upstream": response.json(), "thread": threading.current_thread().name}


@app.get("/where")
def where(request: Request) -> dict[str, Any]:
    # A sync endpoint: FastAPI runs it in a thread pool, with no running loop.
    return {"has_db": hasattr(request.app.state, "db"), "thread": threading.current_thread().name}


@app.get("/stream")
async def stream() -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            yield f"chunk {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


@app.get("/sse")
async def sse() -> StreamingResponse:
    async def events() -> AsyncIterator[str]:
        for i in range(3):
            yield f"data: event {i}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@app.post("/upload")
async def upload(file: UploadFile) -> dict[str, Any]:
    data = await file.read()
    return {"name": file.filename, "size": len(data)}


@app.websocket("/ws")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(f"echo {text}")
