"""Prometheus metrics of a grid: ``loopgrid.metrics.serve(grid)``.

Needs ``prometheus_client`` (the ``prometheus`` extra), imported
when first used, so that importing loopgrid never requires it.

What is exported is ``grid.stats()``, read at each scrape (nothing is counted
twice and nothing runs between scrapes), under Prometheus' conventions:
snake_case names prefixed ``loopgrid_``, base units (seconds, ratios from 0 to
1), ``_total`` on counters, and labels ``grid`` and ``worker`` (the worker's
index; ``external`` for spawns and cancels from threads outside the grid;
``injection`` for the queue every worker reads) plus ``priority`` on pending
counts and ``quantile`` on loop lag:

===================================== ======= ===============================
metric                                type    labels
===================================== ======= ===============================
loopgrid_tasks_spawned_total          counter grid, worker (or external)
loopgrid_tasks_started_total          counter grid, worker
loopgrid_tasks_completed_total        counter grid, worker
loopgrid_tasks_failed_total           counter grid, worker
loopgrid_tasks_cancelled_total        counter grid, worker (or external)
loopgrid_tasks_stolen_in_total        counter grid, worker
loopgrid_tasks_stolen_out_total       counter grid, worker
loopgrid_tasks_shed_total             counter grid, worker
loopgrid_stalls_total                 counter grid, worker
loopgrid_tasks_pending                gauge   grid, worker (or injection),
                                              priority
loopgrid_tasks_running                gauge   grid, worker
loopgrid_worker_busy_ratio            gauge   grid, worker
loopgrid_worker_stalled               gauge   grid, worker
loopgrid_worker_paused                gauge   grid, worker
loopgrid_loop_lag_seconds             gauge   grid, worker, quantile
loopgrid_grid_imbalance_ratio         gauge   grid
loopgrid_grid_loops                   gauge   grid
===================================== ======= ===============================

Use :func:`serve` for an exporter of its own (an HTTP server on 127.0.0.1 by
default, on its own thread, stopped with the grid), or register a
:class:`GridCollector` in a registry you already serve.

Thread ownership: scrapes run on the exporter's thread and read the grid as
``grid.stats()`` does from any thread, without locks and without entering a
worker's loop, so a scrape answers while a loop is stalled.
"""

from __future__ import annotations

import wsgiref.simple_server
from collections.abc import Iterator
from typing import Any

from .errors import GridClosedError
from .grid import Grid
from .serverthread import ConcurrentClients, ServerThread

__all__ = ["GridCollector", "MetricsServer", "serve"]

_PRIORITIES = ("low", "normal", "high", "critical")

#: Per-worker families: (kind, metric name without loopgrid_ and _total,
#: stats key, help text). Counters also get the spawns and cancels made from
#: outside the grid, under worker="external", where stats has them.
_PER_WORKER = (
    ("counter", "tasks_spawned", "spawned", "Tasks spawned, by the worker that spawned them."),
    ("counter", "tasks_started", "started", "Tasks started on the worker."),
    ("counter", "tasks_completed", "completed", "Tasks that returned a result on the worker."),
    ("counter", "tasks_failed", "failed", "Tasks that raised on the worker."),
    (
        "counter",
        "tasks_cancelled",
        "cancelled",
        "Tasks that ended cancelled on the worker's thread.",
    ),
    ("counter", "tasks_stolen_in", "stolen_in", "Pending tasks the worker stole from others."),
    (
        "counter",
        "tasks_stolen_out",
        "stolen_out",
        "Pending tasks other workers stole from this one.",
    ),
    ("counter", "tasks_shed", "shed", "Pending tasks moved off the worker while it was stalled."),
    ("counter", "stalls", "stalls", "Stalls seen: the loop held longer than the stall threshold."),
    ("gauge", "tasks_running", "running", "Tasks started on the worker and not finished."),
    ("gauge", "worker_busy_ratio", "busy", "Share of recent samples with the loop running code."),
    ("gauge", "worker_stalled", "stalled", "1 while the worker's loop is stalled."),
    ("gauge", "worker_paused", "paused", "1 while the worker is paused."),
)


def _prometheus() -> Any:
    try:
        import prometheus_client
        import prometheus_client.core
    except ImportError as exc:
        raise ModuleNotFoundError(
            "loopgrid.metrics needs prometheus_client (loopgrid's prometheus extra): "
            "pip install prometheus_client"
        ) from exc
    return prometheus_client


