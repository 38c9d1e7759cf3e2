#!/usr/bin/env python3
"""Free-threaded CPython: what sharing one process costs two event loops.

Issue 9 asks ``/ping`` on 2 loops of ``loopgrid serve`` for at least 1.6x the
requests/s of 1 loop on a free-threaded build; runs gave 1.1-1.7x. This
measures, in one run with rounds interleaved, how much of the missing part
any two event loops in one process lose against two processes, which share
nothing:

1. CPU work without I/O: pure Python, and asyncio task steps (``await
   asyncio.sleep(0)``), in 1 and 2 threads of one process and in 1 and 2
   processes (ratio: 2 x the time of 1 over the time of 2).
2. ``/ping`` of ``examples/webapp`` under one wrk with 32 connections, all on
   one port (a ``SO_REUSEPORT`` socket per server): uvicorn (asyncio's loop,
   h11) in one thread; in two threads of one process, each with a Starlette
   app object of its own; in two processes; and ``loopgrid serve --dispatch
   connection`` with 1 and 2 loops (ratios to the one-loop figure of each).

Usage, from the repository root, on a free-threaded build::

    PYTHON_GIL=0 python3 scripts/dev.py --python "$(scripts/install-free-threaded-python.sh)" \\
        --extra test python bench/ft_sharing.py   # -> bench/results-web-free-threaded/sharing.md

Every server binds 127.0.0.1; every wrk run is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import web as webbench  # noqa: E402  (bench/web.py: wrk's command line and output)

PY = sys.executable
STEPS = 300_000


# -- 1. CPU work --------------------------------------------------------------------


async def _steps() -> None:
    for _ in range(STEPS):
        await asyncio.sleep(0)


def _python() -> None:
    total = 0
    for i in range(STEPS * 15):
        total += i


WORK = {"pure Python": _python, "asyncio task steps": lambda: asyncio.run(_steps())}


def _in_threads(kind: str, n: int) -> float:
    return webbench._elapsed_in_threads(WORK[kind], n)


def _in_processes(kind: str, n: int) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen([PY, __file__, "work", kind, str(STEPS)]) for _ in range(n)]
    for p in procs:
        p.wait()
    return time.perf_counter() - t0


# -- 2. /ping -----------------------------------------------------------------------


def _serve_threads(port: int, threads: int) -> None:
    """Child: ``threads`` uvicorn servers on ``port`` (a SO_REUSEPORT socket
    each), each on a thread, loop and Starlette app object of its own; prints
    ``ready`` once all serve."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    from examples.webapp.app import app as shared

    servers = []
    for _ in range(threads):
        app = Starlette(routes=[Route(r.path, r.endpoint) for r in shared.routes])  # type: ignore[attr-defined]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                http="h11")  # fmt: skip
        servers.append(uvicorn.Server(config))

    def run(server: Any) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        asyncio.new_event_loop().run_until_complete(server.serve(sockets=[sock]))

    ts = [threading.Thread(target=run, args=(server,), daemon=True) for server in servers]
    for t in ts:
        t.start()
    while not all(server.started for server in servers):
        time.sleep(0.05)
    print("ready", flush=True)
    for t in ts:
        t.join()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(argv: list[str], port: int) -> subprocess.Popen[str]:
    """Start a server process and wait until it serves (says so, or answers)."""
    own = argv[1] == __file__
    out = subprocess.PIPE if own else subprocess.DEVNULL
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL, text=True)
    if own:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            proc.kill()
            raise RuntimeError(f"{shlex.join(argv)} did not start")
        return proc
    deadline = time.monotonic() + 60
    while True:  # a benchmark may poll; the tests never do
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"{shlex.join(argv)} did not serve on {port}") from None
            time.sleep(0.1)


#: configuration -> (processes, threads each), or the loops of loopgrid serve.
CONFIGS: dict[str, tuple[int, int] | int] = {
    "uvicorn, 1 thread": (1, 1),
    "uvicorn, 2 threads of one process": (1, 2),
    "uvicorn, 2 processes": (2, 1),
    "loopgrid serve, 1 loop": 1,
    "loopgrid serve, 2 loops": 2,
}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ping(name: str, seconds: float, connections: int) -> tuple[float, float, float]:
    """/ping on one configuration, one port, one wrk: requests/s, and the CPU
    time per request of the server's processes and of wrk (microseconds)."""
    port = _port()
    shape = CONFIGS[name]
    if isinstance(shape, tuple):
        processes, threads = shape
        argvs = [[PY, __file__, "serve-threads", str(port), str(threads)]] * processes
    else:
        serve = [PY, "-m", "loopgrid", "serve", webbench.APP, "--no-access-log",
                 "--log-level", "warning"]  # fmt: skip
        argvs = [[*serve, "--dispatch", "connection", "--loops", str(shape), "--port", str(port)]]
    procs = [_start(argv, port) for argv in argvs]
    try:
        url = f"http://127.0.0.1:{port}/ping"
        webbench._wrk(url, 1, connections)  # warm up
        server0, wrk0 = sum(_cpu_seconds(p.pid) for p in procs), _children_cpu()
        rps = webbench._wrk(url, seconds, connections)["rps"]
        server1, wrk1 = sum(_cpu_seconds(p.pid) for p in procs), _children_cpu()
        n = rps * seconds
        return rps, (server1 - server0) / n * 1e6, (wrk1 - wrk0) / n * 1e6
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)


