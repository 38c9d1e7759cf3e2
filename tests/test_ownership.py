"""The thread-ownership checks (loopgrid/ownership.py) are on in this suite, and bite.

Why: they are what makes a call from the wrong thread fail loudly in every
other test; these tests check that they are switched on, that a marked method
called from another thread raises, naming the rule, and that the same method
on its own thread runs as before.
"""

from __future__ import annotations

import pytest
from helpers import WAIT

import loopgrid
from loopgrid import Grid, ownership
from loopgrid.worker import Worker


def test_the_checks_are_on_in_this_suite() -> None:
    assert ownership.enabled()
    assert Worker._dispatch.__wrapped__ is not None  # type: ignore[attr-defined]


def test_an_owner_only_method_called_from_another_thread_raises(grid: Grid) -> None:
    w = grid.workers[1]
    with pytest.raises(
        AssertionError, match=r"Worker._budget\(\) must be called on the worker's own thread"
    ):
        w._budget()


def test_the_same_method_on_its_own_thread_runs() -> None:
    async def budget() -> int:
        return loopgrid.current_worker()._budget()

    with Grid(1) as g:
        assert 1 <= g.spawn(budget).result(WAIT) <= 64


def test_a_method_that_needs_the_control_lock_raises_without_it(grid: Grid) -> None:
    w = grid.workers[0]
    with pytest.raises(AssertionError, match="with the grid's _control lock held"):
        w._update_hold()
    with grid._control:
        w._update_hold()  # nothing changed: a no-op, now allowed
