"""The run queue's start order: priority first, then spawn order across queues."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from loopgrid.runqueue import RunQueue, take_batch, take_in_order


@dataclass
class _Fake:
    _id: int
    _priority: int


@settings(max_examples=200, deadline=None)
@given(
    tasks=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), max_size=300),
    budget=st.integers(1, 80),
)
def test_take_in_order_merges_queues_by_priority_then_id(
    tasks: list[tuple[int, int]], budget: int
) -> None:
    """Each queue holds its tasks in spawn order (as the grid keeps them); taking
    in batches of any size yields priority-descending, id-ascending order."""
    queues = (RunQueue(), RunQueue(), RunQueue())
    for task_id, (prio, q) in enumerate(tasks):
        queues[q].push(_Fake(task_id, prio))  # type: ignore[arg-type]
    out: list[_Fake] = []
    while take_in_order(queues, budget, out):  # type: ignore[arg-type]
        pass
    assert len(out) == len(tasks)
    assert [(-h._priority, h._id) for h in out] == sorted((-h._priority, h._id) for h in out)


@dataclass
class _Queued:
    _id: int
    _priority: int
    _enqueued: float


@settings(max_examples=200, deadline=None)
@given(
    tasks=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.floats(0, 10)), max_size=200),
    cutoff=st.none() | st.floats(0, 10),
    budget=st.integers(1, 80),
)
def test_take_batch_starts_aged_tasks_first_then_in_order(
    tasks: list[tuple[int, int, float]], cutoff: float | None, budget: int
) -> None:
    """The dispatcher's choice, on run queues alone: tasks below CRITICAL that
    were queued before the cutoff come first (each level's heads, oldest
    first), then the rest by priority and spawn order; never more than the
    budget, nothing lost or taken twice."""
    queues = (RunQueue(), RunQueue(), RunQueue())
    t = 0.0
    for task_id, (prio, q, dt) in enumerate(tasks):
        t += dt  # queued in spawn order, so each deque is oldest first
        queues[q].push(_Queued(task_id, prio, t))  # type: ignore[arg-type]
    out: list[_Queued] = []
    taken = take_batch(queues, cutoff, budget, out)  # type: ignore[arg-type]
    assert taken == len(out) == min(budget, len(tasks))
    aged = [h for h in out if cutoff is not None and h._priority < 3 and h._enqueued < cutoff]
    # The aged ones lead, and whatever follows them is the priority order of what is left.
    lead = out[: len(aged)]
    rest = out[len(aged) :]
    if cutoff is not None:
        assert all(h._priority < 3 and h._enqueued < cutoff for h in lead)
    left = [h for q in queues for lv in q.levels for h in lv]
    assert len({h._id for h in out + left}) == len(tasks)
    order = sorted((-h._priority, h._id) for h in rest + left)
    assert [(-h._priority, h._id) for h in rest] == order[: len(rest)]
