"""The worker side: a Ray async actor that runs tasks on its event loop.

This module runs in the actor's process. Ray gives an async actor one event
loop on one thread and runs every ``async def`` method on it, so everything
here has a single owner, that loop: ``_INDEX`` (which worker of which grid the
process is, for :func:`worker_index`) is written once in ``__init__`` and
read by tasks on the same loop.

The actor has no queue of its own. The driver (``grid.py``) keeps every
pending task and sends one to an actor only when the actor has a free slot,
so a task that reaches the actor starts at once. That is what makes an actor's
death lose nothing pending: the pending tasks never left the driver.

A task arrives as bytes: the driver pickled ``(fn, args)`` with cloudpickle at
spawn time (see ``RayGrid.spawn`` for why then). The outcome goes back as
``(True, value)`` or ``(False, exception)``, so that an exception raised by
the task reaches the handle as itself and not wrapped in Ray's
``RayTaskError``; an exception that cannot be pickled is replaced by a
``RuntimeError`` carrying its type, message and traceback text.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import traceback
from typing import Any

__all__ = ["GridActor", "worker_index"]

_INDEX: tuple[str, int] | None = None


def worker_index() -> int | None:
    """The index of the worker whose process runs the caller, None outside one."""
    return None if _INDEX is None else _INDEX[1]


def _loads(payload: bytes) -> Any:
    return pickle.loads(payload)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError describing it."""
    from ray import cloudpickle

    dumps: Any = cloudpickle.dumps
    try:
        pickle.loads(dumps(exc))
    except Exception as why:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return RuntimeError(
            f"the task raised {type(exc).__qualname__}: {exc}, which cannot be pickled back "
            f"to the driver ({why}); its traceback on the worker:\n{text}"
        )
    return exc


class GridActor:
    """One worker of a :class:`~loopgrid.ray.RayGrid` (made a Ray actor by the grid)."""

    def __init__(self, grid: str, index: int) -> None:
        global _INDEX
        _INDEX = (grid, index)
        self._grid = grid
        self._index = index
        self._never: asyncio.Event | None = None

    async def run(self, payload: bytes) -> tuple[bool, Any]:
        """Run one task to its end on this actor's loop; see the module doc."""
        fn, args = _loads(payload)
        try:
            value = await fn(*args)
        except asyncio.CancelledError:
            raise  # Ray reports it as TaskCancelledError: the handle ends cancelled
        except Exception as exc:
            return False, _portable(exc)
        return True, value

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
