"""One ASGI app served from every loop of a grid, in one process.

``uvicorn --workers N`` isolates requests with N processes, at the price of N
copies of the app's memory, caches and connection pools. A :class:`Server`
serves the app from the N loops of one grid, with uvicorn's HTTP protocol
underneath, in one of two ways (``dispatch=``):

* ``"request"`` (the default): one front loop on a thread of its own owns the
  listening socket and every connection (on free-threaded builds, one front
  loop per worker, each with its connections); each request becomes a grid task
  that the first free worker runs (``bridge.py``), except those of routes
  learned to be short, which the front runs itself (``inline.py``). A
  handler that blocks its loop holds up only the requests already started
  there; the others go to the other loops. Routes can be given priorities,
  and routes that compute in Python can be served by processes of their own
  (``offload.py``).
* ``"connection"``: one uvicorn server per worker loop, each with a listening
  socket of its own on the one port (``SO_REUSEPORT``); the kernel spreads
  connections over the loops and a request runs on the loop that accepted its connection. No
  crossing between threads per request, but every request on a connection
  waits while its loop is held.

``bench/web.py`` measures both (``bench/notes/web.md``: request dispatch
isolates, and with short routes inline has the throughput of one uvicorn
worker; one server per loop scales on free-threaded builds). Lifespan runs once per
loop that runs app code, each loop with its own state and ``app.state``
(``lifespan.py``, ``appstate.py``), or once for all; either way, loop-bound
objects the app would share between loops are made per loop where loopgrid
knows how (``loopgrid.integrations``) or refused before serving, by name
(``loopgrid.loopbound``). Inside handlers
``loopgrid.current_worker()`` and ``loopgrid.spawn()`` work as in any grid
task, and ``worker_header=True`` adds ``x-loopgrid-worker`` to each response.

Stopping (:meth:`Server.stop`, or SIGINT/SIGTERM in :meth:`Server.run`):
the servers stop accepting, requests in flight get ``grace`` seconds to finish
(then they are cancelled), lifespan shutdown runs, and the grid closes; a
second signal (or ``stop(force=True)``) skips the waiting.

Thread ownership: ``start``, ``wait`` and ``close`` are called by one
controlling thread (not a worker); front loops run on threads of their own
(``front.py``); ``stop`` by any thread, including signal handlers: it writes
uvicorn's ``should_exit`` / ``force_exit`` flags, which each uvicorn server
polls on its own loop every 0.1 s, and a forced stop posts
the cancelling of the requests in flight to each server's loop
(``call_soon_threadsafe``). ``_servers`` is appended to by ``start`` only;
``_stopping`` tells servers made after a stop to stop at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any, Literal

from .. import logs
from .._target import import_target
from ..errors import check_seconds
from ..grid import Grid, _is_async_callable
from ..handle import Handle
from ..priority import Priority, check_priority
from ..worker import _current
from . import appstate
from .bridge import RequestBridge
from .failclose import call_closing_on_failure
from .front import FrontLoop
from .inline import Routes
from .lifespan import StartupError, _Lifespan, check_mode, run_shutdown, run_startup, workers
from .listen import Listen, listening_sockets, url_of
from .loopcheck import LoopCheck
from .offload import Offload, check_prefixes, with_header

__all__ = ["DISPATCH", "SERVE_SWITCH_INTERVAL", "Server", "serve"]

#: The values of ``dispatch=``.
DISPATCH = ("request", "connection")

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

#: The response header ``worker_header=True`` adds, naming the worker's index.
WORKER_HEADER = b"x-loopgrid-worker"

#: uvicorn's logger for its own startup lines: loopgrid's read like them.
_uvicorn_log = logging.getLogger("uvicorn.error")

_Scope = dict[str, Any]
_Routes = Mapping[str, "Priority | int"] | Callable[[_Scope], "Priority | int"] | None


def _import_uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError:
        raise ImportError(
            "loopgrid.web serves ASGI apps with uvicorn, which is not installed: "
            "pip install 'loopgrid[web]'"
        ) from None
    return uvicorn


def _priority_function(routes: _Routes) -> Callable[[_Scope], Priority]:
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


def _with_state(app: Any, header: bool, per_loop: bool) -> Callable[..., Any]:
    """``with_state(scope, receive, send, state, label)``: the app called with a
    shallow copy of ``state`` in the scope, as uvicorn does, and with the
    worker header (``label``) if asked. With ``per_loop`` (a per-loop
    ``app.state``), the request is marked with its loop, for the code it runs
    in threads (``appstate.enter``). An HTTP request's 5xx response says
    ``connection: close`` when the app then raised (``failclose.py``).

    Each thread that calls it passes a state dict of its own: a snapshot of
    the lifespan state taken once startup ended (:func:`_snapshot`). Two
    threads that copy one dict contend for its lock on free-threaded builds:
    two threads copying a shared dict did 0.77x the work of one there, with a
    dict each 1.25x (bench/notes/web.md).
    """

    def with_state(scope: _Scope, receive: Any, send: Any, state: Any, label: bytes) -> Any:
        if scope["type"] in ("http", "websocket"):
            scope["state"] = state.copy()
            if per_loop:
                appstate.enter()
        if scope["type"] != "http":
            return app(scope, receive, send)
        if header:

            async def send_with_header(message: dict[str, Any]) -> None:
                await send(with_header(message, WORKER_HEADER, label))

            return call_closing_on_failure(app, scope, receive, send_with_header)
        return call_closing_on_failure(app, scope, receive, send)

    return with_state


def _snapshot(state: dict[str, Any]) -> dict[str, Any]:
    """One thread's copy of a lifespan state, made after startup: the objects
    startup put there stay shared, but a key added to the state later is not
    seen (the ASGI spec has the state filled by startup)."""
    return dict(state)


def _call_on_its_worker(with_state: Any, states: list[dict[str, Any]]) -> Any:
    """The app as request tasks call it, on whichever worker runs them."""
    states = [_snapshot(s) for s in states]
    labels = [str(i).encode() for i in range(len(states))]

    async def call(scope: _Scope, receive: Any, send: Any) -> None:
        w = _current.worker  # not current_worker(): that counts as the app asking
        assert w is not None
        await with_state(scope, receive, send, states[w.index], labels[w.index])

    return call


def _call_with(with_state: Any, state: dict[str, Any], label: bytes) -> Any:
    """The app as one thread calls it: a front loop, or one worker's server."""
    state = _snapshot(state)

    async def call(scope: _Scope, receive: Any, send: Any) -> None:
        await with_state(scope, receive, send, state, label)

    return call


