#!/usr/bin/env python3
"""Two servers' CPU time per ``/ping`` request, measured over the same seconds.

Why: on a shared virtual machine the speed drifts several-fold between
rounds, so requests/s (and even CPU time per request) of servers run one
after the other cannot tell a 5% change. Here both servers run at once, on
the same core, each under its own wrk (both on another core): whatever slows
the machine slows both, and the ratio of their CPU time per request keeps
(rounds agreed within a few percent where requests/s moved 4-5x). The second
server of a pair came out about 3% cheaper against itself (A/A), so a
comparison is run both ways round and the two ratios combined: the geometric
mean of ``B/A`` and ``1 / (A/B)``.

Servers are named as in ``bench/web.py`` (``uvicorn-1``, ``loopgrid-2``, ...).
Linux only (``taskset``, /proc), 2 cores or more; wrk must be installed::

    python3 scripts/dev.py python bench/web_duel.py uvicorn-1 loopgrid-2
    python3 scripts/dev.py python bench/web_duel.py uvicorn-1 loopgrid-2 --rounds 8 --seconds 3
    # before/after: the same server from a checkout of an older commit
    mkdir -p /tmp/before && git archive d29f060 | tar -x -C /tmp/before
    python3 scripts/dev.py python bench/web_duel.py loopgrid-2 loopgrid-2 --a-root /tmp/before
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.web import ROOT, _command, _cpu_seconds, _served


def _wrk(url: str, seconds: float, connections: int) -> subprocess.Popen[str]:
    argv = ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", url]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def _requests(out: str) -> int:
    m = re.search(r"(\d+) requests in", out)
    if m is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    return int(m.group(1))


def duel(
    a: str, b: str, rounds: int, seconds: float, connections: int, roots: tuple[Path, Path]
) -> list[float]:
    """Per round, ``b``'s CPU time per request over ``a``'s, both serving at
    once, each from its checkout (``roots``)."""
    log = ROOT / "bench" / "out" / "duel-servers.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    ratios = []
    with ExitStack() as stack:
        served = []
        for name, root in zip((a, b), roots, strict=True):
            argv = _command(name, [])
            if argv is None:
                raise SystemExit(f"unknown server {name!r} (see bench/web.py)")
            pinned = ["taskset", "-c", "1", *argv]
            served.append(stack.enter_context(_served(name, pinned, log, root)))
        for w in [_wrk(url + "/ping", 1, connections) for url, _ in served]:  # warm-up
            w.communicate()
        for r in range(rounds):
            before = [_cpu_seconds(pid) for _, pid in served]
            loads = [_wrk(url + "/ping", seconds, connections) for url, _ in served]
            outs = [w.communicate()[0] for w in loads]
            used = [_cpu_seconds(pid) - c for (_, pid), c in zip(served, before, strict=True)]
            per = [u / _requests(o) * 1e6 for u, o in zip(used, outs, strict=True)]
            ratios.append(per[1] / per[0])
            print(
                f"round {r + 1}: {a} {per[0]:.1f} us/req, {b} {per[1]:.1f} us/req, "
                f"ratio {ratios[-1]:.3f}",
                file=sys.stderr,
                flush=True,
            )
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="the baseline, e.g. uvicorn-1")
    parser.add_argument("b", help="the server compared, e.g. loopgrid-2")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--a-root",
        type=Path,
        default=ROOT,
        help="serve a from this checkout (another commit: git archive COMMIT | tar -x -C DIR)",
    )
    args = parser.parse_args(argv)
    roots = (args.a_root, ROOT)
    ab = duel(args.a, args.b, args.rounds, args.seconds, args.connections, roots)
    ba = duel(args.b, args.a, args.rounds, args.seconds, args.connections, roots[::-1])
    m_ab, m_ba = statistics.median(ab), statistics.median(ba)
    print(
        f"CPU time per /ping request, {args.b} over {args.a}: {math.sqrt(m_ab / m_ba):.3f}x "
        f"({args.b} second: median {m_ab:.3f} [{min(ab):.3f}-{max(ab):.3f}]; "
        f"{args.a} second: median {1 / m_ba:.3f} [{1 / max(ba):.3f}-{1 / min(ba):.3f}])"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
