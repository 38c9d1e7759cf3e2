"""Real apps on a grid, unchanged: loop-bound state per loop, a module-level
async engine, shared mode refusing loop-bound state, and the test client that
catches loop affinity (issue: real apps on a grid).

The apps are ``real_app.py`` (FastAPI; aiosqlite, an ``asyncio.Lock`` and an
httpx client on ``app.state``) and ``real_app_engine.py`` (a SQLAlchemy
async engine made at import). Every server binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, grid_threads, needs_greenlet

pytest.importorskip("uvicorn", reason="loopgrid.web needs the web extra (uvicorn)")
pytest.importorskip("fastapi", reason="the real apps are FastAPI apps (test extra)")
pytest.importorskip("aiosqlite", reason="the real app keeps an aiosqlite connection")
pytest.importorskip("httpx", reason="the real app and loopgrid.testing use httpx")

import httpx
import real_app
from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.routing import Route

from loopgrid import Grid, web
from loopgrid.testing import AsyncGridClient, GridClient

WORKERS = {"loopgrid-web-0", "loopgrid-web-1"}


async def _data(request: Any) -> JSONResponse:
    return JSONResponse({"value": 42})


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The real app's database file and an upstream server for its client."""
    with (
        Grid(1, name="upstream") as grid,
        web.Server(_upstream_app(), grid=grid, port=0, lifespan="off") as upstream,
    ):
        real_app.SETTINGS.update(db=str(tmp_path / "app.db"), upstream=upstream.url)
        yield real_app.SETTINGS
        real_app.SETTINGS.clear()


def app_threads() -> list[threading.Thread]:
    """The loopgrid threads left by the app's server (not the upstream's)."""
    return [t for t in grid_threads() if not t.name.startswith("loopgrid-upstream")]


def _upstream_app() -> Any:
    from starlette.applications import Starlette

    return Starlette(routes=[Route("/data", _data)])


def _concurrently(n: int, call: Any) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def _rows(db: str, table: str) -> int:
    with sqlite3.connect(db) as conn:
        count: int = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    return count


@pytest.mark.parametrize("dispatch", ["request", "connection"])
def test_the_real_app_works_unchanged_with_defaults_on_two_loops(
    settings: dict[str, str], dispatch: str
) -> None:
    with (
        web.Server(real_app.app, loops=2, port=0, dispatch=dispatch) as server,
        httpx.Client(base_url=server.url, timeout=WAIT) as client,
    ):
        posts = _concurrently(40, lambda i: client.post("/items", json={"name": f"item {i}"}))
        gets = _concurrently(48, lambda i: client.get("/upstream"))
    assert [r.status_code for r in posts] == [200] * 40
    assert [r.status_code for r in gets] == [200] * 48
    assert all(r.json()["upstream"] == {"value": 42} for r in gets)
    threads = {r.json()["thread"] for r in posts + gets}
    assert threads >= WORKERS, f"served by {threads}"
    # Close put the app's own state back; the per-loop values went with their loops.
    assert type(real_app.app.state).__name__ == "State"
    assert not hasattr(real_app.app.state, "db")
    # Close waited for every request, its background audit write included.
    assert _rows(settings["db"], "items") == 40
    assert _rows(settings["db"], "audit") == 40
    assert app_threads() == []


def test_the_real_app_in_shared_mode_refuses_to_start_naming_each_object(
    settings: dict[str, str],
) -> None:
    server = web.Server(real_app.app, loops=2, port=0, lifespan="shared")
    with pytest.raises(web.StartupError) as caught:
        server.start()
    message = str(caught.value)
    assert "app.state.lock is an asyncio.Lock" in message
    assert "app.state.client is an httpx.AsyncClient" in message
    assert "lifespan='loop'" in message
    assert "loopgrid.Lock" in message
    assert "app.state.db" not in message  # aiosqlite works from any loop
    assert app_threads() == []


def test_shared_mode_serves_loop_bound_state_only_when_told_to(
    settings: dict[str, str],
) -> None:
    with web.Server(real_app.app, loops=2, port=0, lifespan="shared", loop_check=False) as server:
        assert httpx.get(f"{server.url}/where", timeout=WAIT).json()["has_db"] is True


