"""Cross-loop wake-ups, batched: one thread-safe call per burst, not per item.

Each event loop that waits on loopgrid handles has one :class:`Mailbox`. A
thread that completes a handle posts the waiter's callback to the waiter's
mailbox; only the first post into an empty, unarmed mailbox pays for
``loop.call_soon_threadsafe`` (a write to the loop's self-pipe). The loop then
drains the mailbox in chunks, so many completions that target one loop cost one
wake-up, and a long burst does not hold that loop for the whole burst.

Thread ownership: ``_items`` is a deque (atomic append / popleft) written by any
thread and drained by the loop's thread only. ``_armed`` is a hint that a drain
is scheduled. The drain clears it *before* it pops, and a poster sets it *after*
it appends, so a post is always seen by a drain that is scheduled or running:
races can cost a spurious wake-up, never a lost one.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .trace import ACTIVE as _TRACING

__all__ = ["Mailbox", "install_mailbox", "mailbox_for_running_loop", "running_loop"]

#: Items handed to a loop per drain before it yields to its other callbacks,
#: so that one burst of completions does not monopolise the waiting loop.
#: A sweep on bench_crossloop.py (Python 3.11, pipelined ratio vs
#: run_coroutine_threadsafe) gave 16 -> 3.39x, 64 -> 3.14x, unbounded -> 3.56x:
#: differences within this machine's run-to-run noise, so 64 stays for the
#: latency of the loop's other callbacks.
DRAIN_CHUNK = 64

_Item = tuple[Callable[[Any], object], Any, "contextvars.Context | None"]


class Mailbox:
    """The inbox of one event loop for callbacks posted from other threads."""

    __slots__ = ("_armed", "_items", "loop", "permanent")

    def __init__(self, loop: asyncio.AbstractEventLoop, permanent: bool = False) -> None:
        self.loop = loop
        # permanent: the loop runs for as long as this mailbox is installed on
        # its thread (a grid worker), so it *is* the thread's running loop.
        self.permanent = permanent
        self._items: deque[_Item] = deque()
        self._armed = False

    def post(self, fn: Callable[[Any], object], arg: Any, ctx: contextvars.Context | None) -> None:
        """Run ``fn(arg)`` (in ``ctx``) on this mailbox's loop; callable from any thread."""
        tracer = _TRACING.tracer  # read once: a trace may stop on another thread
        if tracer is not None:
            fn = tracer.wake_up(fn)
        self._items.append((fn, arg, ctx))
        if not self._armed:
            self._armed = True
            try:
                self.loop.call_soon_threadsafe(self._drain)
            except RuntimeError:
                # The loop is closed: whoever waited there is gone with it.
                self._items.clear()

    def _drain(self) -> None:
        self._armed = False
        items = self._items
        loop = self.loop
        for _ in range(DRAIN_CHUNK):
            try:
                fn, arg, ctx = items.popleft()
            except IndexError:
                return
            try:
                if ctx is None:
                    fn(arg)
                else:
                    ctx.run(fn, arg)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                loop.call_exception_handler(
                    {
                        "message": f"Exception in callback {fn!r} posted by loopgrid",
                        "exception": exc,
                    }
                )
        if items and not self._armed:
            self._armed = True
            loop.call_soon(self._drain)


class _ThreadState(threading.local):
    mailbox: Mailbox | None = None


_tls = _ThreadState()
_get_running_loop = asyncio._get_running_loop


def running_loop() -> asyncio.AbstractEventLoop | None:
    """``asyncio._get_running_loop()``, answered from a thread-local on workers.

    On Python 3.10 and 3.11 ``_get_running_loop`` calls ``getpid()``, a system
    call, to detect forks; it sat high on the spawn benchmark's profile, and a
    grid worker thread knows its loop without asking.
    """
    mb = _tls.mailbox
    if mb is not None and mb.permanent:
        return mb.loop
    return _get_running_loop()


def mailbox_for_running_loop() -> Mailbox | None:
    """The mailbox of this thread's running loop (made on first use), or None.

    One mailbox per thread is kept: a thread runs one loop at a time, and a new
    loop on the same thread replaces the old one's mailbox.
    """
    mb = _tls.mailbox
    if mb is not None and mb.permanent:
        return mb
    loop = _get_running_loop()
    if loop is None:
        return None
    if mb is None or mb.loop is not loop:
        mb = _tls.mailbox = Mailbox(loop)
    return mb


def install_mailbox(mb: Mailbox | None) -> None:
    """Make ``mb`` this thread's mailbox (workers do this when their loop starts)."""
    _tls.mailbox = mb
