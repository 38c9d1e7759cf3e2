"""The worker side: a Ray async actor that runs tasks on its event loop.

This module runs in the actor's process. Ray gives an async actor one event
loop on one thread and runs every ``async def`` method on it, so everything
here has a single owner, that loop: ``_ACTOR`` (the process's actor, for
:func:`worker_index` and :func:`spawn`) is written once in ``__init__``; the
actor's outbox and its table of waiting futures are touched only by methods
and tasks on that loop.

The actor has no run queue of its own. The driver (``grid.py``) keeps every
pending task and sends one to an actor only when the actor has a free slot,
so a task that reaches the actor starts at once. That is what makes an actor's
death lose nothing pending: the pending tasks never left the driver.

A task running here spawns with :func:`spawn`: the request goes into the
actor's outbox, which the driver long-polls (one ``outbox()`` call pending
per worker), so it becomes a pending task in *this worker's local queue* in
the driver, stealable by idle workers, exactly as a spawn from a worker
thread is in the in-process grid. The driver sends the child's outcome back
with ``deliver()``, which resolves the future :func:`spawn` returned.

Requests and task outcomes travel in different calls, which Ray does not
order: a parent's outcome could reach the driver before its last spawn, and a
grid closing on that outcome would drop the child. So requests are numbered,
``run`` returns the number of the last request made so far, and the driver
holds a finished task's outcome until it has received every request up to
that number (``RayGrid._resolve``).
Payloads and outcomes: see ``payload.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ..priority import Priority, check_priority
from .payload import loads, pickled, portable

__all__ = ["GridActor", "spawn", "worker_index"]

T = TypeVar("T")

#: One spawn request: (token, payload, priority, name), or (token, None, 0, None)
#: to cancel the child spawned under that token.
Request = tuple[int, "bytes | None", int, "str | None"]
#: One outcome: (token, "ok" | "error" | "cancelled", value, exception or message).
Outcome = tuple[int, str, Any]

_ACTOR: GridActor | None = None


def worker_index() -> int | None:
    """The index of the worker whose process runs the caller, None outside one."""
    return None if _ACTOR is None else _ACTOR._index


def spawn(
    fn: Callable[..., Coroutine[Any, Any, T]],
    /,
    *args: Any,
    priority: Priority | int = Priority.NORMAL,
    name: str | None = None,
) -> asyncio.Future[T]:
    """Spawn a task on the grid from a task running on one of its workers.

    The child is queued on this worker's local queue in the driver, where idle
    workers may steal it. Returns an :class:`asyncio.Future` of this worker's
    loop that resolves with the child's result or exception; cancelling it
    cancels the child. ``fn`` and ``args`` must pickle, as for
    :meth:`RayGrid.spawn`. Raises :class:`~loopgrid.NotOnGridError` outside a
    worker process.
    """
    actor = _ACTOR
    if actor is None:
        from ..errors import NotOnGridError

        raise NotOnGridError(
            f"loopgrid.ray.spawn({fn!r}) was called outside a RayGrid worker process; "
            "hold the RayGrid and call grid.spawn() there"
        )
    if not callable(fn):
        raise TypeError(f"loopgrid.ray.spawn() needs an async function, got {fn!r}")
    priority = check_priority(priority)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {name!r}")
    return actor._spawn(pickled(fn, args, "loopgrid.ray.spawn()"), int(priority), name)


class GridActor:
    """One worker of a :class:`~loopgrid.ray.RayGrid` (made a Ray actor by the grid)."""

    def __init__(self, grid: str, index: int) -> None:
        global _ACTOR
        _ACTOR = self
        self._grid = grid
        self._index = index
        self._tokens = itertools.count(1)
        self._out: list[Request] = []
        #: Requests posted so far (see the module doc: outcomes wait for them).
        self._posted = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._out_ready: asyncio.Event | None = None
        self._never: asyncio.Event | None = None

    async def run(self, payload: bytes) -> tuple[bool, Any, int]:
        """Run one task to its end on this actor's loop; see the module doc.

        Returns (returned normally, value or exception, requests posted so far).
        """
        fn, args = loads(payload)
        try:
            value = await fn(*args)
        except asyncio.CancelledError:
            raise  # Ray reports it as TaskCancelledError: the handle ends cancelled
        except Exception as exc:
            return False, portable(exc), self._posted
        return True, value, self._posted

    async def info(self) -> dict[str, Any]:
        """Where this worker runs, for ``stats()`` and error messages."""
        import ray

        ctx = ray.get_runtime_context()
        return {"pid": os.getpid(), "node": ctx.get_node_id(), "actor": ctx.get_actor_id()}

    async def watch(self) -> None:
        """Never returns: the driver keeps one call pending to learn of a death at once."""
        if self._never is None:
            self._never = asyncio.Event()
        await self._never.wait()

    # -- spawns from tasks running here ------------------------------------------------

    def _event(self) -> asyncio.Event:
        if self._out_ready is None:
            self._out_ready = asyncio.Event()
        return self._out_ready

    def _post(self, request: Request) -> None:
        self._out.append(request)
        self._posted += 1
        self._event().set()

    def _spawn(self, payload: bytes, priority: int, name: str | None) -> asyncio.Future[Any]:
        token = next(self._tokens)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[token] = fut
        fut.add_done_callback(lambda f: self._forget(token, f))
        self._post((token, payload, priority, name))
        return fut

    def _forget(self, token: int, fut: asyncio.Future[Any]) -> None:
        if self._waiting.pop(token, None) is not None and fut.cancelled():
            self._post((token, None, 0, None))  # the awaiter gave up: cancel the child

    async def outbox(self) -> tuple[list[Request], int]:
        """The requests made since the last call (waits for one), and how many so far."""
        ready = self._event()
        while not self._out:
            ready.clear()
            await ready.wait()
        out, self._out = self._out, []
        return out, self._posted

    async def deliver(self, outcomes: list[Outcome]) -> None:
        """Resolve the futures of children that finished (called by the driver)."""
        for token, kind, value in outcomes:
            fut = self._waiting.pop(token, None)
            if fut is None or fut.done():
                continue
            if kind == "ok":
                fut.set_result(value)
            elif kind == "error":
                fut.set_exception(value)
            else:
                fut.cancel(value)
