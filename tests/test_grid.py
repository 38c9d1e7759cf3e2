"""Grid construction, workers, threads and loops, context managers, current_*()."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from helpers import FREE_THREADED, WAIT, grid_threads, identity, worker_threads

import loopgrid
from loopgrid import Grid, NotOnGridError

uvloop = pytest.importorskip("uvloop")


async def where() -> tuple[int, int, int, str]:
    """(thread ident, id of the running loop, worker index, thread name)."""
    return (
        threading.get_ident(),
        id(asyncio.get_running_loop()),
        loopgrid.current_worker().index,
        threading.current_thread().name,
    )


def test_loops_default_to_cpu_count() -> None:
    with Grid() as g:
        assert len(g.workers) == (os.cpu_count() or 1)
        assert [w.index for w in g.workers] == list(range(len(g.workers)))


@pytest.mark.parametrize("loops", [1, 2, 3])
def test_each_worker_has_its_own_thread_and_loop(loops: int) -> None:
    with Grid(loops) as g:
        assert len(g.workers) == loops
        seen = [g.spawn(where, worker=i).result(WAIT) for i in range(loops)]
        idents = {s[0] for s in seen}
        loop_ids = {s[1] for s in seen}
        assert len(idents) == loops
        assert len(loop_ids) == loops
        assert threading.get_ident() not in idents
        assert [s[2] for s in seen] == list(range(loops))
        for i, s in enumerate(seen):
            assert s[0] == g.workers[i].thread.ident
            assert id(g.workers[i].loop) == s[1]
            assert s[3].startswith("loopgrid-")
        assert len(worker_threads()) == loops
    assert grid_threads() == []


def test_the_default_loop_is_uvloop_or_on_free_threaded_builds_asyncio() -> None:
    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    with Grid(2) as g:
        types = {g.spawn(loop_type, worker=i).result(WAIT) for i in range(2)}
    if FREE_THREADED:
        assert types == {asyncio.SelectorEventLoop}  # asyncio's default loop on Unix
    else:
        assert types == {uvloop.Loop}


def test_loop_factory_overrides_the_default() -> None:
    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    with Grid(2, loop_factory=asyncio.new_event_loop) as g:
        types = {g.spawn(loop_type, worker=i).result(WAIT) for i in range(2)}
    assert len(types) == 1
    (t,) = types
    assert issubclass(t, asyncio.BaseEventLoop)
    assert not issubclass(t, uvloop.Loop)


def test_loop_factory_is_called_once_per_worker() -> None:
    made: list[asyncio.AbstractEventLoop] = []
    lock = threading.Lock()

    def factory() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        with lock:
            made.append(loop)
        return loop

    with Grid(3, loop_factory=factory) as g:
        assert len(made) == 3
        assert {id(w.loop) for w in g.workers} == {id(loop) for loop in made}
    assert all(loop.is_closed() for loop in made)


def test_debug_flag_reaches_the_worker_loops() -> None:
    async def debug() -> bool:
        return asyncio.get_running_loop().get_debug()

    with Grid(1, debug=True) as g:
        assert g.spawn(debug).result(WAIT) is True
    with Grid(1, debug=False) as g:
        assert g.spawn(debug).result(WAIT) is False


def test_with_block_closes_and_joins_threads() -> None:
    with Grid(2) as g:
        threads = [w.thread for w in g.workers]
        assert all(t.is_alive() for t in threads)
        h = g.spawn(identity, 5)
    assert h.result() == 5
    assert g.closed
    assert not any(t.is_alive() for t in threads)
    assert all(w.loop.is_closed() for w in g.workers)
    assert "closed" in repr(g)


@pytest.mark.asyncio
async def test_async_with_waits_for_tasks_and_closes() -> None:
    async with Grid(2) as g:
        threads = [w.thread for w in g.workers]
        handles = [g.spawn(identity, i) for i in range(20)]
        assert await asyncio.gather(*handles) == list(range(20))
        late = g.spawn(identity, "late")
    assert late.done()
    assert late.result() == "late"
    assert not any(t.is_alive() for t in threads)


@pytest.mark.asyncio
async def test_async_with_cancels_when_the_block_raises() -> None:
    with pytest.raises(KeyError):
        async with Grid(2) as g:
            h = g.spawn(asyncio.sleep, 3600)
            raise KeyError("x")
    assert h.cancelled()


def test_workers_property() -> None:
    with Grid(2, name="named") as g:
        ws = g.workers
        assert isinstance(ws, tuple)
        assert all(isinstance(w, loopgrid.Worker) for w in ws)
        assert all(w.grid is g for w in ws)
        assert g.name == "named"
        assert all(w.thread.name == f"loopgrid-named-{w.index}" for w in ws)
        assert not any(w.is_current() for w in ws)


def test_current_grid_and_worker_inside_tasks() -> None:
    async def probe() -> tuple[loopgrid.Grid, loopgrid.Worker, bool]:
        w = loopgrid.current_worker()
        return loopgrid.current_grid(), w, w.is_current()

    with Grid(2) as g:
        for i in range(2):
            cg, cw, is_current = g.spawn(probe, worker=i).result(WAIT)
            assert cg is g
            assert cw is g.workers[i]
            assert is_current


def test_current_grid_and_worker_outside_raise() -> None:
    with pytest.raises(NotOnGridError, match="current_grid"):
        loopgrid.current_grid()
    with pytest.raises(NotOnGridError, match="current_worker"):
        loopgrid.current_worker()
    assert issubclass(NotOnGridError, RuntimeError)


def test_current_worker_outside_raises_in_a_plain_thread_and_foreign_loop() -> None:
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            loopgrid.current_worker()
        except BaseException as exc:
            errors.append(exc)

    async def in_loop() -> None:
        try:
            loopgrid.current_grid()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    asyncio.run(in_loop())
    assert len(errors) == 2
    assert all(isinstance(e, NotOnGridError) for e in errors)


def test_current_grid_in_a_nested_grid_task() -> None:
    """A task of grid B, spawned from a task of grid A, sees grid B."""

    async def outer(b: loopgrid.Grid) -> tuple[loopgrid.Grid, loopgrid.Grid]:
        mine = loopgrid.current_grid()
        other = await b.spawn(_current_grid)
        return mine, other

    with Grid(1) as a, Grid(1) as b:
        mine, other = a.spawn(outer, b).result(WAIT)
        assert mine is a
        assert other is b


async def _current_grid() -> loopgrid.Grid:
    return loopgrid.current_grid()
