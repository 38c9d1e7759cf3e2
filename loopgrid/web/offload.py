"""Routes served by processes of their own: pure-Python CPU work off the GIL.

Why: on a build with a GIL, a handler that computes in Python for 20 ms holds
the GIL that the front loop needs to parse and answer every other request.
The interpreter alone decides who holds it: the front gets about half, and
``/ping``'s p99 beside such a handler stayed at 0.3-0.45x that of a single
uvicorn worker whatever loopgrid scheduled (``bench/notes/web.md``). Nothing
inside one process does better. So the routes named in ``offload=`` (path
prefixes, as ``routes=`` takes them) are served by ``processes`` child
processes, each with an interpreter and a GIL of its own, a copy of the app
imported from the import string the server was given, and a lifespan run of
its own: what ``uvicorn --workers`` does for every route, done only for the
routes that need it, while the others keep one shared process.

A request's way: the front loop reads the whole request body and sends the
scope and the body over a pipe to the child with the fewest requests in
flight; the child runs the app as a task of a one-loop grid of its own (so
several requests may be in flight in one child) and sends back, once the app
returned, every message the app sent; the front hands them to uvicorn.

What changes for an offloaded handler, as with any process pool: it runs in
another copy of the app, so module globals, caches and lifespan state are the
child's own (what it writes, the server's other routes do not see);
``loopgrid.spawn()`` and ``current_worker()`` reach the child's own grid;
request and response are buffered whole (a streamed response is sent once it
ended: no server-sent events; no websockets); a request whose client went away
still runs to its end; the worker header (``worker_header=True``) says
``offload-<i>``; the scope holds only ASGI's own keys (:data:`SCOPE_KEYS`),
plus the child's lifespan ``state``.

Failures: an exception in the app answers 500 and is logged
(``web.offload_failed``, with the child's traceback); a child that dies
answers 502 to its requests in flight, is logged (``web.offload_died``) and
replaced; with no child alive, 503. A child that cannot start (the import
fails, its lifespan startup fails) stops the server's start with
:class:`~loopgrid.web.StartupError`.

Processes are started with ``"spawn"`` (forking a process whose threads run
event loops is not safe), so the program's main module must keep its work
under ``if __name__ == "__main__":``, as :mod:`multiprocessing` asks. Children
ignore SIGINT and SIGTERM (Ctrl-C reaches the whole process group): they stop
when the server stops them, running their lifespan shutdown, or when their
pipe closes because the server went away.

Thread ownership: :class:`Offload` is made, started and closed by the server's
controlling thread; :meth:`Offload.call` runs on any front loop. Each
:class:`_Child` has a reader thread that alone receives from its pipe and
replaces the process when it dies; sends (from fronts, and ``close``) hold the
child's ``lock``, which also guards swapping ``conn``. ``pending`` (request id
-> the front loop and future awaiting it) is added to by fronts and popped by
the reader (single dict operations, atomic); a front chooses a child and
adds its entry under the offload's ``_choosing`` lock, so that concurrent
choices see each other; a reply resolves its future through
``call_soon_threadsafe`` on that front's loop. ``alive`` is written by
the reader and the controlling thread, read by fronts to pick a child.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import pickle
import signal
import threading
import traceback
from collections.abc import Sequence
from typing import Any

from .. import debug, logs
from .._target import import_target
from ..grid import Grid
from .lifespan import StartupError, run_shutdown, run_startup, workers

__all__ = ["SCOPE_KEYS", "Offload", "check_prefixes", "with_header"]

#: The scope keys sent to a child (ASGI's own HTTP keys; extensions and the
#: server's state stay behind).
SCOPE_KEYS = (
    "type", "asgi", "http_version", "server", "client", "scheme", "method",
    "root_path", "path", "raw_path", "query_string", "headers",
)  # fmt: skip

#: Seconds a child gets to stop (lifespan shutdown included) before it is killed.
STOP_WAIT = 35.0

_Message = dict[str, Any]
_LABEL = "offload-{}"


def check_prefixes(prefixes: object) -> tuple[str, ...]:
    """``offload=``'s path prefixes, checked."""
    if isinstance(prefixes, str) or not isinstance(prefixes, Sequence):
        raise TypeError(f"offload must be a list of path prefixes, got {prefixes!r}")
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ValueError(f"an offload prefix must be a str starting with '/', got {prefix!r}")
    if not prefixes:
        raise ValueError("offload needs at least one path prefix (or None)")
    return tuple(prefixes)


