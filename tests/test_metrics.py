"""The Prometheus exporter: scraped over loopback, parsed, stopped with its grid."""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from helpers import (
    WAIT,
    block_worker,
    close_or_fail,
    fail,
    forever,
    grid_threads,
    identity,
    wait_until,
)
from prometheus_client.parser import text_string_to_metric_families

from loopgrid import Grid, GridClosedError, Priority
from loopgrid import metrics as lg_metrics


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=WAIT) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_counters_and_gauges_over_loopback() -> None:
    with Grid(2, name="prom") as g, lg_metrics.serve(g) as server:
        assert server.host == "127.0.0.1"
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        for i in range(3):
            assert g.spawn(identity, i, worker=1).result(WAIT) == i
        with pytest.raises(ValueError):
            g.spawn(fail, worker=1).result(WAIT)
        running = g.spawn(forever, worker=1)
        assert wait_until(lambda: running.state == "running")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            running.result(WAIT)
        _, release = block_worker(g, 0)
        try:
            for p in Priority:
                for _ in range(int(p) + 1):
                    g.spawn(identity, 0, priority=p, worker=0)  # pinned behind the blocker
            samples = _scrape(server.url)
            after = g.stats()["workers"]  # counters only grow: at least the scraped values
        finally:
            release.set()
    w1 = {"grid": "prom", "worker": "1"}
    # identity x3 completed; one failure; one cancelled running task, all on worker 1.
    assert _get(samples, "loopgrid_tasks_completed_total", **w1) == 3
    assert _get(samples, "loopgrid_tasks_failed_total", **w1) == 1
    assert _get(samples, "loopgrid_tasks_cancelled_total", **w1) == 1
    assert _get(samples, "loopgrid_tasks_cancelled_total", grid="prom", worker="external") == 0
    assert _get(samples, "loopgrid_tasks_started_total", **w1) == 5
    assert _get(samples, "loopgrid_tasks_spawned_total", grid="prom", worker="external") == 16
    for p, n in zip(("low", "normal", "high", "critical"), (1, 2, 3, 4), strict=True):
        assert _get(samples, "loopgrid_tasks_pending", grid="prom", worker="0", priority=p) == n
        assert (
            _get(samples, "loopgrid_tasks_pending", grid="prom", worker="injection", priority=p)
            == 0
        )
    assert _get(samples, "loopgrid_tasks_running", grid="prom", worker="0") == 1  # the blocker
    assert _get(samples, "loopgrid_grid_loops", grid="prom") == 2
    for q in ("0.5", "0.99"):
        assert _get(samples, "loopgrid_loop_lag_seconds", grid="prom", worker="0", quantile=q) >= 0
    assert 0 <= _get(samples, "loopgrid_worker_busy_ratio", grid="prom", worker="0") <= 1
    assert 0 <= _get(samples, "loopgrid_grid_imbalance_ratio", grid="prom") <= 1
    for name, key in (("loopgrid_stalls_total", "stalls"), ("loopgrid_tasks_shed_total", "shed")):
        for w in (0, 1):
            assert 0 <= _get(samples, name, grid="prom", worker=str(w)) <= after[w][key]
    # Every task was pinned or injected: nothing was stolen.
    for w in (0, 1):
        assert _get(samples, "loopgrid_tasks_stolen_in_total", grid="prom", worker=str(w)) == 0


def test_exporter_stops_with_its_grid_and_on_close() -> None:
    g = Grid(1, name="promstop")
    server = lg_metrics.serve(g)
    assert any(t.name == "loopgrid-promstop-metrics" for t in threading.enumerate())
    g.close()
    assert not grid_threads()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=WAIT)
    server.close()  # idempotent after the grid closed it
    with Grid(1, name="promclose") as g2:
        s2 = lg_metrics.serve(g2)
        s2.close()
        assert not any(t.name == "loopgrid-promclose-metrics" for t in threading.enumerate())


def test_serve_refuses_a_closed_grid_and_bad_arguments() -> None:
    g = Grid(1)
    g.close()
    with pytest.raises(GridClosedError, match="closed"):
        lg_metrics.serve(g)
    with Grid(1) as g2:
        with pytest.raises(ValueError, match=r"port must be a port number.*70000"):
            lg_metrics.serve(g2, port=70000)
        with pytest.raises(ValueError, match="'80'"):
            lg_metrics.serve(g2, port="80")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="host must be a str, got 1"):
            lg_metrics.serve(g2, host=1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"needs a loopgrid\.Grid, got 'grid'"):
            lg_metrics.serve("grid")  # type: ignore[arg-type]
    assert not grid_threads()


def test_binds_loopback_only_by_default() -> None:
    with Grid(1) as g, lg_metrics.serve(g) as server:
        addr = server._server.socket.getsockname()
        assert addr[0] == "127.0.0.1"
        # Nothing answers on another local address for that port.
        other = socket.gethostbyname(socket.gethostname())
        if other != "127.0.0.1" and not other.startswith("127."):
            with pytest.raises(OSError), socket.create_connection((other, server.port), timeout=5):
                pass


def test_an_idle_connection_blocks_neither_scrapes_nor_close() -> None:
    g = Grid(1, name="scraped")
    server = lg_metrics.serve(g)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    try:
        with urllib.request.urlopen(server.url, timeout=WAIT) as resp:
            assert b'grid="scraped"' in resp.read()
        server.close()  # does not wait for the idle client
        close_or_fail(g)
        assert idle.recv(1) == b""
    finally:
        idle.close()
