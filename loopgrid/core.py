"""The scheduling core: what :class:`~loopgrid.Grid` and :class:`~loopgrid.ray.RayGrid` share.

Both grids schedule the same way and differ only in what runs a task once it
leaves its queue: a worker thread's event loop (``worker.py``) or a Ray actor
process fed by the driver's pump thread (``ray/grid.py``). Everything before
that point lives here once, so that the two cannot drift apart:

* the **queues** (the injection queue here; each worker's pinned and local
  queues on the worker, reached through :class:`CoreWorker`), the **claims**
  (``handle.CLAIMS``: whoever removes a task's id moves it out of PENDING),
  the **accept flag** (what ``spawn`` takes, from whom) and the **counters**
  that tell when the grid is quiescent;
* the **handle factory** (:meth:`SchedulingCore._new_handle`: ids, names,
  priorities, the claim);
* **requeue**, **shelve** (a paused pending task kept off the queues) and
  **drain** (refuse, resume everything, cancel what is queued, wait);
* the **choice of the next batch** (:func:`take_next`: aged tasks, then start
  order, then stealing) and the **claim** of each task taken
  (:meth:`SchedulingCore._claim`).

What differs is left to three hooks: :meth:`~SchedulingCore._injected` (make
sure someone looks at the injection queue: Grid wakes a parked worker, RayGrid
kicks its pump), :meth:`~SchedulingCore._cancel_running_soon` and the
lifecycle of :class:`~loopgrid.gridbase.GridBase`. :class:`CoreWorker` is what
the core, handles and stealing need of a worker; ``Worker`` and ``RayWorker``
both satisfy it, so code that handles either type-checks as it is.

Hot paths stay flat: the grids keep their own ``spawn`` and dispatcher loops
and call into the core once per task (the factory, the claim), never through
a further layer; the rare paths (requeue, shelve, drain) are plain methods.

Thread ownership (who writes what; any thread may read, and a read without
the lock is a snapshot):

* ``_aging``, ``name``: set at construction, read-only after.
* ``_injection``: pushed by any thread, popped by every dispatcher (Grid's
  worker threads, RayGrid's pump), by thieves and by closers: atomic deque
  operations (``runqueue.py``). A worker's ``_pinned`` and ``_local`` are
  documented on the worker (``worker.py``, ``ray/grid.py``).
* ``CLAIMS`` (``handle.py``): ``set.remove`` is atomic, so of a dispatcher
  starting a task (:meth:`_claim`), ``cancel()`` and ``move()`` exactly one
  takes a claim. ``move()`` and ``cancel()`` take it under ``_control``;
  Grid's dispatchers take it without (the hot path), RayGrid's pump under
  ``_control`` (see :meth:`_claim`).
* ``_accept`` (:data:`ACCEPT_ALL`, :data:`ACCEPT_WORKERS`, :data:`ACCEPT_NONE`)
  and ``_closing``: written under ``_ext_lock`` (by close, a fork, the death
  of every worker); read without it by ``spawn``, which re-checks under the
  lock before counting (:meth:`_admit`).
* ``_cancel_all``: written once by ``close(cancel=True)`` before it cancels
  what is queued; read by the dispatchers (a batch taken just before is
  cancelled by the closer's sweep or by the running tasks' cancellation).
* ``_ext_spawned``, ``_ext_cancelled``: under ``_ext_lock``; they count what
  threads that are not one of the grid's workers spawn and cancel. A worker's
  own counters (``spawned``, ``started``, ``completed``, ``failed``,
  ``cancelled``, ``dropped``) have that worker as their only writer: its
  thread, or the pump for a RayWorker. ``_lost_pending`` (pending tasks failed
  because every Ray worker died): the pump only.
* ``_control`` (an RLock, taken before ``_ext_lock`` when both are, never the
  other way round): guards ``_paused``, ``_paused_tasks`` and every task's
  ``_paused``. Pausing, moving and cancelling pending tasks take it, and so do
  arming and disarming a task's driver (``driver.py``), the end of a paused
  task, and RayGrid's pump when it starts a task; spawning, Grid's
  dispatching, completing an unpaused task and cross-loop wake-ups never do.
* ``_closing``: written once, under ``_ext_lock``, by ``close()``;
  ``_closed``: by the closing thread only (``gridbase.py``).
* ``_shelf`` (id -> paused pending task off the queues): written under
  ``_control`` by the shelving dispatcher (:meth:`_shelve`); popped by
  ``resume`` and ``cancel`` after they wrote, under ``_control``, the flag or
  state that ends the shelving. Whoever pops an entry acts on it, once.
* ``_quiescent``: set by whoever sees the counters balance once the grid is
  closing (:meth:`_check_quiescent`); waited on by the closer.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from . import logs
from .errors import CLOSED_MSG
from .gridbase import GridBase
from .handle import CLAIMS, PENDING, RUNNING, Handle, _wait
from .runqueue import RunQueue, take_batch
from .stealing import steal_into
from .thisthread import this_thread

if TYPE_CHECKING:
    import contextvars

    from .priority import Priority

__all__ = [
    "ACCEPT_ALL",
    "ACCEPT_NONE",
    "ACCEPT_WORKERS",
    "CoreWorker",
    "SchedulingCore",
    "take_next",
]

#: What ``spawn`` accepts, and from whom: everyone; tasks already on the grid
#: (a draining grid lets its tasks spawn the work they wait for); nobody.
ACCEPT_ALL, ACCEPT_WORKERS, ACCEPT_NONE = 2, 1, 0

#: Task ids, one sequence for every grid of the process: an id is unique
#: within the process and grows with spawn order (``Handle.id``).
_ids = itertools.count(1)
_new_object = object.__new__
_monotonic = time.monotonic
_PENDING = PENDING
_RUNNING = RUNNING

_H = TypeVar("_H", bound="Handle[Any]")


class CoreWorker(Protocol):
    """One worker as the core, handles and stealing see it.

    An in-process ``Worker`` (a loop on a thread) and a ``RayWorker`` (the
    driver's side of a Ray actor) both satisfy it. Read-only members are
    properties here so that each class may hold a narrower type (``Worker.grid``
    is a ``Grid``).
    """

    @property
    def grid(self) -> SchedulingCore: ...

    @property
    def index(self) -> int: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """Where a handle posts work for this worker (a cancel)."""

    #: Stealable pending tasks, and those pinned here (never stolen).
    _local: RunQueue
    _pinned: RunQueue
    #: Paused by the user (``worker.pause()``).
    _paused: bool
    spawned: int
    started: int
    completed: int
    failed: int
    cancelled: int
    #: Tasks cancelled while pending by this worker's own thread.
    dropped: int
    stolen_in: int
    stolen_from: list[int]

    @property
    def pending(self) -> int: ...

    @property
    def running(self) -> int: ...

    def is_current(self) -> bool:
        """Whether the calling thread runs this worker's tasks."""

    def _push_pinned(self, h: Handle[Any]) -> None:
        """Queue a task pinned here and make sure it is looked at; any thread."""

    def _update_hold(self) -> None:
        """Act on a change of the worker's or the grid's pause; under ``_control``."""

    def _release_soon(self) -> None:
        """Have the worker's running tasks re-check their pause; any thread."""

    def _cancel_task(self, task: asyncio.Task[Any], msg: Any | None, h: Handle[Any]) -> bool:
        """Cancel the running task of ``h``; on the worker's own thread."""


def take_next(
    w: CoreWorker,
    queues: tuple[RunQueue, ...],
    aged_before: float | None,
    budget: int,
    out: list[Handle[Any]],
) -> int:
    """Pop the next tasks for ``w`` to start into ``out``: the dispatcher's choice.

    Go's ``findRunnable`` order, shared by both grids: tasks that waited past
    the aging bound, then the rest in start order (:func:`~loopgrid.runqueue.take_batch`
    over ``queues``, ``w``'s own first, the injection queue last); only with
    nothing there, half of the busiest worker's stealable backlog
    (``stealing.py``), from which the batch is taken. Stealing only when idle
    keeps tasks where they were spawned while the worker has work, as Go and
    Tokio do. Returns how many tasks were stolen (0 when none was needed or
    none found), so that a Grid thief can wake another idle worker.
    """
    if take_batch(queues, aged_before, budget, out):
        return 0
    stolen = steal_into(w)
    if stolen:
        take_batch(queues, None, budget, out)
    return stolen


class SchedulingCore(GridBase):
    """The scheduling state and operations shared by the grids (see the module doc)."""

    _workers: Sequence[CoreWorker]
    _aging: float | None
    _injection: RunQueue
    _accept: int
    _cancel_all: bool
    _ext_lock: threading.Lock
    _control: threading.RLock
    _paused_tasks: dict[int, Handle[Any]]
    _shelf: dict[int, Handle[Any]]
    _ext_spawned: int
    _ext_cancelled: int
    _lost_pending: int
    _quiescent: threading.Event

    def _init_core(self, name: str, aging: float | None) -> None:
        """Set up the shared state, before any worker exists (see the module doc)."""
        self.name = name
        self._aging = aging
        self._injection = RunQueue()
        self._accept = ACCEPT_ALL
        self._closing = False
        self._closed = False
        self._cancel_all = False
        self._ext_lock = threading.Lock()
        self._control = threading.RLock()
        self._close_lock = threading.Lock()
        self._paused = False
        #: id -> handle of every paused task that has not finished.
        self._paused_tasks = {}
        self._shelf = {}
        self._ext_spawned = 0
        self._ext_cancelled = 0
        self._lost_pending = 0
        self._quiescent = threading.Event()

    def _mark_forked(self, parent: int) -> None:
        super()._mark_forked(parent)
        self._accept = ACCEPT_NONE
        # A lock another thread of the parent held would stay held for ever.
        self._ext_lock = threading.Lock()
        self._control = threading.RLock()

    # -- handles and claims ---------------------------------------------------------

    def _new_handle(
        self,
        cls: type[_H],
        fn: Any,
        args: tuple[Any, ...] | None,
        ctx: contextvars.Context | None,
        name: str,
        priority: Priority,
        pin: int | None,
    ) -> _H:
        """The handle of a new pending task, its claim in place; any thread.

        ``args`` None means ``fn`` is a coroutine object (closed if the task
        never starts). Every slot of :class:`~loopgrid.Handle` is set here,
        without an ``__init__`` frame: this is most of the cost of a spawn.
        """
        task_id = next(_ids)
        CLAIMS[task_id & 63].add(task_id)
        h: _H = _new_object(cls)
        h._grid = self
        h._id = task_id
        h._name = name
        h._priority = priority
        h._fn = fn
        h._args = args
        h._ctx = ctx
        h._pin = pin
        h._enqueued = _monotonic()
        h._state = _PENDING
        h._paused = False
        h._result = h._aux = h._worker = h._task = None
        h._callbacks = []
        return h

    def _admit(self, h: Handle[Any], fn: Any) -> None:
        """Count a spawn from outside the workers, or refuse it; any thread.

        ``spawn`` looked at ``_accept`` without the lock; a close may have
        begun since. Under the lock, the look is final: either the task is
        counted before ``close`` can read the counters, or it is refused and
        its claim and payload let go.
        """
        with self._ext_lock:
            if self._accept != ACCEPT_ALL:
                CLAIMS[h._id & 63].discard(h._id)
                h._release()
                self._refuse(fn)
            self._ext_spawned += 1

    def _claim(self, h: Handle[Any], w: CoreWorker) -> bool:
        """Take the claim of ``h`` for ``w`` and mark it RUNNING there; the dispatcher.

        False, leaving the task alone, when the claim is gone: cancelled while
        queued (already counted), started elsewhere, or held for an instant by
        ``move()`` or by a dispatcher looking at a stale copy. A stale copy of
        a task moved to another worker (its old queue still held it) gives the
        claim back and is queued on its worker once more: a dispatcher that
        tried the claim meanwhile dropped its copy, which may have been the
        one that would have started it (found by the hypothesis test without
        a GIL: a task left in no queue with its claim in place). A copy too
        many is skipped there, having no claim. Only the claim's winner
        writes ``_worker`` (``Handle.cancel`` waits out the instant between
        the claim and that write).
        """
        claims = CLAIMS[h._id & 63]
        try:
            claims.remove(h._id)
        except KeyError:
            return False
        pin = h._pin
        if pin is not None and pin != w.index:
            claims.add(h._id)
            self._workers[pin]._push_pinned(h)
            return False
        h._worker = w
        h._state = _RUNNING
        w.started += 1
        return True

    # -- requeue and shelve -------------------------------------------------------------

    def _injected(self) -> None:
        """See that a worker looks at the injection queue soon; any thread."""
        raise NotImplementedError

    def _requeue(self, h: Handle[Any]) -> None:
        """Put a pending task back where a worker will take it; any thread.

        A pinned task goes to its worker's pinned queue, any other to the
        injection queue (the monitor sheds a stalled worker's backlog, a
        paused worker hands on its own, ``resume`` puts back a shelved task).
        """
        if h._pin is not None:
            self._workers[h._pin]._push_pinned(h)
        else:
            self._injection.push(h)
            self._injected()

    def _shelve(self, h: Handle[Any]) -> None:
        """Keep a paused pending task off the queues until it is resumed; the dispatcher.

        The dispatcher saw ``h._paused`` (without the lock, on Grid's hot
        path) after popping ``h`` from a queue. Under ``_control`` it looks
        again and either shelves the task or, the pause having ended
        meanwhile, puts it back in a queue if it is still pending.

        Why under ``_control`` (RayGrid did so; Grid used a lock-free dict
        handshake): ``pause``, ``resume`` and ``cancel`` write a task's
        ``_paused`` and ``_state`` under ``_control``, and ``resume`` and
        ``cancel`` pop the shelf entry only after that write. So the shelving
        either comes first, and the entry is there for them to pop (resume
        requeues, cancel drops), or comes after, and sees the flag cleared.
        The lock orders the two on every build; the lock-free form needed
        sequentially consistent dict and attribute accesses, which the GIL
        gives but a free-threaded build does not promise. Shelving is rare (a
        paused task reached the head of a queue), so the lock costs nothing
        that matters.
        """
        with self._control:
            if h._paused:
                self._shelf[h._id] = h
                return
        if h._state is _PENDING:  # (a cancelled one is dropped: its claim is gone)
            self._requeue(h)

    # -- counters ---------------------------------------------------------------------

    def _count_dropped(self) -> None:
        """Count a task that ends before starting (cancelled while pending).

        On one of this grid's worker threads, on that worker (its only
        writer); anywhere else, under ``_ext_lock``. The caller publishes the
        final state after this, and checks for quiescence (if closing) once
        its callbacks have run.
        """
        cur = this_thread.worker
        if cur is not None and cur.grid is self:
            cur.dropped += 1
        else:
            with self._ext_lock:
                self._ext_cancelled += 1

    def _live(self) -> int:
        """Tasks spawned and not yet finished (a snapshot; exact once quiet).

        The finished counters are read first: every counter only grows and a
        task is counted spawned before it is counted finished, so a reading
        of zero proves that no task was pending or running at that moment.
        """
        workers = self._workers
        finished = self._ext_cancelled + self._lost_pending
        for w in workers:
            finished += w.completed + w.failed + w.cancelled + w.dropped
        spawned = self._ext_spawned
        for w in workers:
            spawned += w.spawned
        return spawned - finished

    def _check_quiescent(self) -> None:
        if self._live() == 0:
            self._quiescent.set()

    # -- drain ------------------------------------------------------------------------

    def _pop_queued(self) -> Iterator[Handle[Any]]:
        """Pop every task still queued: the injection queue's, then each
        worker's stealable and pinned ones (atomic pops: any thread)."""
        queues = [self._injection]
        for w in self._workers:
            queues += (w._local, w._pinned)
        for q in queues:
            yield from q.pop_all()

    def _cancel_queued(self, msg: str = CLOSED_MSG) -> None:
        """Cancel every task still queued anywhere on the grid, shelved ones too; any thread."""
        for h in self._pop_queued():
            h.cancel(msg)
        for h in list(self._shelf.values()):
            h.cancel(msg)

    def _cancel_running_soon(self) -> None:
        """Have every running task cancelled where it runs; any thread (closing)."""
        raise NotImplementedError

    def _set_paused(self, paused: bool) -> None:
        """Pause or resume the grid as a whole: ``pause``/``resume`` of both grids; any thread.

        Each worker looks at the grid's flag through its own hold
        (``_update_hold``): a thread worker stops starting tasks and holds its
        running ones at their next suspension, a Ray worker is sent nothing
        new. Taken under ``_control``, so that a pause never lands after
        ``close`` has lifted every pause (``_check_pausable``).
        """
        with self._control:
            if paused:
                self._check_pausable()
            self._paused = paused
            for w in self._workers:
                w._update_hold()
        logs.info("grid.paused" if paused else "grid.resumed", grid=self.name)

    def _resume_everything(self) -> None:
        """Lift every pause, of the grid, its workers and its tasks (closing)."""
        with self._control:
            paused = len(self._paused_tasks) + sum(w._paused for w in self._workers)
            if not (paused or self._paused):
                return
            self._paused = False
            for w in self._workers:
                w._paused = False
                w._update_hold()
            tasks = list(self._paused_tasks.values())
        for h in tasks:
            h.resume()
        logs.info("grid.close.resumed", grid=self.name, paused=paused)

    def _drain(self, cancel: bool, timeout: float | None = None) -> bool:
        """Refuse new work, lift every pause, cancel if asked, and wait until quiet.

        Draining, the grid's own tasks may still spawn (the work they wait
        for); cancelling, nobody may. Returns whether no task was pending or
        running within ``timeout`` s; the wait is sliced on the main thread,
        so that Ctrl-C is seen (``handle._wait``).
        """
        with self._ext_lock:
            self._closing = True
            self._accept = ACCEPT_NONE if cancel else min(self._accept, ACCEPT_WORKERS)
        self._resume_everything()
        if cancel and not self._cancel_all:
            self._cancel_all = True
            self._cancel_queued()
            self._cancel_running_soon()
        self._check_quiescent()
        return _wait(self._quiescent, timeout)
