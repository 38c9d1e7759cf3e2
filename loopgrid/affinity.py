"""Loop-affinity errors explained: whose loop an object is bound to, who used it, the fix.

Why: asyncio objects belong to one event loop. A lock, event, semaphore,
condition, barrier or queue binds itself to the loop that first needs it to
wait; a future, a task, a transport, and with them most clients and connection
pools (aiohttp, httpx/httpcore, database drivers) belong to the loop that made
them. Used from another loop they fail with ``RuntimeError: <Lock> is bound to
a different event loop``, ``Task ... got Future ... attached to a different
loop`` and the like. On one loop that never happens; on a grid every worker is
a loop of its own, so code that shares such an object (a module-level client,
a lock made at import time, app state filled once at startup) works on the
worker that first used it and fails, intermittently, on every other. asyncio's
message says what went wrong, not where nor what to do about it.

So when a grid task ends with such an error, :func:`annotate` adds a note to
the exception (PEP 678 ``add_note``, as CPython and Trio explain their own
errors; on 3.10 an ``__notes__`` list, which the ``exceptiongroup`` backport
prints): the loop the object is bound to (named when a frame of the traceback
belongs to it: the loop of a ``self`` that is an asyncio loop-bound object, a
future or the loop itself; no other local is looked at), the worker that used
it, and the fix. The note travels with the exception, so whatever shows the
traceback (the unretrieved-error log, uvicorn's "Exception in ASGI
application", ``loopgrid run``, the pytest plugin) shows it; nothing is logged
here. An exception gets the note once, however many tasks it passes through
(a handle's exception re-raised by whoever awaits it, or wrapped by them).

Cost: :func:`annotate` runs only on the failure path of a grid task
(``driver.drive``). For any other exception it is an ``isinstance`` and a
substring check (per exception in its ``__cause__``/``__context__`` chain);
the traceback is walked only for a loop-affinity error.

Loop names: each worker names its loop with :func:`name_loop` ("worker 1 of
grid 'web'"). Names are kept in a :class:`weakref.WeakKeyDictionary`, written
once per worker by its own thread and read by any; a loop nobody named is
described by its ``repr``.
"""

from __future__ import annotations

import asyncio
import sys
import types
import weakref
from asyncio.events import _get_running_loop
from asyncio.mixins import _LoopBoundMixin

from .thisthread import this_thread

__all__ = ["annotate", "describe_loop", "explain", "name_loop"]

#: What asyncio (3.10-3.13, C and Python) says when an object of one loop is
#: used from another: ``_LoopBoundMixin._get_loop`` ("bound to a different
#: event loop"), ``Task.__step`` ("attached to a different loop"),
#: ``asyncio.ensure_future`` ("The future belongs to a different loop"),
#: and, in debug mode, ``BaseEventLoop._check_thread`` ("Non-thread-safe
#: operation invoked on an event loop other than the current one").
_MARKERS = ("different loop", "different event loop", "event loop other than the current one")

#: The fix, the same in every note; also how a note already added is recognised.
FIX = (
    "Fix: create such objects per loop: with `loopgrid serve`, in the app's lifespan, run per "
    'loop (lifespan="loop", the default);\nloopgrid.LoopLocal(factory) for module-level clients '
    "and pools; or loopgrid.Lock, Event, Semaphore or Queue for one primitive shared by all loops."
)

#: At most this many exceptions of a cause/context chain (and exception
#: groups) are looked at: chains can be long, and even cyclic.
_MAX_CHAIN = 64

_names: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, str] = weakref.WeakKeyDictionary()


def name_loop(loop: asyncio.AbstractEventLoop, label: str) -> None:
    """Register ``label`` ("worker 1 of grid 'web'") as the name of ``loop``.

    The name is forgotten when the loop is freed.
    """
    _names[loop] = label


def describe_loop(loop: asyncio.AbstractEventLoop) -> str:
    """``loop`` in words: "the event loop of" its :func:`name_loop` label, else its repr."""
    try:
        label = _names.get(loop)
    except TypeError:  # not weak-referenceable: nobody could have named it
        label = None
    if label is not None:
        return f"the event loop of {label}"
    return f"another event loop (not one of this grid's workers), {loop!r}"


def _matches(exc: BaseException) -> bool:
    """Whether ``exc`` itself is one of asyncio's loop-affinity errors."""
    if not isinstance(exc, (RuntimeError, ValueError)):
        return False
    args = exc.args
    if not args:
        return False
    msg = args[0]
    return isinstance(msg, str) and any(m in msg for m in _MARKERS)


if sys.version_info >= (3, 11):

    def _is_group(exc: BaseException) -> bool:
        return isinstance(exc, BaseExceptionGroup)  # noqa: F821 (a built-in from 3.11)

