"""The plugin's command-line and ini options, and the state it keeps per run.

Why a module of its own: three parts of the plugin read the same settings (the
marker's grids, the ``loopgrid_grid`` fixture and :func:`grid_loop_factory`'s
loops), and they must agree on where a default comes from. The rule lives here
once: an explicit argument, else ``--loopgrid-loops``, else the
``loopgrid_loops`` ini option, else :data:`DEFAULT_LOOPS`.

Everything here is read and written on pytest's own thread.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Literal

import pytest

__all__ = ["DEFAULT_LOOPS"]

#: Loops of a test's grid when neither the marker, ``--loopgrid-loops`` nor the
#: ``loopgrid_loops`` ini option says.
DEFAULT_LOOPS = 2
#: Seconds a grid gets to answer the leak check and to stop, unless
#: ``loopgrid_close_timeout`` says.
DEFAULT_CLOSE_TIMEOUT = 30.0

ScopeName = Literal["function", "class", "module", "package", "session"]
SCOPES: tuple[ScopeName, ...] = ("function", "class", "module", "package", "session")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where a test's grid comes from: its loops and the scope it is shared in."""

    loops: int
    scope: str
    marked: bool


class State:
    """Per-run state (main thread only): the settings read at configure time,
    and the item whose protocol is running."""

    def __init__(self, loops: int, close_timeout: float) -> None:
        self.item: pytest.Item | None = None
        self.loops = loops
        self.close_timeout = close_timeout


_STATE = pytest.StashKey[State]()
#: The configs of the pytest runs in progress in this process, innermost last
#: (pytester runs pytest inside pytest). grid_loop_factory()'s loops have no
#: config handed to them: they read the innermost one.
_RUNS: list[pytest.Config] = []


def state(config: pytest.Config) -> State:
    st = config.stash.get(_STATE, None)
    if st is None:
        st = config.stash[_STATE] = State(_default_loops(config), _close_timeout(config))
    return st


def current_state() -> State | None:
    """The state of the innermost pytest run in progress, None outside pytest."""
    return state(_RUNS[-1]) if _RUNS else None


def default_loops() -> int:
    """Loops of a grid whose maker did not say: the options of the current run."""
    st = current_state()
    return DEFAULT_LOOPS if st is None else st.loops


def default_close_timeout() -> float:
    st = current_state()
    return DEFAULT_CLOSE_TIMEOUT if st is None else st.close_timeout


def parse_loops(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"needs an int >= 1, got {text!r}")
    return n


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("loopgrid")
    group.addoption(
        "--loopgrid-loops",
        dest="loopgrid_loops",
        type=parse_loops,
        default=None,
        metavar="N",
        help="event loops of a test's grid when its loopgrid marker (or grid_loop_factory) "
        f"does not say (default: the loopgrid_loops ini option, else {DEFAULT_LOOPS})",
    )
    parser.addini(
        "loopgrid_loops",
        help="event loops of a test's grid when neither its loopgrid marker (or "
        f"grid_loop_factory) nor --loopgrid-loops says (default {DEFAULT_LOOPS})",
        default=str(DEFAULT_LOOPS),
    )
    parser.addini(
        "loopgrid_close_timeout",
        help="seconds to wait for a test's grid to answer the leak check and to stop "
        f"before failing the test with the stuck worker threads (default "
        f"{DEFAULT_CLOSE_TIMEOUT:g})",
        default=f"{DEFAULT_CLOSE_TIMEOUT:g}",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "loopgrid(loops=N, scope='function'): run this async def test, and its async "
        "fixtures, on worker 0 of a loopgrid grid of N event loops (default "
        f"--loopgrid-loops, else the loopgrid_loops ini option, else {DEFAULT_LOOPS}), made "
        "for the test or shared within the given scope; the test fails if a task or a "
        "worker thread of the grid outlives it.",
    )
    state(config)  # bad values are a usage error now, not in the middle of a test
    _RUNS.append(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    # Innermost last; removed by identity, wherever it is, should runs overlap oddly.
    for i in range(len(_RUNS) - 1, -1, -1):
        if _RUNS[i] is config:
            del _RUNS[i]
            break


def _default_loops(config: pytest.Config) -> int:
    n = config.getoption("loopgrid_loops", None)
    if n is not None:
        return int(n)
    raw = config.getini("loopgrid_loops")
    try:
        return parse_loops(str(raw).strip())
    except argparse.ArgumentTypeError:
        raise pytest.UsageError(f"loopgrid_loops must be an int >= 1, got {raw!r}") from None


def _close_timeout(config: pytest.Config) -> float:
    raw = config.getini("loopgrid_close_timeout")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not value > 0:
        raise pytest.UsageError(
            f"loopgrid_close_timeout must be a number of seconds > 0, got {raw!r}"
        )
    return value