def _send(conn: Any, message: tuple[Any, ...]) -> None:
    """Pickle to bytes and send them. Not ``conn.send()``: it pickles into a
    BytesIO and sends a view of it, and a BytesIO collected in a garbage cycle
    with its view (a failed send's traceback can make one) reports a
    BufferError as unraisable (CPython gh-111331); the suite met one such
    report once under ``-X dev``. Plain bytes have no view to outlive."""
    conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))


def _recv(conn: Any) -> Any:
    """The next message, as :func:`_send` sent it."""
    return pickle.loads(conn.recv_bytes())


class _Died(Exception):
    """The child serving a request exited before it answered."""


def _settle(fut: asyncio.Future[Any], outcome: tuple[str, Any]) -> None:
    if not fut.done():
        if outcome[0] == "died":
            fut.set_exception(_Died(outcome[1]))
        else:
            fut.set_result(outcome)


def with_header(message: _Message, name: bytes, value: bytes) -> _Message:
    """``message`` with one header more if it starts a response, else as it is
    (the worker header, for the server's requests and for offloaded ones)."""
    if message["type"] != "http.response.start":
        return message
    return {**message, "headers": [*message.get("headers", ()), (name, value)]}


async def _plain(send: Any, status: int, text: str) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text.encode()})


class _Child:
    """One offload process, as the server sees it (see the module doc)."""

    def __init__(self, index: int, target: str, lifespan: str) -> None:
        self.index = index
        self.label = _LABEL.format(index).encode()
        self._target = target
        self._lifespan = lifespan
        self.pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self.lock = threading.Lock()
        self._next_id = 0  # under lock
        self.alive = False
        self.closing = False
        self.proc: Any = None
        self.conn: Any = None
        self.reader: threading.Thread | None = None

    def launch(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(
            target=_child_main,
            args=(theirs, self._target, self._lifespan, self.index),
            name=f"loopgrid-web-{_LABEL.format(self.index)}",
            daemon=True,  # multiprocessing ends it if the server exits without close()
        )
        proc.start()
        theirs.close()
        with self.lock:
            old, self.conn, self.proc = self.conn, ours, proc
        if old is not None:
            old.close()

    def wait_ready(self) -> None:
        """Block until the child is ready; StartupError if it failed or died."""
        conn = self.conn
        while not conn.poll(0.1):  # in slices: Ctrl-C reaches a main thread here
            if not self.proc.is_alive():
                break
        try:
            kind, detail = _recv(conn)
        except (EOFError, OSError):
            self.proc.join()
            raise StartupError(
                f"offload process {self.index} exited (code {self.proc.exitcode}) before it "
                "was ready; its error is above (a program that starts the server must do so "
                "under if __name__ == '__main__': see loopgrid.web.offload)"
            ) from None
        if kind != "ready":
            raise StartupError(f"offload process {self.index} could not start:\n{detail}")
        self.alive = True

    def start_reader(self) -> None:
        self.reader = threading.Thread(
            target=self._read, name=f"loopgrid-web-{_LABEL.format(self.index)}", daemon=True
        )
        self.reader.start()

    def send(self, message: tuple[Any, ...]) -> None:
        with self.lock:
            _send(self.conn, message)

    def reserve(self, fut: asyncio.Future[Any]) -> int:
        """Count a request whose reply resolves ``fut`` as this child's; its id.

        Ids count up per child and are never reused: a late reply to a
        request that was cancelled finds no entry instead of another's.
        """
        with self.lock:
            rid = self._next_id = self._next_id + 1
            self.pending[rid] = (fut.get_loop(), fut)
        return rid

    def request(self, rid: int, scope: dict[str, Any], body: bytes) -> None:
        """Send the request reserved as ``rid``; its entry goes if that fails."""
        with self.lock:
            try:
                _send(self.conn, ("request", rid, (scope, body)))
            except BaseException:
                self.pending.pop(rid, None)
                raise

    def _read(self) -> None:
        while True:
            conn = self.conn
            while True:
                try:
                    kind, rid, payload = _recv(conn)
                except (EOFError, OSError):
                    break
                entry = self.pending.pop(rid, None)
                if entry is not None:
                    self._post(entry, (kind, payload))
            self.alive = False
            self.proc.join()
            reason = f"offload process {self.index} exited (code {self.proc.exitcode})"
            while self.pending:
                _, entry = self.pending.popitem()
                self._post(entry, ("died", reason))
            if self.closing:
                return
            logs.error("web.offload_died", process=self.index, exitcode=self.proc.exitcode)
            try:
                self.launch()
                self.wait_ready()
            except StartupError as exc:
                logs.error("web.offload_restart_failed", process=self.index, error=str(exc))
                return
            if self.closing:  # close() began meanwhile; its stop may have missed this one
                self.stop()

    @staticmethod
    def _post(entry: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]], outcome: Any) -> None:
        loop, fut = entry
        with contextlib.suppress(RuntimeError):  # that front's loop has closed
            loop.call_soon_threadsafe(_settle, fut, outcome)

    def stop(self) -> None:
        """Ask the child to stop (the controlling thread, at close)."""
        self.closing = True
        with contextlib.suppress(OSError, ValueError), self.lock:
            if self.conn is not None:
                _send(self.conn, ("stop", 0, None))

    def join(self) -> None:
        """Wait for the child to exit (killing it after :data:`STOP_WAIT`).

        With a reader thread running, that thread alone reaps the process
        (two threads waiting for one process make one of them miss its end).
        """
        waiter = self.reader
        if waiter is None and self.proc is not None:
            waiter = self.proc
        if waiter is not None:
            waiter.join(STOP_WAIT)
            if waiter.is_alive():
                logs.error("web.offload_killed", process=self.index, waited=STOP_WAIT)
                self.proc.kill()
                waiter.join()
        if self.conn is not None:
            self.conn.close()
        self.alive = False


