"""The run queue's start order: priority first, then spawn order across queues."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from loopgrid.runqueue import RunQueue, take_in_order


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
