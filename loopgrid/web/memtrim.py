"""Give the heap memory freed after a burst of big requests back to the system.

Why (issue 22, item 5): after floods of requests with 16 MiB headers,
``loopgrid serve`` stayed at 280-450 MB resident where uvicorn, with the same
app and flood, went back to about 31 MB (bench/header_flood.py; figures in
bench/notes/header-flood.md). No object was kept: glibc's ``malloc_trim(0)``
in the server brought it back to 34.5 MB, where it started. The memory was
free, held by the allocator. uvicorn runs on one thread, whose big buffers
come from the top of the main heap and are given back as they are freed.
``loopgrid serve`` parses on a front loop's thread and runs the app on the
workers': glibc gives each thread an arena of its own, made of 64 MiB heaps,
and a free chunk below a live one, or in a heap that is not the last, stays
resident. (One arena, ``MALLOC_ARENA_MAX=1``, kept 360 MB; a fixed mmap
threshold, ``MALLOC_MMAP_THRESHOLD_=131072``, 75-160 MB.)

What: while a :class:`~loopgrid.web.Server` serves, a thread of its own reads
the process's RSS once a second and calls ``malloc_trim(0)`` (which returns
the free pages of every arena) once RSS is :data:`GROWTH` over the lowest it
has been, has stopped growing, and the grid runs no task (the burst is over:
a trim takes the arenas' locks while it walks them, so never in the middle
of one). Freed memory does not lower RSS by itself, so that is all the
trimmer can see; memory that is in use looks the same, and a trim that gives
back less than half of :data:`GROWTH` doubles the wait before the next one
(up to :data:`MAX_BACKOFF` checks, until RSS moves by :data:`GROWTH`), so a
server that holds much memory on purpose pays one ``malloc_trim`` a minute
or so, not one a second. One ``/proc`` read a second when nothing happens.

Only where there is something to do: Linux with glibc (``/proc/self/statm``
and ``malloc_trim``). Free-threaded builds allocate Python objects with
mimalloc, which this does not reach (it still trims what C code mallocs).
``LOOPGRID_MALLOC_TRIM=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable

from .. import logs

__all__ = [
    "GROWTH",
    "INTERVAL",
    "MAX_BACKOFF",
    "STILL_GROWING",
    "MemoryTrimmer",
    "malloc_trim_function",
    "rss_bytes",
]

#: RSS growth (bytes) over the floor that makes the next check trim.
GROWTH = 32 << 20
#: Seconds between two checks.
INTERVAL = 1.0
#: RSS growth (bytes) since the last check that means a burst goes on: no trim yet.
STILL_GROWING = 4 << 20
#: The most checks skipped after trims that gave little back.
MAX_BACKOFF = 64

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    """This process's resident set size, from ``/proc/self/statm`` (None without)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def malloc_trim_function() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where there is none (musl, macOS, Windows)."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: fn(0)


class MemoryTrimmer:
    """A thread that trims the heap after RSS grew by ``growth`` (see the module doc)."""

    def __init__(
        self,
        name: str,
        *,
        rss: Callable[[], int | None] = rss_bytes,
        trim: Callable[[], object] | None = None,
        busy: Callable[[], bool] = lambda: False,
        growth: int = GROWTH,
        interval: float = INTERVAL,
    ) -> None:
        self._rss = rss
        self._trim = trim
        self._busy = busy
        self._growth = growth
        self._interval = interval
        self._floor: int | None = None  # the lowest RSS seen
        self._last = 0  # RSS at the previous check (after its trim, if it trimmed)
        self._backoff = 1  # checks between two trims
        self._skip = 0  # checks left before the next trim may come
        self._trimmed_to = 0  # RSS after the last trim
        self.trims = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @classmethod
    def for_server(cls, name: str, busy: Callable[[], bool]) -> MemoryTrimmer | None:
        """A started trimmer, or None where it has nothing to do or is turned off.

        ``busy()``: whether requests are being served (then no trim).
        """
        if os.environ.get("LOOPGRID_MALLOC_TRIM", "1") == "0" or rss_bytes() is None:
            return None
        trim = malloc_trim_function()
        if trim is None:
            return None
        trimmer = cls(name, trim=trim, busy=busy)
        trimmer._thread.start()
        return trimmer

    def check(self) -> bool:
        """One check (see the module doc); True if it trimmed."""
        rss = self._rss()
        if rss is None or self._trim is None:
            return False
        last, self._last = self._last, rss
        if self._floor is None or rss < self._floor:
            self._floor = rss
        if abs(rss - self._trimmed_to) >= self._growth:
            self._backoff, self._skip = 1, 0  # it moved since: a burst, not a cache
        if self._skip > 0:
            self._skip -= 1
            return False
        if rss - self._floor < self._growth or rss - last >= STILL_GROWING or self._busy():
            return False
        self._trim()
        self.trims += 1
        after = self._rss()
        if after is None:
            after = rss
        self._last = self._trimmed_to = after
        self._floor = min(self._floor, after)
        # Little given back: the memory is in use; wait longer before the next.
        little = rss - after < self._growth // 2
        self._backoff = min(2 * self._backoff, MAX_BACKOFF) if little else 1
        self._skip = self._backoff - 1
        if logs.DEBUG_EVENTS:
            logs.debug("web.malloc_trim", rss_before=rss, rss_after=after)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:  # never a traceback a second: said once, then off
                logs.error("web.malloc_trim_failed", exc_info=True)
                return

    def stop(self) -> None:
        """Stop the thread and wait for it (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
