"""Bad input gets a clear exception that names the offending value."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from helpers import WAIT, Gate, forever, grid_threads

import loopgrid
from loopgrid import Grid, GridClosedError


async def coro_fn(x: int = 0) -> int:
    return x


def sync_fn() -> int:
    return 1


class NotCallable:
    def __repr__(self) -> str:
        return "<NotCallable sentinel>"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (42, "42"),
        ("text", "'text'"),
        (None, "None"),
        (NotCallable(), "<NotCallable sentinel>"),
    ],
)
def test_spawn_non_callable(grid: Grid, value: Any, needle: str) -> None:
    with pytest.raises(TypeError, match="async function or a coroutine") as info:
        grid.spawn(value)
    assert needle in str(info.value)


def test_spawn_sync_function(grid: Grid) -> None:
    with pytest.raises(TypeError, match="synchronous callable") as info:
        grid.spawn(sync_fn)
    assert "sync_fn" in str(info.value)
    with pytest.raises(TypeError, match="synchronous"):
        grid.spawn(lambda: coro_fn())


@pytest.mark.asyncio
async def test_spawn_awaitable_that_is_not_a_coroutine(grid: Grid) -> None:
    fut = asyncio.get_running_loop().create_future()
    with pytest.raises(TypeError, match="awaitable that is not a coroutine") as info:
        grid.spawn(fut)
    assert repr(fut) in str(info.value)
    fut.cancel()


def test_spawn_coroutine_with_args_closes_it(grid: Grid) -> None:
    coro = coro_fn(1)
    with pytest.raises(TypeError, match="positional arguments"):
        grid.spawn(coro, 2)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


@pytest.mark.parametrize("priority", [7, -1, 4, "high", 1.0, None])
def test_priority_out_of_range(grid: Grid, priority: Any) -> None:
    with pytest.raises(ValueError, match="priority") as info:
        grid.spawn(coro_fn, priority=priority)
    assert repr(priority) in str(info.value)
    assert grid.stats()["totals"]["spawned"] == 0


@pytest.mark.parametrize("priority", [7, "high"])
def test_priority_out_of_range_closes_the_coroutine(grid: Grid, priority: Any) -> None:
    """Like the other spawn() errors: a rejected coroutine object is closed, so
    that no "coroutine ... was never awaited" warning follows."""
    coro = coro_fn()
    try:
        with pytest.raises(ValueError, match="priority"):
            grid.spawn(coro, priority=priority)
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    finally:
        coro.close()


@pytest.mark.parametrize("worker", [2, -1, 100, "0", 1.0, True])
def test_worker_out_of_range_or_wrong_type(grid: Grid, worker: Any) -> None:
    coro = coro_fn()
    with pytest.raises(ValueError, match="worker must be an int from 0 to 1") as info:
        grid.spawn(coro, worker=worker)
    assert repr(worker) in str(info.value)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    with pytest.raises(ValueError, match="worker"):
        grid.spawn(coro_fn, worker=worker)
    assert grid.stats()["totals"]["spawned"] == 0


def test_name_wrong_type(grid: Grid) -> None:
    coro = coro_fn()
    with pytest.raises(TypeError, match="name must be a str") as info:
        grid.spawn(coro, name=123)  # type: ignore[arg-type]
    assert "123" in str(info.value)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


@pytest.mark.parametrize(
    ("loops", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (10**20, ValueError),  # once an OverflowError that named nothing
        (1.5, TypeError),
        ("4", TypeError),
        (True, TypeError),
    ],
)
def test_grid_loops(loops: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="loops must be an int >= 1") as info:
        Grid(loops)
    assert repr(loops) in str(info.value)
    assert grid_threads() == []


def test_keywords_given_to_spawn_name_functools_partial(grid: Grid) -> None:
    async def work(x: int) -> int:
        return x

    message = r"by position only, got x=\.\.\.: pass functools\.partial\(work, x=\.\.\.\)"
    with pytest.raises(TypeError, match=message):
        grid.spawn(work, x=3)  # type: ignore[call-overload]
    coro = coro_fn()
    with pytest.raises(TypeError, match=r"functools\.partial"):
        grid.spawn(coro, x=3)  # type: ignore[call-overload]
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # and no warning

    async def in_a_task() -> str:
        with pytest.raises(TypeError, match=r"loopgrid\.spawn\(\) takes .*functools\.partial"):
            loopgrid.spawn(work, x=3)  # type: ignore[call-overload]
        async with loopgrid.TaskGroup() as tg:
            with pytest.raises(TypeError, match=r"TaskGroup\.spawn\(\) takes .*functools\.partial"):
                tg.spawn(work, x=3)  # type: ignore[call-overload]
        return "checked"

    assert grid.spawn(in_a_task).result(WAIT) == "checked"


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        (float("nan"), ValueError, "nan"),
        (-1, ValueError, "-1"),
        (True, TypeError, "True"),
        ("1", TypeError, "'1'"),
    ],
)
def test_result_timeouts_are_checked_by_name(
    grid: Grid, timeout: Any, error: type[Exception], message: str
) -> None:
    h = grid.spawn(forever)
    with pytest.raises(error, match=f"timeout must be None or a number of seconds.*{message}"):
        h.result(timeout=timeout)
    h.cancel()


def test_a_done_callback_must_be_callable(grid: Grid) -> None:
    h = grid.spawn(coro_fn)
    with pytest.raises(TypeError, match=r"add_done_callback\(\) needs a callable .* got 5"):
        h.add_done_callback(5)  # type: ignore[arg-type]
    h.result(WAIT)


def test_run_names_the_fix_for_an_async_function_and_warns_no_more() -> None:
    async def work() -> None:
        pass

    with pytest.raises(
        ValueError, match=r"a coroutine was expected, .*: call it, as in run\(work\(\)\)"
    ):
        loopgrid.run(work)  # type: ignore[arg-type]
    coro = work()
    with pytest.raises(ValueError, match="loops must be an int >= 1"):
        loopgrid.run(coro, loops=0)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # closed: nothing warns


@pytest.mark.parametrize("aging", [0, -1, "1", True, float("nan")])
def test_grid_aging(aging: Any) -> None:
    with pytest.raises(ValueError, match="aging") as info:
        Grid(1, aging=aging)
    assert repr(aging) in str(info.value)


def test_grid_name_and_loop_factory_types() -> None:
    with pytest.raises(TypeError, match="name must be a str"):
        Grid(1, name=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loop_factory must be callable") as info:
        Grid(1, loop_factory=42)  # type: ignore[arg-type]
    assert "42" in str(info.value)


def test_loop_factory_returning_a_non_loop_fails_cleanly() -> None:
    with pytest.raises(TypeError, match="not an asyncio event loop") as info:
        Grid(2, loop_factory=lambda: "not a loop")  # type: ignore[arg-type,return-value]
    assert "'not a loop'" in str(info.value)
    assert grid_threads() == []


def test_loop_factory_raising_fails_cleanly() -> None:
    calls = []

    def factory() -> asyncio.AbstractEventLoop:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("no more loops")
        return asyncio.new_event_loop()

    with pytest.raises(OSError, match="no more loops"):
        Grid(3, loop_factory=factory)
    assert grid_threads() == []


def test_spawn_after_close() -> None:
    g = Grid(1)
    g.close()
    with pytest.raises(GridClosedError) as info:
        g.spawn(coro_fn)
    assert "coro_fn" in str(info.value)
    assert g.name in str(info.value)


def test_result_timeout_error_and_negative_timeout(grid: Grid) -> None:
    gate = Gate()

    async def waits() -> None:
        await gate.wait()

    h = grid.spawn(waits)
    with pytest.raises(TimeoutError):
        h.result(timeout=0.01)
    with pytest.raises(ValueError, match="-1"):
        h.result(timeout=-1)
    gate.set()
    assert h.result(WAIT) is None


@pytest.mark.skipif(
    not hasattr(inspect, "markcoroutinefunction"),
    reason="inspect.markcoroutinefunction is new in Python 3.12",
)
def test_marked_sync_function_returning_a_non_coroutine_fails_the_task(grid: Grid) -> None:
    def liar() -> int:
        return 1

    inspect.markcoroutinefunction(liar)  # type: ignore[attr-defined]
    h = grid.spawn(liar)
    exc = h.exception(WAIT)
    assert isinstance(exc, TypeError)
    assert "not a coroutine" in str(exc)
    assert "liar" in str(exc)
    assert h.state is loopgrid.TaskState.FAILED


def test_running_loop_required_for_get_loop(grid: Grid) -> None:
    h = grid.spawn(coro_fn)
    h.result(WAIT)
    with pytest.raises(RuntimeError, match="no event loop"):
        h.get_loop()


def test_not_on_grid_errors_name_the_thread() -> None:
    with pytest.raises(loopgrid.NotOnGridError, match="MainThread"):
        loopgrid.current_worker()
    with pytest.raises(loopgrid.NotOnGridError, match="coro_fn"):
        loopgrid.spawn(coro_fn)


def test_handles_are_made_by_spawn_only() -> None:
    with pytest.raises(TypeError, match=r"created by spawn\(\)"):
        loopgrid.Handle()


def test_a_task_cancelled_by_close_says_so() -> None:
    g = Grid(2)
    running = g.spawn(forever)
    g.close(cancel=True)
    with pytest.raises(
        asyncio.CancelledError, match=r"cancelled by the grid's close\(cancel=True\)"
    ):
        running.result(WAIT)
