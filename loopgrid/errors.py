"""Exceptions raised by loopgrid.

Every error names the value that was wrong and what was expected, so that a
traceback alone tells the user what to fix.
"""

from __future__ import annotations

import asyncio
import math
from typing import NoReturn

__all__ = [
    "DeadlockError",
    "GridClosedError",
    "LoopgridError",
    "NotOnGridError",
    "WorkerDiedError",
    "WouldBlockError",
    "check_seconds",
]


class LoopgridError(Exception):
    """Base class of the errors loopgrid raises itself."""


class DeadlockError(LoopgridError, RuntimeError):
    """A wait would never end: the waiter is part of a wait-for cycle.

    Raised in the task whose ``await`` (of a handle, or of a loopgrid lock)
    would close the cycle, instead of letting every task on it hang. The
    message names each task on the cycle and what it waits for.
    """


class GridClosedError(LoopgridError, RuntimeError):
    """The grid is closed (or closing) and does not take new tasks."""


class NotOnGridError(LoopgridError, RuntimeError):
    """A call that needs a current grid or worker was made outside of one.

    ``loopgrid.spawn()``, ``current_grid()`` and ``current_worker()`` find the grid
    through the calling thread: they work in code running on a grid worker.
    Elsewhere, hold a :class:`~loopgrid.Grid` and call ``grid.spawn()``.
    """


class WouldBlockError(LoopgridError, asyncio.InvalidStateError):
    """A blocking wait was asked for on a thread that runs an event loop.

    Blocking there would freeze that loop (and deadlock it if the awaited task
    needs it), so loopgrid refuses: ``await`` the handle instead. It subclasses
    :class:`asyncio.InvalidStateError`, which is what ``Future.result()`` raises
    on a future that is not done.
    """


class WorkerDiedError(LoopgridError, RuntimeError):
    """A worker died: a task was running on a worker process that died
    (``loopgrid.ray``), or a spawn named a grid worker whose loop died.

    On a :class:`~loopgrid.Grid`, a worker dies when an exception asyncio lets
    out of a loop (``SystemExit`` or ``KeyboardInterrupt`` from a callback)
    stops its loop: the grid goes on with the others, tasks pinned to the dead
    worker end cancelled with a message naming it, and a spawn pinned to it
    raises this error.

    Only pending tasks can be saved when a worker dies: they never left the
    driver, so they go back to the queue. A task that was running there took
    its state down with the process; it fails with this error, whose message
    names the worker, unless it was spawned with retries left (then it starts
    again elsewhere, from the beginning).
    """


#: The message of a task's CancelledError when the grid's close cancelled it.
CLOSED_MSG = "cancelled by the grid's close(cancel=True)"


def check_seconds(name: str, value: object, *, zero: bool = False) -> float:
    """``value`` as a float number of seconds, > 0 (>= 0 with ``zero``).

    Raises ValueError naming ``name`` and the value otherwise; bools are not
    numbers here. Callers that accept None test for it first.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value >= 0 if zero else value > 0)
    ):
        bound = ">= 0" if zero else "> 0"
        raise ValueError(f"{name} must be a number of seconds {bound}, got {value!r}")
    return float(value)


def check_timeout(value: object) -> float | None:
    """A blocking call's ``timeout``: None, or a number of seconds >= 0.

    TypeError for what is not a number (``True`` is not 1 s here, nor is
    ``"1"``), ValueError for NaN and negative values, each naming the value.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be None or a number of seconds, got {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"timeout must be None or a number of seconds >= 0, got {value!r}")
    return float(value)


def refuse_keywords(what: str, fn: object, kwargs: dict[str, object]) -> NoReturn:
    """Keyword arguments given to a spawn are not passed on: say how to pass
    them (closing a coroutine object given, so that it does not also warn)."""
    if asyncio.iscoroutine(fn):
        fn.close()
    names = ", ".join(f"{k}=..." for k in kwargs)
    name = getattr(fn, "__name__", repr(fn))
    raise TypeError(
        f"{what}() takes the task's arguments by position only, got {names}: pass "
        f"functools.partial({name}, {names}) to give them by keyword"
    )
