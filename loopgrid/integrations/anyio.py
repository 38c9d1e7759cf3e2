"""anyio's synchronisation primitives across loops, and a loud stop for its streams.

Why: on the asyncio backend anyio's ``Event``, ``Lock``, ``Semaphore`` and
``CapacityLimiter`` keep their waiters as futures of the waiter's loop and
resolve them with ``call_soon`` from whichever thread sets or releases them.
``call_soon`` from another thread does not wake that loop: the waiter runs at
its loop's next own wake-up, seconds later or never, and nothing says why. On
a grid, tasks that share such an object run on different loops as a matter of
course, so that is a silent, intermittent hang.

While a grid is open (:mod:`.anyio_hook` decides when), :func:`patch` has
anyio's asyncio backend make the classes below instead. They are anyio's own
classes with the same attributes, methods, messages and statistics, plus a
mutex: each state change happens under it, and a waiter on another loop is
woken through that loop's :class:`~loopgrid.mailbox.Mailbox` (a thread-safe
wake-up), a waiter on the waker's loop directly. ``anyio.Condition`` is built
by anyio on its ``Lock`` and ``Event``, so it crosses loops with them. Objects
made while no grid is open keep anyio's classes; objects made meanwhile keep
working after the last grid closes. An anyio object made with no loop running
(at import, say) is an adapter that makes the real object at its first use:
that first use is serialised, so two loops using it at once get one object.

Memory object streams cannot be made safe from outside: a send or receive
changes the stream's state in several steps with no lock, so two threads can
lose a wake-up between them. A stream used from a second loop while the loop
that first used it still runs therefore raises :class:`RuntimeError` at once,
naming :class:`loopgrid.Queue`, which is the cross-loop stream.

Thread ownership: every field that anyio's classes keep (``_owner_task``,
``_waiters``, ``_value``, ``_borrowers``, ``_wait_queue``, ``_total_tokens``)
is written under the object's ``_mutex`` only, by any thread, for a few field
updates (never across an ``await``); wake-ups are sent after it is released.
A waiter's future is resolved on its own loop's thread only. Whether a waiter
was handed the lock, a permit or a token is decided under the mutex (it is no
longer queued), so exactly one of "handed over" and "gave up" wins; a waiter
that was handed something and is cancelled passes it on.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from anyio import EventStatistics, WouldBlock
from anyio._backends import _asyncio as _backend
from anyio._core import _synchronization as _core
from anyio.streams import memory as _memory

from ..mailbox import Mailbox, mailbox_for_running_loop, running_loop

__all__ = ["crosses_loops", "patch", "unpatch"]

_AsyncIOBackend = _backend.AsyncIOBackend
_checkpoint_if_cancelled = _AsyncIOBackend.checkpoint_if_cancelled
_cancel_shielded_checkpoint = _AsyncIOBackend.cancel_shielded_checkpoint
_current_task = asyncio.current_task
_allocate_lock = threading.Lock


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Waiter:
    """A task waiting for a hand-over: its future and its loop's mailbox."""

    __slots__ = ("fut", "granted", "mb", "task")

    def __init__(self, task: object) -> None:
        mb = mailbox_for_running_loop()
        if mb is None:  # pragma: no cover - anyio's asyncio backend runs on asyncio
            raise RuntimeError("anyio's asyncio backend waited outside an asyncio loop")
        self.task = task
        self.mb: Mailbox = mb
        self.fut: asyncio.Future[None] = mb.loop.create_future()
        #: Handed the lock, a permit or a token; written under the mutex.
        self.granted = False

    def gone(self) -> bool:
        """Cancelled before it was handed anything, or its loop is closed:
        skipped, as anyio skips a cancelled future (a snapshot; a stale False
        only means a hand-over that the waiter passes on)."""
        return self.fut.cancelled() or self.mb.loop.is_closed()

    def wake(self) -> None:
        """Resolve the future on its own loop (call with no mutex held)."""
        if self.mb.loop is running_loop():
            _resolve(self.fut)
        else:
            self.mb.post(_resolve, self.fut, None)


def _pop_live(waiters: deque[_Waiter]) -> _Waiter | None:
    """The first waiter still waiting, marked granted (mutex held)."""
    while waiters:
        w = waiters.popleft()
        if not w.gone():
            w.granted = True
            return w
    return None


