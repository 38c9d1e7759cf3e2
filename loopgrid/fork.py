"""What the child of ``fork()`` does with the grids of its parent: refuse them.

Why: ``fork()`` copies the process's memory but only the thread that called
it. A grid's workers, its monitor and its locks' owners stay behind in the
parent; the child's copy of the grid looks open, takes spawns that never run,
and its ``close()`` waits for threads that do not exist. So, in the child,
every grid of the parent is marked as forked (``_forked_from``: the parent's
pid): spawning on it, waiting on one of its unfinished handles, and pausing it
raise :class:`~loopgrid.GridClosedError` naming the fix, and ``close()`` only
marks it closed. The fix is to make grids after the fork, in the child, or to
start processes with the ``"spawn"`` (or ``"forkserver"``) start method.

The hook is registered (``os.register_at_fork``) when the first grid starts,
not on import. Thread ownership: ``_grids`` is a WeakSet added to by each
grid's constructor under ``_lock``; the hook runs in the child, where only
the forking thread exists, and replaces each grid's locks (a lock another
thread held at the fork would stay held for ever in the child).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from .errors import GridClosedError

__all__ = ["forked_error", "track"]

_lock = threading.Lock()
_grids: weakref.WeakSet[Any] = weakref.WeakSet()
_hooked = False


def track(grid: Any) -> None:
    """Watch ``grid`` (a started grid) for a fork of this process."""
    global _hooked
    with _lock:
        _grids.add(grid)
        if not _hooked and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_in_child)
            _hooked = True


def _in_child() -> None:
    global _lock
    _lock = threading.Lock()
    parent = os.getppid()
    for grid in list(_grids):
        grid._mark_forked(parent)
    _grids.clear()


def forked_error(grid: Any, what: str) -> GridClosedError:
    """The error for ``what`` done, in a child of ``fork()``, on the parent's ``grid``."""
    return GridClosedError(
        f"{what}: {grid!r} belongs to process {grid._forked_from}, of which this process "
        "is a fork(): its worker threads are not here. Make grids after the fork, in "
        "the child, or start processes with the 'spawn' start method "
        "(multiprocessing.get_context('spawn'))"
    )
