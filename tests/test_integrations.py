"""loopgrid.integrations: one connection pool per loop behind a shared client object.

A SQLAlchemy AsyncEngine and an httpx.AsyncClient made before the grid (as a
module-level client is) are used by concurrent tasks on both workers, each
pool limited to one connection so that tasks wait for it. Which pool served
whom, and what was closed at the grid's close, are read off the objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from helpers import WAIT, Gate, needs_greenlet
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

import loopgrid
from loopgrid.integrations import adapt
from loopgrid.integrations.httpx import per_loop_client
from loopgrid.integrations.sqlalchemy import per_loop_engine

TASKS = 40

_rows = sa.table("rows", sa.column("v", sa.Integer))


def _engine(tmp_path: Path, **kw: Any) -> AsyncEngine:
    """An engine on a file database with a table ``rows``, made without a loop."""
    db = tmp_path / "db.sqlite"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE rows (v INTEGER)")
        conn.commit()
    return create_async_engine(f"sqlite+aiosqlite:///{db}", pool_size=1, max_overflow=0, **kw)


def _count_rows(engine: AsyncEngine) -> int:
    with contextlib.closing(sqlite3.connect(engine.url.database or "")) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM rows").fetchone()
    return int(count)


def _by_worker(results: list[tuple[Any, int, Any]]) -> dict[int, set[int]]:
    """worker index -> ids of the pools its tasks used."""
    pools: dict[int, set[int]] = {}
    for _, worker, pool in results:
        pools.setdefault(worker, set()).add(id(pool))
    return pools


def _one_pool_per_worker(results: list[tuple[Any, int, Any]], per_loop: Any) -> list[Any]:
    """Each of the two workers used one pool of its own, not the template: those pools."""
    by_worker = _by_worker(results)
    assert sorted(by_worker) == [0, 1]
    assert all(len(ids) == 1 for ids in by_worker.values()), by_worker
    assert by_worker[0] != by_worker[1]
    pools = list({id(p): p for _, _, p in results}.values())
    assert all(p is not per_loop.template for p in pools)
    assert per_loop.loops() == 2
    return pools


# -- SQLAlchemy ------------------------------------------------------------------


@needs_greenlet
def test_engine_gets_one_pool_per_loop_disposed_at_close(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    lock = threading.Lock()
    opened: list[int] = []
    closed: list[int] = []

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        with lock:
            opened.append(id(dbapi_conn))

    def on_close(dbapi_conn: Any, record: Any) -> None:
        with lock:
            closed.append(id(dbapi_conn))

    # One listener from before the adapter, one added through it: recreate()
    # copies both into each loop's pool.
    event.listen(engine.sync_engine, "connect", on_connect)
    per_loop_engine(engine)
    per_loop = engine.sync_engine.pool
    event.listen(engine.sync_engine, "close", on_close)
    sessions = async_sessionmaker(engine)

    async def insert_and_read(i: int) -> tuple[Any, int, Any]:
        async with sessions.begin() as session:
            await session.execute(sa.insert(_rows).values(v=i))
            got = await session.scalar(sa.select(_rows.c.v).where(_rows.c.v == i))
        return got, loopgrid.current_worker().index, per_loop.current()

    with loopgrid.Grid(2) as grid:
        handles = [grid.spawn(insert_and_read, i, worker=i % 2) for i in range(TASKS)]
        results = [h.result(timeout=WAIT) for h in handles]
        assert [got for got, _, _ in results] == list(range(TASKS))
        pools = _one_pool_per_worker(results, per_loop)
        # Each loop's pool keeps its one connection, idle.
        assert [p.checkedin() for p in pools] == [1, 1]
        assert "2 loop(s) with a pool" in per_loop.status()

    assert _count_rows(engine) == TASKS
    # Each loop disposed of its pool as it shut down.
    assert per_loop.loops() == 0
    assert [p.checkedin() for p in pools] == [0, 0]
    assert len(opened) == 2
    assert sorted(closed) == sorted(opened)


@needs_greenlet
@pytest.mark.parametrize("per_loop", [False, True], ids=["shared-pool", "per-loop"])
def test_contended_pool_across_loops(tmp_path: Path, per_loop: bool) -> None:
    """Worker 1 holds the one connection while a second task of its own waits
    for it (the waiting binds the pool's queue to worker 1's loop); then a
    task on worker 0 asks for a connection. A shared pool fails it at once;
    per-loop pools give it worker 0's own connection."""
    # No pool timeout: a waiting checkout awaits the pool's queue in the
    # task's first step (with a timeout, Python 3.10 waits in a task of its own).
    engine = _engine(tmp_path, pool_timeout=None)
    if per_loop:
        per_loop_engine(engine)
    held = threading.Event()
    release = Gate()

    async def select_one() -> Any:
        async with engine.connect() as conn:
            return await conn.scalar(sa.text("SELECT 1"))

    async def hold_while_one_waits() -> Any:
        async with engine.connect() as conn:
            await conn.scalar(sa.text("SELECT 1"))
            waiting = asyncio.create_task(select_one())
            await asyncio.sleep(0)  # its first step: the pool is empty, it waits
            assert not waiting.done()
            held.set()
            await release.wait()
        return await waiting

    async def contend() -> Any:
        attempt = asyncio.create_task(select_one())
        await asyncio.sleep(0)  # its first step
        if not per_loop and not attempt.done():
            attempt.cancel()  # waiting for worker 1's connection: no failure to see
        try:
            return await attempt
        except BaseException as exc:
            return exc

    try:
        with loopgrid.Grid(2) as grid:
            holder = grid.spawn(hold_while_one_waits, worker=1)
            assert held.wait(WAIT)
            outcome = grid.spawn(contend, worker=0).result(timeout=WAIT)
            release.set()
            assert holder.result(timeout=WAIT) == 1
    finally:
        asyncio.run(engine.dispose())
    if per_loop:
        assert outcome == 1
    else:
        assert isinstance(outcome, RuntimeError), repr(outcome)
        assert re.search(r"(bound|attached) to a different (event )?loop", str(outcome))