def _give_up(mutex: threading.Lock, waiters: deque[_Waiter], w: _Waiter) -> bool:
    """``w`` leaves with an exception: True if it was handed something to pass on."""
    with mutex:
        if w.granted:
            return True
        if w in waiters:
            waiters.remove(w)
        return False


async def _take_or_wait(prim: Any, take: Callable[[], bool], owner: object) -> None:
    """Lock's and Semaphore's acquire after its checks: ``take()`` (mutex held)
    or queue a waiter for ``owner``; the fast path yields once unless
    ``fast_acquire``, as anyio's does; a waiter that leaves with an exception
    after it was handed the lock or a permit releases it."""
    with prim._mutex:
        w = None if take() else _Waiter(owner)
        if w is not None:
            prim._waiters.append(w)
    if w is None:
        if not prim._fast_acquire:
            try:
                await _cancel_shielded_checkpoint()
            except asyncio.CancelledError:
                prim.release()
                raise
        return
    try:
        await w.fut
    except BaseException:
        if _give_up(prim._mutex, prim._waiters, w):
            prim.release()
        raise


class Event(_backend.Event):
    """anyio's ``Event`` on :class:`loopgrid.Event`: set from any loop or thread."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        from ..sync import Event as _CrossLoopEvent

        self._event = _CrossLoopEvent()  # type: ignore[assignment]
        #: One token per task in wait(): set.add/discard are atomic.
        self._waiting: set[object] = set()

    async def wait(self) -> None:
        if self._event.is_set():
            await _AsyncIOBackend.checkpoint()
            return
        token = object()
        self._waiting.add(token)
        try:
            await self._event.wait()
        finally:
            self._waiting.discard(token)

    def statistics(self) -> EventStatistics:
        return EventStatistics(len(self._waiting))


class Lock(_backend.Lock):
    """anyio's ``Lock``, FIFO and owned by a task, for tasks on any loop."""

    __slots__ = ("_mutex",)
    _waiters: deque[_Waiter]  # type: ignore[assignment]

    def __init__(self, *, fast_acquire: bool = False) -> None:
        super().__init__(fast_acquire=fast_acquire)
        self._mutex = _allocate_lock()

    async def acquire(self) -> None:
        task = _current_task()
        if self._owner_task is task:
            raise RuntimeError("Attempted to acquire an already held Lock")
        await _checkpoint_if_cancelled()

        def take() -> bool:
            if self._owner_task is None and not self._waiters:
                self._owner_task = task
                return True
            return False

        await _take_or_wait(self, take, task)

    def acquire_nowait(self) -> None:
        task = _current_task()
        with self._mutex:
            if self._owner_task is None and not self._waiters:
                self._owner_task = task
                return
        if self._owner_task is task:
            raise RuntimeError("Attempted to acquire an already held Lock")
        raise WouldBlock

    def release(self) -> None:
        if self._owner_task is not _current_task():
            raise RuntimeError("The current task is not holding this lock")
        with self._mutex:
            w = _pop_live(self._waiters)
            self._owner_task = None if w is None else w.task  # type: ignore[assignment]
        if w is not None:
            w.wake()


class Semaphore(_backend.Semaphore):
    """anyio's ``Semaphore`` (FIFO hand-over, ``max_value``) for tasks on any loop."""

    __slots__ = ("_mutex",)
    _waiters: deque[_Waiter]  # type: ignore[assignment]

    def __init__(
        self, initial_value: int, *, max_value: int | None = None, fast_acquire: bool = False
    ) -> None:
        super().__init__(initial_value, max_value=max_value, fast_acquire=fast_acquire)
        self._mutex = _allocate_lock()

    async def acquire(self) -> None:
        await _checkpoint_if_cancelled()

        def take() -> bool:
            if self._value > 0 and not self._waiters:
                self._value -= 1
                return True
            return False

        await _take_or_wait(self, take, None)

    def acquire_nowait(self) -> None:
        with self._mutex:
            if self._value == 0:
                raise WouldBlock
            self._value -= 1

    def release(self) -> None:
        with self._mutex:
            if self._max_value is not None and self._value == self._max_value:
                raise ValueError("semaphore released too many times")
            w = _pop_live(self._waiters)
            if w is None:
                self._value += 1
        if w is not None:
            w.wake()


