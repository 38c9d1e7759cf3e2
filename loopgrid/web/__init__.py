"""Serve an ASGI app from every loop of a grid: ``loopgrid serve`` and :func:`serve`.

Needs the ``web`` extra (``pip install 'loopgrid[web]'``: uvicorn). See
``server.py`` for the two ways requests reach the loops, ``bridge.py`` for
requests run as grid tasks, ``front.py`` for the front loops, ``inline.py`` for
the short routes the front loop runs itself, ``offload.py`` for routes served
by processes of their own, ``lifespan.py`` for the app's lifespan,
``appstate.py`` for a per-loop ``app.state``, ``loopcheck.py`` for the
startup check that no loop-bound object is shared by the loops, and
``failclose.py`` for the ``connection: close`` of a failed request's 500.
"""

from .lifespan import StartupError
from .server import DISPATCH, SERVE_SWITCH_INTERVAL, WORKER_HEADER, Server, serve

__all__ = ["DISPATCH", "SERVE_SWITCH_INTERVAL", "WORKER_HEADER", "Server", "StartupError", "serve"]
