"""Workers: one event loop on one thread, with a local run queue and a dispatcher.

A worker is Go's P bound to its M: a thread that runs an asyncio event loop
(uvloop when installed) and a *dispatcher*, a loop callback that starts pending
tasks. Each turn of the dispatcher starts at most :data:`BATCH` tasks in
priority order, then yields to the loop; a busy loop therefore leaves most of
its backlog in its run queue, where idle workers can steal it. When there is
nothing to start, the dispatcher looks, in Go's ``findRunnable`` order, at its
local queues, the grid's injection queue, and the other workers (stealing);
finding nothing, it *parks*: it stops rescheduling itself, and whoever queues
work for it later wakes it with one ``call_soon_threadsafe``. Where the GIL is
off it may first *spin* a while, coming back round its loop to look at every
queue, so that spawners need not wake it (``idle.py``).

Thread ownership (who writes what):

* ``loop``, ``thread``: set once at start-up.
* ``_local`` (stealable pending tasks): pushed by the owner thread only, popped
  by the owner, by thieves, by a pause (to the injection queue) and by the
  monitor (a stalled worker's backlog), all atomic deque ops. A spawn that
  looked at ``_inert`` just before a pause emptied the queue is moved by the
  held dispatcher's next turn (``_dispatch``).
* ``_pinned`` (tasks pinned here with ``worker=i``): pushed by any thread,
  popped by the owner only while it lives. Pinned tasks are never stolen.
  Once it died, both queues are swept by any thread (``_sweep``: atomic pops).
* ``_parked``: set True by the owner when the dispatcher stops (and the
  worker lists itself as idle); set False by whoever wakes it. The owner
  re-checks every queue *after* setting it, and pushers push *before* reading
  it, so a push is never stranded. ``_listed`` (on the grid's idle list):
  the owner and whoever pops its entry. Why no wake-up is lost, in one place:
  ``idle.py``.
* ``_paused`` (this worker paused by the user), ``_hold`` (paused by the user
  or by a paused grid: what the drivers read) and ``_inert`` (the dispatcher
  starts nothing: held, or dead): written under the grid's ``_control`` lock
  by any thread; read by the owner without it. The owner re-reads ``_inert``
  after parking, as for ``_parked`` above. A dead worker is inert but never
  held: its running tasks must run on to their end.
* ``_exit`` (what escaped ``run_forever`` and stopped the loop for good; see
  :meth:`Worker._die`): written once by the owner, before it tells anyone.
* ``_abandoned`` (the grid gave up on this loop's tasks): set by the closing
  thread before it stops the loop; read by the owner once the loop stopped.
  ``_finishing`` (the owner is finishing its loop): owner only.
* ``_held``: the drivers of this worker's tasks that are paused mid-run; owner
  only (see ``driver.py``). A driver's own slots are armed and disarmed under
  the grid's ``_control`` lock, from any thread (``driver.py``).
* ``_timing`` (time every task step: ``Grid(task_timing=True)`` or a trace):
  written by any thread through :meth:`_set_timing`, read by the owner.
* ``_fair``: the GIL fairness timer of this loop (``fairness.py``); owner only.
* ``_spinning`` (on the grid's ``Idle.spinning``) and ``_spin_until``: owner
  only; spawners read the set, not the flag (``idle.py``).
* The counters (``started``, ``completed``, ``dropped``...): owner only.
  Other threads read them for stats, which are therefore snapshots.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import logs
from .affinity import name_loop
from .core import take_next
from .driver import Driver, cancel_task, drive
from .errors import CLOSED_MSG, NotOnGridError
from .fairness import Fairness
from .fairness import needed as fairness_needed
from .handle import RUNNING, Handle
from .mailbox import Mailbox, install_mailbox
from .ownership import owner_thread, under_control
from .runqueue import RunQueue, move, take_in_order
from .stealing import has_victim
from .thisthread import this_thread
from .waitgraph import handle_of

if TYPE_CHECKING:
    from .grid import Grid

__all__ = ["BATCH", "CHAIN_TURN", "LOCAL_CAPACITY", "Worker", "current_worker"]

#: Most tasks a dispatcher turn starts before it yields to the loop. Larger
#: batches amortise the turn; smaller ones keep the backlog stealable and the
#: loop responsive. Swept on Python 3.11 (bench_spawn full, bench_steal quick,
#: BATCH patched in-process): 16 -> spawn 1.64x, steal 1.92x, imbalance 3.9%;
#: 64 -> 1.53x, 1.90x, 6.5%; 256 -> 1.37x, 1.19x, 83% (a turn starts the whole
#: backlog before any thief can take it). No test depends on the value.
BATCH = 64

#: Soft bound of a worker's stealable queue (Go and Tokio use 256). When a
#: spawn from the worker's own thread finds it over this, half of it (lowest
#: priorities, oldest first) moves to the grid's injection queue.
LOCAL_CAPACITY = 256

#: Seconds a dispatcher turn may go on starting tasks one by one on 3.12+
#: (see ``Worker._chain``): long enough to start dozens of short tasks per
#: trip round the loop, short enough not to delay this loop's I/O.
CHAIN_TURN = 0.0005

#: The first-step cost a worker assumes before it has measured one: a turn
#: then starts at most 4 tasks it cannot time (see ``Worker._budget``).
_FIRST_COST = CHAIN_TURN / 4

_QUARTER = LOCAL_CAPACITY // 4
_perf_counter = time.perf_counter
_TASK_HAS_CONTEXT = sys.version_info >= (3, 11)
#: Start tasks eagerly where asyncio supports it (3.12+, PEP-less gh-97696).
_EAGER_START = sys.version_info >= (3, 12)
_Task: Any = asyncio.Task
_new_object = object.__new__


#: What this thread is to loopgrid (``thisthread.py``; ``web/`` reads it here).
_current = this_thread


def current_worker() -> Worker:
    """The worker whose loop runs the calling code.

    Raises :class:`~loopgrid.NotOnGridError` when called outside a grid worker
    thread (for example from the main thread, or from a thread pool).
    """
    cur = _current
    cur.asked += 1
    w = cur.worker
    if w is None:
        where = (
            f"a front loop of {cur.grid!r} (it runs the lifespan and the short routes "
            "of loopgrid.web, and is no worker: see loopgrid.web.inline)"
            if cur.grid is not None
            else "no grid loop"
        )
        raise NotOnGridError(
            "current_worker() was called outside a loopgrid worker: "
            f"thread {threading.current_thread().name!r} runs {where}"
        )
    return w


class Worker:
    """One worker of a grid: an event loop on its own thread (Go's P + M)."""

    __slots__ = (
        "_abandoned",
        "_cost",
        "_exit",
        "_fair",
        "_finishing",
        "_held",
        "_hold",
        "_inert",
        "_listed",
        "_local",
        "_mailbox",
        "_mark",
        "_marked",
        "_parked",
        "_paused",
        "_pinned",
        "_spin_until",
        "_spinning",
        "_startup_error",
        "_timing",
        "cancelled",
        "completed",
        "dropped",
        "failed",
        "grid",
        "index",
        "loop",
        "spawned",
        "started",
        "stolen_from",
        "stolen_in",
        "thread",
    )

    loop: asyncio.AbstractEventLoop

    def __init__(self, grid: Grid, index: int, workers: int) -> None:
        self.grid = grid
        self.index = index
        self._local = RunQueue()
        self._pinned = RunQueue()
        self._parked = True
        #: On the grid's list of parked workers (idle.py); set by Idle.
        self._listed = False
        self._paused = False
        self._hold = False
        self._inert = False
        self._exit: BaseException | None = None
        self._abandoned = False
        self._finishing = False
        self._held: set[Driver] = set()
        self._timing = grid._task_timing
        self._fair: Fairness | None = None
        self._startup_error: BaseException | None = None
        #: Seconds a task started here takes in its first step, as last seen
        #: (see _budget); the first turns assume a few per CHAIN_TURN.
        self._cost = _FIRST_COST
        #: Spinning (on the grid's Idle.spinning; idle.py), and when the
        #: current spin ends (time.perf_counter).
        self._spinning = False
        self._spin_until = 0.0
        #: When the last turn's first steps began (_stamp) and how many tasks
        #: it started, while they run before the next turn (0: nothing to measure).
        self._mark = 0.0
        self._marked = 0
        self.spawned = 0
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.dropped = 0
        self.stolen_in = 0
        self.stolen_from = [0] * workers
        self.thread = threading.Thread(
            target=self._main, name=f"loopgrid-{grid.name}-{index}", daemon=True
        )

    def __repr__(self) -> str:
        return f"<Worker {self.index} of grid {self.grid.name!r}>"

    def is_current(self) -> bool:
        """Whether the calling thread is this worker's thread."""
        return _current.worker is self

    @property
    def pending(self) -> int:
        """Tasks queued on this worker (stealable and pinned), a snapshot."""
        return len(self._local) + len(self._pinned)

    @property
    def running(self) -> int:
        """Tasks started here that have not finished, a snapshot."""
        return self.started - self.completed - self.failed - self.cancelled

    # -- thread and loop --------------------------------------------------------

    def _main_setup(
        self, loop_factory: Callable[[], asyncio.AbstractEventLoop], debug: bool | None
    ) -> bool:
        try:
            loop = loop_factory()
            if not isinstance(loop, asyncio.AbstractEventLoop):
                raise TypeError(
                    f"loop_factory {loop_factory!r} returned {loop!r}, not an asyncio event loop"
                )
            if debug is not None:
                loop.set_debug(debug)
        except BaseException as exc:
            self._startup_error = exc
            return False
        self.loop = loop
        name_loop(loop, f"worker {self.index} of grid {self.grid.name!r}")
        self._mailbox = Mailbox(loop, permanent=True)
        install_mailbox(self._mailbox)
        _current.worker = self
        return True

    def _main(self) -> None:
        grid = self.grid
        if not self._main_setup(grid._loop_factory, grid._debug):
            grid._worker_ready(self)
            return
        loop = self.loop
        if fairness_needed(grid._size):
            self._fair = Fairness(loop)
            self._fair.start()
        try:
            loop.call_soon(grid._worker_ready, self)
            logs.info("worker.started", grid=grid.name, worker=self.index)
            loop.run_forever()
        except BaseException as exc:
            # Out of a callback (asyncio's loop lets SystemExit and
            # KeyboardInterrupt through): the loop is stopped for good. It is
            # not raised on here, where no one would see it: recorded, and
            # raised by Runner.run().
            self._die(exc)
        finally:
            if self._fair is not None:
                self._fair.stop()
            try:
                self._finish()
            finally:
                loop.close()
                _current.worker = None
                install_mailbox(None)
                if self._exit is not None:
                    # What was queued here since it died, and whatever is
                    # pushed from now on: pushers find it parked, fail to
                    # wake it (closed) and sweep (see _wake).
                    self._parked = True
                    self._sweep()
                logs.info("worker.stopped", grid=grid.name, worker=self.index)

    @owner_thread
    def _die(self, exc: BaseException) -> None:
        """Record that ``exc`` stopped this loop for good; owner thread, loop stopped.

        The grid goes on with its other workers. This one starts nothing more:
        its stealable tasks go to the others, tasks pinned here end cancelled
        (see :meth:`_sweep`), and pauses are lifted, so that its loop can be
        finished as ``asyncio.run`` finishes one (its tasks cancelled and
        awaited) by :meth:`_finish`. Then whoever watches the grid is told
        (``Runner.run()`` raises ``exc``).
        """
        if self._exit is not None:
            # A second one, escaping the finish of a dead loop: the finish
            # gives up on what it had left (see _finish).
            logs.warning(
                "worker.died_again", grid=self.grid.name, worker=self.index, error=repr(exc)
            )
            return
        self._exit = exc
        grid = self.grid
        grid._idle.stop_spinning(self)
        with grid._control:
            self._inert = True
            self._hold = False
        for task in asyncio.all_tasks(self.loop):
            h = handle_of(task)
            if h is not None and h._paused:
                h.resume()
        self._release_held()
        self._sweep()
        grid._worker_exited(self, exc)

    def _sweep(self) -> None:
        """Hand on what is queued on this dead worker; any thread.

        Its stealable tasks go where the other workers take them (cancelled
        once the grid has closed); tasks pinned here end cancelled, having
        nowhere else to run.
        """
        if self.grid._closed:
            for h in self._local.pop_all():
                h.cancel()
        else:
            self._requeue_local()
        why = self.died_message()
        for h in self._pinned.pop_all():
            h.cancel(why)

    def died_message(self) -> str:
        """What a task pinned to this dead worker is told (its cancel message)."""
        return (
            f"worker {self.index} of grid {self.grid.name!r} died ({self._exit!r}): "
            "a task pinned to it cannot run; spawn it on another worker, or with no worker="
        )

    @owner_thread
    def _finish(self) -> None:
        """Finish the stopped loop as ``asyncio.run`` does, or give up on its tasks.

        Owner thread, after ``run_forever``: remaining tasks cancelled and
        awaited (whoever raises instead is reported to the loop's exception
        handler), async generators and the default executor shut down (see
        :func:`_finish_loop`). The grid may give up meanwhile
        (:meth:`_abandon_soon`: it stops the loop again), and a second
        ``SystemExit`` may escape the finish itself; either way what is left
        is given up on (:meth:`_give_up`), as asyncio.Runner.close leaves its
        loop when interrupted.
        """
        self._finishing = True
        if not self._abandoned:
            try:
                _shutdown_loop(self.loop)
            except BaseException as exc:
                if not self._abandoned:
                    self._die(exc)
        self._give_up()

    @owner_thread
    def _give_up(self) -> None:
        """End the grid tasks left on this stopped loop without running them on.

        Owner thread, once the finish is over or was given up on. The loop
        closes with its tasks pending, as asyncio's does when
        ``asyncio.Runner.close`` is interrupted. A plain asyncio task is left
        as asyncio leaves it. A grid task's handle must still end: its
        coroutine is closed (``GeneratorExit`` at its ``await``, as when a
        suspended coroutine is garbage-collected, so its ``finally`` blocks
        run) and the handle ends cancelled (failed, if that cleanup raises).
        A coroutine that ignores ``GeneratorExit`` (it awaits again) is
        reported to the loop's exception handler, with Python's
        ``RuntimeError``, and its handle ends cancelled all the same.
        """
        loop = self.loop
        for task in asyncio.all_tasks(loop):
            h = handle_of(task)
            if h is None:
                if getattr(task.get_coro(), "cr_code", None) is _FINISH_CODE:
                    task._log_destroy_pending = False  # type: ignore[attr-defined]
                continue
            task._log_destroy_pending = False  # type: ignore[attr-defined]
            drv: Any = task.get_coro()
            if inspect.getcoroutinestate(drv._inner()) == inspect.CORO_CREATED:
                cancel_task(task, None)  # resolves the handle of a task never stepped
                drv.close()
                continue
            try:
                drv.close()  # drive() ends the handle cancelled (driver.py)
            except BaseException as exc:  # "coroutine ignored GeneratorExit"
                loop.call_exception_handler(
                    {"message": _GIVE_UP_MESSAGE, "exception": exc, "task": h}
                )
            if h._state is RUNNING:
                # Still suspended, where it awaited again. (Should the garbage
                # collector's own close get further one day, the handle is
                # cancelled once more: the same state.)
                self.cancelled += 1
                h._set_cancelled(None, loop)
        self._held.clear()

    def _stop_soon(self) -> None:
        """Stop this loop, ending the worker; any thread (closing the grid)."""
        try:
            self.loop.call_soon_threadsafe(self._stop)
        except RuntimeError:
            pass  # closed: the worker has ended (its loop died and was finished)

    def _stop(self) -> None:
        # A dead worker finishing its loop ends it by itself: a stop would cut
        # that finish short.
        if not self._finishing:
            self.loop.stop()

    def _abandon_soon(self) -> None:
        """Give up on this loop's tasks that do not end; any thread.

        The loop stops where it is, in ``run_forever`` or in the middle of
        its finish, and closes with those tasks given up on (:meth:`_give_up`).
        """
        self._abandoned = True
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            pass  # closed: nothing is left to give up on

    # -- pausing ----------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether this worker holds its work (paused itself, or its grid is)."""
        return self._hold

    def pause(self) -> None:
        """Drain this worker: start nothing new, hold its running tasks.

        Its running tasks stop at their next suspension point (as with
        ``Handle.pause``); its stealable pending tasks move to the grid's
        injection queue for the other workers, and so do tasks spawned here
        while it is paused. Tasks pinned to it wait. Idempotent; any thread.
        """
        with self.grid._control:
            self.grid._check_pausable()
            self._paused = True
            self._update_hold()

    def resume(self) -> None:
        """Undo :meth:`pause` (a paused grid still holds the worker); any thread."""
        with self.grid._control:
            self._paused = False
            self._update_hold()

    @under_control
    def _update_hold(self) -> None:
        """Recompute ``_hold`` and act on a change; under the grid's ``_control``."""
        if self._exit is not None:
            return  # dead: inert, and never held (see _die)
        hold = self._paused or self.grid._paused
        if hold is self._hold:
            return
        self._hold = self._inert = hold
        if hold:
            self._requeue_local()
            self._call_soon(self._arm_all)
            logs.info("worker.paused", grid=self.grid.name, worker=self.index)
        else:
            self._release_soon()
            self._wake()
            logs.info("worker.resumed", grid=self.grid.name, worker=self.index)

    def _requeue_local(self) -> None:
        """Hand this worker's stealable backlog to the others (it is held)."""
        requeue = self.grid._requeue
        for h in self._local.pop_all():
            requeue(h)

    def _call_soon(self, fn: Callable[[], object]) -> None:
        """Schedule ``fn`` on this loop from any thread (dropped once it closed)."""
        if _current.worker is self:
            self.loop.call_soon(fn)
        else:
            try:
                self.loop.call_soon_threadsafe(fn)
            except RuntimeError:
                pass  # loop closed: no task is left to hold or release

    def _release_soon(self) -> None:
        """Have this loop re-check its held tasks; any thread."""
        self._call_soon(self._release_held)

    @owner_thread
    def _release_held(self) -> None:
        for drv in list(self._held):
            drv.release()

    @owner_thread
    def _arm_all(self, timed: bool = False) -> None:
        """Make every grid task on this loop check for a pause (and maybe time
        itself) before its next step; owner thread."""
        with self.grid._control:  # what Driver.arm takes, once for all
            for task in asyncio.all_tasks(self.loop):
                h = handle_of(task)  # None for plain asyncio tasks
                if h is not None:
                    drv: Any = task.get_coro()
                    drv._arm(h, self, timed)

    def _set_timing(self, on: bool) -> None:
        """Time every task step from now on (or stop); any thread.

        Tasks started later are timed from their first step; running ones from
        their next step after this loop runs the arming callback. Switching off
        takes effect at each task's next step.
        """
        self._timing = on
        if on:
            self._call_soon(functools.partial(self._arm_all, True))

    # -- queueing and waking ----------------------------------------------------

    @owner_thread
    def _push_local(self, h: Handle[Any]) -> None:
        """Queue a stealable task; owner thread only."""
        if self._inert:  # a paused (or dead) worker starts nothing: let the others have it
            self.grid._requeue(h)
            return
        lv = self._local.levels
        d = lv[h._priority]
        d.append(h)
        # Four levels of at most a quarter of the capacity cannot exceed it, so
        # the total is only summed when one level is past its quarter.
        if len(d) > _QUARTER and len(lv[0]) + len(lv[1]) + len(lv[2]) + len(lv[3]) > LOCAL_CAPACITY:
            self._overflow()
        if self._parked:
            self._parked = False
            self.loop.call_soon(self._dispatch)
        # Go's runnext: a lone task spawned here is left to this worker, whose
        # dispatcher runs it as soon as the spawner yields; waking an idle
        # worker for it would only hand it over through the GIL (measured:
        # spawn-to-start 18 us -> 30-70 us on 2 workers). The second queued task
        # wakes one; a spawner that then holds its loop loses the lone task to
        # the stall detector (monitor.py).
        if self.grid._sleepers and (len(d) > 1 or len(self._local) > 1):
            self.grid._idle.wake_for_work(self)

    def _push_pinned(self, h: Handle[Any]) -> None:
        """Queue a task pinned to this worker; any thread."""
        self._pinned.push(h)
        if _current.worker is not self:
            self._wake()
        elif self._parked:
            self._parked = False
            self.loop.call_soon(self._dispatch)

    def _wake(self) -> bool:
        """Wake the dispatcher if it is parked; any thread. True if it was."""
        if self._parked:
            self._parked = False
            try:
                self.loop.call_soon_threadsafe(self._dispatch)
            except RuntimeError:
                # Loop closed: Grid.close() sweeps what is left queued, unless
                # the worker died and the grid goes on. Then the sweep is ours:
                # parked again first, so that a push racing with this one is
                # either seen by the sweep or wakes (and sweeps) itself.
                if self._exit is not None:
                    self._parked = True
                    self._sweep()
                return False
            return True
        return False

    def _overflow(self) -> None:
        # Half of the local queue goes to the injection queue, lowest priority
        # first and oldest first within a level (Go's runqputslow): what moves
        # is older than all that stays, so every injection level stays in
        # spawn order and the dispatcher's merge by id stays exact.
        half = len(self._local) // 2
        inj = self.grid._injection.levels
        for p in (0, 1, 2, 3):
            moved: list[Handle[Any]] = []
            half -= move(self._local.levels[p], half, moved)
            inj[p].extend(moved)
            if half <= 0:
                break

    # -- the dispatcher ---------------------------------------------------------

    @owner_thread
    def _dispatch(self) -> None:
        grid = self.grid
        if self._spinning:  # a spinner's turn is one of its looks (idle.py)
            grid._idle.look()
        if self._inert:
            # A spawn here that raced with the pause (it looked at _inert just
            # before the pauser emptied this queue) left its task behind: it
            # goes where the other workers take it, as the pause did for the
            # rest. A dead worker's queues are swept (pinned tasks too).
            if self._exit is not None:
                self._sweep()
            elif len(self._local):
                self._requeue_local()
            self._park(tried_stealing=True)
            return
        queues = (self._pinned, self._local, grid._injection)
        direct = self.loop.get_task_factory() is None
        eager = _EAGER_START and direct
        if (
            not self._marked
            and len(self._pinned) + len(self._local) + len(grid._injection) == 1
            and not grid._cancel_all
        ):
            # A lone task, the rule under a light load (a request, a spawn
            # from a thread onto an idle grid): started without the batch
            # machinery (budget, aging, shares), and the dispatcher parks
            # without another turn, once the task's first step is over.
            # Parking re-checks every queue, so nothing queued meanwhile is
            # missed.
            one: list[Handle[Any]] = []
            if take_in_order(queues, 1, one):
                self._start(one.pop(), direct)
            self._park_after_first_steps(eager)
            return
        # A turn takes what it can start promptly: on 3.12+ it times each
        # start and gives back what it had no time for; before, _budget says
        # how many fit, from how long the last ones took. Of the injection
        # queue, a turn on a grid of several workers takes one task while no
        # more are queued than there are workers, and its fair share (1/N of
        # them) beyond that, somewhat as Go's globrunqget. Go moves that share
        # to the local queue, where it stays stealable; here a task taken is
        # started, and a started task never moves, so every task taken beyond
        # the one about to run is bet on this loop staying free. Under a light
        # load a handler that then blocks the loop (a web request calling a
        # slow driver) holds no request started behind it; left in the
        # injection queue, they go to the next free worker (two requests that
        # wait for each other meet: tests/test_web.py). Under a burst the
        # share is what this worker would get anyway; one task per turn there
        # made each external spawn cost a loop iteration and a wake-up of its
        # own (20,000 spawns from a thread: 0.2x the rate of one loop on 2-32
        # loops with Python 3.11, bench_loops). From 3.12 a turn goes on one
        # injected task at a time while it is short (_chain). See
        # bench/notes/web.md.
        budget = self._budget()
        size = grid._size
        if size > 1 and any(grid._injection.levels):
            injected = len(grid._injection)
            share = injected // size if injected > size else 1
            budget = min(budget, len(self._pinned) + len(self._local) + share)
        aging = grid._aging
        batch: list[Handle[Any]] = []
        if (
            take_next(
                self, queues, None if aging is None else time.monotonic() - aging, budget, batch
            )
            and grid._sleepers
            and has_victim(self)
        ):
            # Go's spinning chain: a thief that found work wakes another idle
            # worker while backlog remains elsewhere.
            grid._idle.wake_for_work(self)
        if not batch:
            self._marked = 0
            self._out_of_work(tried_stealing=True)
            return
        n = len(batch)
        if grid._cancel_all:
            for h in batch:
                h.cancel()
            del h
        elif eager:
            # Each first step runs inside _start: the turn looks at the clock
            # after every start, and what it had no time for is queued again,
            # still stealable, instead of waiting behind a task that blocks.
            t0 = _perf_counter()
            deadline = t0 + CHAIN_TURN
            start = self._start
            i = 0
            while i < n:
                start(batch[i], True)
                i += 1
                t = _perf_counter()
                if t > deadline:
                    break
            self._learn((t - t0) / i)
            if i < n:
                self._put_back(batch, i)
            elif t <= deadline and grid._size > 1 and any(grid._injection.levels):
                self._chain(queues, n, deadline)
        else:
            # Their first steps run in the loop's next round, right after
            # this stamp, and before the next turn, which times them (_budget).
            self.loop.call_soon(self._stamp)
            start = self._start
            for h in batch:
                start(h, direct)
            del h
        # No handle stays in this frame: see the end of _start.
        batch.clear()
        # any() of a queue's levels: its truth without a Python-level __len__
        # call (a fifth of a turn's cost went to those, profiled).
        if (
            n >= budget
            or any(self._pinned.levels)
            or any(self._local.levels)
            or any(grid._injection.levels)
        ):
            self.loop.call_soon(self._dispatch)
            if not eager:  # their first steps run before that turn: timed there
                self._marked = n
            # Backlog remains that an idle worker may take (a lone local task
            # stays here, as in _push_local).
            if grid._sleepers and (len(self._local) > 1 or any(grid._injection.levels)):
                grid._idle.wake_for_work(self)
        else:
            self._marked = 0
            self._park_after_first_steps(eager)

    @owner_thread
    def _park_after_first_steps(self, eager: bool) -> None:
        """Park (or spin first: :meth:`_out_of_work`) once the first steps this
        turn started are over; owner thread.

        With eager starts (3.12+) they ran inside the turn. Before, they run
        in the loop's next round, and parking is queued behind them: a
        parked worker is the first one woken for new work, and one whose
        loop a first step still holds would leave that work waiting.
        """
        if eager:
            self._out_of_work()
        else:
            self.loop.call_soon(self._out_of_work)

    @owner_thread
    def _stamp(self) -> None:
        """Note when a batch's first steps begin (see :meth:`_budget`); owner thread."""
        self._mark = _perf_counter()

    @owner_thread
    def _budget(self) -> int:
        """How many tasks this turn may take: as many as it can start promptly.

        A started task never moves, so a turn that takes 64 tasks that each
        block for 2 ms commits 128 ms of work to this loop while other workers
        idle: before 3.12 (and with a task factory) they all start; on 3.12+,
        where each first step runs inside the turn, the ones not yet started
        are out of every queue meanwhile, where no thief sees them. So a turn
        takes as many as fit in :data:`CHAIN_TURN` (1 to :data:`BATCH`) at the
        cost per task last seen (:meth:`_learn`). Where the first steps run
        after the turn, this turn first measures how long the last turn's
        first steps took: from :meth:`_stamp`, queued just ahead of them, to
        now. (Measured from the end of the last turn instead, the time also
        held the loop's wait for the GIL between two rounds, which grows with
        the number of loops: batches shrank as loops were added, and local
        spawns on 16 loops ran at 0.8x the rate of one.) Owner thread.
        """
        n = self._marked
        if n:
            self._marked = 0
            self._learn((_perf_counter() - self._mark) / n)
        cost = self._cost
        if cost * BATCH <= CHAIN_TURN:
            return BATCH
        return max(1, int(CHAIN_TURN / cost))

    @owner_thread
    def _learn(self, per: float) -> None:
        """Take ``per`` seconds as the latest first-step cost of a task here.

        A higher cost is believed at once (the next turn must not commit
        more than it can start promptly), a lower one by halves (one slow
        round of the loop does not make many cheap tasks look dear for long).
        """
        cost = self._cost
        self._cost = per if per > cost else (cost + per) * 0.5

    @owner_thread
    def _put_back(self, batch: list[Handle[Any]], i: int) -> None:
        """Queue again, at the front, the tasks of ``batch`` from index ``i`` on.

        The turn took them but ran out of time before starting them. Each goes
        back to the front of its level, in order, so the queues keep their
        start order (they were the oldest there); unpinned ones go to the local
        queue (an injected one too), where idle workers can steal them.
        Owner thread.
        """
        pinned = self._pinned.levels
        local = self._local.levels
        for k in range(len(batch) - 1, i - 1, -1):
            h = batch[k]
            (local if h._pin is None else pinned)[h._priority].appendleft(h)

    @owner_thread
    def _chain(self, queues: tuple[RunQueue, ...], started: int, deadline: float) -> None:
        """Go on starting injected tasks one at a time while this turn is short (3.12+).

        With eager starts a task's first step runs inside :meth:`_start`, so a
        turn can look at the clock after each start: tasks that finish or
        suspend at once (a web request that answers at once) are started back
        to back, up to :data:`BATCH` or ``deadline``, without a trip round the
        loop each; a task that blocks holds up only itself, since whatever this
        turn has not taken yet is still queued for the other workers. (Before
        3.12 the steps run after the dispatcher, where it cannot time them:
        a turn takes its fair share of the injection queue there.)
        """
        grid = self.grid
        one: list[Handle[Any]] = []
        start = self._start
        injection = grid._injection.levels
        while started < BATCH and any(injection) and not (self._inert or grid._cancel_all):
            if not take_in_order(queues, 1, one):
                return
            start(one.pop(), True)
            started += 1
            if _perf_counter() > deadline:
                return

    @owner_thread
    def _out_of_work(self, tried_stealing: bool = False) -> None:
        """Spin for a while where idle workers may (idle.py), else park; owner thread.

        Only a worker with no task running spins: a spinner is trusted to come
        back to the queues soon, and a running task's next step could hold its
        loop (the monitor's watch covers that case too, but a step that holds
        it is likelier where tasks run).
        """
        grid = self.grid
        idle = grid._idle
        if (
            idle.max_spinning
            and not (self._inert or grid._closing or self.running)
            and idle.start_spinning(self)
        ):
            self._spin_until = _perf_counter() + idle.spin
            self.loop.call_soon(self._spin)
        else:
            self._park(tried_stealing)

    @owner_thread
    def _spin(self) -> None:
        """One look at every queue while spinning (idle.py); owner thread.

        Work found: a turn, at once (still a spinner). None, and the spin not
        over: another look in the loop's next round (its I/O and callbacks run
        in between). Only a look that finds every queue empty settles what
        spawners left to the spinners (idle.py). The spin over, or the worker
        paused or the grid closing: park, which leaves the spinners first, so
        that a spawner that now sees none wakes a parked worker, and looks at
        every queue once more. A look queued before the worker parked some
        other way (a turn of a paused worker) finds it no longer spinning, and
        does nothing.
        """
        if not self._spinning:  # parked (or dead) since this look was queued
            return
        grid = self.grid
        if self._inert or grid._closing:
            self._park(tried_stealing=True)
            return
        idle = grid._idle
        idle.look()
        # Cleared before the queues are read: work owed from then on is
        # either seen below or owed anew by its spawner (idle.py).
        owed, idle.owed = idle.owed, False
        if (
            any(self._pinned.levels)
            or any(self._local.levels)
            or any(grid._injection.levels)
            or has_victim(self)
        ):
            if owed:  # still owed until a look finds nothing: this turn may block
                idle.owe()
            self._dispatch()
        elif _perf_counter() < self._spin_until:
            self.loop.call_soon(self._spin)
        else:
            self._park(tried_stealing=True)

    @owner_thread
    def _park(self, tried_stealing: bool = False) -> None:
        grid = self.grid
        if self._spinning:  # leave the spinners first (idle.py)
            grid._idle.stop_spinning(self)
        self._parked = True
        grid._idle.park(self)
        if grid._closing:
            grid._check_quiescent()
        # Re-check after announcing the park (idle.py: a push that raced with
        # it is either visible here or saw _parked and woke us). Other workers'
        # backlogs are looked at only if this turn did not just fail to steal
        # from them, so a thief losing races does not spin (and hold the GIL).
        if (
            self._parked
            and not self._inert
            and (
                any(self._pinned.levels)
                or any(self._local.levels)
                or any(grid._injection.levels)
                or (not tried_stealing and has_victim(self))
            )
        ):
            self._parked = False
            self.loop.call_soon(self._dispatch)

    @owner_thread
    def _start(self, h: Handle[Any], direct: bool) -> None:
        """Start a pending task on this loop (owner thread, from the dispatcher).

        ``direct``: the loop has no task factory, so the asyncio.Task is built
        here rather than through ``loop.create_task`` (one layer less per task).
        """
        if h._paused:
            self.grid._shelve(h)
            return
        if not self.grid._claim(h, self):
            return  # none of ours to start (cancelled, elsewhere, a stale copy)
        # Driver(drive(h, self)), without a Python __init__ on this hot path.
        coro: Any = _new_object(Driver)
        coro._target = inner = drive(h, self)
        coro.send = inner.send
        coro.handle = h
        if self._timing:
            coro._arm(h, self, True)  # no lock: no other thread knows this driver yet
        ctx: Any = h._ctx
        if not direct:  # the loop has a task factory: go through it
            if _TASK_HAS_CONTEXT:
                task = self.loop.create_task(  # type: ignore[call-arg,unused-ignore]
                    coro, name=h._name, context=ctx
                )
            else:
                task = ctx.run(self.loop.create_task, coro, name=h._name)
        elif _EAGER_START:
            # 3.12+: the first step runs now, inside the dispatcher, with
            # current_task() set; a task that finishes without suspending
            # never touches the loop's ready queue.
            task = _Task(coro, loop=self.loop, name=h._name, context=ctx, eager_start=True)
        elif _TASK_HAS_CONTEXT:
            task = _Task(coro, loop=self.loop, name=h._name, context=ctx)
        else:
            task = ctx.run(_Task, coro, loop=self.loop, name=h._name)
        if h._state is RUNNING:
            h._task = task
            if h._paused:  # paused while starting: see Handle.pause
                coro.arm(h, self)
        # On 3.12+ a task that fails in its eager first step keeps this frame
        # and the dispatcher's alive, through its traceback's f_back chain
        # (see driver.drive): without the handle in them (nor the driver and
        # Task, which link to it), a forgotten failed handle is freed at once
        # rather than by a later cycle collection.
        del h, coro, inner, task

    @owner_thread
    def _cancel_running(self) -> None:
        """Cancel every task on this loop (close(cancel=True)); owner thread.

        Grid tasks and plain asyncio tasks alike: the grid is shutting down, and
        asyncio.run would cancel the plain ones a moment later anyway. A loop
        being finished (its worker died) is left to its finish, whose own task
        this would cancel too.
        """
        if self._finishing or self._abandoned:
            return
        for task in asyncio.all_tasks(self.loop):
            cancel_task(task, CLOSED_MSG)

    @owner_thread
    def _cancel_task(self, task: asyncio.Task[Any], msg: Any | None, h: Handle[Any]) -> bool:
        """Cancel the task of ``h``, one of this worker's, past any pause; owner thread."""
        return cancel_task(task, msg, h, self)


#: What a shutdown reports to a worker loop's exception handler, by default.
_SHUTDOWN_MESSAGE = "unhandled exception during loopgrid worker shutdown"
_GIVE_UP_MESSAGE = "exception while loopgrid gave up on a task that did not end"
#: What asyncio.Runner.close gives the default executor to shut down (3.12+).
_EXECUTOR_TIMEOUT: float | None = 300.0 if sys.version_info >= (3, 12) else None


async def _finish_loop(message: str = _SHUTDOWN_MESSAGE) -> None:
    """``asyncio.Runner.close`` on the running loop, short of closing it.

    Every other task is cancelled (a grid task through its handle, past any
    pause) and awaited; those that raise instead of ending cancelled are
    reported to the loop's exception handler with ``message``; then async
    generators are shut down, and the default executor (with asyncio's
    timeout from 3.12). Run by a worker's thread once its loop stopped
    (:func:`_shutdown_loop`), and by ``Runner.close`` on every worker loop at
    once while they all still run.
    """
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    tasks = [(t, handle_of(t)) for t in asyncio.all_tasks(loop) if t is not me]
    if tasks:
        for t, h in tasks:
            if h is not None:
                h.cancel()
            else:
                t.cancel()
        await asyncio.gather(*(t for t, _ in tasks), return_exceptions=True)
        for t, h in tasks:
            exc: BaseException | None
            if h is not None:
                if h.cancelled():
                    continue
                exc = h.exception()
            else:
                if t.cancelled():
                    continue
                exc = t.exception()
            if exc is not None:
                loop.call_exception_handler(
                    {"message": message, "exception": exc, "task": t if h is None else h}
                )
    await loop.shutdown_asyncgens()
    if _EXECUTOR_TIMEOUT is not None:
        await loop.shutdown_default_executor(_EXECUTOR_TIMEOUT)  # type: ignore[call-arg,unused-ignore]
    else:
        await loop.shutdown_default_executor()


_FINISH_CODE = _finish_loop.__code__


def _shutdown_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Finish a stopped loop as ``asyncio.run`` does (see :func:`_finish_loop`)."""
    loop.run_until_complete(_finish_loop())
