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
2. ``/ping`` of ``examples/webapp`` under wrk (32 connections in all, one wrk
   per port): uvicorn (asyncio's loop, h11) in one thread; in two threads of
   one process, a server each on a port of its own and with a Starlette app
   object of its own; in two processes; and ``loopgrid serve --dispatch
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
    ts = [threading.Thread(target=WORK[kind]) for _ in range(n)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


def _in_processes(kind: str, n: int) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen([PY, __file__, "work", kind, str(STEPS)]) for _ in range(n)]
    for p in procs:
        p.wait()
    return time.perf_counter() - t0


# -- 2. /ping -----------------------------------------------------------------------


def _serve_threads(ports: list[int]) -> None:
    """Child: one uvicorn server per port, each on a thread and loop of its own."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    from examples.webapp.app import app as shared

    def run(port: int) -> None:
        app = Starlette(routes=[Route(r.path, r.endpoint) for r in shared.routes])  # type: ignore[attr-defined]
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
            lifespan="off", http="h11",
        )  # fmt: skip
        asyncio.new_event_loop().run_until_complete(uvicorn.Server(config).serve())

    threads = [threading.Thread(target=run, args=(p,), daemon=True) for p in ports]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(argv: list[str], ports: list[int]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    for port in ports:
        while True:  # a benchmark may poll; the tests never do
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"{shlex.join(argv)} did not serve on {port}") from None
                time.sleep(0.1)
    return proc


def _servers(name: str) -> tuple[list[list[str]], list[int]]:
    """The processes (argv) and ports of one configuration."""
    me = [PY, __file__, "serve-threads"]
    if name.startswith("uvicorn"):
        threads, procs = {"uvicorn, 1 thread": (1, 1), "uvicorn, 2 threads": (2, 1),
                          "uvicorn, 2 processes": (1, 2)}[name]  # fmt: skip
        ports = [_port() for _ in range(threads * procs)]
        per = [ports[i * threads : (i + 1) * threads] for i in range(procs)]
        return [[*me, *map(str, group)] for group in per], ports
    loops = name.rpartition(" ")[2].split("-")[0]
    port = _port()
    argv = [PY, "-m", "loopgrid", "serve", webbench.APP, "--log-level", "warning",
            "--dispatch", "connection", "--loops", loops, "--port", str(port)]  # fmt: skip
    return [argv], [port]


CONFIGS = [
    "uvicorn, 1 thread",
    "uvicorn, 2 threads",
    "uvicorn, 2 processes",
    "loopgrid serve 1-loop",
    "loopgrid serve 2-loops",
]


def _ping(name: str, seconds: float, connections: int) -> float:
    argvs, ports = _servers(name)
    groups = _split(ports, len(argvs))
    procs = [_start(argv, group) for argv, group in zip(argvs, groups, strict=True)]
    try:
        each = connections // len(ports)
        for warm in (True, False):
            runs = [
                subprocess.Popen(
                    webbench._wrk_argv(f"http://127.0.0.1:{p}/ping", 1 if warm else seconds, each),
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for p in ports
            ]
            outs = [r.communicate(timeout=seconds + 60)[0] for r in runs]
        return sum(webbench._parse(out)["rps"] for out in outs)
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)


def _split(ports: list[int], n: int) -> list[list[int]]:
    k = len(ports) // n
    return [ports[i * k : (i + 1) * k] for i in range(n)]


# -- report ---------------------------------------------------------------------------


def main() -> int:
    global STEPS
    if len(sys.argv) > 3 and sys.argv[1] == "work":
        STEPS = int(sys.argv[3])
        WORK[sys.argv[2]]()
        return 0
    if len(sys.argv) > 2 and sys.argv[1] == "serve-threads":
        _serve_threads([int(p) for p in sys.argv[2:]])
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
    ping: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for rnd in range(args.rounds):
        for kind in WORK:
            one_t, two_t = _in_threads(kind, 1), _in_threads(kind, 2)
            one_p, two_p = _in_processes(kind, 1), _in_processes(kind, 2)
            work.setdefault(f"{kind}, 2 threads vs 1", []).append(2 * one_t / two_t)
            work.setdefault(f"{kind}, 2 processes vs 1", []).append(2 * one_p / two_p)
        k = rnd % len(CONFIGS)
        for name in CONFIGS[k:] + CONFIGS[:k]:
            ping[name].append(_ping(name, args.seconds, 32))
            print(f"round {rnd + 1} {name:24} {ping[name][-1]:.0f} req/s", file=sys.stderr)
    report = _markdown(args, work, ping)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sharing.md").write_text(report, encoding="utf-8")
    (out / "sharing.json").write_text(json.dumps({"work": work, "ping": ping}, indent=1) + "\n")
    print(report)
    return 0


def _markdown(args: Any, work: dict[str, list[float]], ping: dict[str, list[float]]) -> str:
    med = {k: statistics.median(v) for k, v in ping.items()}
    base = {"uvicorn": med["uvicorn, 1 thread"], "loopgrid": med["loopgrid serve 1-loop"]}
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    lines = [
        "# Free-threaded: two event loops in one process vs two processes",
        "",
        f"Command: `{shlex.join(['python', 'bench/ft_sharing.py', *sys.argv[1:]])}`, from the "
        "repository root. Written by bench/ft_sharing.py.",
        "",
        f"- Date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; Python {sys.version.split()[0]} "
        f"({'GIL enabled' if gil else 'GIL disabled'}); {os.cpu_count()} CPUs; "
        f"{args.rounds} round(s), /ping for {args.seconds:g} s with 32 wrk connections in all.",
        "",
        "| CPU work | median | rounds |",
        "|---|---|---|",
        *(
            f"| {k} | {statistics.median(v):.2f}x | {', '.join(f'{x:.2f}' for x in v)} |"
            for k, v in work.items()
        ),
        "",
        "| /ping | req/s (median) | ratio to its 1 | rounds |",
        "|---|---|---|---|",
    ]
    for name, values in ping.items():
        ratio = med[name] / base[name.split(",")[0].split(" ")[0]]
        rounds = ", ".join(f"{x:.0f}" for x in values)
        lines.append(f"| {name} | {med[name]:.0f} | {ratio:.2f}x | {rounds} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
