"""Run a callback right after a module is first imported, whoever imports it.

Why: ``import loopgrid`` imports nothing optional, yet some optional modules
need one step from loopgrid the moment they exist, before any other code can
use them: anyio's primitives are made cross-loop while a grid is open
(``integrations/anyio_hook.py``), and structlog's registry of context variables
learns loopgrid's four task keys (``logs.py``). A finder on ``sys.meta_path``
waits for that import, lets the real loader execute the module, then calls
the callback; whoever installed it removes it (the callback may do so).

It implements the finder and loader protocols without subclassing
``importlib.abc``'s classes: importing ``importlib.abc`` imports
``importlib.resources`` and, through it, ``tempfile``, ``shutil``, ``pathlib``
and the compression modules, a third of what asyncio costs to import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec

__all__ = ["AfterImport"]


class AfterImport:
    """Calls ``callback(module)`` right after ``fullname`` is executed.

    It finds the module with the other finders, then stands in for its loader:
    the real loader executes the module, then the callback runs. Each import
    that gets as far as a finder (the first, or one after the module was
    removed from ``sys.modules``) calls it again.
    """

    def __init__(self, fullname: str, callback: Callable[[ModuleType], None]) -> None:
        self.fullname = fullname
        self.callback = callback
        self._busy = threading.local()

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname != self.fullname or getattr(self._busy, "on", False):
            return None
        import importlib.util

        self._busy.on = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.on = False
        if spec is None or spec.loader is None:
            return None
        spec.loader_state = spec.loader
        spec.loader = cast("Loader", self)  # the protocol, not the ABC (see above)
        return spec

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        real: Any = spec.loader_state
        module: ModuleType | None = real.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        assert spec is not None
        real: Any = spec.loader_state
        # The module's own code sees its real loader.
        spec.loader = module.__loader__ = real
        real.exec_module(module)
        self.callback(module)
