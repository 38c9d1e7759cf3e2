"""Debug checks of the thread-ownership rules, in the spirit of Go's ``assertLockHeld``.

Why: which thread may call what, and which lock it must hold, is written in
each module's docstring ("owner thread only", "under the grid's ``_control``
lock"); a call that breaks such a rule corrupts state silently, and shows, if
ever, as a rare hang under load. So the methods those rules cover are marked
where they are defined (:func:`owner_thread`, :func:`under_control`), and
:func:`enable` wraps every marked method with a check that raises
:class:`AssertionError` naming the rule, the method and the calling thread.

Marking costs nothing: the decorators only record the method and return it
unchanged, so a program that never calls :func:`enable` runs the plain
methods. loopgrid's test suite enables the checks (``tests/conftest.py``)
before any grid starts; so may a program's own tests.

Thread ownership: the registry is written while modules are imported (under
the import lock) and read by :func:`enable`, which is meant to be called once,
before grids start, from one thread.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .thisthread import this_thread

__all__ = ["enable", "enabled", "owner_thread", "under_control"]

F = TypeVar("F", bound=Callable[..., Any])

#: (method, what the rule says, the check) for every marked method.
_MARKED: list[tuple[Callable[..., Any], str, Callable[[Any], bool]]] = []
_enabled = False


def _on_own_thread(worker: Any) -> bool:
    return this_thread.worker is worker


def _holds_control(obj: Any) -> bool:
    return bool(obj.grid._control._is_owned())


def owner_thread(method: F) -> F:
    """Mark a ``Worker`` method that only that worker's own thread may call."""
    _MARKED.append((method, "on the worker's own thread", _on_own_thread))
    return method


def under_control(method: F) -> F:
    """Mark a method of an object with a ``grid`` that must hold ``grid._control``."""
    _MARKED.append((method, "with the grid's _control lock held", _holds_control))
    return method


def enabled() -> bool:
    """Whether :func:`enable` has wrapped the marked methods."""
    return _enabled


def enable() -> None:
    """Check every marked method's rule at each call from now on (idempotent).

    Methods already bound before this call (a callback already scheduled)
    keep running unchecked.
    """
    global _enabled
    if _enabled:
        return
    for method, rule, check in _MARKED:
        owner = _owner_class(method)
        setattr(owner, method.__name__, _checked(method, rule, check))
    _enabled = True


def _owner_class(method: Callable[..., Any]) -> type:
    """The class whose body defined ``method`` (a top-level class of its module)."""
    class_name, _, name = method.__qualname__.rpartition(".")
    owner = getattr(sys.modules[method.__module__], class_name)
    assert isinstance(owner, type) and owner.__dict__.get(name) is method, method
    return owner


def _checked(method: Callable[..., Any], rule: str, check: Callable[[Any], bool]) -> Any:
    @functools.wraps(method)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not check(self):
            raise AssertionError(
                f"{method.__qualname__}() must be called {rule}; it was called on "
                f"thread {threading.current_thread().name!r} (see {method.__module__}'s "
                "docstring, 'Thread ownership')"
            )
        try:
            return method(self, *args, **kwargs)
        finally:
            # This frame may outlive the call: on 3.12+ the traceback of a task
            # that fails in its eager first step links back to the frames that
            # started it (see Worker._start), and the arguments include its
            # handle, which must be freed without the cycle collector.
            del args, kwargs

    return checked
