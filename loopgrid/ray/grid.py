"""RayGrid: the grid's scheduling over Ray actors, one actor process per worker.

The shape is the in-process grid's (``loopgrid/grid.py``), with the workers'
event loops moved into Ray async actors and the scheduling kept in the driver:

* **Queues stay in the driver.** The injection queue and each worker's pinned
  and local queues are the same :class:`~loopgrid.runqueue.RunQueue`\\ s,
  served in the same order (``take_aged``, then ``take_in_order``: priority,
  then spawn order, with aging), and an idle worker steals half of the busiest
  one's local backlog with the same ``steal_into``. A task is sent to an actor
  only when that actor has a free slot (``concurrency`` tasks run at once on
  one actor), so a task is *pending* exactly while it sits in the driver and
  *running* from the moment it is sent. Pause, resume, move and cancel of
  pending tasks are therefore the in-process operations on the same
  :class:`~loopgrid.Handle`, and an actor that dies loses no pending task: its
  queues are emptied into the injection queue and served by the others.
* **One pump thread per grid** (``loopgrid-<name>-ray-pump``) runs a private
  event loop that owns the scheduling state: it dispatches (sends tasks to
  actors), receives completions and resolves handles, and notices deaths.
  Ray delivers completions on its own threads; they are appended to a deque
  and the pump is woken once per burst, as a worker's mailbox does.
* **Handles resolve in the driver**, on the pump thread, through the same
  code as in-process completions: an ``await`` on any loop, ``result()`` from a
  plain thread, ``gather`` and done callbacks work unchanged.
* **Spawns from tasks** (``loopgrid.ray.spawn`` on a worker) reach the pump
  through each actor's outbox, which it long-polls, and go onto that worker's
  local queue, where stealing finds them; their outcomes go back with one
  ``deliver`` call per burst (see ``actor.py``).

Thread ownership:

* Pump thread only: every ``RayWorker``'s ``inflight``, ``alive``, ``error``,
  counters, ``_local`` pushes and steals, ``_seen`` and ``_deferred``,
  ``_reply_scheduled`` reset; the grid's ``_done_scheduled`` reset,
  ``_lost_pending``, ``_inflight``; the running handles' ``_task`` (their Ray
  ``ObjectRef``) and outcome.
* Any thread: ``spawn`` (pushes onto the injection or a pinned queue, counts
  under ``_ext_lock``), ``cancel``/``pause``/``resume``/``move`` of pending
  tasks (under ``_control``, the grid's control lock, which the pump also
  takes to move a task from PENDING to RUNNING, so those operations see a
  task either pending or started, never in between), ``stats`` (reads
  snapshots). ``_kicked`` is set by whoever wakes the pump and cleared by the
  pump before it looks at the queues, so a push is never stranded.
* Ray's threads: append to ``_done`` and wake the pump; nothing else.
* A worker's ``_children`` (token -> child handle) is filled by the pump and
  emptied by whichever thread finishes the child (a pending child can be
  cancelled from anywhere), which also appends its outcome to ``_replies``
  (a deque) and wakes the pump to send it: dict and deque operations are
  atomic.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from .. import logs
from ..core import ACCEPT_ALL, ACCEPT_NONE, SchedulingCore, take_next
from ..errors import GridClosedError, WorkerDiedError, check_seconds
from ..grid import _describe_target, _is_coroutine
from ..handle import _DONE, CANCELLED, CLAIMS, COMPLETED, PENDING, RUNNING, Handle
from ..priority import Priority, check_priority
from ..runqueue import RunQueue
from ..stats import _per_priority
from .actor import GridActor, Outcome, Request
from .cluster import Connection, connect
from .payload import pickled, portable

__all__ = ["RayGrid", "RayWorker"]

T = TypeVar("T")

_grid_names = itertools.count(1)
_monotonic = time.monotonic
_NORMAL = Priority.NORMAL
_actor_class: Any = None


def _remote_actor_class(ray: Any) -> Any:
    global _actor_class
    if _actor_class is None:
        _actor_class = ray.remote(GridActor)
    return _actor_class


class RayHandle(Handle[T]):
    """A :class:`~loopgrid.Handle` whose task runs in a Ray actor.

    Everything a handle does works the same, except that a *running* task
    cannot be paused: its coroutine steps in another process, out of the
    driver's reach. ``_retries`` is how many more times the task may start
    again if the worker running it dies.
    """

    __slots__ = ("_retries",)

    if TYPE_CHECKING:  # the slot is set by RayGrid._new_handle
        _retries: int

    def pause(self) -> bool:
        """Hold a pending task (see :meth:`Handle.pause`); running ones cannot pause.

        Raises :class:`asyncio.InvalidStateError` for a task that has started:
        it runs on a worker process, stepped by that process's loop.
        """
        grid = self._grid
        with grid._control:
            if self._state in _DONE or grid._closing:
                return False
            if self._state is RUNNING:
                w = self._worker
                raise asyncio.InvalidStateError(
                    f"cannot pause {self!r}: it is running on worker "
                    f"{None if w is None else w.index} of {grid!r}, a Ray actor process; "
                    "on a RayGrid only pending tasks pause"
                )
            self._paused = True
            grid._paused_tasks[self._id] = self
        if logs.DEBUG_EVENTS:
            logs.debug("task.paused", task_id=self._id, task=self._name)
        return True

    def _cancel_on_loop(self, msg: Any | None) -> None:
        # On the pump thread (Handle.cancel posts it to worker.loop).
        task = self._task
        if self._state is RUNNING and task is not None:
            assert self._worker is not None
            self._worker._cancel_task(task, msg, self)
        elif self._state is PENDING:
            self.cancel(msg)


class RayWorker:
    """The driver's side of one worker: its queues, its actor, its counters.

    ``loop`` is the grid's pump loop: it is where a handle posts work for its
    worker (a cancel), as with an in-process worker's loop.
    """

    def __init__(self, grid: RayGrid, index: int, actor: Any, workers: int) -> None:
        self.grid = grid
        self.index = index
        self.actor = actor
        self.loop = grid._loop
        self._local = RunQueue()
        self._pinned = RunQueue()
        self._paused = False
        self.alive = True
        self.error: str | None = None
        self.info: dict[str, Any] = {}
        self.inflight = 0
        self.started = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        #: Always 0: no driver thread is this worker's (``CoreWorker.dropped``).
        self.dropped = 0
        self.retried = 0
        self.stolen_in = 0
        self.stolen_from = [0] * workers
        self.spawned = 0
        self._watch: Any = None
        #: Spawn requests received from this actor so far (its numbering).
        self._seen = 0
        #: Outcomes of tasks that finished here, held until ``_seen`` reaches
        #: the request number they carry (see actor.py): (number, handle, ok, value).
        self._deferred: list[tuple[int, RayHandle[Any], bool, Any]] = []
        #: token -> handle of the children spawned from this actor, not finished.
        self._children: dict[int, RayHandle[Any]] = {}
        #: Outcomes of those children, to send back (any thread appends).
        self._replies: collections.deque[Outcome] = collections.deque()
        self._reply_scheduled = False

    def __repr__(self) -> str:
        state = "" if self.alive else " dead"
        return f"<RayWorker {self.index} of grid {self.grid.name!r}{state}>"

    def describe(self) -> str:
        """The worker, with its process and node, for error messages."""
        info = self.info
        where = f"pid {info.get('pid')}, node {info.get('node')}" if info else "not started"
        return f"worker {self.index} of grid {self.grid.name!r} ({where})"

    def is_current(self) -> bool:
        return False  # no driver thread is a worker's

    @property
    def pending(self) -> int:
        """Tasks queued for this worker in the driver (stealable and pinned)."""
        return len(self._local) + len(self._pinned)

    @property
    def running(self) -> int:
        """Tasks sent to this worker's actor that have not finished."""
        return self.inflight

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Send this worker nothing new until :meth:`resume`; its running tasks go on."""
        with self.grid._control:
            self.grid._check_pausable()
            self._paused = True

    def resume(self) -> None:
        with self.grid._control:
            self._paused = False
        self.grid._kick()

    def _push_pinned(self, h: Handle[Any]) -> None:
        self._pinned.push(h)
        self.grid._kick()

    def _update_hold(self) -> None:
        """A pause of this worker or of the grid changed: the pump looks again."""
        self.grid._kick()

    def _release_soon(self) -> None:
        """Nothing to release: a task that runs on an actor is never paused."""

    def _cancel_task(self, task: Any, msg: Any | None, h: Handle[Any]) -> bool:
        """Ask the actor to cancel the task whose Ray ``ObjectRef`` is ``task``; the pump.

        Its outcome comes back as a completion (``TaskCancelledError``), which
        resolves the handle cancelled with ``msg``.
        """
        h._aux = msg
        self.grid._ray.cancel(task)
        return True


class RayGrid(SchedulingCore):
    """A grid whose workers are Ray actor processes: the :class:`~loopgrid.Grid` API, scaled out.

    ``loops`` workers (default: the CPUs of the Ray instance), each a Ray
    async actor with its own event loop, running up to ``concurrency`` tasks at
    once. Without ``address`` the grid starts a private Ray on 127.0.0.1 (no
    dashboard, no usage reporting; see ``cluster.py``) and stops it when it
    closes; with ``address=`` it joins that cluster. ``retries`` (default 0)
    is how many times a task may start again elsewhere when the worker
    running it dies; ``spawn(retries=)`` overrides it per task. Pending tasks
    never need retries: they are never lost. ``actor_options`` go to Ray's
    ``.options()`` for each actor (resources, runtime_env, scheduling), over
    the defaults ``num_cpus=0`` and ``scheduling_strategy="SPREAD"``.

    Functions and arguments cross processes by pickle: module-level async
    functions and plain data. Contextvars do not cross: a task starts in its
    worker process's own context.
    """

    def __init__(
        self,
        loops: int | None = None,
        *,
        address: str | None = None,
        name: str | None = None,
        concurrency: int = 64,
        retries: int = 0,
        aging: float | None = 1.0,
        actor_options: dict[str, Any] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        if loops is not None and (type(loops) is not int or loops < 1):
            raise ValueError(f"loops must be an int >= 1 or None, got {loops!r}")
        if type(concurrency) is not int or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        _check_retries(retries)
        if aging is not None:
            aging = check_seconds("aging (or None)", aging)
        if name is None:
            name = f"raygrid-{next(_grid_names)}"
        elif not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError(f"actor_options must be a dict or None, got {actor_options!r}")
        start_timeout = check_seconds("start_timeout", start_timeout)
        # The scheduling state is the core's (core.py).
        self._init_core(name, None if aging is None else float(aging))
        self._concurrency = concurrency
        self._retries = retries
        self._stopping = False
        self._kicked = False
        self._done: collections.deque[tuple[RayHandle[Any], RayWorker, Any]] = collections.deque()
        self._done_scheduled = False
        #: id -> handle of every task sent to a worker and not yet resolved (pump).
        self._inflight: dict[int, RayHandle[Any]] = {}
        self._conn: Connection = connect(address)
        self._ray: Any = self._conn.ray
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._pump_main, name=f"loopgrid-{name}-ray-pump", daemon=True
        )
        self._workers: tuple[RayWorker, ...] = ()
        try:
            self._start_workers(loops, actor_options or {}, float(start_timeout))
        except BaseException:
            self._abort_start()
            raise
        logs.info("grid.started", grid=name, loops=len(self._workers), backend="ray",
                  address=self._conn.address)  # fmt: skip

    def _start_workers(self, loops: int | None, options: dict[str, Any], timeout: float) -> None:
        ray = self._ray
        if loops is None:
            cpus = os.cpu_count() if self._conn.private else ray.cluster_resources().get("CPU")
            loops = max(1, int(cpus or 1))
        opts: dict[str, Any] = {
            "num_cpus": 0,
            "scheduling_strategy": "SPREAD",
            "max_restarts": 0,
            **options,
            # Our slots, plus one each for watch() and outbox() (always
            # pending), deliver() and info().
            "max_concurrency": self._concurrency + 4,
        }
        if self._conn.private and "runtime_env" not in options:
            # Same machine, same interpreter: let the workers import whatever
            # the driver can (the user's modules, a test directory), so that
            # functions pickled by reference load there. On a cluster the
            # user's runtime_env says what the workers get.
            path = os.pathsep.join(p or os.getcwd() for p in sys.path)
            opts["runtime_env"] = {"env_vars": {"PYTHONPATH": path}}
        cls = _remote_actor_class(ray)
        actors = [cls.options(**opts).remote(self.name, i) for i in range(loops)]
        self._thread.start()
        self._workers = tuple(RayWorker(self, i, a, loops) for i, a in enumerate(actors))
        try:
            infos = ray.get([a.info.remote() for a in actors], timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise TimeoutError(
                f"the {loops} workers of {self!r} did not start within {timeout} s "
                f"(Ray actor options {opts!r}): is the cluster short of resources?"
            ) from None
        for w, info in zip(self._workers, infos, strict=True):
            w.info = info
            w._watch = w.actor.watch.remote()
            w._watch.future().add_done_callback(
                lambda f, w=w: self._from_ray_thread(self._watch_ended, w, f)
            )
            self._poll(w)

    def _abort_start(self) -> None:
        self._accept = ACCEPT_NONE
        self._closed = self._closing = self._stopping = True
        for w in self._workers:
            with contextlib.suppress(Exception):
                self._ray.kill(w.actor)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()
        self._conn.release()

    @property
    def workers(self) -> tuple[RayWorker, ...]:
        return self._workers

    @property
    def address(self) -> str:
        """Where the workers run: ``"local (127.0.0.1)"``, or the cluster's address."""
        return self._conn.address

    # -- the pump thread ------------------------------------------------------------

    def _pump_main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _from_ray_thread(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the pump has stopped: the grid is closed and owes nobody an answer

    def _kick(self) -> None:
        """Have the pump look at the queues soon (any thread; one wake-up per burst)."""
        if not self._kicked:
            self._kicked = True
            self._from_ray_thread(self._dispatch)

    def _dispatch(self) -> None:
        """Send pending tasks to workers with free slots (pump thread)."""
        self._kicked = False
        if self._stopping:
            return
        live = [w for w in self._workers if w.alive]
        for w in self._workers:
            if not w.alive and (len(w._pinned) or len(w._local)):
                self._rehome(w)
        if not live:
            self._fail_pending()
            return
        cap = self._concurrency
        ready = [w for w in live if w.inflight < cap and not (w._paused or self._paused)]
        if not ready:
            return
        share = -(-len(self._injection) // len(ready))
        took = False
        aging = self._aging
        for w in sorted(ready, key=_by_inflight):
            free = cap - w.inflight
            batch: list[Handle[Any]] = []
            # Its own queues and a fair share of the injection queue; with
            # none of either, as many as it has free slots, stolen.
            budget = min(free, len(w._pinned) + len(w._local) + share) or free
            queues = (w._pinned, w._local, self._injection)
            take_next(w, queues, None if aging is None else _monotonic() - aging, budget, batch)
            for h in batch:
                self._start(w, h)
            took = took or bool(batch)
        if took:
            self._kick()  # what was skipped (cancelled, paused) left slots free

    def _start(self, w: RayWorker, h: Handle[Any]) -> None:
        # Under _control, unlike a Grid worker's start: a task that runs in
        # an actor cannot be paused, so a pause must see it either pending
        # (and hold it) or running (and refuse), never pause it in between.
        with self._control:
            if h._paused:
                self._shelve(h)
                return
            if not self._claim(h, w):
                return  # cancelled while queued, or a moved task's stale copy
        assert isinstance(h, RayHandle)
        w.inflight += 1
        self._inflight[h._id] = h
        ref = w.actor.run.remote(h._fn)
        h._task = ref
        ref.future().add_done_callback(lambda f: self._completed(h, w, f))

    def _completed(self, h: RayHandle[Any], w: RayWorker, fut: Any) -> None:
        # On a Ray thread: queue the outcome, wake the pump once per burst.
        self._done.append((h, w, fut))
        if not self._done_scheduled:
            self._done_scheduled = True
            self._from_ray_thread(self._drain_done)

    def _drain_done(self) -> None:
        """Resolve the handles of finished tasks (pump thread)."""
        self._done_scheduled = False
        done = self._done
        while done:
            h, w, fut = done.popleft()
            w.inflight -= 1
            del self._inflight[h._id]
            self._resolve(h, w, fut)
        self._kick()
        if self._closing:
            self._check_quiescent()

    def _resolve(self, h: RayHandle[Any], w: RayWorker, fut: Any) -> None:
        loop = self._loop
        exceptions = self._ray.exceptions
        try:
            ok, value, posted = fut.result()
        except exceptions.TaskCancelledError:
            w.cancelled += 1
            h._set_cancelled(h._aux, loop)
        except exceptions.RayActorError as err:
            self._worker_died(w, err)
            if h._retries > 0 and not self._stopping and any(x.alive for x in self._workers):
                self._retry(h, w, err)
                return
            w.failed += 1
            exc = WorkerDiedError(
                f"task {h._name!r} (id {h._id}) was running on {w.describe()} when that "
                f"worker died: {_first_line(err)}"
                + (" (no retries left)" if h._retries == 0 and self._retries else "")
            )
            h._set_exception(exc, loop)
        except BaseException as err:  # Ray could not deliver the outcome (an unpicklable value)
            w.failed += 1
            h._set_exception(err, loop)
        else:
            if posted > w._seen:  # its last spawns are still on their way
                w._deferred.append((posted, h, ok, value))
            else:
                self._finish(h, w, ok, value)

    def _finish(self, h: RayHandle[Any], w: RayWorker, ok: bool, value: Any) -> None:
        if ok:
            w.completed += 1
            h._result = value
            h._state = COMPLETED
            h._release()
            h._run_callbacks(self._loop)
        else:
            w.failed += 1
            h._set_exception(value, self._loop)

    def _release_deferred(self, w: RayWorker, everything: bool = False) -> None:
        if not w._deferred:
            return
        keep = []
        for item in w._deferred:
            if everything or item[0] <= w._seen:
                _, h, ok, value = item
                self._finish(h, w, ok, value)
            else:
                keep.append(item)
        w._deferred = keep

    # -- spawns from tasks on the workers -------------------------------------------------

    def _poll(self, w: RayWorker) -> None:
        """Keep one outbox() call pending on ``w`` (see actor.py)."""
        ref = w.actor.outbox.remote()
        ref.future().add_done_callback(lambda f: self._from_ray_thread(self._received, w, f))

    def _received(self, w: RayWorker, fut: Any) -> None:
        """Queue the children a worker's tasks spawned (pump thread)."""
        if self._stopping or not w.alive:
            return
        try:
            requests, posted = fut.result()
        except BaseException:
            return  # the actor is gone: watch() tells
        for request in requests:
            self._child(w, request)
        w._seen = posted
        self._release_deferred(w)
        self._poll(w)
        self._kick()
        if self._closing:
            self._check_quiescent()

    def _child(self, w: RayWorker, request: Request) -> None:
        token, payload, priority, name = request
        if payload is None:  # its awaiter was cancelled
            child = w._children.get(token)
            if child is not None:
                child.cancel()
            return
        if self._cancel_all:
            exc = GridClosedError(f"{self!r} is closing and cancelling: it takes no new tasks")
            w._replies.append((token, "error", exc))
            self._reply_soon(w)
            return
        h = self._new_ray_handle(payload, name or "child", check_priority(priority), None)
        w.spawned += 1
        w._children[token] = h
        h._add_callback(None, lambda h: self._child_done(w, token, h), None)
        w._local.push(h)

    def _child_done(self, w: RayWorker, token: int, h: RayHandle[Any]) -> None:
        # Any thread (a pending child may be cancelled from anywhere).
        w._children.pop(token, None)
        if h._state is COMPLETED:
            w._replies.append((token, "ok", h._result))
        elif h._state is CANCELLED:
            w._replies.append((token, "cancelled", h._aux))
        else:
            h._mark_retrieved()  # its parent gets it
            w._replies.append((token, "error", portable(h._result)))
        self._reply_soon(w)

    def _reply_soon(self, w: RayWorker) -> None:
        if not w._reply_scheduled:
            w._reply_scheduled = True
            self._from_ray_thread(self._reply, w)

    def _reply(self, w: RayWorker) -> None:
        w._reply_scheduled = False
        out = []
        while w._replies:
            out.append(w._replies.popleft())
        if out and w.alive and not self._stopping:
            w.actor.deliver.remote(out)

    def _retry(self, h: RayHandle[Any], w: RayWorker, err: BaseException) -> None:
        """Put a task whose worker died back in the injection queue, pending again."""
        with self._control:
            h._retries -= 1
            h._worker = h._task = None
            h._pin = None
            h._state = PENDING
            h._enqueued = _monotonic()
            CLAIMS[h._id & 63].add(h._id)
        w.retried += 1
        logs.warning("task.retried", grid=self.name, task_id=h._id, task=h._name,
                     worker=w.index, retries_left=h._retries)  # fmt: skip
        self._injection.push(h)

    def _watch_ended(self, w: RayWorker, fut: Any) -> None:
        if self._stopping:
            return
        try:
            fut.result()
        except BaseException as err:
            self._worker_died(w, err)
        self._kick()

    def _worker_died(self, w: RayWorker, err: BaseException) -> None:
        if not w.alive:
            return
        w.alive = False
        w.error = _first_line(err)
        logs.warning("worker.died", grid=self.name, worker=w.index, running=w.inflight,
                     pending=w.pending, error=w.error)  # fmt: skip
        # Outcomes held for spawns that will never arrive now.
        self._release_deferred(w, everything=True)
        self._rehome(w)

    def _rehome(self, w: RayWorker) -> None:
        """Move a dead worker's pending tasks to the injection queue, unpinned."""
        moved = 0
        for q in (w._pinned, w._local):
            for h in q.pop_all():
                with self._control:
                    if h._pin == w.index:
                        h._pin = None
                self._injection.push(h)
                moved += 1
        if moved:
            logs.info("worker.requeued", grid=self.name, worker=w.index, tasks=moved)

    def _fail_pending(self) -> None:
        """No worker is left: every pending task fails, none waits for ever."""
        for h in self._pop_queued():
            with self._control:
                if h._paused:
                    self._shelve(h)
                    continue
                try:
                    CLAIMS[h._id & 63].remove(h._id)
                except KeyError:
                    continue
                h._state = RUNNING  # leaves PENDING once, as a start would
            self._lost_pending += 1
            h._set_exception(
                WorkerDiedError(
                    f"task {h._name!r} (id {h._id}) could not start: every worker of "
                    f"{self!r} has died ({'; '.join(str(w.error) for w in self._workers)})"
                ),
                self._loop,
            )
        if self._closing:
            self._check_quiescent()

    def _cancel_running(self) -> None:
        """Cancel every task sent to a worker (close(cancel=True)); pump thread."""
        for h in list(self._running_handles()):
            h._cancel_on_loop(None)

    def _running_handles(self) -> list[RayHandle[Any]]:
        return list(self._inflight.values())

    # -- spawning ---------------------------------------------------------------------

    def spawn(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        /,
        *args: Any,
        priority: Priority | int = _NORMAL,
        name: str | None = None,
        worker: int | None = None,
        retries: int | None = None,
    ) -> Handle[T]:
        """Schedule ``fn(*args)`` on a worker process; return its handle.

        As :meth:`loopgrid.Grid.spawn`, with two differences that crossing a
        process boundary imposes: ``fn`` must be an async function (a
        coroutine object cannot be pickled), and ``fn`` and ``args`` must
        pickle (``TypeError`` names the one that does not). ``retries``
        overrides the grid's: how many times the task may start again if its
        worker dies while running it.
        """
        if self._accept != ACCEPT_ALL:
            self._refuse(fn)
        if _is_coroutine(fn):
            coro: Any = fn
            coro.close()
            raise TypeError(
                f"RayGrid.spawn() got the coroutine object {fn!r}: a coroutine cannot be "
                "sent to another process; pass the async function and its arguments"
            )
        default_name, _ = _describe_target(fn, args)
        priority = check_priority(priority)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        if worker is not None:
            self._check_worker_index(worker)
        if retries is None:
            retries = self._retries
        else:
            _check_retries(retries)
        h: RayHandle[T] = self._new_ray_handle(
            pickled(fn, args), default_name if name is None else name, priority, worker, retries
        )
        self._admit(h, fn)
        if worker is None:
            self._injection.push(h)
            self._injected()
        else:
            self._workers[worker]._push_pinned(h)
        if logs.DEBUG_EVENTS:
            logs.debug("task.spawned", task_id=h._id, task=h._name, priority=priority.name)
        return h

    def _new_ray_handle(
        self,
        payload: bytes,
        name: str,
        priority: Priority,
        pin: int | None,
        retries: int | None = None,
    ) -> RayHandle[Any]:
        """The handle of a new pending task (the core's factory), with its retries.

        ``args`` is ``()``, not None: ``_fn`` holds the pickled call, not a
        coroutine to close. Contextvars do not cross processes: no context.
        """
        h = self._new_handle(RayHandle, payload, (), None, name, priority, pin)
        h._retries = self._retries if retries is None else retries
        return h

    def _injected(self) -> None:
        self._kick()

    def _cancel_running_soon(self) -> None:
        self._from_ray_thread(self._cancel_running)

    # -- pausing ----------------------------------------------------------------------

    def pause(self) -> None:
        """Send no task to any worker until :meth:`resume`; spawns still queue.

        Running tasks go on: they step in other processes. Raises
        :class:`~loopgrid.GridClosedError` on a closing grid.
        """
        self._set_paused(True)

    def resume(self) -> None:
        """Send pending tasks to the workers again; any thread."""
        self._set_paused(False)

    # -- shutdown -----------------------------------------------------------------------

    def close(self, *, cancel: bool = False, timeout: float | None = None) -> None:
        """Wait for (or cancel) every task, then stop the actors and the pump.

        As :meth:`loopgrid.Grid.close`: each task ends in exactly one state;
        with ``cancel=True`` pending tasks never start and running ones are
        cancelled on their workers. Then the actors are killed and, once Ray
        confirms they are gone, a private Ray instance is shut down (when no
        other grid of the process uses it). Idempotent.
        """
        super().close(cancel=cancel, timeout=timeout)

    def _stop_workers(self) -> None:
        self._stopping = True
        ray = self._ray
        watches = [w._watch for w in self._workers if w._watch is not None]
        for w in self._workers:
            with contextlib.suppress(Exception):
                ray.kill(w.actor)
        # Each watch() call fails once its actor is gone: wait for that, so
        # that no worker process outlives the grid.
        if watches:
            ray.wait(watches, num_returns=len(watches), timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._conn.release()
        self._closed = True
        logs.flush_unretrieved()
        logs.info("grid.closed", grid=self.name)

    # -- introspection ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot, in the shape of :meth:`loopgrid.Grid.stats`.

        Per worker, beside the in-process counters: ``alive``, ``error`` (why
        it died), ``pid`` and ``node`` of its actor, and ``retried`` (tasks that
        were running there when it died and started again elsewhere).
        """
        workers = self._workers
        per: list[dict[str, Any]] = []
        for w in workers:
            pending = _per_priority(w._local, w._pinned)
            per.append(
                {
                    "index": w.index,
                    "alive": w.alive,
                    "error": w.error,
                    "pid": w.info.get("pid"),
                    "node": w.info.get("node"),
                    "pending": pending,
                    "pending_total": sum(pending.values()),
                    "pinned": len(w._pinned),
                    "running": w.inflight,
                    "paused": w._paused or self._paused,
                    "spawned": w.spawned,
                    "started": w.started,
                    "completed": w.completed,
                    "failed": w.failed,
                    "cancelled": w.cancelled,
                    "retried": w.retried,
                    "stolen_in": w.stolen_in,
                    "stolen_out": sum(t.stolen_from[w.index] for t in workers),
                }
            )
        injection = _per_priority(self._injection)
        keys = ("started", "completed", "failed", "cancelled", "retried", "stolen_in")
        totals = {k: sum(w[k] for w in per) for k in keys}
        totals["spawned"] = self._ext_spawned + sum(w["spawned"] for w in per)
        totals["cancelled"] += self._ext_cancelled
        totals["failed"] += self._lost_pending
        totals["pending"] = sum(w["pending_total"] for w in per) + sum(injection.values())
        totals["running"] = sum(w["running"] for w in per)
        totals["paused"] = len(self._paused_tasks)
        return {
            "grid": self.name,
            "backend": "ray",
            "address": self._conn.address,
            "loops": len(workers),
            "concurrency": self._concurrency,
            "state": "closed" if self._closed else "closing" if self._closing else "open",
            "paused": self._paused,
            "workers": per,
            "injection": injection,
            "external": {"spawned": self._ext_spawned, "cancelled": self._ext_cancelled},
            "totals": totals,
        }


def _by_inflight(w: RayWorker) -> int:
    return w.inflight


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _check_retries(retries: object) -> None:
    if type(retries) is not int or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
