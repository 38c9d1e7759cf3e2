"""When anyio's primitives are made cross-loop: while at least one grid is open.

Why a hook rather than an import-time patch: loopgrid changes nothing on
import, and a process that never opens a grid keeps anyio exactly as it is.
Each :class:`~loopgrid.Grid` calls :func:`grid_started` once its workers run
and :func:`grid_stopped` once they have stopped; the first start patches
anyio's asyncio backend (:mod:`.anyio`), the last stop restores it.

anyio is optional here in the sense that nothing imports it before it is
used: if it is not imported when a grid starts, a finder on ``sys.meta_path``
(``_afterimport.py``) waits for ``import anyio`` (in a task, say) and patches
right after it, so a late import is covered too. The finder is removed with the patch.

Thread ownership: ``_users``, the finder's presence and the patch are changed
under ``_lock`` only (grids start and stop on any thread; the import that
triggers the finder runs on whichever thread imports anyio, and takes the
lock too, after anyio's own import has finished).
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType

from .._afterimport import AfterImport

__all__ = ["grid_started", "grid_stopped"]

_lock = threading.RLock()
#: Grids started and not yet stopped; under _lock.
_users = 0


def grid_started() -> None:
    """A grid's workers run: make anyio's primitives cross-loop (now or at its import)."""
    global _users
    with _lock:
        _users += 1
        if _users == 1:
            if "anyio" in sys.modules:
                _patch()
            else:
                sys.meta_path.insert(0, _finder)


def grid_stopped() -> None:
    """A grid's workers stopped: the last one restores anyio."""
    global _users
    with _lock:
        _users -= 1
        if _users == 0:
            if _finder in sys.meta_path:
                sys.meta_path.remove(_finder)
            if "anyio" in sys.modules:
                from . import anyio as _anyio

                _anyio.unpatch()


def _patch() -> None:
    from . import anyio as _anyio

    _anyio.patch()


def _after_anyio_import(module: ModuleType) -> None:
    with _lock:
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        if _users > 0:
            _patch()


_finder = AfterImport("anyio", _after_anyio_import)
