"""``app.state`` per loop, for Starlette and FastAPI apps.

Why: the common way to keep a database connection or a client is to create it
in the lifespan and put it on ``app.state`` (``app.state.db = await
connect()``); handlers then read ``request.app.state.db``. ``app`` is one
object, so when every loop runs the lifespan (``lifespan="loop"``) each run
would overwrite the one ``state``, and requests on every loop would share the
objects of the loop that wrote last: bound to that loop, they fail elsewhere.

:func:`install` replaces the ``state`` of the app (and of each app it wraps
through an ``.app`` attribute, as middleware do) by a per-loop view of the
same class: each event loop reads and writes a layer of its own, over the
values the state held before serving began (set at import), which every loop
shares. So a lifespan run on worker *i* fills worker *i*'s layer, and a
request on worker *i* sees just that - as each process of ``uvicorn
--workers N`` has its own. Code with no running loop (a sync endpoint run in
a thread pool) sees the layer of the loop whose request it serves: the server
marks each request with its loop (:func:`enter`), in a context variable that
``anyio.to_thread`` and ``run_in_executor`` callers carry into the thread.
Code with neither sees the shared values only. :func:`install` returns the
function that puts the original objects back.

Thread ownership: a loop's layer is created and written by code running on
that loop (or in the thread pool calls of its requests); the shared values
are written only before serving starts (the view then treats them as
read-only: a write with no loop in sight goes to them, as before).
"""

from __future__ import annotations

from asyncio.events import AbstractEventLoop, _get_running_loop
from collections import ChainMap
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from ..looplocal import LoopLocal

__all__ = ["enter", "install", "state_values"]

#: The loop whose requests the running code serves (see the docstring).
_serving_loop: ContextVar[AbstractEventLoop | None] = ContextVar(
    "loopgrid_state_loop", default=None
)


def enter() -> None:
    """Mark the running code (and what copies its context) as serving the running loop.

    Once per request, so the mark is set only where it is not there yet: a
    loop's own server marks the context it serves from (``uvicornserver.py``),
    which the tasks of its requests copy.
    """
    loop = _get_running_loop()
    if _serving_loop.get() is not loop:
        _serving_loop.set(loop)


def _chain(app: Any) -> list[Any]:
    """The app and the apps it wraps (``.app``, as middleware keep them)."""
    found = []
    seen: set[int] = set()
    obj = app
    while obj is not None and id(obj) not in seen and len(seen) < 16:
        seen.add(id(obj))
        found.append(obj)
        obj = getattr(obj, "app", None)
    return found


def _holders(app: Any) -> list[Any]:
    """The apps of the chain with a Starlette ``state``."""
    return [obj for obj in _chain(app) if _is_starlette_state(getattr(obj, "state", None))]


def _is_starlette_state(value: Any) -> bool:
    return any(
        cls.__name__ == "State" and cls.__module__.startswith("starlette.")
        for cls in type(value).__mro__
    )


def state_values(app: Any) -> list[tuple[str, Any]]:
    """``("app.state.NAME", value)`` for each value that every loop shares on
    the ``state`` of ``app`` and of the apps it wraps: a Starlette state not
    made per loop, or the ``state`` of another framework (a mapping, or an
    object's attributes), which loopgrid cannot make per loop."""
    out = []
    for holder in _chain(app):
        state = getattr(holder, "state", None)
        if state is None or callable(state) or type(state) in _classes.values():
            continue
        if _is_starlette_state(state):
            values = dict(state._state)
        elif isinstance(state, Mapping):
            values = dict(state)
        elif hasattr(state, "__dict__"):
            values = dict(vars(state))
        else:
            continue
        prefix = "app.state" if holder is app else f"{type(holder).__qualname__}.state"
        out += [(f"{prefix}.{name}", value) for name, value in values.items()]
    return out


def install(app: Any) -> Callable[[], None]:
    """Give each loop its own ``app.state`` (see the docstring); returns the undo."""
    undo: list[tuple[Any, Any]] = []
    for holder in _holders(app):
        original = holder.state
        holder.state = _per_loop_class(type(original))(dict(original._state))
        undo.append((holder, original))

    def restore() -> None:
        for holder, original in undo:
            holder.state = original

    return restore


_classes: dict[type, type] = {}


def _per_loop_class(base: type) -> type:
    cls = _classes.get(base)
    if cls is None:
        cls = _classes[base] = _make_per_loop_class(base)
    return cls


def _make_per_loop_class(base: type) -> type:
    class PerLoopState(base):  # type: ignore[misc]
        """A Starlette ``State`` whose values are per event loop (loopgrid.web.appstate)."""

        def __init__(self, shared: dict[str, Any]) -> None:
            object.__setattr__(self, "_shared", shared)
            object.__setattr__(
                self, "_layers", LoopLocal(lambda: ChainMap({}, shared), name="app.state")
            )

        @property
        def _state(self) -> Any:
            if _get_running_loop() is not None:
                return self._layers.value
            loop = _serving_loop.get()
            layer = self._layers.for_loop(loop) if loop is not None else None
            return self._shared if layer is None else layer

    PerLoopState.__qualname__ = PerLoopState.__name__ = f"PerLoop{base.__name__}"
    return PerLoopState
