"""loopgrid on Ray: the grid's API over several processes and machines.

``RayGrid(loops=N)`` runs N workers, each a Ray async actor (one process, one
event loop), and keeps loopgrid's scheduling in the driver: priority run
queues, aging, stealing between workers, and handles
(:class:`~loopgrid.Handle`) awaitable from any loop. Use it when one process
is not enough: more cores than one interpreter can use, or several machines.
See docs/ray.md for when that pays off.

Importing ``loopgrid`` never imports Ray; importing this package does (it
needs the ``loopgrid[ray]`` extra). Modules: ``grid.py`` (the driver side),
``actor.py`` (the worker process side), ``cluster.py`` (a private local Ray
on 127.0.0.1, or joining a cluster).
"""

from __future__ import annotations

from ..errors import WorkerDiedError
from .actor import spawn, worker_index
from .cluster import import_ray as _import_ray
from .grid import RayGrid, RayHandle, RayWorker

_import_ray()  # a clear ImportError now if Ray is missing, with the env set before it

__all__ = ["RayGrid", "RayHandle", "RayWorker", "WorkerDiedError", "spawn", "worker_index"]