class CapacityLimiter(_backend.CapacityLimiter):
    """anyio's ``CapacityLimiter`` (borrowers, resizable) for tasks on any loop."""

    __slots__ = ("_mutex",)
    _wait_queue: OrderedDict[Any, _Waiter]  # type: ignore[assignment]

    def __init__(self, total_tokens: float) -> None:
        self._mutex = _allocate_lock()
        super().__init__(total_tokens)

    @property
    def total_tokens(self) -> float:
        return self._total_tokens

    @total_tokens.setter
    def total_tokens(self, value: float) -> None:
        if not isinstance(value, int) and not math.isinf(value):
            raise TypeError("total_tokens must be an int or math.inf")
        if value < 0:
            raise ValueError("total_tokens must be >= 0")
        with self._mutex:
            self._total_tokens = value
            wake = self._hand_out()
        for w in wake:
            w.wake()

    def _hand_out(self) -> list[_Waiter]:
        """Give free tokens to the waiters in line; the ones to wake (mutex held)."""
        wake = []
        while self._wait_queue and len(self._borrowers) < self._total_tokens:
            borrower, w = self._wait_queue.popitem(last=False)
            if w.gone():
                continue
            w.granted = True
            self._borrowers.add(borrower)
            wake.append(w)
        return wake

    def acquire_on_behalf_of_nowait(self, borrower: object) -> None:
        with self._mutex:
            self._take(borrower)

    def _take(self, borrower: object) -> None:
        if borrower in self._borrowers:
            raise RuntimeError(
                "this borrower is already holding one of this CapacityLimiter's tokens"
            )
        if self._wait_queue or len(self._borrowers) >= self._total_tokens:
            raise WouldBlock
        self._borrowers.add(borrower)

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        await _checkpoint_if_cancelled()
        with self._mutex:
            try:
                self._take(borrower)
                w = None
            except WouldBlock:
                w = _Waiter(borrower)
                self._wait_queue[borrower] = w
        if w is None:
            try:
                await _cancel_shielded_checkpoint()
            except BaseException:
                self.release_on_behalf_of(borrower)
                raise
            return
        try:
            await w.fut
        except BaseException:
            with self._mutex:
                if w.granted:
                    self._borrowers.discard(borrower)
                    wake = self._hand_out()
                else:
                    self._wait_queue.pop(borrower, None)
                    wake = []
            for x in wake:
                x.wake()
            raise

    def release_on_behalf_of(self, borrower: object) -> None:
        with self._mutex:
            try:
                self._borrowers.remove(borrower)
            except KeyError:
                raise RuntimeError(
                    "this borrower isn't holding any of this CapacityLimiter's tokens"
                ) from None
            wake = self._hand_out()
        for w in wake:
            w.wake()


# -- memory object streams --------------------------------------------------------------

_OWNER = "_loopgrid_loop"


def _one_loop(state: object, what: str) -> None:
    """Refuse a memory object stream used from a second loop while its first runs."""
    loop = running_loop()
    if loop is None:
        return
    try:
        d = vars(state)
    except TypeError:  # pragma: no cover - a future anyio with slots: unchecked
        return
    owner = d.setdefault(_OWNER, loop)
    if owner is loop:
        return
    if not owner.is_running():
        d[_OWNER] = loop
        return
    raise RuntimeError(
        f"anyio memory object stream: {what} on {loop!r} (thread "
        f"{threading.current_thread().name!r}) while it is in use on {owner!r}, "
        "which still runs. anyio's streams belong to one event loop (they would "
        "lose wake-ups between threads); between loops use loopgrid.Queue "
        "(await q.put(item) / await q.get(), q.shutdown() to end it), or keep "
        "both ends of the stream on one loop."
    )


# -- anyio's own events, made before any grid opened ------------------------------------


def _set_across_threads(self: Any) -> None:
    """``anyio.Event.set`` while a grid is open: an event of anyio's own class
    (made before the first grid opened) whose waiters are on another running
    loop is set on that loop, so that they wake now, not at that loop's next
    own wake-up. Its ``is_set()`` turns True once that loop has run the set."""
    inner = self._event
    if type(inner) is asyncio.Event:
        loop = getattr(inner, "_loop", None)  # bound by its first waiter (asyncio's mixin)
        if loop is not None and loop is not running_loop() and loop.is_running():
            loop.call_soon_threadsafe(inner.set)
            return
    inner.set()


