"""Work stealing: an idle worker takes half of the busiest worker's backlog.

This is Go's ``runqsteal`` and Tokio's ``steal_into``, adapted to priorities:
the thief picks the worker with the most *stealable* pending tasks (its local
queue; pinned tasks are never stolen) and takes half of them, rounded up,
highest priority first. Only pending tasks move. A coroutine that has started
stays on its loop, because an asyncio coroutine is bound to the loop whose
futures it awaits.

Stealing runs on the thief's thread. It pops from the victim's deques while the
victim (or another thief) may pop too; ``deque.popleft`` is atomic, so each task
moves at most once, and a thief that loses a race simply takes less. Counters
are written by the thief only: ``stolen_in`` on itself and
``stolen_from[victim]``, from which the victim's ``stolen_out`` is summed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import logs
from .runqueue import LEVELS_HIGH_FIRST, move
from .trace import ACTIVE as _TRACING

if TYPE_CHECKING:
    from .core import CoreWorker
    from .handle import Handle

__all__ = ["has_victim", "steal_into"]

_perf_counter = time.perf_counter


def _busiest(thief: CoreWorker) -> tuple[CoreWorker | None, int]:
    victim: CoreWorker | None = None
    most = 0
    for w in thief.grid._workers:
        if w is not thief:
            n = len(w._local)
            if n > most:
                victim, most = w, n
    return victim, most


def has_victim(thief: CoreWorker) -> bool:
    """Whether some other worker has stealable pending tasks (a racy hint)."""
    return _busiest(thief)[0] is not None


def steal_into(thief: CoreWorker) -> int:
    """Move about half of the busiest worker's stealable tasks into ``thief``.

    Returns how many moved (0 if nobody had any).
    """
    victim, most = _busiest(thief)
    if victim is None:
        return 0
    t0 = _perf_counter()
    want = most - most // 2
    got = 0
    dst = thief._local.levels
    for p in LEVELS_HIGH_FIRST:
        moved: list[Handle[Any]] = []
        got += move(victim._local.levels[p], want - got, moved)
        dst[p].extend(moved)
        if got >= want:
            break
    if got:
        thief.stolen_in += got
        thief.stolen_from[victim.index] += got
        if logs.DEBUG_EVENTS:
            logs.debug("steal", thief=thief.index, victim=victim.index, tasks=got)
        tracer = _TRACING.tracer
        if tracer is not None and tracer.grid is thief.grid:
            tracer.steal(thief.index, victim.index, got, t0)
    return got
