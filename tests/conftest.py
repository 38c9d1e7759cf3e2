"""Shared fixtures: a 2-worker grid, and a check that no grid thread leaks.

Also: the thread-ownership rules are checked at every call of a marked method
in the whole suite (``loopgrid.ownership``), before any grid starts.
"""

from __future__ import annotations

from collections.abc import Iterator

import helpers
import pytest
import structlog
from helpers import close_or_fail

import loopgrid
from loopgrid import logs, ownership

ownership.enable()


@pytest.fixture(autouse=True)
def no_leaked_grid_threads() -> Iterator[None]:
    helpers.baseline.clear()
    helpers.baseline.update(t.ident for t in helpers.grid_threads())
    yield
    leaked = helpers.grid_threads()
    assert not leaked, f"loopgrid threads still alive after the test: {leaked}"


@pytest.fixture(autouse=True)
def clean_logging_config() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    logs.set_debug_events(False)


@pytest.fixture
def grid() -> Iterator[loopgrid.Grid]:
    """A 2-worker grid, closed (cancelling what is left) after the test."""
    g = loopgrid.Grid(loops=2)
    try:
        yield g
    finally:
        close_or_fail(g, cancel=True)