def test_every_kind_of_route_works_through_the_grid_client(settings: dict[str, str]) -> None:
    websockets = pytest.importorskip("websockets.sync.client", reason="websocket client")
    with GridClient(real_app.app, loops=2, timeout=WAIT) as client:
        assert client.get("/stream").text == "".join(f"chunk {i}\n" for i in range(5))
        sse = client.get("/sse")
        assert sse.headers["content-type"].startswith("text/event-stream")
        assert sse.text == "".join(f"data: event {i}\n\n" for i in range(3))
        upload = client.post("/upload", files={"file": ("notes.txt", b"x" * 1000)})
        assert upload.json() == {"name": "notes.txt", "size": 1000}
        # A sync endpoint runs in a thread pool, with no running loop: it
        # sees the state of the loop whose request it serves.
        assert [client.get("/where").json()["has_db"] for _ in range(4)] == [True] * 4
        with websockets.connect(client.ws_url("/ws"), open_timeout=WAIT) as ws:
            for text in ("one", "two"):
                ws.send(text)
                assert ws.recv(timeout=WAIT) == f"echo {text}"
        threads = {client.post("/items", json={"name": "x"}).json()["thread"] for _ in range(4)}
    assert threads == WORKERS  # in turn, never on the front loop


def test_the_async_grid_client_serves_from_a_test_loop(settings: dict[str, str]) -> None:
    async def main() -> list[Any]:
        async with AsyncGridClient(real_app.app, loops=2, timeout=WAIT) as client:
            return [
                (await client.post("/items", json={"name": f"a{i}"})).json()["thread"]
                for i in range(4)
            ]

    assert set(asyncio.run(main())) == WORKERS
    assert _rows(settings["db"], "items") == 4


# -- the test client catches loop affinity --------------------------------------------

_captured: list[asyncio.AbstractEventLoop] = []

lazy_app = FastAPI()


@lazy_app.get("/lazy")
async def lazy() -> dict[str, int]:
    # The bug: a loop captured by the first request and used by every later one.
    if not _captured:
        _captured.append(asyncio.get_running_loop())
    return {"value": await _captured[0].run_in_executor(None, int, "7")}


@pytest.fixture
def fresh_capture() -> Iterator[None]:
    _captured.clear()
    yield
    _captured.clear()


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_a_loop_bound_object_passes_on_one_loop(fresh_capture: None) -> None:
    from starlette.testclient import TestClient

    with TestClient(lazy_app) as client:
        assert [client.get("/lazy").status_code for _ in range(4)] == [200] * 4


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.texts: list[str] = []
        self.formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))


def test_the_grid_client_catches_a_loop_bound_object_on_the_second_request(
    fresh_capture: None,
) -> None:
    errors = _Errors()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(errors)
    try:
        with GridClient(lazy_app, loops=2, timeout=WAIT) as client:
            first = client.get("/lazy")
            second = client.get("/lazy")
    finally:
        logger.removeHandler(errors)
    assert first.status_code == 200
    assert second.status_code == 500
    logged = "\n".join(errors.texts)
    assert "attached to a different loop" in logged
    # The note loopgrid adds: who used it, and the fix.
    assert "used from worker 1" in logged
    assert "LoopLocal" in logged


# -- a module-level async engine ----------------------------------------------------


@pytest.fixture
def engine_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    pytest.importorskip("sqlalchemy.ext.asyncio", reason="the engine app uses SQLAlchemy")
    pytest.importorskip("greenlet", reason="SQLAlchemy's asyncio needs greenlet")
    import importlib
    import sys

    monkeypatch.setenv("LOOPGRID_TEST_ENGINE_DB", str(tmp_path / "engine.db"))
    sys.modules.pop("real_app_engine", None)
    module = importlib.import_module("real_app_engine")
    yield module
    sys.modules.pop("real_app_engine", None)