class GridCollector:
    """A Prometheus collector that reads ``grid.stats()`` at each scrape."""

    def __init__(self, grid: Grid) -> None:
        if not isinstance(grid, Grid):
            raise TypeError(f"GridCollector needs a loopgrid.Grid, got {grid!r}")
        self.grid = grid

    def describe(self) -> list[Any]:
        return []  # families are known only from a snapshot; skip the registry's check

    def collect(self) -> Iterator[Any]:
        core = _prometheus().core
        stats = self.grid.stats()
        name = stats["grid"]
        workers = stats["workers"]
        for kind, metric, key, doc in _PER_WORKER:
            make = core.CounterMetricFamily if kind == "counter" else core.GaugeMetricFamily
            fam = make(f"loopgrid_{metric}", doc, labels=["grid", "worker"])
            for w in workers:
                fam.add_metric([name, str(w["index"])], float(w[key]))
            if kind == "counter" and key in stats["external"]:
                fam.add_metric([name, "external"], stats["external"][key])
            yield fam
        pending = core.GaugeMetricFamily(
            "loopgrid_tasks_pending",
            "Tasks queued, not started: per worker, and in the injection queue.",
            labels=["grid", "worker", "priority"],
        )
        for w in workers:
            for p in _PRIORITIES:
                pending.add_metric([name, str(w["index"]), p], w["pending"][p])
        for p in _PRIORITIES:
            pending.add_metric([name, "injection", p], stats["injection"][p])
        yield pending
        lag = core.GaugeMetricFamily(
            "loopgrid_loop_lag_seconds",
            "How late a callback scheduled on the loop ran, over the last few seconds.",
            labels=["grid", "worker", "quantile"],
        )
        for w in workers:
            lag.add_metric([name, str(w["index"]), "0.5"], w["lag_p50"])
            lag.add_metric([name, str(w["index"]), "0.99"], w["lag_p99"])
        yield lag
        for metric, value, doc in (
            (
                "grid_imbalance_ratio",
                stats["totals"]["imbalance"],
                "Spread (max - min) of the workers' busy ratios.",
            ),
            ("grid_loops", stats["loops"], "Workers (event loops) of the grid."),
        ):
            gauge = core.GaugeMetricFamily(f"loopgrid_{metric}", doc, labels=["grid"])
            gauge.add_metric([name], float(value))
            yield gauge


class MetricsServer:
    """An HTTP exporter of one grid's metrics, on its own thread (see :func:`serve`)."""

    def __init__(self, grid: Grid, port: int, host: str) -> None:
        prometheus = _prometheus()
        registry = prometheus.CollectorRegistry(auto_describe=False)
        registry.register(GridCollector(grid))
        app = prometheus.make_wsgi_app(registry)
        self._server = wsgiref.simple_server.make_server(
            host, port, app, server_class=_MetricsServer, handler_class=_Quiet
        )
        self.host = host
        self.port: int = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}/metrics"
        self._runner = ServerThread(self._server, f"loopgrid-{grid.name}-metrics")

    def close(self) -> None:
        """Stop serving and join the thread; idempotent, any thread."""
        self._runner.close()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _MetricsServer(ConcurrentClients, wsgiref.simple_server.WSGIServer):
    """Each scrape on a thread of its own, for a bounded time (``serverthread.py``)."""


class _Quiet(wsgiref.simple_server.WSGIRequestHandler):
    timeout = 5.0  # each read and write; the server cuts off clients after 10 s

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the stdlib writes each request to stderr


def serve(grid: Grid, port: int = 0, host: str = "127.0.0.1") -> MetricsServer:
    """Serve ``grid``'s metrics at ``http://host:port/metrics`` until it closes.

    ``port=0`` picks a free port (see ``.port``). The exporter binds to
    127.0.0.1 unless told otherwise; it stops, and its thread exits, when the
    grid closes or when you call ``.close()``.
    """
    if not isinstance(grid, Grid):
        raise TypeError(f"serve() needs a loopgrid.Grid, got {grid!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be a port number (0 for any free port), got {port!r}")
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, got {host!r}")
    if grid.closed:
        raise GridClosedError(f"{grid!r} is closed: there are no metrics left to serve")
    server = MetricsServer(grid, port, host)
    grid._closers.append(server.close)
    return server