@needs_greenlet
def test_engine_dispose_on_a_loop_keeps_pools_per_loop(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    per_loop_engine(engine)
    first = engine.sync_engine.pool

    async def dispose_and_reuse() -> tuple[Any, Any]:
        async with engine.connect() as conn:
            await conn.scalar(sa.text("SELECT 1"))
        mine = first.current()
        assert mine.checkedin() == 1
        assert first.status() == mine.status()
        await engine.dispose()
        assert mine.checkedin() == 0
        second = engine.sync_engine.pool
        async with engine.connect() as conn:
            assert await conn.scalar(sa.text("SELECT 1")) == 1
        return second, second.current()

    with loopgrid.Grid(2) as grid:
        second, used = grid.spawn(dispose_and_reuse, worker=1).result(timeout=WAIT)
        assert type(second) is type(first)
        assert second is not first
        assert second.template is not first.template
        assert used is not second.template
        assert second.loops() == 1
    assert first.loops() == 0
    assert second.loops() == 0
    assert used.checkedin() == 0


# -- httpx -----------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    """Counts the connections it accepted."""

    accepted = 0
    _lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self.accepted += 1
        super().process_request(request, client_address)


@pytest.fixture
def http_server() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="test-http-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(WAIT)
        server.server_close()


def test_client_gets_one_pool_per_loop_closed_at_close(http_server: _Server) -> None:
    port = http_server.server_address[1]
    client = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=httpx.Limits(max_connections=1)
    )
    per_loop_client(client)
    per_loop = client._transport._pool  # type: ignore[attr-defined]

    async def fetch(i: int) -> tuple[Any, int, Any]:
        response = await client.get(f"/item/{i}")
        return response.text, loopgrid.current_worker().index, per_loop.current()

    with loopgrid.Grid(2) as grid:
        handles = [grid.spawn(fetch, i, worker=i % 2) for i in range(TASKS)]
        results = [h.result(timeout=WAIT) for h in handles]
        assert [text for text, _, _ in results] == [f"/item/{i}" for i in range(TASKS)]
        pools = _one_pool_per_worker(results, per_loop)
        # Each loop's copy keeps its one keep-alive connection open.
        connections = [c for p in pools for c in p.connections]
        assert len(connections) == 2
        assert not any(c.is_closed() for c in connections)

    # Each loop closed its copy as it shut down.
    assert per_loop.loops() == 0
    assert [p.connections for p in pools] == [[], []]
    assert all(c.is_closed() for c in connections)
    assert http_server.accepted == 2
    asyncio.run(client.aclose())


# -- adapt ---------------------------------------------------------------


@needs_greenlet
def test_adapt_knows_engines_and_clients(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    label = adapt(engine)
    assert label == "sqlalchemy AsyncEngine: one connection pool per loop"
    per_loop = engine.sync_engine.pool
    assert type(per_loop).__name__ == "_PerLoopPool"
    assert adapt(engine) == label
    per_loop_engine(engine)
    assert engine.sync_engine.pool is per_loop

    client = httpx.AsyncClient(proxy="http://127.0.0.1:9", mounts={"all://skip": None})
    label = adapt(client)
    assert label == "httpx AsyncClient: one connection pool per loop"
    pools = [client._transport._pool, *(t._pool for t in client._mounts.values() if t)]  # type: ignore[attr-defined]
    assert len(pools) == 2
    assert all(type(p).__name__ == "_PerLoopConnectionPool" for p in pools)
    assert adapt(client) == label
    per_loop_client(client)
    assert [client._transport._pool, *(t._pool for t in client._mounts.values() if t)] == pools  # type: ignore[attr-defined]

    # Known types whose pools are left as they are, with the reason.
    memory = create_async_engine("sqlite+aiosqlite://")
    static = memory.sync_engine.pool
    assert "left as is (StaticPool" in (adapt(memory) or "")
    assert memory.sync_engine.pool is static
    mocked = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    assert "left as is (MockTransport" in (adapt(mocked) or "")

    # Anything else: None, untouched.
    sync_engine = sa.create_engine(f"sqlite:///{tmp_path / 'sync.sqlite'}")
    sync_pool = sync_engine.pool
    sync_client = httpx.Client()
    for other in (None, 3, "text", object(), sync_engine, sync_client, loopgrid.Grid):
        assert adapt(other) is None
    assert sync_engine.pool is sync_pool

    with loopgrid.Grid(2) as grid:

        async def use() -> Any:
            async with engine.connect() as conn:
                return await conn.scalar(sa.text("SELECT 1"))

        assert grid.spawn(use, worker=0).result(timeout=WAIT) == 1
        assert per_loop.loops() == 1
    assert per_loop.loops() == 0

    sync_client.close()
    sync_engine.dispose()
    for aclient in (client, mocked):
        asyncio.run(aclient.aclose())
    asyncio.run(memory.dispose())