class Offload:
    """The routes a server hands to child processes, and those processes."""

    def __init__(
        self,
        target: str,
        prefixes: Sequence[str],
        processes: int,
        lifespan: str,
        header: bytes | None,
    ) -> None:
        self.prefixes = tuple(prefixes)
        self._header = header
        self._children = [_Child(i, target, lifespan) for i in range(processes)]
        self._choosing = threading.Lock()  # see the module doc: any front

    def matches(self, scope: dict[str, Any]) -> bool:
        if scope["type"] != "http":
            return False
        path: str = scope["path"]
        return any(path.startswith(p) for p in self.prefixes)

    def start(self) -> None:
        """Start every child and wait until all are ready (StartupError if one fails)."""
        try:
            for child in self._children:
                child.launch()
            for child in self._children:
                child.wait_ready()
        except BaseException:
            for child in self._children:
                if not child.alive and child.proc is not None:
                    child.proc.kill()  # not ready: it may hang in its startup
            self.close()
            raise
        for child in self._children:
            child.start_reader()

    def close(self) -> None:
        """Stop every child (each runs its lifespan shutdown) and join them."""
        for child in self._children:
            child.stop()
        for child in self._children:
            child.join()

    async def call(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Serve one request of an offloaded route from a child (on a front loop)."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        live = [c for c in self._children if c.alive]
        if not live:
            await _plain(send, 503, "Service Unavailable: no offload process is running")
            return
        fut: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        plain = {k: scope[k] for k in SCOPE_KEYS if k in scope}
        # The least busy child, counted busier at once: two fronts choosing at
        # the same moment (free-threaded builds run them in parallel) both
        # took the idle one when the choice and the count were apart.
        with self._choosing:
            child = min(live, key=lambda c: len(c.pending))
            rid = child.reserve(fut)
        try:
            child.request(rid, plain, bytes(body))
            kind, payload = await fut
        except asyncio.CancelledError:
            child.pending.pop(rid, None)
            with contextlib.suppress(OSError, ValueError):
                child.send(("cancel", rid, None))
            raise
        except (_Died, OSError, ValueError) as exc:
            child.pending.pop(rid, None)
            logs.error("web.offload_lost", path=scope["path"], process=child.index, error=str(exc))
            await _plain(send, 502, "Bad Gateway: the offload process serving it exited")
            return
        if kind == "error":
            logs.error("web.offload_failed", path=scope["path"], process=child.index, error=payload)
            await _plain(send, 500, "Internal Server Error")
            return
        for message in payload:
            if self._header is not None:
                message = with_header(message, self._header, child.label)
            await send(message)


# -- in the child -------------------------------------------------------------------


def _child_main(conn: Any, target: str, lifespan: str, index: int) -> None:
    """An offload process: serve requests from ``conn`` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The server's debug endpoint is the server's: a child that inherited the
    # variable would open one of its own (or fail on the same port).
    os.environ.pop(debug.ENV_VAR, None)
    try:
        app = import_target(target, "app")
        grid = Grid(1, name=_LABEL.format(index))
    except BaseException:
        _send(conn, ("failed", traceback.format_exc()))
        return
    try:
        runs, states = run_startup(app, lifespan, workers(grid))
    except BaseException as exc:
        grid.close(cancel=True)
        _send(conn, ("failed", str(exc)))
        return
    state = states[0]
    lock = threading.Lock()  # replies come from the worker's thread, "ready" from here
    handles: dict[int, Any] = {}

    def reply(rid: int, h: Any) -> None:
        handles.pop(rid, None)
        if h.cancelled():
            return
        exc = h.exception()
        with lock, contextlib.suppress(OSError):
            try:
                if exc is None:
                    _send(conn, ("done", rid, h.result()))
                    return
            except Exception as e:  # a message that does not pickle
                exc = e
            _send(conn, ("error", rid, "".join(traceback.format_exception(exc))))

    with lock:
        _send(conn, ("ready", os.getpid()))
    try:
        while True:
            try:
                kind, rid, payload = _recv(conn)
            except (EOFError, OSError):
                break
            if kind == "request":
                scope, body = payload
                h = grid.spawn(_respond, app, scope, body, state, name=f"offload {scope['path']}")
                handles[rid] = h
                h.add_done_callback(functools.partial(reply, rid))
            elif kind == "cancel":
                pending = handles.get(rid)
                if pending is not None:
                    pending.cancel()
            else:
                break
    finally:
        for h in list(handles.values()):
            h.cancel()
        run_shutdown(runs)
        grid.close(cancel=True)


async def _respond(
    app: Any, scope: dict[str, Any], body: bytes, state: dict[str, Any]
) -> list[_Message]:
    """Run the app on one request; return every message it sent."""
    scope["state"] = state.copy()
    messages: list[_Message] = []
    ended = asyncio.Event()
    first: _Message | None = {"type": "http.request", "body": body, "more_body": False}

    async def receive() -> _Message:
        nonlocal first
        if first is not None:
            message, first = first, None
            return message
        await ended.wait()
        return {"type": "http.disconnect"}

    async def send(message: _Message) -> None:
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            ended.set()

    await app(scope, receive, send)
    return messages
