"""Cross-loop synchronisation primitives: every one asyncio has.

:class:`Lock`, :class:`Event`, :class:`Condition`, :class:`Semaphore`,
:class:`BoundedSemaphore`, :class:`Barrier`, and the queues :class:`Queue`,
:class:`PriorityQueue` and :class:`LifoQueue` (with ``shutdown()`` on every
Python version: :class:`QueueShutDown` is asyncio's from 3.13).

asyncio's primitives belong to one event loop: their waiters are futures of
that loop, woken with ``call_soon``, which is not thread-safe, and a second
loop that touches one gets RuntimeError. A grid runs one loop per thread, and
its tasks (plus foreign loops and plain threads) need to share locks and
queues. These mirror asyncio's API and work from a task on any grid worker,
from a task on any other asyncio or uvloop loop, and, through the
``*_blocking`` methods and ``with``, from plain threads.

One module per concept:

* ``_waiter``: the waiter records (a task's future, a thread's parked lock),
  how each is woken, and the two ways of waiting (:data:`_waiter.TASK`,
  :data:`_waiter.THREAD`). Each primitive's waiting algorithm is written once,
  as a coroutine that awaits its waiter record; the async method runs it as
  a coroutine, the blocking method runs it on the thread with
  ``run_blocking``, where a wait blocks in place (see ``_waiter``).
* ``_handover``: what Lock and Semaphore share (FIFO hand-over, the acquire
  core); ``lock``, ``semaphore``: the two of them.
* ``event``, ``condition``, ``barrier`` (asyncio's algorithm on a Condition),
  ``queue`` (the three queues).

Thread ownership, in general: each primitive's state is guarded by its own
``threading.Lock``, ``_mutex``, taken by any thread for a few field updates
only: never across a wait, an ``await`` or a call into user code. Wake-ups are
issued after the mutex is released. Lock-free reads (``locked()``,
``is_set()``, ``qsize()``) are snapshots. Each module says what it adds
(Lock's uncontended path does without the mutex: see ``lock``).
"""

# Not public: resolves a future unless it is done (web/front.py reuses it).
from ._waiter import _resolve as _resolve
from .barrier import Barrier, BrokenBarrierError
from .condition import Condition
from .event import Event
from .lock import Lock
from .queue import LifoQueue, PriorityQueue, Queue, QueueShutDown
from .semaphore import BoundedSemaphore, Semaphore

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condition",
    "Event",
    "LifoQueue",
    "Lock",
    "PriorityQueue",
    "Queue",
    "QueueShutDown",
    "Semaphore",
]
