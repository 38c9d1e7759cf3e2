"""A socket server on a thread of its own, named for its grid, joined on close;
each client served on a thread of its own, for a bounded time.

The debug endpoint (``debug.py``) and the Prometheus exporter (``metrics.py``)
both serve a grid's state over HTTP from outside its loops: a stalled loop must
not stop them from answering, so neither runs on a worker. Each gets one thread
named ``loopgrid-<grid>-<what>``, polled for shutdown every 0.1 s, and joined
when it closes, so that no thread outlives its grid.

Why a thread per client, with a deadline: served one at a time, one idle
connection (or one that sends a byte every few seconds) held the endpoint
for as long as it liked: Prometheus scrapes waited, and so did ``close()``.
Now each client gets its own thread (at most :attr:`ConcurrentClients.max_clients`
at once; more are turned away), each socket operation times out, and a
client still connected :attr:`~ConcurrentClients.client_deadline` seconds after
it connected is cut off by the server's own loop (``service_actions``, run
every poll). Closing cuts every client off at once, then joins their threads.

Thread ownership: ``_clients`` (socket -> deadline) and ``_client_threads``
are guarded by ``_clients_lock``: added to by the server thread, removed by
each client's thread as it ends, read by the server thread (deadlines) and the
closing thread (cut-offs). A socket is shut down by whoever cuts it off and
closed only by its client's thread.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from typing import Any

from . import logs

__all__ = ["ConcurrentClients", "ServerThread"]


class ConcurrentClients:
    """Mixin for a ``socketserver`` server (before it in the bases): each client
    on a thread of its own, for at most ``client_deadline`` seconds."""

    #: Clients served at once; a connection beyond them is closed at once.
    max_clients = 16
    #: Seconds a client may stay connected, however slowly it sends.
    client_deadline = 10.0
    #: The name of client threads (the server sets one with its grid's name).
    client_thread_name = "loopgrid-endpoint-client"

    _clients: dict[Any, float]
    _client_threads: set[threading.Thread]
    _clients_lock: threading.Lock

    def _clients_state(self) -> None:
        if not hasattr(self, "_clients_lock"):
            self._clients = {}
            self._client_threads = set()
            self._clients_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        self._clients_state()
        with self._clients_lock:
            admitted = len(self._clients) < self.max_clients
            if admitted:
                self._clients[request] = time.monotonic() + self.client_deadline
        if not admitted:
            self.shutdown_request(request)  # type: ignore[attr-defined]
            return
        thread = threading.Thread(
            target=self._serve_client,
            args=(request, client_address),
            name=self.client_thread_name,
            daemon=True,  # joined by close_clients() all the same
        )
        with self._clients_lock:
            self._client_threads.add(thread)
        thread.start()

    def _serve_client(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)  # type: ignore[attr-defined]
        except Exception as exc:  # a client that went away, or was cut off
            logs.debug("endpoint.client_error", client=str(client_address), error=repr(exc))
        finally:
            self.shutdown_request(request)  # type: ignore[attr-defined]
            with self._clients_lock:
                self._clients.pop(request, None)
                self._client_threads.discard(threading.current_thread())

    def service_actions(self) -> None:
        """Cut off the clients past their deadline (the server's thread, each poll)."""
        self._clients_state()
        now = time.monotonic()
        with self._clients_lock:
            late = [sock for sock, deadline in self._clients.items() if deadline < now]
        for sock in late:
            _cut_off(sock)

    def close_clients(self) -> None:
        """Cut every client off and wait for their threads to end (any thread)."""
        self._clients_state()
        with self._clients_lock:
            socks = list(self._clients)
        for sock in socks:
            _cut_off(sock)
        while True:
            with self._clients_lock:
                threads = list(self._client_threads)
            if not threads:
                return
            for thread in threads:
                thread.join()


def _cut_off(sock: socket.socket) -> None:
    """Make the client's thread's pending read or write return at once."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class ServerThread:
    """Runs ``server.serve_forever()`` on a new thread until :meth:`close`."""

    def __init__(self, server: socketserver.BaseServer, name: str) -> None:
        self.server = server
        if isinstance(server, ConcurrentClients):
            server.client_thread_name = f"{name}-client"
        self._lock = threading.Lock()
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        """Stop serving, cut clients off, join every thread, close the socket;
        idempotent, any thread."""
        with self._lock:
            if self.thread.is_alive():
                self.server.shutdown()
                self.thread.join()
            if isinstance(self.server, ConcurrentClients):
                self.server.close_clients()
            self.server.server_close()
