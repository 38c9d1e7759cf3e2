"""When anyio's primitives are made cross-loop: while at least one grid is open.

Why a hook rather than an import-time patch: loopgrid changes nothing on
import, and a process that never opens a grid keeps anyio exactly as it is.
Each :class:`~loopgrid.Grid` calls :func:`grid_started` once its workers run
and :func:`grid_stopped` once they have stopped; the first start patches
anyio's asyncio backend (:mod:`.anyio`), the last stop restores it.

anyio is optional here in the sense that nothing imports it before it is
used: if it is not imported when a grid starts, a finder on ``sys.meta_path``
waits for ``import anyio`` (in a task, say) and patches right after it, so a
late import is covered too. The finder is removed with the patch.

Thread ownership: ``_users``, the finder's presence and the patch are changed
under ``_lock`` only (grids start and stop on any thread; the import that
triggers the finder runs on whichever thread imports anyio, and takes the
lock too, after anyio's own import has finished).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

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


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs :func:`_patch` right after ``anyio`` is imported (first import only).

    It finds ``anyio`` with the other finders, then stands in for its loader:
    the real loader executes the module, then the patch is applied.
    """

    def __init__(self) -> None:
        self._busy = threading.local()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "anyio" or getattr(self._busy, "on", False):
            return None
        self._busy.on = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.on = False
        if spec is None or spec.loader is None:
            return None
        spec.loader_state = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        real: importlib.abc.Loader = spec.loader_state
        return real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        assert spec is not None
        real: importlib.abc.Loader = spec.loader_state
        # anyio's own code sees its real loader.
        spec.loader = module.__loader__ = real
        real.exec_module(module)
        with _lock:
            if _finder in sys.meta_path:
                sys.meta_path.remove(_finder)
            if _users > 0:
                _patch()


_finder = _AfterImport()
