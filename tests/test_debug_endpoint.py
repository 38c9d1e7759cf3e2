"""The debug endpoint: stats and the task list as JSON on 127.0.0.1, opt-in,
stopped with its grid."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from helpers import WAIT, Gate, block_worker, close_or_fail, grid_threads, identity, step_over

from loopgrid import Grid, Priority, serverthread


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_stats_and_tasks_are_served_on_loopback() -> None:
    gate = Gate()
    started = threading.Event()

    async def waiter() -> None:
        started.set()
        await gate.wait()

    with Grid(2, name="dbg", debug_port=0) as g:
        url = g.debug_url
        assert url is not None and url.startswith("http://127.0.0.1:")
        assert g._debug_server is not None
        assert g._debug_server._server.server_address[0] == "127.0.0.1"
        _, release = block_worker(g, 0)
        try:
            w = g.spawn(waiter, worker=1, name="waiter")
            assert started.wait(WAIT)  # worker 1 has started it (it was a race)
            step_over(g, 1)  # and it waits on the gate (a race too: seen on 3.13t)
            queued = [g.spawn(identity, i, worker=0, priority=Priority.HIGH) for i in range(3)]
            status, stats = _get(url + "/stats")
            assert status == 200
            assert stats["grid"] == "dbg" and stats["loops"] == 2
            assert stats["workers"][0]["pending"]["high"] == 3
            status, body = _get(url + "/tasks")
            assert status == 200 and body["grid"] == "dbg"
            rows = {row["id"]: row for row in body["tasks"]}
            assert rows[w.id]["state"] == "running" and rows[w.id]["worker"] == 1
            assert any("in waiter" in line for line in rows[w.id]["where"])
            for q in queued:
                assert rows[q.id]["state"] == "pending"
                assert rows[q.id]["priority"] == "high"
                assert rows[q.id]["where"] == ["queued on worker 0"]
            blocker = next(r for r in body["tasks"] if r["name"] == "blocker")
            assert blocker["state"] == "running" and blocker["worker"] == 0
            # Executing right now (it holds its thread): where its thread is.
            assert blocker["where"][0].startswith("running: ")
            assert blocker["where"][0].endswith(" in wait")  # threading.Event.wait
            # The endpoint answers while worker 0 is held: it never enters a loop.
            status, body = _get(url + "/tasks?limit=2")
            assert status == 200 and len(body["tasks"]) == 2
        finally:
            release.set()
            gate.set()
        for q in queued:
            q.result(timeout=WAIT)


def test_bad_routes_and_parameters_get_json_errors() -> None:
    with Grid(1, debug_port=0) as g:
        assert g.debug_url is not None
        status, body = _get(g.debug_url + "/nope")
        assert status == 404 and "'/nope'" in body["error"]
        status, body = _get(g.debug_url + "/tasks?limit=zero")
        assert status == 400 and "limit must be a positive integer, got 'zero'" in body["error"]
        status, body = _get(g.debug_url + "/")
        assert status == 200 and body["endpoints"] == ["/stats", "/tasks"]


def test_endpoint_stops_with_its_grid() -> None:
    g = Grid(1, name="stops", debug_port=0)
    url = g.debug_url
    assert url is not None
    assert any(t.name == "loopgrid-stops-debug" for t in threading.enumerate())
    g.close()
    assert not grid_threads()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/stats", timeout=WAIT)


def test_off_by_default_and_on_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOPGRID_DEBUG_PORT", raising=False)
    with Grid(1) as g:
        assert g.debug_url is None
    monkeypatch.setenv("LOOPGRID_DEBUG_PORT", "0")
    with Grid(1) as g:
        assert g.debug_url is not None
        assert _get(g.debug_url + "/stats")[0] == 200


@pytest.mark.parametrize("bad", [-1, 70000, "8080", True, 1.5])
def test_bad_debug_port_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="debug_port must be a port number") as info:
        Grid(1, debug_port=bad)
    assert repr(bad) in str(info.value)
    assert not grid_threads()


def test_bad_environment_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPGRID_DEBUG_PORT", "http")
    with pytest.raises(ValueError, match=r"LOOPGRID_DEBUG_PORT must be a port number.*'http'"):
        Grid(1)
    assert not grid_threads()


def test_a_port_in_use_fails_the_grid_cleanly() -> None:
    with Grid(1, debug_port=0) as first:
        assert first._debug_server is not None
        before = set(grid_threads())
        with pytest.raises(OSError):
            Grid(1, debug_port=first._debug_server.port)
        assert set(grid_threads()) == before  # the failed grid's threads are gone


# -- one client cannot block the endpoint --------------------------------------------------


def _raw_get(port: int, host: str) -> tuple[int, bytes]:
    """A GET with a chosen Host header: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        conn.request("GET", "/", headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _still_open(sock: socket.socket) -> bool:
    """True if the server has neither closed ``sock`` nor sent anything on it."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(WAIT)
    return False


def test_idle_and_trickling_clients_block_neither_requests_nor_close() -> None:
    g = Grid(1, name="held", debug_port=0)
    assert g._debug_server is not None
    port = g._debug_server.port
    idle = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    trickle = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    trickle.sendall(b"GET /stats HTT")  # and nothing more, for now
    try:
        status, body = _get(f"{g.debug_url}/stats")  # answered beside both...
        assert status == 200 and body["grid"] == "held"
        assert _still_open(idle) and _still_open(trickle)  # ...not after them
        close_or_fail(g)  # does not wait for them
        assert grid_threads() == []
        assert idle.recv(1) == b""  # and they were cut off
    finally:
        idle.close()
        trickle.close()


def test_a_client_is_cut_off_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serverthread.ConcurrentClients, "client_deadline", 0.2)
    with Grid(1, debug_port=0) as g:
        assert g._debug_server is not None
        sock = socket.create_connection(("127.0.0.1", g._debug_server.port), timeout=WAIT)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\n")  # the request never ends
            assert sock.recv(1) == b""  # the server hung up, well before WAIT


def test_only_loopback_host_names_are_answered() -> None:
    with Grid(1, debug_port=0) as g:
        assert g._debug_server is not None
        port = g._debug_server.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            assert _raw_get(port, host)[0] == 200, host
        status, body = _raw_get(port, "attacker.example:80")
    assert status == 403
    assert b"DNS rebinding" in body and b"attacker.example" in body
