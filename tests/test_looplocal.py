"""loopgrid.LoopLocal: one value per event loop, made on it, closed at its shutdown."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from helpers import WAIT

import loopgrid
from loopgrid import Grid, LoopLocal


class Client:
    """A stand-in for a loop-bound client: it records its loop and its closing."""

    closed: ClassVar[list[tuple[Client, bool]]] = []

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()

    async def get(self, path: str) -> str:
        return f"got {path}"

    async def aclose(self) -> None:
        Client.closed.append((self, asyncio.get_running_loop() is self.loop))


@pytest.fixture(autouse=True)
def _fresh() -> None:
    Client.closed.clear()


def test_one_value_per_loop_made_on_it_and_closed_on_it_at_shutdown() -> None:
    local = LoopLocal(Client)

    async def use() -> Client:
        value = local.value
        assert value is local.value  # made once on this loop
        assert value.loop is asyncio.get_running_loop()
        return value

    first = asyncio.run(use())
    assert Client.closed == [(first, True)]
    second = asyncio.run(use())
    assert second is not first
    assert Client.closed == [(first, True), (second, True)]
    assert local.loops() == 0


def test_each_grid_worker_gets_its_own_and_they_close_with_the_grid() -> None:
    local = LoopLocal(Client)

    async def use() -> tuple[int, Client]:
        return loopgrid.current_worker().index, local.value

    with Grid(2) as grid:
        seen = [grid.spawn(use, worker=i % 2).result(timeout=WAIT) for i in range(8)]
        assert local.loops() == 2
    by_worker: dict[int, set[int]] = {}
    for index, value in seen:
        by_worker.setdefault(index, set()).add(id(value))
    assert sorted(by_worker) == [0, 1]
    assert all(len(ids) == 1 for ids in by_worker.values())
    assert by_worker[0] != by_worker[1]
    assert len(Client.closed) == 2 and all(on_its_loop for _, on_its_loop in Client.closed)
    assert local.loops() == 0


def test_attributes_are_forwarded_to_the_running_loops_value() -> None:
    client: Any = LoopLocal(Client)

    async def use() -> str:
        result: str = await client.get("/x")
        return result

    assert asyncio.run(use()) == "got /x"
    with pytest.raises(AttributeError):
        _ = client._private  # never forwarded: not the value's API


def test_outside_a_loop_it_says_why_and_what_to_do() -> None:
    local = LoopLocal(Client)
    with pytest.raises(RuntimeError, match="outside a running event loop"):
        _ = local.value
    with pytest.raises(TypeError, match="LoopLocal needs a callable"):
        LoopLocal(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="close must be a callable"):
        LoopLocal(Client, close="aclose")  # type: ignore[arg-type]


def test_an_async_factory_needs_aget_and_concurrent_callers_share_one_creation() -> None:
    made: list[int] = []

    async def connect() -> int:
        made.append(1)
        await asyncio.sleep(0)
        return len(made)

    local = LoopLocal(connect, close=lambda value: None)

    async def use() -> list[int]:
        with pytest.raises(TypeError, match=r"await local\.aget"):
            _ = local.value
        return list(await asyncio.gather(*(local.aget() for _ in range(5))))

    assert asyncio.run(use()) == [1] * 5
    assert made == [1]


def test_a_failing_close_goes_to_the_loops_exception_handler() -> None:
    reported: list[dict[str, Any]] = []

    def broken(value: object) -> None:
        raise OSError("cannot close")

    local = LoopLocal(object, close=broken, name="broken")

    async def use() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: reported.append(ctx))
        _ = local.value

    asyncio.run(use())
    assert len(reported) == 1
    assert "closing the value of <loopgrid.LoopLocal broken" in reported[0]["message"]
    assert isinstance(reported[0]["exception"], OSError)


def test_many_tasks_on_many_loops_get_one_value_per_loop() -> None:
    # Stress: 200 tasks over 4 workers, all asking at once.
    local = LoopLocal(Client)

    async def use() -> tuple[int, int]:
        await asyncio.sleep(0)
        return loopgrid.current_worker().index, id(local.value)

    with Grid(4) as grid:
        handles = [grid.spawn(use) for _ in range(200)]
        pairs = {h.result(timeout=WAIT) for h in handles}
    values_of: dict[int, set[int]] = {}
    for index, value_id in pairs:
        values_of.setdefault(index, set()).add(value_id)
    assert all(len(ids) == 1 for ids in values_of.values())
    assert len(Client.closed) == len(values_of)