else:

    def _is_group(exc: BaseException) -> bool:
        """On 3.10 exception groups are the ``exceptiongroup`` backport's: none
        exists before something imported it, so ``import loopgrid`` need not."""
        module = sys.modules.get("exceptiongroup")
        group = getattr(module, "BaseExceptionGroup", None)
        return group is not None and isinstance(exc, group)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes and contexts, and the members of exception groups."""
    seen: set[int] = set()
    out: list[BaseException] = []
    todo = [exc]
    while todo and len(out) < _MAX_CHAIN:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        out.append(e)
        if _is_group(e):
            todo.extend(reversed(e.exceptions))  # type: ignore[attr-defined]
        if e.__context__ is not None:
            todo.append(e.__context__)
        if e.__cause__ is not None:
            todo.append(e.__cause__)
    return out


def _find(exc: BaseException) -> BaseException | None:
    """The loop-affinity error that ``exc`` is, wraps or groups; None if none."""
    if _matches(exc):
        return exc
    if exc.__cause__ is None and exc.__context__ is None and not _is_group(exc):
        return None
    for e in _chain(exc):
        if _matches(e):
            return e
    return None


def _owner(exc: BaseException, user: asyncio.AbstractEventLoop | None) -> tuple[str, str] | None:
    """What ``exc``'s last frames say about the object and its loop.

    The innermost frame whose ``self`` is an asyncio loop-bound object (a lock,
    event, queue...), a future, or an event loop, bound to a loop other than
    ``user``: (what the object is, its loop's description). Only ``self`` and
    its loop are looked at, never another local.
    """
    frames: list[types.FrameType] = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        code = frame.f_code
        if not code.co_argcount or code.co_varnames[0] != "self":
            continue
        obj = frame.f_locals.get("self")
        loop: object
        if isinstance(obj, asyncio.AbstractEventLoop):
            what, loop = "an object", obj
        elif isinstance(obj, (_LoopBoundMixin, asyncio.Future)):
            cls = type(obj)
            what, loop = f"this {cls.__module__}.{cls.__qualname__}", getattr(obj, "_loop", None)
        else:
            continue
        if isinstance(loop, asyncio.AbstractEventLoop) and loop is not user:
            return what, describe_loop(loop)
    return None


def _user() -> tuple[str, asyncio.AbstractEventLoop | None]:
    """Who is running: the current worker, else the running loop, else nobody."""
    w = this_thread.worker
    if w is not None:
        return f"worker {w.index} of grid {w.grid.name!r}", w.loop
    loop = _get_running_loop()
    if loop is not None:
        return describe_loop(loop), loop
    return "a thread running no event loop", None


def explain(exc: BaseException) -> str | None:
    """The note :func:`annotate` adds to ``exc``; None if it is no loop-affinity error.

    ``exc`` is one when it is, wraps (``__cause__``, ``__context__``) or groups
    one of asyncio's "different loop" errors. The worker named as the user is
    the one running the caller (the task's worker, when a task fails).
    """
    found = _find(exc)
    if found is None:
        return None
    user, user_loop = _user()
    owner = _owner(found, user_loop)
    if owner is None:
        head = f"loopgrid: an object bound to another event loop was used from {user}."
    else:
        what, where = owner
        head = f"loopgrid: {what} is bound to {where}, and was used from {user}."
    return (
        f"{head}\nEach grid worker runs its own event loop; asyncio locks, events, queues "
        "and futures, and most clients and connection pools, work only on their own loop.\n" + FIX
    )


def _noted(exc: BaseException) -> bool:
    """Whether ``exc`` or an exception it wraps already carries the note."""
    for e in _chain(exc):
        notes = getattr(e, "__notes__", None)
        if isinstance(notes, list) and any(isinstance(n, str) and FIX in n for n in notes):
            return True
    return False


def annotate(exc: BaseException) -> None:
    """Add :func:`explain`'s note to ``exc``, once; nothing for other exceptions.

    Never raises: it runs where a grid task's failure is being recorded.
    """
    try:
        if _find(exc) is None:
            return
        if _noted(exc):
            return
        note = explain(exc)
        if note is None:
            return
        if sys.version_info >= (3, 11):
            exc.add_note(note)
        else:
            # The backport is what prints __notes__ on 3.10 (it patches
            # traceback's printing when imported): imported with the first
            # note, not with loopgrid (see taskgroup._group).
            import exceptiongroup  # noqa: F401

            notes = getattr(exc, "__notes__", None)
            if notes is None:
                exc.__notes__ = [note]  # type: ignore[attr-defined]
            elif isinstance(notes, list):
                notes.append(note)
    except Exception:  # an explanation must never cost the task its recorded failure
        pass
