"""What crosses a process boundary: a task's function and arguments, its outcome.

A task travels as bytes: ``(fn, args)`` pickled with cloudpickle (Ray's own
copy), which pickles module-level functions by reference and lambdas and
closures by value. It is pickled once, at spawn time, on the spawner's side,
rather than when the task is sent: the error then points at the ``spawn`` line
that passed the bad value, the arguments are the values they had at spawn (a
process boundary cannot share later mutations anyway), and a pending task
costs the driver its bytes only.

An outcome travels as ``(True, value)`` or ``(False, exception)``, so that an
exception raised by a task reaches the handle as itself rather than wrapped in
Ray's ``RayTaskError``. An exception that cannot be pickled is replaced by a
``RuntimeError`` that carries its type, message and traceback text.

Pure functions: no state, any thread or process.
"""

from __future__ import annotations

import pickle
import traceback
from typing import Any

__all__ = ["loads", "pickled", "portable"]


def _dumps() -> Any:
    from ray import cloudpickle

    return cloudpickle.dumps


def pickled(fn: Any, args: tuple[Any, ...], where: str = "RayGrid.spawn()") -> bytes:
    """``(fn, args)`` as bytes, or a TypeError naming the one that does not pickle."""
    dumps = _dumps()
    try:
        return bytes(dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        what = f"the function {fn!r}"
        for i, arg in enumerate(args):
            try:
                dumps(arg)
            except Exception:
                what = f"argument {i} ({arg!r})"
                break
        raise TypeError(
            f"{where}: {what} cannot be pickled, so it cannot be sent to a worker "
            f"process: {type(exc).__name__}: {exc}. Pass values that pickle (module-level "
            "functions, plain data), or create the resource inside the task"
        ) from exc


def loads(payload: bytes) -> Any:
    """The ``(fn, args)`` of :func:`pickled` (cloudpickle's output is plain pickle)."""
    return pickle.loads(payload)


def portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError describing it."""
    try:
        pickle.loads(_dumps()(exc))
    except Exception as why:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return RuntimeError(
            f"the task raised {type(exc).__qualname__}: {exc}, which cannot be pickled back "
            f"to the driver ({why}); its traceback on the worker:\n{text}"
        )
    return exc
