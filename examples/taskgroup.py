"""``loopgrid.TaskGroup``: asyncio.TaskGroup for children on every loop.

First a group fans work out over every worker and ends once all of it is
done. Then a group where one child fails: its siblings, running on other
loops, are cancelled, the body is cancelled, and the failure comes out as an
``ExceptionGroup`` (on Python 3.11+, ``except* ConnectionError:`` would pick
the failures out by type; on 3.10 the class comes from the ``exceptiongroup``
backport).

Run it with ``python examples/taskgroup.py [--loops N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys

import loopgrid
from loopgrid import Handle

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


async def checksum(n: int) -> str:
    await asyncio.sleep(0.01)  # e.g. a download
    digest = hashlib.sha256(n.to_bytes(4, "big") * 4096).hexdigest()[:8]
    return f"{digest} (worker {loopgrid.current_worker().index})"


async def download(n: int) -> None:
    await asyncio.sleep(3600)  # a slow download: only a cancellation ends it


async def broken() -> None:
    await asyncio.sleep(0.1)
    raise ConnectionError("server went away")


async def main(loops: int) -> None:
    print(f"main() runs on worker {loopgrid.current_worker().index}")

    async with loopgrid.TaskGroup() as tg:
        handles = [tg.spawn(checksum, n, worker=n % loops) for n in range(2 * loops)]
    # Here every child has ended, whichever loop ran it.
    for n, h in enumerate(handles):
        print(f"checksum {n}: {h.result()}")

    slow: list[Handle[None]] = []
    try:
        async with loopgrid.TaskGroup() as tg:
            slow = [tg.spawn(download, n, worker=n % loops) for n in range(loops)]
            tg.spawn(broken)
            await asyncio.sleep(3600)  # the body is cancelled too
    except ExceptionGroup as eg:
        print(f"the group raised {eg!r}")
    for n, h in enumerate(slow):
        ran = "before it started" if h.worker is None else f"on worker {h.worker}"
        print(f"download {n}: {h.state.value} {ran}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="loopgrid.TaskGroup example")
    parser.add_argument("--loops", type=int, default=2, help="event loops (default 2)")
    args = parser.parse_args()
    loopgrid.run(main(args.loops), loops=args.loops)
