"""Balance: a dispatcher turn takes no more tasks than it can start promptly.

A started task never moves, so a turn that took 64 tasks that each block
their loop committed all 64 to that loop while other workers idled (issue 21:
efficiency 0.43 at 32 loops). A worker now learns the cost of its tasks'
first steps and takes as many as fit in ``CHAIN_TURN`` (``Worker._budget``);
what it did not take stays in its queue, where thieves find it. These tests
check the consequence without timing anything: a worker that has learned its
tasks block leaves the rest of a burst to the others, so tasks that one of
them waits for get done while it blocks.
"""

from __future__ import annotations

import time

from helpers import WAIT, Countdown

import loopgrid
from loopgrid import Grid
from loopgrid.worker import BATCH, CHAIN_TURN


def test_a_worker_that_learned_its_tasks_block_leaves_the_rest_to_thieves() -> None:
    """A burst spawned on worker 0: a blocker, which holds its loop until every
    other task of the burst has run, and those others. Whichever worker starts
    the blocker must not have taken any of the others with it: with 64 per
    turn they were started behind it (or held out of every queue while it
    ran, on 3.12+) and the blocker waited for ever."""
    n = 12
    others_done = Countdown(n)

    async def learn() -> None:
        time.sleep(4 * CHAIN_TURN)  # a first step that blocks: what it learns from

    async def blocker() -> bool:
        return others_done.wait(WAIT)  # holds this worker's loop on purpose

    async def other() -> int:
        others_done.hit()
        return loopgrid.current_worker().index

    async def burst() -> tuple[bool, list[int]]:
        b = loopgrid.spawn(blocker)
        hs = [loopgrid.spawn(other) for _ in range(n)]
        return await b, [await h for h in hs]

    with Grid(2, stall_threshold=None) as g:  # balance alone, no stall shedding
        # Teach both workers: a few blocking tasks at once on each (a turn
        # measures first steps only when it has more to start after them).
        warm = [g.spawn(learn, worker=i) for i in (0, 1) for _ in range(6)]
        for h in warm:
            h.result(WAIT)
        ok, where = g.spawn(burst, worker=0).result(WAIT * 2)
    assert ok, "the blocker's burst was not run by the other worker while it blocked"
    assert len(where) == n and set(where) <= {0, 1}


def test_a_turn_takes_as_many_as_fit_in_its_time() -> None:
    """The budget follows the first-step cost last seen: a dear one at once, a
    cheap one by halves, and never outside 1..BATCH (owner thread)."""

    async def probe() -> list[int]:
        w = loopgrid.current_worker()
        seen = []
        w._learn(CHAIN_TURN * 3)  # dearer than a whole turn: one task per turn
        seen.append(w._budget())
        w._learn(CHAIN_TURN / 8)  # cheaper: believed by halves, (3 + 1/8) / 2
        seen.append(w._budget())
        for _ in range(40):
            w._learn(1e-7)
        seen.append(w._budget())
        return seen

    with Grid(2) as g:
        seen = g.spawn(probe, worker=1).result(WAIT)
    assert seen == [1, 1, BATCH]


def test_the_worker_running_a_lone_tasks_first_step_is_not_offered_more_work() -> None:
    """A lone task starts without a second dispatcher turn, and its worker
    parks only once the first step is over: the idle list hands new work to
    the worker parked last, and while a first step holds this loop (a handler
    calling a slow driver) that work must go to another one. (The worker may
    still be listed, a stale entry: one that parked and found this task when
    it looked at the queues once more. ``Idle.wake_one`` passes over a listed
    worker that is not parked.)"""

    async def first_step() -> bool:
        return loopgrid.current_worker()._parked

    with Grid(2) as g:
        # From a plain thread, onto an idle grid: one task queued at a time.
        seen = {g.spawn(first_step).result(WAIT) for _ in range(50)}
    assert seen == {False}


def test_a_worker_whose_turn_took_every_queued_task_parks_after_their_first_steps() -> None:
    """The same for a turn that starts several tasks and leaves no queue
    behind: before 3.12 their first steps run after the turn, and the worker
    must not be parked while they run (a parked worker is the first one woken
    for new work; ``Idle.wake_one`` passes over listed workers that are not)."""

    async def first_step() -> bool:
        return loopgrid.current_worker()._parked

    async def parent() -> set[bool]:
        # Pinned here: one turn, after this step, finds all three and nothing else.
        hs = [loopgrid.spawn(first_step, worker=1) for _ in range(3)]
        return {await h for h in hs}

    with Grid(2) as g:
        seen = set()
        for _ in range(20):
            seen |= g.spawn(parent, worker=1).result(WAIT)
    assert seen == {False}
