"""asyncio.Task's accessors on a Handle, spawn(context=), TaskGroup.create_task."""

from __future__ import annotations

import asyncio
import contextvars
import io

import pytest
from helpers import WAIT, Gate, block_worker

from loopgrid import Grid, TaskGroup

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


async def wait_on(gate: Gate, started: Gate | None = None) -> str:
    if started is not None:
        started.set()
    await gate.wait()
    return asyncio.current_task().get_name()  # type: ignore[union-attr]


async def fail_here() -> None:
    raise ValueError("failed in fail_here")


async def read_request_id() -> str:
    return request_id.get()


def test_names_follow_set_name_before_and_after_the_start() -> None:
    gate = Gate()
    with Grid(1) as grid:
        h = grid.spawn(wait_on, gate, name="first")
        assert h.get_name() == "first" == h.name
        h.set_name(42)
        assert h.get_name() == "42"
        gate.set()
        assert h.result(timeout=WAIT) == "42"  # its asyncio task got the name too


def test_get_coro_pending_running_and_done() -> None:
    gate = Gate()
    with Grid(1) as grid:
        _, release = block_worker(grid, 0)
        coro = wait_on(gate)
        given = grid.spawn(coro, worker=0)
        by_function = grid.spawn(wait_on, gate, worker=0)
        assert given.get_coro() is coro  # pending: the object given
        assert by_function.get_coro() is None  # its coroutine is made at the start
        release.set()
        started_gate = Gate()
        running = grid.spawn(wait_on, gate, started_gate)
        assert started_gate.wait_sync(WAIT)
        started = running.get_coro()
        assert started is not None and started.cr_code.co_name == "wait_on"
        stack = running.get_stack()
        assert stack and stack[0].f_code.co_name == "wait_on"
        out = io.StringIO()
        running.print_stack(file=out)
        assert out.getvalue().startswith("Stack for <Handle")
        assert "in wait_on" in out.getvalue()
        gate.set()
        running.result(timeout=WAIT)
        assert running.get_coro() is None and running.get_context() is None


def test_a_failed_task_has_its_traceback_as_stack() -> None:
    with Grid(1) as grid:
        h = grid.spawn(fail_here)
        assert isinstance(h.exception(timeout=WAIT), ValueError)
    assert h.get_stack()[-1].f_code.co_name == "fail_here"
    assert len(h.get_stack(limit=1)) == 1
    out = io.StringIO()
    h.print_stack(file=out)
    text = out.getvalue()
    assert text.startswith("Traceback for <Handle")
    assert "in fail_here" in text and text.endswith("ValueError: failed in fail_here\n")


def test_spawn_runs_the_task_in_the_context_given() -> None:
    ctx = contextvars.copy_context()
    ctx.run(request_id.set, "r-7")
    request_id.set("caller")
    with Grid(2) as grid:
        given = grid.spawn(read_request_id, context=ctx)
        copied = grid.spawn(read_request_id)
        assert given.result(timeout=WAIT) == "r-7"
        assert copied.result(timeout=WAIT) == "caller"
        with pytest.raises(TypeError, match=r"context must be a contextvars\.Context"):
            grid.spawn(read_request_id, context={"request_id": "x"})  # type: ignore[arg-type]


def test_task_group_create_task_takes_asyncio_s_arguments() -> None:
    ctx = contextvars.copy_context()
    ctx.run(request_id.set, "in-group")

    async def main() -> tuple[str, str]:
        async with TaskGroup() as tg:
            h = tg.create_task(read_request_id(), name="reader", context=ctx)
        return h.get_name(), h.result()

    with Grid(2) as grid:
        assert grid.spawn(main).result(timeout=WAIT) == ("reader", "in-group")
