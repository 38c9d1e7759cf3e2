"""``@loopgrid.task``: an async function that also knows how to spawn itself.

The decorated object is still the function: calling it returns the plain
coroutine, so ``await fetch(url)`` runs inline as before. ``fetch.spawn(url)``
schedules it on the current grid with the priority and name given to the
decorator, and returns a :class:`~loopgrid.Handle`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .grid import Grid, spawn
from .handle import Handle
from .priority import Priority, check_priority

__all__ = ["TaskFunction", "task"]

P = ParamSpec("P")
T = TypeVar("T")


class TaskFunction(Generic[P, T]):
    """An async function wrapped by ``@loopgrid.task``."""

    def __init__(
        self, fn: Callable[P, Coroutine[Any, Any, T]], priority: Priority, name: str | None
    ) -> None:
        self.fn = fn
        self.priority = priority
        self.name = fn.__qualname__ if name is None else name
        functools.update_wrapper(self, fn)
        # So that spawn(), asyncio and inspect take it for the async function
        # it stands for: 3.12 has a marker; before it, asyncio's own.
        if hasattr(inspect, "markcoroutinefunction"):
            inspect.markcoroutinefunction(self)
        else:
            self._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
        return self.fn(*args, **kwargs)

    def spawn(self, *args: Any) -> Handle[T]:
        """Spawn ``fn(*args)`` on the current grid (from code running on a grid)."""
        return spawn(self.fn, *args, priority=self.priority, name=self.name)

    def spawn_on(self, grid: Grid, *args: Any) -> Handle[T]:
        """Spawn ``fn(*args)`` on ``grid``, from any thread or loop."""
        return grid.spawn(self.fn, *args, priority=self.priority, name=self.name)

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return TaskFunction(self.fn.__get__(obj, objtype), self.priority, self.name)

    def __repr__(self) -> str:
        return f"<loopgrid.task {self.name} priority={self.priority.name}>"


@overload
def task(fn: Callable[P, Coroutine[Any, Any, T]], /) -> TaskFunction[P, T]: ...


@overload
def task(
    *, priority: Priority | int = ..., name: str | None = ...
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], TaskFunction[P, T]]: ...


def task(
    fn: Any = None, /, *, priority: Priority | int = Priority.NORMAL, name: str | None = None
) -> Any:
    """Decorate an async function so that ``fn.spawn(*args)`` spawns it.

    Usable bare (``@loopgrid.task``) or with options
    (``@loopgrid.task(priority=Priority.HIGH, name="fetch")``).
    """
    prio = check_priority(priority)
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {name!r}")

    def wrap(f: Any) -> TaskFunction[Any, Any]:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"@loopgrid.task needs an async function, got {f!r}")
        return TaskFunction(f, prio, name)

    return wrap if fn is None else wrap(fn)