# -- report ---------------------------------------------------------------------------


def main() -> int:
    global STEPS
    if len(sys.argv) > 3 and sys.argv[1] == "work":
        STEPS = int(sys.argv[3])
        WORK[sys.argv[2]]()
        return 0
    if len(sys.argv) > 3 and sys.argv[1] == "serve-threads":
        _serve_threads(int(sys.argv[2]), int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true", help="1 round of 1 s: checks it runs")
    parser.add_argument("--out", default=None, help="folder for sharing.md and sharing.json")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.seconds = 1, 1.0
        STEPS = 20_000
    out = Path(args.out) if args.out else ROOT / "bench" / "results-web-free-threaded"
    work: dict[str, list[float]] = {}
    ping: dict[str, list[tuple[float, float, float]]] = {c: [] for c in CONFIGS}
    for rnd in range(args.rounds):
        for kind in WORK:
            one_t, two_t = _in_threads(kind, 1), _in_threads(kind, 2)
            one_p, two_p = _in_processes(kind, 1), _in_processes(kind, 2)
            work.setdefault(f"{kind}, 2 threads vs 1", []).append(2 * one_t / two_t)
            work.setdefault(f"{kind}, 2 processes vs 1", []).append(2 * one_p / two_p)
        names = list(CONFIGS)
        k = rnd % len(names)
        for name in names[k:] + names[:k]:
            ping[name].append(_ping(name, args.seconds, 32))
            rps, server, wrk = ping[name][-1]
            print(f"round {rnd + 1} {name:34} {rps:6.0f} req/s, CPU per request: "
                  f"server {server:.0f} us, wrk {wrk:.0f} us", file=sys.stderr)  # fmt: skip
    report = _markdown(args, work, ping)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sharing.md").write_text(report, encoding="utf-8")
    (out / "sharing.json").write_text(json.dumps({"work": work, "ping": ping}, indent=1) + "\n")
    print(report)
    return 0


def _markdown(
    args: Any, work: dict[str, list[float]], ping: dict[str, list[tuple[float, float, float]]]
) -> str:
    def med(name: str, i: int) -> float:
        return float(statistics.median(row[i] for row in ping[name]))

    base = {"uvicorn": med("uvicorn, 1 thread", 0), "loopgrid": med("loopgrid serve, 1 loop", 0)}
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    one = "loopgrid serve, 1 loop"
    server, wrk = med(one, 1), med(one, 2)
    lines = [
        "# Free-threaded: two event loops in one process vs two processes",
        "",
        f"Command: `{shlex.join(['python', 'bench/ft_sharing.py', *sys.argv[1:]])}`, from the "
        "repository root. Written by bench/ft_sharing.py.",
        "",
        f"- Date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; Python {sys.version.split()[0]} "
        f"({'GIL enabled' if gil else 'GIL disabled'}); {os.cpu_count()} CPUs; "
        f"{args.rounds} round(s), rounds interleaved; /ping for {args.seconds:g} s, one wrk "
        "with 32 connections on one port. Medians over rounds.",
        f"- What wrk leaves: with one loop the server used {server:.0f} us of CPU per request "
        f"and wrk {wrk:.0f} us, so on {os.cpu_count()} cores shared with wrk, servers "
        f"that scaled perfectly would reach {_bound(server, wrk):.2f}x of one loop.",
        "",
        "| CPU work | median | rounds |",
        "|---|---|---|",
        *(
            f"| {k} | {statistics.median(v):.2f}x | {', '.join(f'{x:.2f}' for x in v)} |"
            for k, v in work.items()
        ),
        "",
        "| /ping | req/s | ratio to its 1 | server CPU us/req | wrk CPU us/req | rounds, req/s |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in ping.items():
        ratio = med(name, 0) / base[name.split(" ")[0].rstrip(",")]
        rounds = ", ".join(f"{row[0]:.0f}" for row in rows)
        lines.append(
            f"| {name} | {med(name, 0):.0f} | {ratio:.2f}x | {med(name, 1):.0f} | "
            f"{med(name, 2):.0f} | {rounds} |"
        )
    return "\n".join(lines) + "\n"


def _bound(server: float, wrk: float) -> float:
    """Most that N cores can serve, shared with wrk, against one core's worth:
    N / (server + wrk) requests per microsecond, over 1 / server."""
    cores = min(os.cpu_count() or 1, 2)
    return cores * server / (server + wrk)


if __name__ == "__main__":
    raise SystemExit(main())
