"""``loopgrid serve --workers N``: N processes, each a grid of loops, on one socket.

Why processes as well as loops: one process has one GIL, so its loops add
isolation (a handler that blocks its loop holds up no other request) and
GIL-releasing work, but not Python throughput; on a machine with many cores
only processes scale that. ``--workers N --loops L`` gives both: N processes,
each serving the app from its L loops as one ``loopgrid serve`` does (lifespan
per loop by default, the startup check, request dispatch), all accepting on
one listening socket that this process binds (as uvicorn does, with uvicorn's
``Config.bind_socket``, which also logs where it listens).

Supervised as uvicorn's supervisor does:

* a worker that dies after it started serving is replaced;
* a worker that fails before it serves (its exit status is 1: the app does
  not import, its lifespan startup failed, the startup check refused) stops
  them all, with exit status 1: every replacement would fail the same way;
* SIGINT or SIGTERM stops every worker gracefully (each gets SIGTERM, and
  finishes its requests in flight within its grace period) and exits 0; a
  worker still running ``grace + 5`` seconds later is killed;
* SIGHUP replaces every worker, one at a time, each new one serving before
  the old one stops; SIGTTIN adds a worker and SIGTTOU removes one.

Workers are started with "spawn" (forking a process that may run threads is
unsafe), so they re-import the app, and a program that starts the supervisor
itself needs ``if __name__ == "__main__":``.

Thread ownership: everything here runs on the main thread of the supervising
process; signal handlers only append to ``_signals``, which the main loop
reads every 0.5 s (or at once: the wait is woken by a self-pipe).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import multiprocessing.synchronize
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .lifespan import StartupError
from .listen import Listen, listening_sockets, url_of

if TYPE_CHECKING:
    from .command import Command

__all__ = ["supervise"]

logger = logging.getLogger("uvicorn.error")

#: The exit status of a worker that could not start (command.FAILED).
STARTUP_FAILED = 1

_HANDLED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGTTIN", "SIGTTOU")


def supervise(command: Command, target: Callable[..., None], count: int) -> int:
    """Bind the socket, run ``--workers`` processes of ``target``, supervise them."""
    import uvicorn

    params = command.uvicorn
    options = command.config_options
    # Logging as uvicorn's parent process has it.
    uvicorn.Config(
        params["app"],
        log_config=options["log_config"],
        log_level=options["log_level"],
        use_colors=options.get("use_colors"),
    )
    where = Listen(params["host"], params["port"], params["uds"], params["fd"], None)
    try:
        sock = listening_sockets(dataclasses.replace(where, backlog=params["backlog"]), 1)[0]
    except StartupError as exc:
        logger.error(str(exc))
        return STARTUP_FAILED
    scheme = "https" if options.get("ssl_certfile") else "http"
    logger.info(f"Uvicorn running on {url_of(sock, scheme)} (Press CTRL+C to quit)")
    grace = command.own.grace or params["timeout_graceful_shutdown"] or 10.0
    try:
        return Supervisor(count, target, [sock], float(grace) + 5).run()
    finally:
        sock.close()
        if params["uds"] is not None:
            with contextlib.suppress(OSError):
                os.unlink(params["uds"])


class _Worker:
    """One worker process and the event it sets once it serves."""

    def __init__(self, target: Callable[..., None], sockets: list[socket.socket]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready = ctx.Event()
        self.process = ctx.Process(
            target=_worker_main, args=(target, sockets, self.ready), name="loopgrid-worker"
        )
        self.process.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def terminate(self) -> None:
        if self.process.exitcode is None and self.process.pid is not None:
            os.kill(self.process.pid, signal.SIGTERM)

    def join(self, timeout: float) -> None:
        self.process.join(timeout)
        if self.process.exitcode is None:
            logger.warning(f"Worker process [{self.pid}] did not stop in {timeout:g} s: killed")
            self.process.kill()
            self.process.join()


def _worker_main(
    target: Callable[..., None],
    sockets: list[socket.socket],
    ready: multiprocessing.synchronize.Event,
) -> None:
    """A worker process: ``target(sockets=..., ready=...)``, stopped (as by
    SIGTERM) if the supervisor dies, so that no worker outlives it."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_stop_with, args=(parent.sentinel,), name="loopgrid-parent-watch", daemon=True
        ).start()
    target(sockets=sockets, ready=ready)


def _stop_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    """Runs ``count`` workers of ``target`` until told to stop; see the module docstring."""

    def __init__(
        self,
        count: int,
        target: Callable[..., None],
        sockets: list[socket.socket],
        stop_wait: float,
    ) -> None:
        self._count = count
        self._target = target
        self._sockets = sockets
        self._stop_wait = stop_wait
        self._workers: list[_Worker] = []
        self._signals: list[int] = []
        self._wake = threading.Event()
        self._status = 0

    def run(self) -> int:
        logger.info(f"Started parent process [{os.getpid()}]")
        old = {}
        for name in _HANDLED:
            sig = getattr(signal, name, None)
            if sig is not None:
                old[sig] = signal.signal(sig, self._on_signal)
        try:
            self._workers = [self._start() for _ in range(self._count)]
            stopping = False
            while not stopping:
                self._wake.wait(0.5)
                self._wake.clear()
                stopping = self._handle_signals() or self._keep_alive()
        finally:
            for w in self._workers:
                w.terminate()
            for w in self._workers:
                w.join(self._stop_wait)
            for sig, handler in old.items():
                signal.signal(sig, handler)
            logger.info(f"Stopping parent process [{os.getpid()}]")
        return self._status

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)
        self._wake.set()

    def _start(self) -> _Worker:
        return _Worker(self._target, self._sockets)

    def _handle_signals(self) -> bool:
        """Act on the signals received; True to stop."""
        while self._signals:
            sig = self._signals.pop(0)
            name = signal.Signals(sig).name
            if name in ("SIGINT", "SIGTERM"):
                logger.info(f"Received {name}, stopping the workers.")
                return True
            if name == "SIGHUP":
                logger.info("Received SIGHUP, replacing the workers.")
                self._replace_all()
            elif name == "SIGTTIN":
                self._workers.append(self._start())
                logger.info(f"Received SIGTTIN, now {len(self._workers)} workers.")
            elif name == "SIGTTOU" and len(self._workers) > 1:
                w = self._workers.pop()
                w.terminate()
                w.join(self._stop_wait)
                logger.info(f"Received SIGTTOU, now {len(self._workers)} workers.")
        return False

    def _replace_all(self) -> None:
        for i, old in enumerate(list(self._workers)):
            new = self._start()
            while not new.ready.wait(0.5):
                if not new.process.is_alive():
                    logger.error(
                        f"New worker process [{new.pid}] failed to start; keeping "
                        f"[{old.pid}] and the others as they are."
                    )
                    new.join(self._stop_wait)
                    return
                if self._signals:
                    new.terminate()
                    new.join(self._stop_wait)
                    return
            old.terminate()
            old.join(self._stop_wait)
            self._workers[i] = new

    def _keep_alive(self) -> bool:
        """Replace dead workers; True to stop (one could not start)."""
        for i, w in enumerate(self._workers):
            if w.process.is_alive():
                continue
            w.process.join()
            if not w.ready.is_set() and w.process.exitcode == STARTUP_FAILED:
                logger.error(
                    f"Worker process [{w.pid}] failed to start (exit status "
                    f"{w.process.exitcode}): stopping, as every new one would fail too."
                )
                self._status = STARTUP_FAILED
                return True
            logger.info(f"Worker process [{w.pid}] died (exit status {w.process.exitcode})")
            self._workers[i] = self._start()
        return False
