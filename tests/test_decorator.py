"""@loopgrid.task: still the function, plus .spawn() and .spawn_on()."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from helpers import WAIT

import loopgrid
from loopgrid import Grid, Priority


@loopgrid.task
async def bare(x: int) -> int:
    return x + 1


@loopgrid.task(priority=Priority.HIGH, name="fetcher")
async def configured(x: int, y: int) -> tuple[int, int]:
    return x, y


@loopgrid.task(priority=0)
async def low_int() -> str:
    return "low"


class Service:
    def __init__(self, base: int) -> None:
        self.base = base

    @loopgrid.task(priority=Priority.CRITICAL)
    async def handle(self, x: int) -> int:
        return self.base + x


def test_calling_returns_a_plain_coroutine() -> None:
    coro = bare(1)
    assert asyncio.iscoroutine(coro)
    assert asyncio.run(coro) == 2
    assert asyncio.run(configured(1, 2)) == (1, 2)


def test_decorated_function_keeps_its_identity() -> None:
    assert bare.__name__ == "bare"
    assert bare.__wrapped__.__name__ == "bare"  # type: ignore[attr-defined]
    if hasattr(inspect, "markcoroutinefunction"):
        assert inspect.iscoroutinefunction(bare)
    assert asyncio.iscoroutinefunction(bare)  # on 3.10 and 3.11 too
    assert isinstance(bare, loopgrid.TaskFunction)
    assert bare.priority is Priority.NORMAL
    assert bare.name == "bare"
    assert configured.priority is Priority.HIGH
    assert configured.name == "fetcher"
    assert low_int.priority is Priority.LOW
    assert "fetcher" in repr(configured) and "HIGH" in repr(configured)


@pytest.mark.loopgrid(loops=2)  # runs on worker 0 of a fresh grid (our pytest plugin)
async def test_spawn_from_a_task_uses_priority_and_name() -> None:
    hs = [bare.spawn(1), configured.spawn(3, 4), low_int.spawn()]
    assert [(h.priority, h.name) for h in hs] == [
        (Priority.NORMAL, "bare"),
        (Priority.HIGH, "fetcher"),
        (Priority.LOW, "low_int"),
    ]
    assert [await h for h in hs] == [2, (3, 4), "low"]


def test_spawn_on_a_grid_from_anywhere() -> None:
    with Grid(2) as g:
        h = configured.spawn_on(g, 5, 6)
        assert isinstance(h, loopgrid.Handle)
        assert h.priority is Priority.HIGH
        assert h.name == "fetcher"
        assert h.result(WAIT) == (5, 6)


def test_spawn_takes_a_decorated_function_on_every_version() -> None:
    # The README's snippet: grid.spawn(fetch, ...) with fetch decorated.
    with Grid(2) as grid:
        assert grid.spawn(bare, 41).result(timeout=WAIT) == 42
        assert grid.spawn(Service(10).handle, 5).result(timeout=WAIT) == 15


def test_spawn_outside_a_grid_raises() -> None:
    with pytest.raises(loopgrid.NotOnGridError):
        bare.spawn(1)


def test_methods() -> None:
    svc = Service(10)
    assert asyncio.run(svc.handle(1)) == 11
    with Grid(1) as g:
        h = svc.handle.spawn_on(g, 5)
        assert h.priority is Priority.CRITICAL
        assert h.result(WAIT) == 15
    assert isinstance(Service.handle, loopgrid.TaskFunction)


def test_decorating_a_sync_function_raises_type_error() -> None:
    def sync(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="async function"):
        loopgrid.task(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sync"):
        loopgrid.task(priority=Priority.HIGH)(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        loopgrid.task(lambda: None)  # type: ignore[arg-type]


def test_bad_decorator_options() -> None:
    with pytest.raises(ValueError, match="7"):
        loopgrid.task(priority=7)
    with pytest.raises(ValueError, match="'high'"):
        loopgrid.task(priority="high")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="42"):
        loopgrid.task(name=42)  # type: ignore[arg-type]
