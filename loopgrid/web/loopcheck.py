"""The server's startup check: no object bound to one loop shared by all of them.

Why: an object bound to the loop that made or first used it (a lock with
waiters, a client's pooled connections) fails on every other loop, and only
when two requests meet - under load, now and then. ``loopgrid.loopbound``
says which objects are such and where an app keeps them; this module decides,
for one server, what to do about each, before the first connection:

* before the lifespan runs (:meth:`LoopCheck.before_startup`): the module
  globals of the app's code and the values put on its ``app.state`` at import
  are shared by every loop whatever the lifespan mode; each is made safe for
  every loop where ``loopgrid.integrations`` knows how (a pool per loop, a
  cross-loop primitive underneath), and refused otherwise;
* after it ran (:meth:`LoopCheck.after_startup`): what the lifespan put in a
  state every loop shares (the lifespan state and ``app.state`` with
  ``lifespan="shared"``; another framework's ``app.state`` in any mode) is
  refused, since making it per loop is the per-loop lifespan's job.

A refusal is a :class:`~loopgrid.web.StartupError` naming every object and
its fix; with ``loop_check=False`` the findings are logged as warnings and the
server serves. Runs on the server's controlling thread.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import integrations, logs, loopbound
from . import appstate
from .lifespan import StartupError

__all__ = ["LoopCheck"]

#: The fix for what a shared lifespan made, by mode.
_PER_LOOP = {
    "shared": (
        "serve with lifespan='loop' (--lifespan loop, the default), where each loop's "
        "lifespan makes its own"
    ),
    "other": (
        "this app.state is one object for every loop (only Starlette's is made per "
        "loop): keep it in the lifespan state (yield {...} from the lifespan, read "
        "request.state), which is per loop"
    ),
}


class LoopCheck:
    """The check of one server's app, served by ``loops`` (a description such
    as "3 loops (2 workers, 1 front)") of ``server``."""

    def __init__(self, app: Any, server: object, loops: int, loops_text: str, strict: bool) -> None:
        self._app = app
        self._server = server
        self._loops = loops
        self._loops_text = loops_text
        self._strict = strict
        self._checked: set[int] = set()  # ids of the objects seen before startup

    def before_startup(self) -> None:
        """Adapt or refuse what the app made at import (see the module docstring)."""
        if self._loops < 2:
            return
        refused = []
        found_all = loopbound.scan_modules(loopbound.app_modules(self._app))
        found_all += loopbound.scan(appstate.state_values(self._app))
        for found in found_all:
            self._checked.add(id(found.obj))
            label = integrations.adapt(found.obj) if found.adaptable else None
            if label is None:
                refused.append(found)
            else:
                logs.info("web.per_loop", object=found.where, made=label)
        self._refuse(refused, "The app's modules hold")

    def after_startup(self, mode: str, state: dict[str, Any]) -> None:
        """Refuse what the lifespan put in a state every loop shares; ``state``
        is the lifespan state with ``mode == "shared"`` (else ignored)."""
        if self._loops < 2:
            return
        values = appstate.state_values(self._app)
        if mode == "shared":
            values += [(f"the lifespan state[{k!r}]", v) for k, v in state.items()]
        per_loop = _PER_LOOP["shared" if mode == "shared" else "other"]
        refused = [
            dataclasses.replace(
                f, fix=per_loop if f.fix == loopbound.FIX_CLIENT else f"{per_loop}; or {f.fix}"
            )
            for f in loopbound.scan(values)
            if id(f.obj) not in self._checked
        ]
        self._refuse(refused, "The app's state, shared by every loop, holds")

    def _refuse(self, found: list[loopbound.Finding], intro: str) -> None:
        if not found:
            return
        lines = "\n".join(f"  - {f}" for f in found)
        message = (
            f"{intro} objects bound to one event loop, used by all {self._loops_text} of "
            f"{self._server!r}: a request on any other loop would fail with asyncio's "
            f"'bound to a different event loop'.\n{lines}\n"
            "Or pass loop_check=False (--no-loop-check) to serve anyway."
        )
        if self._strict:
            raise StartupError(message)
        for f in found:
            logs.warning("web.loop_bound", object=f.where, what=f.what, fix=f.fix)