@needs_greenlet
def test_a_module_level_engine_gets_a_pool_per_loop_and_waiting_requests_succeed(
    engine_app: Any,
) -> None:
    original_pool = engine_app.engine.sync_engine.pool
    with (
        web.Server(engine_app.app, loops=2, port=0, inline=False) as server,
        httpx.Client(base_url=server.url, timeout=WAIT) as client,
    ):
        replies = _concurrently(40, lambda i: client.post(f"/rows/r{i}"))
        pool = engine_app.engine.sync_engine.pool
        loops_with_a_pool = pool.loops()
    assert [r.status_code for r in replies] == [200] * 40
    assert max(r.json()["count"] for r in replies) == 40
    assert {r.json()["thread"] for r in replies} == WORKERS
    assert pool is not original_pool  # one pool per loop behind the same engine
    assert loops_with_a_pool == 2
    assert pool.loops() == 0  # each loop's pool was disposed as its loop closed
    assert grid_threads() == []


def test_a_module_level_lock_stays_one_lock_for_every_loop() -> None:
    import web_apps_locked

    web_apps_locked.inside[:] = [0, 0]
    with (
        web.Server(web_apps_locked.app, loops=2, port=0, inline=False) as server,
        httpx.Client(base_url=server.url, timeout=WAIT) as client,
    ):
        replies = _concurrently(40, lambda i: client.get("/"))
    assert [r.status_code for r in replies] == [200] * 40
    assert {r.text for r in replies} == WORKERS
    assert web_apps_locked.inside[1] == 1  # never two holders, on any loops
    assert isinstance(web_apps_locked.lock, asyncio.Lock)
    assert "shared by every loop" in repr(web_apps_locked.lock)


class _Ready(asyncio.Condition):
    """An app's own subclass: loopgrid cannot know what it changed, so it is
    not taken over."""


def test_a_module_level_primitive_loopgrid_cannot_share_is_refused_by_name(
    tmp_path: Path,
) -> None:
    import sys
    import types

    module = types.ModuleType("loopgrid_test_refused_app")
    module.__file__ = str(tmp_path / "loopgrid_test_refused_app.py")
    module.ready = _Ready()  # type: ignore[attr-defined]
    module.app = FastAPI()  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        server = web.Server(module.app, loops=2, port=0)  # type: ignore[attr-defined]
        with pytest.raises(web.StartupError) as caught:
            server.start()
    finally:
        del sys.modules[module.__name__]
    message = str(caught.value)
    assert "loopgrid_test_refused_app.ready is a _Ready (an asyncio.Condition)" in message
    assert "LoopLocal(asyncio.Condition)" in message
    assert grid_threads() == []


@needs_greenlet
def test_the_example_dbapp_serves_its_rows_from_every_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib
    import sys

    monkeypatch.setenv("DBAPP_DB", str(tmp_path / "dbapp.db"))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent))
    sys.modules.pop("examples.dbapp.app", None)
    module = importlib.import_module("examples.dbapp.app")
    try:
        with GridClient(module.app, loops=2, timeout=WAIT) as client:
            replies = _concurrently(20, lambda i: client.get(f"/items/{i + 1}"))
            missing = client.get("/items/100000")
    finally:
        sys.modules.pop("examples.dbapp.app", None)
    assert [r.status_code for r in replies] == [200] * 20
    assert missing.status_code == 404


def test_a_value_put_on_app_state_at_import_is_checked_before_serving(
    settings: dict[str, str],
) -> None:
    app = FastAPI()
    app.state.lock = asyncio.Lock()  # at import: one for every loop
    app.state.ready = _Ready()  # which loopgrid cannot take over

    @app.get("/")
    async def root() -> dict[str, bool]:
        async with app.state.lock:
            return {"locked": app.state.lock.locked()}

    with pytest.raises(web.StartupError, match=r"app\.state\.ready is a _Ready"):
        web.Server(app, loops=2, port=0).start()
    del app.state.ready
    with web.Server(app, loops=2, port=0) as server:
        replies = _concurrently(8, lambda i: httpx.get(f"{server.url}/", timeout=WAIT))
    assert [r.json() for r in replies] == [{"locked": True}] * 8
    assert "shared by every loop" in repr(app.state.lock)
