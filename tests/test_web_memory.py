"""Memory after header floods (issue 22, item 5): the heap trimmer of a
serving process (loopgrid/web/memtrim.py), and uvicorn's header limits
passed through ``loopgrid serve``.

The figures (RSS before, during and after floods, against uvicorn) come from
bench/header_flood.py, not from here: these tests check the policy and the
plumbing, with no timing. Servers bind 127.0.0.1, on ports 18840-18849.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from helpers import WAIT, grid_threads

from loopgrid import web
from loopgrid.web import memtrim

MIB = 1 << 20


class FakeProcess:
    """An RSS that the test sets, and a trim that brings it to ``trimmed_to``."""

    def __init__(self, rss: int) -> None:
        self.value: int | None = rss
        self.trimmed_to = rss
        self.trims = 0

    def rss(self) -> int | None:
        return self.value

    def trim(self) -> None:
        self.trims += 1
        self.value = self.trimmed_to


def _trimmer(p: FakeProcess, busy: Any = lambda: False) -> memtrim.MemoryTrimmer:
    return memtrim.MemoryTrimmer("test-trimmer", rss=p.rss, trim=p.trim, busy=busy, growth=32 * MIB)


def test_a_trim_once_rss_is_well_over_its_floor_and_stopped_growing() -> None:
    p = FakeProcess(40 * MIB)
    t = _trimmer(p)
    assert not t.check()  # the first reading is the floor
    p.value = 71 * MIB
    assert not t.check()  # over it by less than the threshold (and growing)
    assert not t.check()  # still over it by less than the threshold
    p.value = 300 * MIB
    assert not t.check()  # a burst goes on: RSS still grows
    p.value, p.trimmed_to = 301 * MIB, 41 * MIB  # over: the freed memory stays resident
    busy = [True]
    t._busy = lambda: busy[0]
    assert not t.check()  # requests are being served
    busy[0] = False
    assert t.check() and p.trims == 1 and p.value == 41 * MIB
    assert not t.check()  # back near its floor


def test_memory_in_use_backs_off() -> None:
    """A trim that gives back little doubles the checks before the next one."""
    p = FakeProcess(40 * MIB)
    t = _trimmer(p)
    t.check()
    p.value = p.trimmed_to = 300 * MIB  # in use: a trim gives nothing back
    t.check()  # (it grew)
    trimmed_at = [i for i in range(40) if t.check()]
    assert trimmed_at == [0, 2, 6, 14, 30]  # after 1, 3, 7, 15 checks skipped
    assert p.trims == 5
    p.trimmed_to = 40 * MIB  # freed at last
    trimmed_at = [i for i in range(40, 200) if t.check()]
    assert trimmed_at == [62] and p.value == 40 * MIB  # at the next turn, which helped
    p.value, p.trimmed_to = 300 * MIB, 40 * MIB
    t.check()  # (it grew)
    assert t.check()  # the wait was reset by the trim that helped


def test_a_new_burst_ends_the_back_off() -> None:
    p = FakeProcess(40 * MIB)
    t = _trimmer(p)
    t.check()
    p.value = p.trimmed_to = 300 * MIB  # in use
    t.check()
    assert [i for i in range(8) if t.check()] == [0, 2, 6]  # backing off
    p.value, p.trimmed_to = 400 * MIB, 40 * MIB  # another burst, since freed
    t.check()  # (it grew)
    assert t.check() and p.value == 40 * MIB  # at once, not 8 checks later


def test_no_trim_without_rss_or_trim() -> None:
    p = FakeProcess(40 * MIB)
    p.value = None
    assert not memtrim.MemoryTrimmer("t", rss=p.rss, trim=p.trim).check()
    assert not memtrim.MemoryTrimmer("t", rss=p.rss, trim=None).check()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b"%d headers" % len(scope["headers"])
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _status(port: int, header_bytes: int) -> bytes:
    """The status line answered to a GET with ``header_bytes`` of headers
    (``b"reset"`` if the server reset the connection before it could be read:
    a server that refuses a request while it is still coming in closes with
    unread data, which the system answers with a reset)."""
    fill = b"".join(b"x-fill-%04d: %s\r\n" % (i, b"v" * 1000) for i in range(header_bytes // 1000))
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fill + b"\r\n")
        except OSError:
            pass  # refused mid-way: the answer is still there to read
        try:
            return s.makefile("rb").readline()
        except ConnectionResetError:
            return b"reset"


@pytest.mark.parametrize("limit", [None, 64 * 1024])
def test_the_h11_header_limit_passes_through(limit: int | None) -> None:
    """``--h11-max-incomplete-event-size`` (uvicorn's default: 16 KiB) bounds
    the headers a loopgrid server buffers, as it does uvicorn's."""
    options = {} if limit is None else {"h11_max_incomplete_event_size": limit}
    bound = limit or 16 * 1024
    with web.Server(app, loops=2, port=18841, http="h11", **options) as srv:
        assert _status(srv.port, bound // 2).startswith(b"HTTP/1.1 200"), "under the limit"
        # Over it in more than one read (h11 bounds what it buffers of an
        # incomplete request: one that came whole in one read would pass).
        refused = _status(srv.port, 1 << 20)
        assert refused.startswith(b"HTTP/1.1 400") or refused == b"reset", refused
        assert _status(srv.port, 100).startswith(b"HTTP/1.1 200")  # it goes on


def test_a_server_trims_while_it_serves_and_stops_its_trimmer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if memtrim.rss_bytes() is None or memtrim.malloc_trim_function() is None:
        pytest.skip("no /proc/self/statm or no glibc malloc_trim: nothing to trim here")
    with web.Server(app, loops=2, port=18842) as srv:
        trimmer = srv._trimmer
        assert trimmer is not None
        assert any(t.name.endswith("-memtrim") for t in grid_threads())
    assert not trimmer._thread.is_alive()
    assert grid_threads() == []
    monkeypatch.setenv("LOOPGRID_MALLOC_TRIM", "0")
    with web.Server(app, loops=2, port=18843) as srv:
        assert srv._trimmer is None
