"""Serve an ASGI app from every loop of a grid: ``loopgrid serve`` and :func:`serve`.

Needs the ``web`` extra (uvicorn). One module
per job:

* ``server.py``: :class:`Server`, what both dispatch modes share;
  ``requestdispatch.py`` and ``connectiondispatch.py``: the two ways
  requests reach the loops;
* ``bridge.py``: requests run as grid tasks; ``front.py``: the front loops;
  ``inline.py``: the short routes a front loop runs itself; ``offload.py``:
  routes served by processes of their own;
* ``lifespan.py``: the app's lifespan; ``appstate.py``: a per-loop
  ``app.state``; ``loopcheck.py``: the startup check that no loop-bound
  object is shared by the loops; ``appcall.py``: how each loop calls the app;
  ``failclose.py``: the ``connection: close`` of a failed request's 5xx;
* ``listen.py``: where a server listens; ``uvicornserver.py``: uvicorn's
  server class underneath;
* ``command.py``: the ``loopgrid serve`` command (uvicorn's command line);
  ``supervisor.py``: ``--workers N`` processes.
"""

from .lifespan import StartupError
from .server import DISPATCH, SERVE_SWITCH_INTERVAL, WORKER_HEADER, Server, serve

__all__ = ["DISPATCH", "SERVE_SWITCH_INTERVAL", "WORKER_HEADER", "Server", "StartupError", "serve"]
