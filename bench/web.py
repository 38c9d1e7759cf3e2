#!/usr/bin/env python3
"""Load test: ``loopgrid serve`` against uvicorn and granian, with wrk, on loopback.

Each server runs ``examples/webapp/app.py`` in a process of its own; the load
generator is wrk (Debian's ``wrk`` package), in processes of their own, bound
in time (``-d``), against 127.0.0.1 only. Three scenarios per server:

* ``alone``: ``/ping`` only (requests/s, p50, p99);
* ``block``: ``/ping`` while a second wrk keeps ``/block?ms=50`` busy (one
  connection, opened after /ping's: one handler at a time holds its loop
  with a blocking call);
* ``cpu``: the same with ``/cpu?ms=20`` (pure-Python work that holds the GIL);
* ``hash`` (not in the default set): the same with ``/hash?kb=1024`` on 8
  connections (sha256 of 1 MiB, which releases the GIL): a backlog of heavy
  requests that /ping can overtake with a priority (``loopgrid-2-prio``).

Servers, rounds interleaved in rotating order, medians over rounds: uvicorn
with 1 worker (the baseline of every ratio), ``uvicorn --workers 2``, granian
(1 worker), ``loopgrid serve --loops 2`` with ``--dispatch request`` (also
``--no-inline``, and ``--offload /cpu``: that route served by a process of its
own) and with ``--dispatch connection``. The figures (requests/s and p99 as ratios to single
uvicorn, absolute values beside) go to ``bench/results-web/RESULTS.md`` and
``results.json`` there (``bench/results-web-free-threaded/`` on a free-threaded
build; ``--out`` to change), with the command; ``bench/notes/web.md`` says
what they decided.

Usage, from the repository root (wrk must be installed: ``apt-get install wrk``)::

    python3 scripts/dev.py python bench/web.py                 # full: 3 rounds of 5 s
    python3 scripts/dev.py python bench/web.py --smoke         # seconds: checks that it runs
    python3 scripts/dev.py python bench/web.py --servers loopgrid-1,loopgrid-2 --scenarios alone

Targets (issue 7, GIL build): /ping alone at least 0.8x single uvicorn; /ping
p99 under /block and /cpu load no worse than ``uvicorn --workers 2``, aiming
for 0.1x single uvicorn. On a free-threaded build (issue 9): /ping on 2 loops
at least 1.6x of 1 loop (``--servers loopgrid-1,loopgrid-2``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP = "examples.webapp.app:app"
PY = sys.executable


def _command(name: str, loopgrid_flags: list[str], app: str = APP) -> list[str] | None:
    """A server's command line, by name: uvicorn-N, granian-N, or
    loopgrid-N[xL][-connection][-siMS][-prio][-noinline][-fK][-offload] (N
    loops, or with xL: ``--workers N --loops L``; -si: ``--switch-interval
    MS/1000``; -prio: ``--priority /ping=high``; -noinline: ``--no-inline``;
    -fK: ``--fronts K``; -offload: ``--offload /cpu``), serving ``app``
    (``module:attribute``; bench/web_engine.py passes its own)."""
    m = re.fullmatch(
        r"(uvicorn|granian|loopgrid)-(\d+)(?:x(\d+))?(-connection)?(?:-si([\d.]+))?(-prio)?"
        r"(-noinline)?(?:-f(\d+))?(-offload)?",
        name,
    )
    if m is None or (any(m.group(3, 4, 5, 6, 7, 8, 9)) and m.group(1) != "loopgrid"):
        return None
    kind, n = m.group(1), m.group(2)
    if kind == "uvicorn":
        return [PY, "-m", "uvicorn", app, "--no-access-log", "--log-level", "warning",
                "--workers", n]  # fmt: skip
    if kind == "granian":
        return [PY, "-m", "granian", "--interface", "asgi", "--workers", n,
                "--log-level", "warning", "--no-ws", app]  # fmt: skip
    dispatch = "connection" if m.group(4) else "request"
    si = ["--switch-interval", str(float(m.group(5)) / 1000)] if m.group(5) else []
    prio = ["--priority", "/ping=high"] if m.group(6) else []
    prio += ["--no-inline"] if m.group(7) else []
    prio += ["--fronts", m.group(8)] if m.group(8) else []
    prio += ["--offload", "/cpu"] if m.group(9) else []
    sizes = ["--workers", n, "--loops", m.group(3)] if m.group(3) else ["--loops", n]
    return [PY, "-m", "loopgrid", "serve", app, "--no-access-log", "--log-level", "warning",
            *sizes, "--dispatch", dispatch, *si, *prio, *loopgrid_flags]  # fmt: skip


#: scenario -> (the load's path, its connections), or None for /ping alone.
SCENARIOS: dict[str, tuple[str, int] | None] = {
    "alone": None,
    "block": ("/block?ms=50", 1),
    "cpu": ("/cpu?ms=20", 1),
    "hash": ("/hash?kb=1024", 8),
}
DEFAULT_SCENARIOS = ["alone", "block", "cpu"]
DEFAULT_SERVERS = [
    "uvicorn-1",
    "uvicorn-2",
    "granian-1",
    "loopgrid-2",
    "loopgrid-2-noinline",
    "loopgrid-2-connection",
    "loopgrid-2-offload",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(name: str, argv: list[str], log: Path) -> Iterator[str]:
    with _served(name, argv, log) as (url, _):
        yield url


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` and of its live
    descendants (uvicorn's and granian's worker processes), from /proc; 0.0
    where there is no /proc."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(stat[11]) + int(stat[12])  # utime, stime (fields 14, 15)
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total / _TICK


@contextlib.contextmanager
def _served(name: str, argv: list[str], log: Path, cwd: Path = ROOT) -> Iterator[tuple[str, int]]:
    """A server running ``argv`` (in ``cwd``): its URL and process id."""
    port = _free_port()
    cmd = [*argv, "--port", str(port), "--host", "127.0.0.1"]
    with open(log, "ab") as out:
        out.write(f"\n$ {shlex.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # a benchmark may poll; the tests never do
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(url + "/ping", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer on {url} within 60 s; see {log}")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"wrk printed a latency I cannot read: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _wrk_argv(url: str, seconds: float, connections: int) -> list[str]:
    return [
        "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s", url,
    ]  # fmt: skip


def _parse(text: str) -> dict[str, float]:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    requests = re.search(r"(\d+) requests in", text)
    if not (rps and p50 and p99):
        raise RuntimeError(f"cannot read wrk's output:\n{text}")
    return {
        "rps": float(rps.group(1)),
        "requests": float(requests.group(1)) if requests else 0.0,
        "p50_ms": _ms(p50.group(1)),
        "p99_ms": _ms(p99.group(1)),
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def _wrk(url: str, seconds: float, connections: int) -> dict[str, float]:
    argv = _wrk_argv(url, seconds, connections)
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=seconds + 60)
    return _parse(out.stdout)


def _measure(url: str, scenario: str, seconds: float, connections: int) -> dict[str, float]:
    load = SCENARIOS[scenario]
    if load is None:
        return _wrk(url + "/ping", seconds, connections)
    # /ping's connections open first, the load's one after them and it lasts
    # past the end: each server has placed the /ping connections before a
    # handler starts holding a loop (with the load's connection opened first,
    # a server with one accept loop per event loop would accept every /ping
    # connection on the loops the load leaves free).
    ping = subprocess.Popen(
        _wrk_argv(url + "/ping", seconds, connections), stdout=subprocess.PIPE, text=True
    )
    time.sleep(0.3)
    load_path, load_connections = load
    load_argv = ["wrk", "-t1", f"-c{load_connections}", f"-d{seconds + 1:g}s"]
    loader = subprocess.Popen(
        [*load_argv, "--timeout", "10s", url + load_path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        out, _ = ping.communicate(timeout=seconds + 60)
        if ping.returncode != 0:
            raise RuntimeError(f"wrk exited with {ping.returncode}")
        return _parse(out)
    finally:
        loader.terminate()
        loader.wait(60)


_GIL = bool(getattr(sys, "_is_gil_enabled", lambda: True)())
_BLOCK = b"x" * (1 << 20)


def _spin() -> None:
    if _GIL:  # hashing releases the GIL: what two threads get shows the free cores
        for _ in range(150):
            hashlib.sha256(_BLOCK).digest()
        return
    total = 0
    for i in range(2_000_000):
        total += i
    del total


def _ceiling() -> float:
    """How much two plain threads of this process get done against one, now:
    the machine's share of parallelism left for the servers (2x on an idle
    2-core machine; less while other processes hold the cores)."""

    return float(
        statistics.median(
            2 * _elapsed_in_threads(_spin, 1) / _elapsed_in_threads(_spin, 2) for _ in range(3)
        )
    )


def _elapsed_in_threads(fn: Any, k: int) -> float:
    """Seconds that ``k`` threads, started together, take to each run ``fn``."""
    ts = [threading.Thread(target=fn) for _ in range(k)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


def _median(rows: list[dict[str, float]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="1 round of 1 s: checks it runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32, help="wrk connections on /ping")
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help="comma-separated: uvicorn-N, granian-N, "
        "loopgrid-N[-connection][-siMS][-prio][-noinline][-fK]",
    )
    parser.add_argument(
        "--scenarios", default=",".join(DEFAULT_SCENARIOS), help=f"of {', '.join(SCENARIOS)}"
    )
    parser.add_argument("--loopgrid-flags", default="", help="extra flags for loopgrid serve")
    parser.add_argument("--out", default=None, help="folder for RESULTS.md and results.json")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench/web.py needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    rounds, seconds = (1, 1.0) if args.smoke else (args.rounds, args.seconds)
    flags = shlex.split(args.loopgrid_flags)
    names = args.servers.split(",")
    scenarios = args.scenarios.split(",")
    catalogue: dict[str, list[str]] = {}
    for n in names:
        cmd = _command(n, flags)
        if cmd is None:
            parser.error(
                f"unknown server {n!r}: uvicorn-N, granian-N, "
                "loopgrid-N[-connection][-siMS][-prio][-noinline][-fK]"
            )
        catalogue[n] = cmd
    for s in scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s!r}; known: {', '.join(SCENARIOS)}")
    ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    default_out = (
        "bench/out" if args.smoke else f"bench/results-web{'-free-threaded' if ft else ''}"
    )
    out_dir = Path(args.out) if args.out else ROOT / default_out
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "servers.log"  # the servers' own output (not kept in git)
    log.write_bytes(b"")
    raw: dict[str, dict[str, list[dict[str, float]]]] = {
        n: {s: [] for s in scenarios} for n in names
    }
    ceiling = _ceiling()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            with _served(name, catalogue[name], log) as (url, pid):
                _wrk(url + "/ping", min(seconds, 1.0), args.connections)  # warm-up
                for s in scenarios:
                    cpu = _cpu_seconds(pid)
                    row = _measure(url, s, seconds, args.connections)
                    # The server's CPU time per /ping request: its cost, where
                    # /ping is alone (with a load, the load's CPU is in it).
                    used = _cpu_seconds(pid) - cpu
                    row["cpu_us_per_req"] = used / max(row["requests"], 1.0) * 1e6
                    raw[name][s].append(row)
                    print(f"round {r + 1} {name:24} {s:6} {row}", file=sys.stderr, flush=True)
    report = _report(raw, catalogue, scenarios, args, rounds, seconds)
    report["ceiling_before"] = ceiling
    (out_dir / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    md = _markdown(report)
    (out_dir / "RESULTS.md").write_text(md)
    print(md)
    print(f"bench/web.py: wrote {out_dir}/RESULTS.md and results.json", file=sys.stderr)
    return 0


def _report(
    raw: dict[str, dict[str, list[dict[str, float]]]],
    catalogue: dict[str, list[str]],
    scenarios: list[str],
    args: argparse.Namespace,
    rounds: int,
    seconds: float,
) -> dict[str, Any]:
    names = list(catalogue)
    base = "uvicorn-1" if "uvicorn-1" in names else names[0]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for n in names:
        table[n] = {}
        for s in scenarios:
            rows = raw[n][s]
            keys = ("rps", "p50_ms", "p99_ms", "errors", "cpu_us_per_req")
            med = {k: _median(rows, k) for k in keys}
            b = raw[base][s]
            med["rps_ratio"] = med["rps"] / _median(b, "rps")
            med["cpu_ratio"] = med["cpu_us_per_req"] / max(_median(b, "cpu_us_per_req"), 1e-9)
            med["p99_ratio"] = med["p99_ms"] / _median(b, "p99_ms")
            # Each round's ratio to the baseline's run of the same round: the
            # two ran seconds apart, so a noisy machine moves both alike.
            paired = sorted(r["rps"] / max(rb["rps"], 1e-9) for r, rb in zip(rows, b, strict=True))
            med["paired"] = statistics.median(paired)
            med["paired_min"], med["paired_max"] = paired[0], paired[-1]
            table[n][s] = med
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    return {
        "command": shlex.join([Path(PY).name, "bench/web.py", *(sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": bool(getattr(sys, "_is_gil_enabled", lambda: True)()),
        "cpus": os.cpu_count(),
        "wrk": wrk_version.splitlines()[0] if wrk_version else "wrk",
        "rounds": rounds,
        "seconds": seconds,
        "connections": args.connections,
        "baseline": base,
        "servers": {n: shlex.join(catalogue[n][1:]) for n in names},
        "table": table,
        "raw": raw,
    }


def _markdown(rep: dict[str, Any]) -> str:
    gil = "GIL enabled" if rep["gil_enabled"] else "GIL disabled"
    build = "free-threaded build" if rep["free_threaded"] else "GIL build"
    out = [
        "# Web: loopgrid serve vs uvicorn and granian (wrk on loopback)",
        "",
        f"Command: `{rep['command']}`, from the repository root. Written by bench/web.py.",
        "",
        f"- Date: {rep['date']}; Python {rep['python']} ({build}, {gil}); {rep['cpus']} CPUs; "
        f"{rep['wrk']}",
        f"- {rep['rounds']} round(s) of {rep['seconds']:g} s per scenario, servers in rotating "
        f"order, each restarted per round; /ping with {rep['connections']} connections; the "
        "load (/block?ms=50 or /cpu?ms=20 on 1 more connection, /hash?kb=1024 on 8) opened "
        "0.3 s after them. "
        "Medians over rounds; ratios "
        f"against {rep['baseline']} in the same run (requests/s: higher is better; p99: lower); "
        "*paired*: the median (and range) over rounds of each round's requests/s ratio to the "
        "baseline's run in the same round, which a machine whose speed drifts between rounds "
        "moves less.",
        f"- Parallel ceiling when the run began: 2 plain threads did {rep['ceiling_before']:.2f}x "
        "the work of 1 (pure Python on a free-threaded build, sha256 with the GIL released on "
        "a GIL build): 2x on an idle 2-core machine, less while other processes hold the cores.",
        "- *CPU us/req* (`/ping` alone only): the server's CPU time (its processes', user "
        "and system, from /proc) over the wrk run, per `/ping` request answered: what a "
        "request costs, less moved by a machine whose speed drifts than requests/s, but "
        "still moved (for an A/B of a few percent: `bench/web_duel.py`); with a load beside "
        "`/ping`, the load's CPU would be in it: not shown.",
        "",
        "| server | scenario | /ping req/s | ratio | paired | p50 ms | p99 ms | p99 ratio "
        "| CPU us/req | CPU ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, per in rep["table"].items():
        for s, m in per.items():
            cpu = m.get("cpu_us_per_req", 0.0)
            cpu_cells = (
                f"{cpu:.1f} | {m['cpu_ratio']:.2f}x" if s == "alone" and cpu > 0 else "- | -"
            )
            out.append(
                f"| {name} | {s} | {m['rps']:.0f} | {m['rps_ratio']:.2f}x | "
                f"{m['paired']:.2f}x ({m['paired_min']:.2f}-{m['paired_max']:.2f}) | "
                f"{m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['p99_ratio']:.2f}x | {cpu_cells} |"
            )
    out += ["", "Servers (after the interpreter):", ""]
    out += [f"- {n}: `{cmd}`" for n, cmd in rep["servers"].items()]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
