"""Request dispatch: front loops own the connections, any free worker runs
each request (``dispatch="request"``, the default).

One front loop (``front.py``) on a thread of its own owns the listening socket
and every connection (on free-threaded builds, one front loop per worker, each
with its connections; ``fronts=`` to choose); uvicorn parses there, and each
request becomes a grid task that the first free worker runs (``bridge.py``),
with its route's priority, except those of routes learned to be short, which
the front runs itself (``inline.py``), and those of routes served by processes
of their own (``offload.py``). A handler that blocks its loop holds up only
the requests already started there.

The options that only this mode has (route priorities, fronts, inlining,
offload) are this class's: ``server.py`` checks them in one place, by
making it.

Thread ownership: made and driven by the server's controlling thread;
``spread`` is set before start; the front loops run on threads of their own.
"""

from __future__ import annotations

import concurrent.futures
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..priority import Priority, check_priority
from .appcall import call_on_front, call_on_its_worker
from .bridge import RequestBridge
from .front import FrontLoop
from .inline import Routes
from .lifespan import Place

if TYPE_CHECKING:
    import socket

    from ..grid import Grid
    from .offload import Offload

__all__ = ["SERVE_SWITCH_INTERVAL", "RequestDispatch", "priority_function"]

_GIL = bool(getattr(sys, "_is_gil_enabled", lambda: True)())

#: The GIL switch interval a server sets with request dispatch
#: (``switch_interval="auto"``). While a handler on a worker computes in
#: Python, the front loop gets the GIL back only when it has waited a whole
#: interval, and it gives it up again at its next callback (uvloop takes the
#: GIL anew for each): /ping's p99 beside a 20 ms pure-Python handler was
#: 24 ms with the interpreter's 5 ms, 10.4 ms with 0.5 ms, 7.7 ms with 0.2 ms
#: and 7.1 ms with 0.1 ms, which began to cost /ping alone (0.87x; 0.99x with
#: 0.2 ms): ``bench/notes/web.md``. No effect without a GIL, and little while
#: only one thread wants it.
SERVE_SWITCH_INTERVAL = 0.0002

_Scope = dict[str, Any]
Routes_ = Mapping[str, "Priority | int"] | Callable[[_Scope], "Priority | int"] | None


def priority_function(routes: Routes_) -> Callable[[_Scope], Priority]:
    """``routes``: path prefix -> priority (longest prefix wins), or a function."""
    if routes is None:
        return lambda scope: Priority.NORMAL
    if callable(routes):
        fn = routes
        return lambda scope: check_priority(fn(scope))
    if not isinstance(routes, Mapping):
        raise TypeError(
            f"routes must map path prefixes to priorities, be a function of the scope, "
            f"or be None; got {routes!r}"
        )
    table: list[tuple[str, Priority]] = []
    for prefix, prio in routes.items():
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ValueError(f"a route prefix must be a str starting with '/', got {prefix!r}")
        table.append((prefix, check_priority(prio)))
    table.sort(key=lambda item: len(item[0]), reverse=True)

    def priority_of(scope: _Scope) -> Priority:
        path = scope.get("path", "")
        for prefix, prio in table:
            if path.startswith(prefix):
                return prio
        return Priority.NORMAL

    return priority_of


class RequestDispatch:
    """See the module docstring."""

    name = "request"
    #: What ``switch_interval="auto"`` means with this mode.
    auto_switch_interval: float | None = SERVE_SWITCH_INTERVAL

    def __init__(
        self,
        routes: Routes_,
        inline: bool,
        fronts: int | None,
        offload: Offload | None,
    ) -> None:
        self._priority_of = priority_function(routes)
        self.inline = inline
        self._fronts = fronts
        self.offload = offload
        #: Round-robin over the workers instead of the first free one
        #: (``loopgrid.testing``); set before start.
        self.spread = False
        self._front_loops: list[FrontLoop] = []

    def listeners(self, grid: Grid) -> int:
        return self._fronts or (1 if _GIL else len(grid.workers))

    def start_loops(self, grid: Grid, listeners: int) -> list[Place]:
        """Start the front loops; the places among them that run app code (for
        the lifespan): all of them with inlining, else none."""
        places: list[Place] = []
        for i in range(listeners):
            suffix = f"-{i}" if listeners > 1 else ""
            front = FrontLoop(grid, f"loopgrid-{grid.name}-http{suffix}", f"front loop {i}")
            self._front_loops.append(front)
            front.start()
            if self.inline:  # it runs app code too: a loop of its own
                places.append((front.label, front.call))
        return places

    def after_startup(self) -> None:
        if self.offload is not None:
            self.offload.start()

    def serve(
        self,
        grid: Grid,
        socks: list[socket.socket],
        wrapped: Any,
        states: list[dict[str, Any]],
        make_server: Callable[[Any], Any],
    ) -> list[Any]:
        """Start a uvicorn server on each front loop; the servers."""
        n = len(grid.workers)
        call = call_on_its_worker(wrapped, states[:n])
        servers = []
        for i, (front, sock) in enumerate(zip(self._front_loops, socks, strict=True)):
            # Each front learns its routes alone: a table is front-only.
            routes = Routes() if self.inline else None
            front_state = states[n + i] if self.inline else {}
            front_call = call_on_front(wrapped, front_state, b"front")
            bridge = RequestBridge(
                grid, call, self._priority_of, front_call, routes, self.offload, self.spread
            )
            server = make_server(bridge)
            servers.append(server)
            front.serve(server, sock.dup())
        return servers

    def wait(self) -> None:
        """Block until every front's server stopped (in slices, for Ctrl-C)."""
        for front in self._front_loops:
            while front.serving is not None and not front.serving.done():
                concurrent.futures.wait([front.serving], timeout=0.5)

    def stopped(self, grace: float) -> None:
        """After a stop: wait for the servers to end."""
        concurrent.futures.wait([f.serving for f in self._front_loops if f.serving is not None])

    def close(self) -> None:
        """Before the lifespan shutdown: the offload processes stop."""
        if self.offload is not None:
            self.offload.close()

    def finish(self) -> None:
        """Last: the front loops close."""
        for front in self._front_loops:
            front.finish()
