"""The pytest plugin: run async tests and fixtures on a grid, and check that nothing leaks.

Why: code written for a grid (``loopgrid.spawn``, ``current_worker()``, handles,
the cross-loop primitives) only runs on a grid worker's loop, and a grid left
with tasks or threads at the end of one test leaks them into the next. The
plugin runs a test where its code would run in production, on worker 0 of a
fresh grid, and fails the test if the grid is not empty when it ends.

Registered through the ``pytest11`` entry point (``loopgrid.pytest_plugin``,
this package, whose attributes are the hooks and fixtures pytest registers),
and inert unless used: it only acts on tests marked ``@pytest.mark.loopgrid``
(their async fixtures included), on tests that request the ``loopgrid_grid``
fixture, and on loops made by :func:`grid_loop_factory`. Everything else,
pytest-asyncio and anyio tests included, runs exactly as without it.

One module per job:

* :mod:`._options`: ``--loopgrid-loops`` and the ``loopgrid_loops`` and
  ``loopgrid_close_timeout`` ini options, read once per run, and where a
  grid's defaults come from.
* :mod:`._marker`: ``@pytest.mark.loopgrid(loops=N, scope="function")`` (the
  ``async def`` test and its async fixtures run on worker 0 of a grid made for
  that test or shared within ``scope``), and the ``loopgrid_grid`` fixture.
* :mod:`._loop_factory`: :func:`grid_loop_factory` and :class:`GridLoop`, so
  that pytest-asyncio's and anyio's tests run on worker 0 of a grid too.
* :mod:`._leaks`: the leak checks every grid of the plugin gets when it closes.
* :mod:`._run`: running a coroutine on worker 0 from pytest's thread, in a given
  context, which the marker and :class:`GridLoop` share.
"""

from __future__ import annotations

from ._leaks import pytest_runtest_makereport as pytest_runtest_makereport
from ._loop_factory import GridLoop, grid_loop_factory
from ._marker import _loopgrid_grid_class as _loopgrid_grid_class
from ._marker import _loopgrid_grid_function as _loopgrid_grid_function
from ._marker import _loopgrid_grid_module as _loopgrid_grid_module
from ._marker import _loopgrid_grid_package as _loopgrid_grid_package
from ._marker import _loopgrid_grid_session as _loopgrid_grid_session
from ._marker import loopgrid_grid as loopgrid_grid
from ._marker import pytest_fixture_setup as pytest_fixture_setup
from ._marker import pytest_generate_tests as pytest_generate_tests
from ._marker import pytest_pycollect_makeitem as pytest_pycollect_makeitem
from ._marker import pytest_pyfunc_call as pytest_pyfunc_call
from ._marker import pytest_runtest_call as pytest_runtest_call
from ._marker import pytest_runtest_protocol as pytest_runtest_protocol
from ._marker import pytest_runtest_setup as pytest_runtest_setup
from ._options import DEFAULT_LOOPS
from ._options import pytest_addoption as pytest_addoption
from ._options import pytest_configure as pytest_configure
from ._options import pytest_unconfigure as pytest_unconfigure

__all__ = ["DEFAULT_LOOPS", "GridLoop", "grid_loop_factory"]
