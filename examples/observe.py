"""See inside a grid: a stalled loop, its backlog moving away, metrics, a trace.

A request handler on worker 0 queues twenty small jobs, then makes a blocking
call (``time.sleep``, on purpose) that holds its loop for a while. The grid's
monitor notices that worker 0 has not come back to its event loop for longer
than the stall threshold: it logs ``worker.stalled`` with the handler's name
and stack. The queued jobs run on worker 1 while worker 0 is still stuck:
idle worker 1 steals them, and had it been busy, the monitor would have moved
them to the injection queue, which busy workers read on every turn.
Meanwhile the debug endpoint answers ``loopgrid ps`` style questions, and
everything is recorded in a trace that Perfetto opens.

Run it with ``python examples/observe.py [--trace run.json]``, then open the
trace at https://ui.perfetto.dev (Open trace file).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import loopgrid

JOBS = 20
left = threading.Semaphore(0)  # released once per finished job


async def job(i: int) -> int:
    left.release()
    return loopgrid.current_worker().index


async def handler(blocked: threading.Event, seconds: float) -> list[loopgrid.Handle[int]]:
    jobs = [loopgrid.spawn(job, i, name=f"job-{i}") for i in range(JOBS)]  # worker 0's queue
    blocked.set()
    time.sleep(seconds)  # a blocking call that holds this loop, on purpose
    for _ in range(JOBS):  # and hold it until the queued jobs have run elsewhere
        left.acquire(timeout=30)
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trace", type=Path, default=None, help="where to write the trace")
    parser.add_argument("--block", type=float, default=0.5, help="seconds worker 0 is held")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:  # the trace, unless --trace keeps it
        observe(args.trace or Path(scratch) / "loopgrid-trace.json", args.block, args.trace)


def observe(trace_path: Path, block: float, kept: Path | None) -> None:
    loopgrid.configure_logging(level="WARNING")  # show the monitor's stall warnings

    with (
        loopgrid.Grid(2, name="observed", stall_threshold=0.1, debug_port=0) as grid,
        grid.trace(trace_path),
    ):
        blocked = threading.Event()
        h = grid.spawn(handler, blocked, block, worker=0, name="slow-handler")
        blocked.wait()
        with urllib.request.urlopen(f"{grid.debug_url}/tasks") as resp:
            rows = json.load(resp)["tasks"]
        running = [r for r in rows if r["state"] == "running"]
        for r in running:
            print(f"running: {r['name']} on worker {r['worker']}")
        jobs = h.result()
        workers = [j.result() for j in jobs]
    stats = grid.stats()  # after close: the stall's end and its lag are in
    print(f"jobs queued on worker 0 ran on workers: {sorted(set(workers))}")
    for w in stats["workers"]:
        print(
            f"worker {w['index']}: busy {w['busy']:.0%}, lag p99 {w['lag_p99'] * 1e3:.1f} ms, "
            f"stalls {w['stalls']}, moved away while stalled {w['shed']}"
        )
    events = json.loads(trace_path.read_text())["traceEvents"]
    steps = sum(1 for e in events if e["ph"] == "X" and e["cat"] == "task")
    if kept is not None:
        print(f"trace: {trace_path} ({steps} task steps); open it at https://ui.perfetto.dev")
    else:
        print(f"trace: {steps} task steps (pass --trace run.json to keep it for Perfetto)")


if __name__ == "__main__":
    main()
