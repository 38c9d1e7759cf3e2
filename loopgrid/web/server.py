"""One ASGI app served from every loop of a grid, in one process.

``uvicorn --workers N`` isolates requests with N processes, at the price of N
copies of the app's memory, caches and connection pools. A :class:`Server`
serves the app from the N loops of one grid, with uvicorn's HTTP protocol
underneath, in one of two ways (``dispatch=``):

* ``"request"`` (the default, ``requestdispatch.py``): front loops own the
  connections and any free worker runs each request, so a handler that
  blocks its loop holds up only the requests already started there; routes
  can be given priorities, short ones run on the front itself, and routes
  that compute in Python can be served by processes of their own.
* ``"connection"`` (``connectiondispatch.py``): one uvicorn server per worker
  loop, each with a listening socket of its own on the one port; a request
  runs on the loop that accepted its connection, with no crossing between
  threads, but every request on a connection waits while its loop is held.

This module holds what both share: checking the options (the ones only
request dispatch has are checked in one place, by choosing the strategy),
where to listen (``listen.py``), the lifespan (``lifespan.py``), the startup
check (``loopcheck.py``), how the app is called (``appcall.py``), uvicorn's
server class (``uvicornserver.py``), and starting, stopping and closing.

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
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any, Literal

from .. import logs
from .._target import import_target
from ..errors import check_seconds
from ..grid import Grid, _is_async_callable
from . import appstate
from .appcall import WORKER_HEADER, with_state
from .connectiondispatch import ConnectionDispatch
from .lifespan import StartupError, _Lifespan, check_mode, run_shutdown, run_startup, workers
from .listen import Listen, listening_sockets, url_of
from .loopcheck import LoopCheck
from .memtrim import MemoryTrimmer
from .offload import Offload, check_prefixes
from .requestdispatch import SERVE_SWITCH_INTERVAL, RequestDispatch, Routes_
from .uvicornserver import import_uvicorn, make_server

__all__ = ["DISPATCH", "SERVE_SWITCH_INTERVAL", "WORKER_HEADER", "Server", "serve"]

#: The values of ``dispatch=``.
DISPATCH = ("request", "connection")

_GIL = bool(getattr(sys, "_is_gil_enabled", lambda: True)())

#: uvicorn's logger for its own startup lines: loopgrid's read like them.
_uvicorn_log = logging.getLogger("uvicorn.error")


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
        routes: Routes_ = None,
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
        if fronts is not None and (isinstance(fronts, bool) or not isinstance(fronts, int)):
            raise TypeError(f"fronts must be an int or None, got {fronts!r}")
        if fronts is not None and fronts < 1:
            raise ValueError(f"fronts must be at least 1 (or None), got {fronts!r}")
        if not isinstance(inline, bool):
            raise TypeError(f"inline must be True or False, got {inline!r}")
        if offload is not None:
            offload = check_prefixes(offload)
            if target is None:
                raise ValueError(
                    f"offload needs the app as an import string 'module:app' (each offload "
                    f"process imports it), got {app!r}"
                )
        if isinstance(offload_processes, bool) or not isinstance(offload_processes, int):
            raise TypeError(f"offload_processes must be an int, got {offload_processes!r}")
        if offload_processes < 1:
            raise ValueError(f"offload_processes must be at least 1, got {offload_processes!r}")
        if dispatch == "request":
            if fronts is None and uvicorn_options.get("limit_max_requests") is not None:
                # uvicorn counts requests per server: with one front loop the
                # limit is the process's, as under uvicorn.
                fronts = 1
            self._dispatch: RequestDispatch | ConnectionDispatch = RequestDispatch(
                routes,
                inline,
                fronts,
                Offload(
                    target,
                    offload,
                    offload_processes,
                    "off" if lifespan == "off" else "shared",
                    WORKER_HEADER if worker_header else None,
                )
                if offload is not None and target is not None
                else None,
            )
        else:
            # The one place that knows which options only request dispatch has.
            only_request = {
                "routes (request priorities)": routes,
                "fronts (front loops)": fronts,
                "offload (routes served by processes)": offload,
            }
            given = [name for name, value in only_request.items() if value is not None]
            if given:
                verb = "needs" if len(given) == 1 else "need"
                raise ValueError(
                    f"{' and '.join(given)} {verb} dispatch='request', not dispatch={dispatch!r}"
                )
            self._dispatch = ConnectionDispatch()
        if switch_interval == "auto":
            switch_interval = self._dispatch.auto_switch_interval
        if switch_interval is not None:
            switch_interval = check_seconds("switch_interval (or 'auto' or None)", switch_interval)
        self._uvicorn = import_uvicorn()
        self.app = app
        self.host = host
        self.dispatch = dispatch
        self.lifespan = lifespan
        self.grace = grace
        self.inline = inline and dispatch == "request"
        self.loop_check = loop_check
        self.require_lifespan = require_lifespan
        self._loop_factory = loop_factory
        self._requested_port = port
        self._listen = Listen(host, port, uds, fd, sock, backlog)
        self._url: str | None = None
        self._loops = loops
        self._own_grid = grid is None
        self._grid = grid
        self._header = worker_header
        self._switch_interval = switch_interval
        self._old_switch_interval: float | None = None
        #: Gives memory freed after big requests back (memtrim.py); while serving.
        self._trimmer: MemoryTrimmer | None = None
        self._options = {"log_config": None, "access_log": False, **uvicorn_options}
        self._socks: list[socket.socket] = []  # listening, until the servers have theirs
        self._port: int | None = None
        self._lifespans: list[_Lifespan] = []
        self._servers: list[Any] = []
        self._restore_state: Callable[[], None] | None = None
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
        dispatch = self._dispatch
        listeners = dispatch.listeners(grid)
        self._socks = listening_sockets(self._listen, listeners)
        first = self._socks[0]
        if first.family != getattr(socket, "AF_UNIX", None):
            self._port = int(first.getsockname()[1])
        scheme = "https" if self._options.get("ssl_certfile") else "http"
        self._url = url_of(first, scheme)
        places = workers(grid) + dispatch.start_loops(grid, listeners)
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
        dispatch.after_startup()
        wrapped = with_state(self.app, self._header, self.lifespan == "loop")
        servers = dispatch.serve(grid, self._socks, wrapped, states, self._make_server)
        ready = [server.ready for server in servers]
        for event in ready:
            event.wait()
        # Each server listens on a duplicate, which it closes when it stops;
        # with the originals open too, the port would go on accepting into
        # the backlog after every server had stopped.
        self._close_sockets()
        failed = [s for s in self._servers if s.error is not None]
        if failed:
            error = failed[0].error
            raise StartupError(f"a server of {self!r} could not start: {error!r}") from error
        # Before the line that says it serves: whoever waits for that line
        # (a supervisor, a test) may signal at once.
        self._trimmer = MemoryTrimmer.for_server(
            f"loopgrid-{grid.name}-memtrim",
            # Requests in flight: uvicorn's request tasks, on every accepting loop.
            busy=lambda: any(s.server_state.tasks for s in self._servers),
        )
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
        server = make_server(app, self.grace, self._stopping, self._options)
        self._servers.append(server)
        return server

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
            self._dispatch.wait()
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
        self._dispatch.stopped(self.grace)
        try:
            self._dispatch.close()
            run_shutdown(self._lifespans)
        finally:
            self._dispatch.finish()
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
            if self._trimmer is not None:
                self._trimmer.stop()
                self._trimmer = None

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
        :meth:`stop` yourself), before the startup, as uvicorn installs its
        own: the first signal stops gracefully, the second forces, and the
        previous handlers are restored after. A SIGTERM during the startup
        (even one sent the moment the "running on" line appears, before
        :meth:`start` returned) lets the startup finish and then stops, as in
        uvicorn; Ctrl-C during the startup, or a second SIGTERM there (a
        lifespan startup that hangs, say), raises KeyboardInterrupt, once
        everything is undone.
        """
        main = threading.current_thread() is threading.main_thread()
        self._says_ctrl_c = main
        handlers: dict[signal.Signals, Any] = {}
        signals = [0]
        started = [False]

        def on_signal(signum: int, frame: FrameType | None) -> None:
            signals[0] += 1
            force = signals[0] > 1
            if not started[0]:
                if signum == signal.SIGINT or force:
                    raise KeyboardInterrupt  # start() undoes everything on its way out
                _uvicorn_log.info(
                    "Shutting down once the application startup is complete "
                    "(a second signal stops it now)."
                )
            logs.info("web.stopping", signal=signal.Signals(signum).name, force=force)
            self.stop(force=force)

        try:
            if main:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    handlers[sig] = signal.signal(sig, on_signal)
            self.start()
            started[0] = True
            if on_started is not None:
                on_started(self)
            self.wait()
        finally:
            for sig, old in handlers.items():
                signal.signal(sig, old)
            if self._state != "closed":  # interrupted before wait() began
                self.close(force=True)


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
