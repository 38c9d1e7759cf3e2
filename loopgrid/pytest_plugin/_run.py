"""Running a coroutine on worker 0 from pytest's thread, in a given context.

Why a module of its own: both ways onto a grid need it, the ``loopgrid``
marker (a test body and each async fixture step) and :class:`GridLoop` (what
pytest-asyncio's or anyio's runner hands it). pytest's thread spawns the
coroutine on worker 0 and blocks on its handle; the coroutine runs in an
``asyncio.Task`` of its own there, in the ``contextvars.Context`` the caller
chose, so that context variables flow between fixtures and the test as
pytest-asyncio makes them flow.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..grid import Grid
from ..handle import Handle

T = TypeVar("T")

_TASK_HAS_CONTEXT = sys.version_info >= (3, 11)


def wait(h: Handle[T]) -> T:
    """Block pytest's thread until ``h`` is done; cancel it if the wait is interrupted."""
    __tracebackhide__ = True
    try:
        return h.result()
    except BaseException:
        if not h.done():  # Ctrl-C, or pytest-timeout: the task must not go on alone
            h.cancel()
        raise


def spawn_in_context(
    grid: Grid, coro: Coroutine[Any, Any, T], ctx: contextvars.Context, name: str
) -> Handle[T]:
    """Spawn ``coro`` on worker 0 of ``grid``, to run in ``ctx`` itself."""
    return grid.spawn(in_context, coro, ctx, worker=0, name=name)


def run_on_worker0(
    grid: Grid, coro: Coroutine[Any, Any, T], ctx: contextvars.Context, name: str
) -> T:
    __tracebackhide__ = True
    return wait(spawn_in_context(grid, coro, ctx, name))


async def in_context(coro: Coroutine[Any, Any, T], ctx: contextvars.Context) -> T:
    """Await ``coro`` in its own task on this loop, running in ``ctx`` itself.

    Python 3.10's tasks cannot be given a context: the task runs in a copy of
    ``ctx``, whose changes are written back into ``ctx`` when it ends.
    """
    loop = asyncio.get_running_loop()
    if _TASK_HAS_CONTEXT:
        return await loop.create_task(coro, context=ctx)  # type: ignore[call-arg,unused-ignore]
    task: asyncio.Task[tuple[T, contextvars.Context]] = ctx.run(loop.create_task, _exporting(coro))
    value, after = await task
    for var, val in after.items():
        if var not in ctx or ctx[var] is not val:
            ctx.run(var.set, val)
    return value


async def _exporting(coro: Coroutine[Any, Any, T]) -> tuple[T, contextvars.Context]:
    value = await coro
    return value, contextvars.copy_context()


def apply_context(ctx: contextvars.Context) -> Callable[[], None]:
    """Set in the current context what ``ctx`` changed; return how to undo it."""
    tokens: list[tuple[contextvars.ContextVar[Any], contextvars.Token[Any]]] = []
    for var, value in ctx.items():
        try:
            if var.get() is value:
                continue
        except LookupError:
            pass
        tokens.append((var, var.set(value)))

    def reset() -> None:
        while tokens:
            var, token = tokens.pop()
            var.reset(token)

    return reset