def _guarded(method: Callable[..., Any], what: str) -> Callable[..., Any]:
    def checked(self: Any, *args: Any) -> Any:
        _one_loop(self._state, what)
        return method(self, *args)

    checked.__wrapped__ = method  # type: ignore[attr-defined]
    checked.__name__ = method.__name__
    checked.__qualname__ = method.__qualname__
    checked.__doc__ = method.__doc__
    return checked


# -- adapters: anyio's objects made with no loop running ------------------------------

#: Serialises the adapters' first use: anyio makes the real object at first use,
#: and two loops using one at once would otherwise each make their own.
_adapter_lock = threading.RLock()

#: Each adapter class, the property that makes its real object, and the slot
#: that holds it.
_ADAPTERS = (
    (_core.EventAdapter, "_event", "_internal_event"),
    (_core.LockAdapter, "_lock", "_internal_lock"),
    (_core.SemaphoreAdapter, "_semaphore", "_internal_semaphore"),
    (_core.CapacityLimiterAdapter, "_limiter", "_internal_limiter"),
)


def _made_once(prop: property, slot: str) -> property:
    make = prop.fget
    assert make is not None

    def get(self: Any) -> Any:
        inner = getattr(self, slot)
        if inner is None:
            with _adapter_lock:
                inner = make(self)
        return inner

    return property(get, prop.fset, prop.fdel, prop.__doc__)


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` under the adapters' lock: it writes state that the first use
    reads (an event set, or tokens changed, before the real object exists)."""

    def locked(self: Any, *args: Any) -> Any:
        with _adapter_lock:
            return method(self, *args)

    locked.__wrapped__ = method  # type: ignore[attr-defined]
    return locked


def _tokens_locked() -> property:
    prop = _core.CapacityLimiterAdapter.__dict__["total_tokens"]
    assert prop.fset is not None
    return property(prop.fget, _locked(prop.fset), prop.fdel, prop.__doc__)


_OURS = (Event, Lock, Semaphore, CapacityLimiter)


def crosses_loops(obj: object) -> bool:
    """True if anyio object ``obj`` works from every loop of a grid: one of the
    classes above, or an adapter (made with no loop running) whose real object
    is one of them or not made yet (it will be, while a grid is open)."""
    if isinstance(obj, _OURS):
        return True
    for cls, _, slot in _ADAPTERS:
        if isinstance(obj, cls):
            inner = getattr(obj, slot)
            return inner is None or isinstance(inner, _OURS)
    return False


# -- installing -------------------------------------------------------------------------

#: (owner, attribute name, replacement): set by patch(), undone by unpatch().
_PATCHES: list[tuple[type, str, object]] = [
    (_AsyncIOBackend, "create_event", classmethod(lambda cls: Event())),
    (
        _AsyncIOBackend,
        "create_lock",
        classmethod(lambda cls, *, fast_acquire: Lock(fast_acquire=fast_acquire)),
    ),
    (
        _AsyncIOBackend,
        "create_semaphore",
        classmethod(
            lambda cls, initial_value, *, max_value=None, fast_acquire=False: Semaphore(
                initial_value, max_value=max_value, fast_acquire=fast_acquire
            )
        ),
    ),
    (
        _AsyncIOBackend,
        "create_capacity_limiter",
        classmethod(lambda cls, total_tokens: CapacityLimiter(total_tokens)),
    ),
    (
        _memory.MemoryObjectSendStream,
        "send_nowait",
        _guarded(_memory.MemoryObjectSendStream.send_nowait, "send"),
    ),
    (
        _memory.MemoryObjectReceiveStream,
        "receive_nowait",
        _guarded(_memory.MemoryObjectReceiveStream.receive_nowait, "receive"),
    ),
    (_backend.Event, "set", _set_across_threads),
    *[(cls, prop, _made_once(cls.__dict__[prop], slot)) for cls, prop, slot in _ADAPTERS],
    (_core.EventAdapter, "set", _locked(_core.EventAdapter.set)),
    (_core.CapacityLimiterAdapter, "total_tokens", _tokens_locked()),
]

_saved: list[tuple[type, str, object]] = []


def patch() -> None:
    """Make anyio's asyncio backend build the classes above and guard its streams.

    Not thread-safe on its own: :mod:`.anyio_hook` calls it under its lock.
    """
    if _saved:
        return
    for owner, name, new in _PATCHES:
        _saved.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, new)


def unpatch() -> None:
    """Put anyio's own factories and stream methods back."""
    while _saved:
        owner, name, old = _saved.pop()
        setattr(owner, name, old)
