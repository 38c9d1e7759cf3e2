"""What the calling thread is to loopgrid: a grid's worker, a front loop, or neither.

Why a module of its own: the worker sets it, and modules the worker imports
(``affinity.py``, which explains loop-affinity errors, and ``web/``) read it;
kept here, none of them needs to import ``worker.py`` to ask.

Thread ownership: a :class:`threading.local`; each thread reads and writes its
own values only.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .grid import Grid
    from .worker import Worker

__all__ = ["ThisThread", "this_thread"]


class ThisThread(threading.local):
    #: The worker whose loop this thread runs (set by ``Worker._main``).
    worker: Worker | None = None
    #: A thread that serves a grid without being one of its workers (the HTTP
    #: front loop of ``loopgrid.web``): ``spawn()`` and ``current_grid()`` work there.
    grid: Grid | None = None
    #: Calls of current_worker() on this thread, ever: ``web/inline.py`` reads
    #: it before and after a request to tell whether the handler asked.
    asked = 0


this_thread = ThisThread()