class Server:
    """An ASGI app served from the loops of a grid. See the module docstring.

    ``app`` is an ASGI 3 application (an async callable ``app(scope, receive,
    send)``: Starlette, FastAPI, Litestar...), or its import string
    ``"module:app"``, which ``offload`` needs. The server binds ``host``
    (127.0.0.1 by default) and ``port`` (0: any free port; :attr:`port` tells
    which) when :meth:`start` is called. ``grid`` serves on an existing grid,
    which the server then does not close; otherwise it makes one with
    ``loops`` workers. ``routes`` gives request tasks priorities (``{"/ping":
    Priority.HIGH}``, longest prefix first, or a function of the scope; only
    with ``dispatch="request"``). ``inline`` (request dispatch): routes learned
    to be short run on the front loop itself, with no crossing to a worker
    (``inline.py`` says how they are learned and what changes for them);
    False dispatches every request. ``fronts`` (request dispatch): how many
    front loops share the connections, each on a thread and a listening socket
    of its own; None means one with the GIL (more would only share it) and
    one per worker without (each parses and runs its short requests in
    parallel). ``switch_interval`` (seconds) sets the interpreter's GIL switch
    interval while the server runs: ``"auto"`` is :data:`SERVE_SWITCH_INTERVAL`
    with request dispatch and the interpreter's with connection dispatch; None
    leaves it alone; it has no effect without a GIL. ``offload`` (request
    dispatch; ``app`` given as an import string): path prefixes of routes
    served by ``offload_processes`` child processes instead, each with its own
    copy of the app and its own GIL, for handlers that compute in Python
    (``offload.py`` says what changes for them). ``lifespan``: ``"loop"``
    runs the app's lifespan on every loop that runs app code (each worker, and
    each front loop with ``inline``), each with its own state and
    ``app.state``; ``"shared"`` once, its state shared by every loop (loop-free
    objects only); ``"off"`` never (``lifespan.py``). ``loop_check``: refuse to
    start (:class:`StartupError`, naming each object and its fix) when objects
    bound to one event loop would be shared by the loops - module globals of
    the app's code that loopgrid cannot make per loop, or the state of
    ``lifespan="shared"``; False logs them as warnings instead.
    ``require_lifespan`` (uvicorn's ``lifespan="on"``): an app that does not
    speak the lifespan protocol fails to start instead of being served
    without it. ``loop_factory`` makes the worker loops (default: uvloop's
    where it is installed; see :class:`~loopgrid.Grid`).
    It listens on ``sock`` if given (a listening socket bound by a
    supervising process, say; the server uses duplicates of it), else on the
    unix socket ``uds`` (made readable and writable by all, removed at close),
    else on the inherited socket file descriptor ``fd``, else on ``host`` and
    ``port`` (``listen.py``); :attr:`url` tells where.
    ``uvicorn_options`` go to ``uvicorn.Config`` (``log_config`` defaults to
    None: a library does not configure logging; ``loopgrid serve`` passes
    uvicorn's).
    """

    def __init__(
        self,
        app: Any,
        *,
        loops: int | None = None,
        host: str = "127.0.0.1",
        port: int = 8000,
        dispatch: str = "request",
        lifespan: str = "loop",
        grace: float = 10.0,
        worker_header: bool = False,
        routes: _Routes = None,
        grid: Grid | None = None,
        backlog: int = 2048,
        switch_interval: float | Literal["auto"] | None = "auto",
        inline: bool = True,
        fronts: int | None = None,
        offload: Sequence[str] | None = None,
        offload_processes: int = 1,
        loop_check: bool = True,
        uds: str | None = None,
        fd: int | None = None,
        sock: socket.socket | None = None,
        require_lifespan: bool = False,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
        **uvicorn_options: Any,
    ) -> None:
        target = app if isinstance(app, str) else None
        if target is not None:
            app = import_target(target, "app")
        if not _is_async_callable(app):
            raise TypeError(
                f"app must be an ASGI application (an async callable app(scope, receive, "
                f"send)), got {app!r}"
            )
        if dispatch not in DISPATCH:
            raise ValueError(f"dispatch must be one of {DISPATCH}, got {dispatch!r}")
        lifespan = check_mode(lifespan)
        if not isinstance(loop_check, bool):
            raise TypeError(f"loop_check must be True or False, got {loop_check!r}")
        if not isinstance(require_lifespan, bool):
            raise TypeError(f"require_lifespan must be True or False, got {require_lifespan!r}")
        if grid is not None and loop_factory is not None:
            raise ValueError(
                "loop_factory is for the grid the server makes: give either grid or it"
            )
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be a port number (0 for any free port), got {port!r}")
        grace = check_seconds("grace", grace, zero=True)
        if uds is not None and not isinstance(uds, str):
            raise TypeError(f"uds must be a path (str) or None, got {uds!r}")
        if fd is not None and (isinstance(fd, bool) or not isinstance(fd, int) or fd < 0):
            raise ValueError(f"fd must be a file descriptor number or None, got {fd!r}")
        if sock is not None and not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a listening socket.socket or None, got {sock!r}")
        if grid is not None and not isinstance(grid, Grid):
            raise TypeError(f"grid must be a loopgrid.Grid or None, got {grid!r}")
        if grid is not None and loops is not None and loops != len(grid.workers):
            raise ValueError(f"loops={loops!r} disagrees with the {grid!r} given")
        if routes is not None and dispatch != "request":
            raise ValueError("routes (request priorities) need dispatch='request'")
        if fronts is not None and (isinstance(fronts, bool) or not isinstance(fronts, int)):
            raise TypeError(f"fronts must be an int or None, got {fronts!r}")
        if fronts is not None and fronts < 1:
            raise ValueError(f"fronts must be at least 1 (or None), got {fronts!r}")
        if fronts is not None and dispatch != "request":
            raise ValueError("fronts (front loops) need dispatch='request'")
        if not isinstance(inline, bool):
            raise TypeError(f"inline must be True or False, got {inline!r}")
        if offload is not None:
            offload = check_prefixes(offload)
            if dispatch != "request":
                raise ValueError("offload (routes served by processes) needs dispatch='request'")
            if target is None:
                raise ValueError(
                    f"offload needs the app as an import string 'module:app' (each offload "
                    f"process imports it), got {app!r}"
                )
        if isinstance(offload_processes, bool) or not isinstance(offload_processes, int):
            raise TypeError(f"offload_processes must be an int, got {offload_processes!r}")
        if offload_processes < 1:
            raise ValueError(f"offload_processes must be at least 1, got {offload_processes!r}")
        if switch_interval == "auto":
            switch_interval = SERVE_SWITCH_INTERVAL if dispatch == "request" else None
        if switch_interval is not None:
            switch_interval = check_seconds("switch_interval (or 'auto' or None)", switch_interval)
        self._uvicorn = _import_uvicorn()
        self.app = app
        self.host = host
        self.dispatch = dispatch
        self.lifespan = lifespan
        self.grace = grace
        self.inline = inline
        self.loop_check = loop_check
        self.require_lifespan = require_lifespan
        self._loop_factory = loop_factory
        self._fronts = fronts
        self._offload = (
            Offload(
                target,
                offload,
                offload_processes,
                "off" if lifespan == "off" else "shared",
                WORKER_HEADER if worker_header else None,
            )
            if offload is not None and target is not None
            else None
        )
        self._requested_port = port
        self._listen = Listen(host, port, uds, fd, sock, backlog)
        self._url: str | None = None
        self._loops = loops
        self._own_grid = grid is None
        self._grid = grid
        self._header = worker_header
        self._priority_of = _priority_function(routes)
        self._switch_interval = switch_interval
        self._old_switch_interval: float | None = None
        self._options = {"log_config": None, "access_log": False, **uvicorn_options}
        self._socks: list[socket.socket] = []  # listening, until the servers have theirs
        self._port: int | None = None
        self._lifespans: list[_Lifespan] = []
        self._servers: list[Any] = []
        self._serving: list[Handle[None]] = []
        self._front_loops: list[FrontLoop] = []  # appended to by start
        self._restore_state: Callable[[], None] | None = None
        self._spread = False  # round-robin requests over workers (loopgrid.testing)
        self._says_ctrl_c = False  # run() stops on Ctrl-C, and its log line says so
        self._state = "new"  # new -> started -> closed; controlling thread only
        self._stopping = False  # any thread (stop); read by start

    # -- properties ---------------------------------------------------------------

    @property
    def grid(self) -> Grid:
        if self._grid is None:
            raise RuntimeError(f"{self!r} has not started: it has no grid yet")
        return self._grid

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system for ``port=0``)."""
        if self._port is None:
            raise RuntimeError(f"{self!r} listens on no TCP port (not started, or not TCP)")
        return self._port

    @property
    def url(self) -> str:
        """Where it serves: ``http://host:port``, or ``http+unix://path``."""
        if self._url is None:
            raise RuntimeError(f"{self!r} has not started: it listens nowhere yet")
        return self._url

    def __repr__(self) -> str:
        return f"<loopgrid.web.Server {self.dispatch} {self._listen.describe()}>"

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Bind, run lifespan startup, and start serving; returns once all serve.

        Raises :class:`StartupError` (having undone everything) if the address
        cannot be bound, a lifespan startup fails, or a server cannot start.
        """
        if self._state != "new":
            raise RuntimeError(f"{self!r} was already started")
        self._state = "started"
        try:
            self._start()
        except BaseException:
            self._cleanup(cancel=True)
            raise

    def _start(self) -> None:
        if self._options.get("log_config") is not None:
            # Logging as the servers will have it, for the startup lines before them.
            logging_options = ("log_config", "log_level", "use_colors")
            self._uvicorn.Config(
                self.app, **{k: v for k, v in self._options.items() if k in logging_options}
            )
        if self._switch_interval is not None and _GIL:
            self._old_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self._switch_interval)
        if self._grid is None:
            self._grid = Grid(self._loops, name="web", loop_factory=self._loop_factory)
        grid = self._grid
        if self.dispatch == "request":
            listeners = self._fronts or (1 if _GIL else len(grid.workers))
        else:
            listeners = len(grid.workers)
        self._socks = listening_sockets(self._listen, listeners)
        first = self._socks[0]
        if first.family != getattr(socket, "AF_UNIX", None):
            self._port = int(first.getsockname()[1])
        scheme = "https" if self._options.get("ssl_certfile") else "http"
        self._url = url_of(first, scheme)
        places = workers(grid)
        if self.dispatch == "request":
            for i in range(listeners):
                suffix = f"-{i}" if listeners > 1 else ""
                front = FrontLoop(grid, f"loopgrid-{grid.name}-http{suffix}", f"front loop {i}")
                self._front_loops.append(front)
                front.start()
                if self.inline:  # it runs app code too: a loop of its own
                    places.append((front.label, front.call))
        fronts = len(places) - len(grid.workers)
        loops_text = f"{len(places)} loops ({len(grid.workers)} workers" + (
            f", {fronts} front)" if fronts else ")"
        )
        check = LoopCheck(self.app, self, len(places), loops_text, self.loop_check)
        check.before_startup()
        if self.lifespan == "loop":
            self._restore_state = appstate.install(self.app)
        if self.lifespan != "off":
            _uvicorn_log.info("Waiting for application startup.")
        self._lifespans, states = run_startup(
            self.app, self.lifespan, places, self.require_lifespan
        )
        if self.lifespan != "off":
            _uvicorn_log.info("Application startup complete.")
        check.after_startup(self.lifespan, states[0])
        with_state = _with_state(self.app, self._header, self.lifespan == "loop")
        if self._offload is not None:
            self._offload.start()
        ready: list[threading.Event] = []
        n = len(grid.workers)
        if self.dispatch == "request":
            call = _call_on_its_worker(with_state, states[:n])
            for i, (front, sock) in enumerate(zip(self._front_loops, self._socks, strict=True)):
                # Each front learns its routes alone: a table is front-only.
                routes = Routes() if self.inline else None
                front_state = states[n + i] if self.inline else {}
                front_call = _call_with(with_state, front_state, b"front")
                bridge = RequestBridge(
                    grid, call, self._priority_of, front_call, routes, self._offload, self._spread
                )
                server = self._make_server(bridge)
                ready.append(server.ready)
                front.serve(server, sock.dup())
        else:
            for i in range(n):
                server = self._make_server(_call_with(with_state, states[i], str(i).encode()))
                ready.append(server.ready)
                self._serving.append(
                    grid.spawn(self._serve_on_worker, server, self._socks[i].dup(), worker=i)
                )
        for event in ready:
            event.wait()
        # Each server listens on a duplicate, which it closes when it stops;
        # with the originals open too, the port would go on accepting into
        # the backlog after every server had stopped.
        self._close_sockets()
        failed = [s for s in self._servers if s.error is not None]
        if failed:
            raise StartupError(f"a server of {self!r} could not start") from failed[0].error
        _uvicorn_log.info(
            f"Uvicorn running on {self.url} with loopgrid: {loops_text}, dispatch={self.dispatch}"
            + (" (Press CTRL+C to quit)" if self._says_ctrl_c else "")
        )
        logs.info(
            "web.serving",
            url=self.url,
            dispatch=self.dispatch,
            loops=len(grid.workers),
            lifespan=self.lifespan,
            lifespan_runs=len(self._lifespans),
        )

    def _make_server(self, app: Any) -> Any:
        uvicorn = self._uvicorn
        config = uvicorn.Config(
            app,
            lifespan="off",
            timeout_graceful_shutdown=self.grace,
            **self._options,
        )
        server = _server_class()(config)
        server.should_exit = self._stopping
        self._servers.append(server)
        return server

    @staticmethod
    async def _serve_on_worker(server: Any, sock: socket.socket) -> None:
        await server.serve_marked([sock])

    def stop(self, force: bool = False) -> None:
        """Stop serving: no new connections, in-flight requests get ``grace``
        seconds (none with ``force``). Any thread, a signal handler too."""
        self._stopping = True  # servers made after this start stopped
        for server in self._servers:
            if force:
                server.force()
            else:
                server.should_exit = True

    def wait(self) -> None:
        """Block until the servers stopped (after :meth:`stop`), then clean up."""
        if self._state != "started":
            return
        interrupted = True
        try:
            # In slices, so that Ctrl-C reaches a main thread waiting here.
            for front in self._front_loops:
                while front.serving is not None and not front.serving.done():
                    concurrent.futures.wait([front.serving], timeout=0.5)
            for h in self._serving:
                while not h.done():
                    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                        h.exception(timeout=0.5)
            interrupted = False
        finally:
            self._cleanup(cancel=interrupted)

    def close(self, force: bool = False) -> None:
        """``stop`` and ``wait``; idempotent."""
        self.stop(force)
        self.wait()

    def _cleanup(self, cancel: bool) -> None:
        # Controlling thread. Servers first (they hold connections), then the
        # app's lifespan shutdown, then the grid: nothing outlives close().
        self._state = "closed"
        self.stop(force=cancel)
        serving = [f.serving for f in self._front_loops if f.serving is not None]
        concurrent.futures.wait(serving)
        for h in self._serving:
            with contextlib.suppress(BaseException):
                h.result(timeout=self.grace + 5)
        try:
            if self._offload is not None:
                self._offload.close()
            run_shutdown(self._lifespans)
        finally:
            for front in self._front_loops:
                front.finish()
            if self._own_grid and self._grid is not None:
                self._grid.close(cancel=True)
            if self._restore_state is not None:
                self._restore_state()
                self._restore_state = None
            self._close_sockets()
            if self._listen.uds is not None and self._url is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self._listen.uds)
            if self._old_switch_interval is not None:
                sys.setswitchinterval(self._old_switch_interval)
                self._old_switch_interval = None

    def _close_sockets(self) -> None:
        for sock in self._socks:
            sock.close()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, on_started: Callable[[Server], object] | None = None) -> None:
        """:meth:`start`, then serve until SIGINT or SIGTERM, then clean up.

        Signal handlers are installed on the main thread only (elsewhere, call
        :meth:`stop` yourself), once the server serves: the first signal stops
        gracefully, the second forces, as with uvicorn; the previous handlers
        are restored after. Ctrl-C during startup (a lifespan startup that
        hangs, say) raises KeyboardInterrupt, once everything is undone.
        """
        self._says_ctrl_c = threading.current_thread() is threading.main_thread()
        self.start()
        handlers: dict[signal.Signals, Any] = {}
        try:
            if threading.current_thread() is threading.main_thread():
                signals = [0]

                def on_signal(signum: int, frame: FrameType | None) -> None:
                    signals[0] += 1
                    force = signals[0] > 1
                    logs.info("web.stopping", signal=signal.Signals(signum).name, force=force)
                    self.stop(force=force)

                for sig in (signal.SIGINT, signal.SIGTERM):
                    handlers[sig] = signal.signal(sig, on_signal)
            if on_started is not None:
                on_started(self)
            self.wait()
        finally:
            for sig, old in handlers.items():
                signal.signal(sig, old)
            if self._state != "closed":  # interrupted before wait() began
                self.close(force=True)


@functools.cache
def _server_class() -> Any:
    """uvicorn.Server, made to tell when it listens or why it could not (made
    on first use: importing loopgrid.web does not import uvicorn)."""
    uvicorn = _import_uvicorn()

    class MarkedServer(uvicorn.Server):  # type: ignore[misc, name-defined]
        """Also: ``force()`` from any thread cancels the requests in flight.

        uvicorn's own force_exit only stops it waiting for them; from Python
        3.12 asyncio's ``Server.wait_closed()`` (uvloop's does not) then waits
        for their connections, so a request that never ends held a forced
        stop for the whole grace period.
        """

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.ready = threading.Event()
            self.error: BaseException | None = None
            self.loop: asyncio.AbstractEventLoop | None = None  # set on its loop

        async def serve_marked(self, sockets: list[socket.socket]) -> None:
            self.loop = asyncio.get_running_loop()
            try:
                await self.serve(sockets=sockets)
            except BaseException as exc:
                if not self.ready.is_set():
                    self.error = exc
                raise
            finally:
                self.ready.set()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            self.ready.set()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if self.force_exit:
                self._cancel_requests()
            await super().shutdown(sockets=sockets)

        def force(self) -> None:
            self.should_exit = self.force_exit = True
            loop = self.loop
            if loop is not None:
                with contextlib.suppress(RuntimeError):  # its loop has closed
                    loop.call_soon_threadsafe(self._cancel_requests)

        def _cancel_requests(self) -> None:
            for task in list(self.server_state.tasks):
                task.cancel("loopgrid.web: forced stop")

    return MarkedServer


def serve(app: Any, **options: Any) -> None:
    """Serve ``app`` until SIGINT/SIGTERM: ``Server(app, **options).run()``.

    As ``uvicorn.run``, it configures logging with uvicorn's configuration
    unless ``log_config`` is given (None: leave logging alone), so that its
    startup lines, the URL among them, are shown.
    """
    if "log_config" not in options:
        from uvicorn.config import LOGGING_CONFIG

        options["log_config"] = LOGGING_CONFIG
    Server(app, **options).run()
