"""Spawning: placement (local, injection, pinned), call forms, contextvars."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from typing import Any

import pytest
from helpers import WAIT, Countdown, Gate, block_worker, identity

import loopgrid
from loopgrid import Grid, TaskState

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


def test_spawn_from_a_worker_lands_in_its_local_queue() -> None:
    async def parent() -> dict[str, Any]:
        h = loopgrid.spawn(identity, 1)
        snap = loopgrid.current_grid().stats()  # no await: the child cannot have started
        assert h.state is TaskState.PENDING
        assert await h == 1
        return snap

    with Grid(1) as g:
        snap = g.spawn(parent).result(WAIT)
    w0 = snap["workers"][0]
    assert w0["pending"] == {"low": 0, "normal": 1, "high": 0, "critical": 0}
    assert w0["pinned"] == 0
    assert w0["spawned"] == 1
    assert sum(snap["injection"].values()) == 0
    assert snap["external"]["spawned"] == 1  # the parent, spawned from this thread


def test_spawn_from_a_plain_thread_goes_to_the_injection_queue() -> None:
    with Grid(1) as g:
        _, release = block_worker(g)
        try:
            h = g.spawn(identity, 2, priority=loopgrid.Priority.HIGH)
            snap = g.stats()
            assert h.state is TaskState.PENDING
            assert snap["injection"] == {"low": 0, "normal": 0, "high": 1, "critical": 0}
            assert snap["workers"][0]["pending_total"] == 0
            assert snap["external"]["spawned"] == 2
        finally:
            release.set()
        assert h.result(WAIT) == 2
        assert h.worker == 0


@pytest.mark.asyncio
async def test_spawn_from_a_foreign_loop_goes_to_the_injection_queue() -> None:
    with Grid(1) as g:
        _, release = block_worker(g)
        try:
            h = g.spawn(identity, 3)
            snap = g.stats()
            assert snap["injection"]["normal"] == 1
            assert snap["workers"][0]["spawned"] == 0
        finally:
            release.set()
        assert await h == 3


def test_spawn_from_another_grids_worker_goes_to_the_injection_queue() -> None:
    with Grid(1) as a, Grid(1) as b:
        _, release = block_worker(b)
        try:

            async def from_a() -> tuple[Any, dict[str, Any]]:
                h = b.spawn(identity, 4)
                return h, b.stats()

            h, snap = a.spawn(from_a).result(WAIT)
            assert snap["injection"]["normal"] == 1
            assert snap["workers"][0]["spawned"] == 0
            assert snap["external"]["spawned"] == 2
        finally:
            release.set()
        assert h.result(WAIT) == 4


def test_pinned_from_outside_runs_on_that_worker() -> None:
    with Grid(3) as g:
        handles = [g.spawn(identity, i, worker=i % 3) for i in range(30)]
        for i, h in enumerate(handles):
            assert h.result(WAIT) == i
            assert h.worker == i % 3
            assert h.pinned == i % 3


def test_pinned_tasks_are_never_stolen_even_when_their_worker_is_blocked() -> None:
    """Worker 0 blocks after queueing pinned and stealable work: worker 1 takes
    (steals) all the stealable work, and none of the pinned work."""
    n_pinned, n_free = 20, 40
    all_free_done = Countdown(n_free)

    async def free() -> int:
        all_free_done.hit()
        return loopgrid.current_worker().index

    async def pinned() -> int:
        return loopgrid.current_worker().index

    async def driver() -> tuple[list[Any], list[Any], list[Any], bool]:
        ph = [loopgrid.spawn(pinned, worker=0) for _ in range(n_pinned)]
        fh = [loopgrid.spawn(free) for _ in range(n_free)]
        # Block worker 0's thread: only worker 1 can run anything now.
        ok = all_free_done.wait(WAIT)
        states = [h.state for h in ph]
        return ph, fh, states, ok

    with Grid(2) as g:
        ph, fh, states_while_blocked, ok = g.spawn(driver, worker=0).result(WAIT * 2)
        assert ok, "worker 1 did not steal the stealable tasks"
        assert states_while_blocked == [TaskState.PENDING] * n_pinned
        assert [h.result(WAIT) for h in fh] == [1] * n_free
        assert [h.result(WAIT) for h in ph] == [0] * n_pinned
        assert [h.worker for h in ph] == [0] * n_pinned


def test_pinned_from_a_worker_to_another_worker() -> None:
    async def parent() -> list[int]:
        hs = [loopgrid.spawn(_index, worker=i) for i in (1, 0, 1)]
        return [await h for h in hs]

    with Grid(2) as g:
        assert g.spawn(parent, worker=0).result(WAIT) == [1, 0, 1]


async def _index() -> int:
    return loopgrid.current_worker().index


async def add(a: int, b: int, *rest: int) -> int:
    return a + b + sum(rest)


async def kw(a: int, *, scale: int = 1) -> int:
    return a * scale


class AsyncCallable:
    async def __call__(self, x: int) -> int:
        return x + 100


class Obj:
    def __init__(self) -> None:
        self.base = 7

    async def method(self, x: int) -> int:
        return self.base + x


def test_call_forms(grid: Grid) -> None:
    assert grid.spawn(add, 1, 2).result(WAIT) == 3
    assert grid.spawn(add, 1, 2, 3, 4).result(WAIT) == 10
    assert grid.spawn(functools.partial(kw, 3, scale=5)).result(WAIT) == 15
    assert grid.spawn(functools.partial(kw, scale=2), 4).result(WAIT) == 8
    assert grid.spawn(add(5, 6)).result(WAIT) == 11
    assert grid.spawn(AsyncCallable(), 1).result(WAIT) == 101
    assert grid.spawn(Obj().method, 1).result(WAIT) == 8
    assert grid.spawn(lambda_free_async(), name="coro").result(WAIT) == "ok"


async def _ok() -> str:
    return "ok"


def lambda_free_async() -> Any:
    return _ok()


def test_default_and_explicit_names(grid: Grid) -> None:
    assert grid.spawn(add, 1, 2).name == "add"
    assert grid.spawn(Obj().method, 1).name == "Obj.method"
    assert grid.spawn(add(1, 2)).name == "add"
    assert grid.spawn(functools.partial(kw, 1)).name == "kw"
    assert grid.spawn(add, 1, 2, name="custom").name == "custom"


def test_module_level_spawn_uses_the_current_grid() -> None:
    async def parent() -> tuple[int, loopgrid.Grid]:
        h = loopgrid.spawn(add, 2, 3, priority=loopgrid.Priority.LOW, name="child")
        assert h.name == "child"
        assert h.priority is loopgrid.Priority.LOW
        return await h, loopgrid.current_grid()

    with Grid(2) as g:
        res, cg = g.spawn(parent).result(WAIT)
        assert res == 5
        assert cg is g


def test_module_level_spawn_outside_a_grid_raises_and_closes_the_coroutine() -> None:
    coro = add(1, 2)
    with pytest.raises(loopgrid.NotOnGridError, match="outside a loopgrid worker"):
        loopgrid.spawn(coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning
    with pytest.raises(loopgrid.NotOnGridError):
        loopgrid.spawn(add, 1, 2)


def test_ids_increase_with_spawn_order(grid: Grid) -> None:
    hs = [grid.spawn(identity, i) for i in range(50)]
    ids = [h.id for h in hs]
    assert ids == sorted(ids)
    assert len(set(ids)) == 50
    assert [h.result(WAIT) for h in hs] == list(range(50))


def test_task_inherits_the_spawners_context_from_a_plain_thread(grid: Grid) -> None:
    async def child() -> tuple[str, str]:
        seen = var.get()
        var.set("changed in child")
        return seen, var.get()

    token = var.set("from main")
    try:
        h = grid.spawn(child)
        var.set("changed after spawn")
        assert h.result(WAIT) == ("from main", "changed in child")
        assert var.get() == "changed after spawn"
    finally:
        var.reset(token)


def test_task_inherits_the_spawners_context_from_a_task(grid: Grid) -> None:
    async def child() -> str:
        seen = var.get()
        var.set("child")
        return seen

    async def parent() -> tuple[str, str, str]:
        var.set("parent")
        h1 = loopgrid.spawn(child)
        h2 = grid.spawn(child, worker=1)
        seen1, seen2 = await h1, await h2
        return seen1, seen2, var.get()

    assert grid.spawn(parent, worker=0).result(WAIT) == ("parent", "parent", "parent")
    assert var.get() == "unset"


@pytest.mark.asyncio
async def test_task_inherits_the_spawners_context_from_a_foreign_loop(grid: Grid) -> None:
    async def child() -> str:
        seen = var.get()
        var.set("child")
        return seen

    var.set("foreign")
    assert await grid.spawn(child) == "foreign"
    assert var.get() == "foreign"


def test_spawned_coroutine_runs_in_the_callers_context_even_when_pending() -> None:
    """The context is captured at spawn time, not when the task starts."""

    async def child() -> str:
        return var.get()

    with Grid(1) as g:
        _, release = block_worker(g)
        token = var.set("at spawn")
        try:
            h = g.spawn(child)
            var.set("later")
        finally:
            var.reset(token)
            release.set()
        assert h.result(WAIT) == "at spawn"


def test_spawn_many_from_many_threads(grid: Grid) -> None:
    results: dict[int, list[Any]] = {}
    gate = Gate()

    def spawner(k: int) -> None:
        gate.wait_sync()
        results[k] = [grid.spawn(identity, (k, i)) for i in range(200)]

    threads = [threading.Thread(target=spawner, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    for k in range(4):
        assert [h.result(WAIT) for h in results[k]] == [(k, i) for i in range(200)]


def test_coroutine_object_with_asyncio_sleep(grid: Grid) -> None:
    async def sleeper() -> str:
        await asyncio.sleep(0)
        return "slept"

    assert grid.spawn(sleeper()).result(WAIT) == "slept"
