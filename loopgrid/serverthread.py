"""A socket server on a thread of its own, named for its grid, joined on close.

The debug endpoint (``debug.py``) and the Prometheus exporter (``metrics.py``)
both serve a grid's state over HTTP from outside its loops: a stalled loop must
not stop them from answering, so neither runs on a worker. Each gets one thread
named ``loopgrid-<grid>-<what>``, polled for shutdown every 0.1 s, and joined
when it closes, so that no thread outlives its grid.
"""

from __future__ import annotations

import socketserver
import threading

__all__ = ["ServerThread"]


class ServerThread:
    """Runs ``server.serve_forever()`` on a new thread until :meth:`close`."""

    def __init__(self, server: socketserver.BaseServer, name: str) -> None:
        self.server = server
        self._lock = threading.Lock()
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        """Stop serving, join the thread, close the socket; idempotent, any thread."""
        with self._lock:
            if self.thread.is_alive():
                self.server.shutdown()
                self.thread.join()
            self.server.server_close()
