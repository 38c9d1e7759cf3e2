"""The drop-in runner: ``loopgrid.run`` and ``loopgrid.Runner``.

They mirror :func:`asyncio.run` and :class:`asyncio.Runner`: the main coroutine
runs on worker 0 of a fresh grid; when it returns, the tasks still on the grid
are cancelled and awaited, each worker loop's async generators and default
executor are shut down, the threads exit, and the result (or exception) comes
back to the caller. A first Ctrl-C cancels the main task, which may clean up;
if it ends cancelled, ``KeyboardInterrupt`` is raised, as ``asyncio.Runner``
does. A second Ctrl-C stops waiting and cancels everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .grid import Grid

__all__ = ["Runner", "run"]

T = TypeVar("T")


class Runner:
    """A grid that runs one main coroutine at a time, like ``asyncio.Runner``."""

    def __init__(
        self,
        *,
        loops: int | None = None,
        debug: bool | None = None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        self._loops = loops
        self._debug = debug
        self._loop_factory = loop_factory
        self._grid: Grid | None = None
        self._closed = False

    def __enter__(self) -> Runner:
        self._lazy_init()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _lazy_init(self) -> Grid:
        if self._closed:
            raise RuntimeError("Runner is closed")
        if self._grid is None:
            self._grid = Grid(self._loops, loop_factory=self._loop_factory, debug=self._debug)
        return self._grid

    def get_grid(self) -> Grid:
        """The runner's grid (created on first use)."""
        return self._lazy_init()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on worker 0 and return its result."""
        if not asyncio.iscoroutine(coro):
            raise ValueError(f"a coroutine was expected, got {coro!r}")
        if asyncio._get_running_loop() is not None:
            coro.close()
            raise RuntimeError("Runner.run() cannot be called from a running event loop")
        grid = self._lazy_init()
        main = grid.spawn(coro, worker=0, name="main")
        try:
            return main.result()
        except KeyboardInterrupt:
            if main.done():
                raise
            main.cancel()
            try:
                return main.result()
            except asyncio.CancelledError:
                raise KeyboardInterrupt() from None

    def close(self) -> None:
        """Cancel what is left on the grid, finish its loops, stop its threads."""
        if self._closed:
            return
        grid, self._grid = self._grid, None
        self._closed = True
        if grid is not None:
            grid.close(cancel=True)


def run(
    main: Coroutine[Any, Any, T],
    *,
    loops: int | None = None,
    debug: bool | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run ``main`` on a fresh grid of ``loops`` event loops and return its result.

    The grid is closed on the way out: see :class:`Runner`.
    """
    if asyncio._get_running_loop() is not None:
        if asyncio.iscoroutine(main):
            main.close()
        raise RuntimeError("loopgrid.run() cannot be called from a running event loop")
    with Runner(loops=loops, debug=debug, loop_factory=loop_factory) as runner:
        return runner.run(main)
