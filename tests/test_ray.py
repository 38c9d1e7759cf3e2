"""loopgrid.ray: the grid's API on Ray actors, on a private local Ray with 2 workers.

Marked ``ray`` and skipped when Ray is not installed (it is an optional extra
and has no wheels for free-threaded builds). One private Ray instance serves
the whole module (starting one takes seconds); each test makes its own grid,
whose actors die with it. Where a test must know that a task has reached its
worker process it waits on a :class:`Gate` actor, never on time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.util import find_spec
from typing import Any

import pytest

import loopgrid
from loopgrid import GridClosedError, Priority, TaskState

HAVE_RAY = find_spec("ray") is not None
pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (loopgrid's ray extra)"),
]

if HAVE_RAY:
    import ray

    import loopgrid.ray
    from loopgrid.ray import RayGrid, WorkerDiedError, worker_index
    from loopgrid.ray.cluster import connect

    @ray.remote
    class Gate:
        """Counts arrivals of tasks on worker processes; the test waits for a count."""

        def __init__(self) -> None:
            self.arrived: list[int | None] = []
            self.changed = asyncio.Event()

        async def arrive(self, who: int | None) -> None:
            self.arrived.append(who)
            self.changed.set()

        async def wait_for(self, n: int) -> list[int | None]:
            while len(self.arrived) < n:
                self.changed.clear()
                await self.changed.wait()
            return list(self.arrived)


# -- tasks (module level: they travel to the workers by pickle) ---------------------


async def double(x: int) -> tuple[int, int | None]:
    await asyncio.sleep(0)
    return x * 2, worker_index()


async def where() -> int | None:
    return worker_index()


async def arrive_then_hang(gate: Any) -> None:
    await gate.arrive.remote(worker_index())
    await asyncio.Event().wait()


async def hang_on_worker_0(gate: Any) -> int | None:
    """Hangs on worker 0 (after telling the gate); returns at once elsewhere."""
    if worker_index() == 0:
        await gate.arrive.remote(0)
        await asyncio.Event().wait()
    return worker_index()


async def parent(n: int) -> list[tuple[int, int | None]]:
    """Spawns n children from a worker and awaits them all."""
    children = [loopgrid.ray.spawn(double, i) for i in range(n)]
    return list(await asyncio.gather(*children))


async def parent_of_failing_child() -> str:
    try:
        await loopgrid.ray.spawn(fail, "child failed")
    except ValueError as exc:
        return f"caught {exc}"
    return "not raised"


async def fire_and_forget(gate: Any) -> str:
    """Spawns a child and returns at once, without awaiting it."""
    loopgrid.ray.spawn(arrive_then_return, gate)
    return "parent done"


async def arrive_then_return(gate: Any) -> None:
    await gate.arrive.remote(worker_index())


async def fail(msg: str) -> None:
    raise ValueError(msg)


class _Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


async def fail_unpicklable() -> None:
    raise _Unpicklable()


def sync_function() -> int:
    return 1


class _AsyncCallableWithLock:
    def __init__(self) -> None:
        self.lock = threading.Lock()

    async def __call__(self) -> int:
        return 1


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """The private local Ray (as RayGrid starts it), shared by the module's grids."""
    conn = connect(None)
    try:
        yield
    finally:
        conn.release()


@pytest.fixture
def grid(local_ray: None) -> Iterator[RayGrid]:
    g = RayGrid(2, name="test-ray")
    try:
        yield g
    finally:
        g.close(cancel=True)


def _result(h: Any) -> Any:
    return h.result(timeout=60)


# -- the Grid API ---------------------------------------------------------------------


def test_spawn_result_and_stats(grid: RayGrid) -> None:
    hs = [grid.spawn(double, i) for i in range(40)]
    results = [_result(h) for h in hs]
    assert [r[0] for r in results] == [2 * i for i in range(40)]
    assert {r[1] for r in results} <= {0, 1}
    assert {h.worker for h in hs} <= {0, 1}
    assert all(h.state == TaskState.COMPLETED for h in hs)
    stats = grid.stats()
    assert stats["backend"] == "ray"
    assert stats["totals"]["completed"] == stats["totals"]["spawned"] == 40
    assert stats["totals"]["pending"] == stats["totals"]["running"] == 0
    assert sum(w["completed"] for w in stats["workers"]) == 40
    assert all(w["alive"] and w["pid"] != os.getpid() for w in stats["workers"])
    assert stats["workers"][0]["pid"] != stats["workers"][1]["pid"]


def test_await_from_a_foreign_loop_with_gather(grid: RayGrid) -> None:
    async def main() -> list[Any]:
        return await asyncio.gather(*[grid.spawn(double, i) for i in range(10)])

    assert [r[0] for r in asyncio.run(main())] == [2 * i for i in range(10)]


def test_both_workers_run_tasks(grid: RayGrid, local_ray: None) -> None:
    gate = Gate.remote()  # type: ignore[attr-defined]
    # Two tasks that each hang until cancelled: with the dispatcher's fair share
    # of the injection queue they go to different workers.
    hs = [grid.spawn(arrive_then_hang, gate) for _ in range(2)]
    arrived = ray.get(gate.wait_for.remote(2), timeout=60)
    assert sorted(arrived) == [0, 1]
    assert sorted(h.worker for h in hs) == [0, 1]


def test_priorities_order_starts(local_ray: None) -> None:
    with RayGrid(1, concurrency=1, aging=None, name="test-ray-prio") as g:
        g.pause()
        order: list[str] = []
        hs = []
        for p in (Priority.LOW, Priority.NORMAL, Priority.CRITICAL, Priority.HIGH):
            for i in range(2):
                h = g.spawn(where, priority=p, name=f"{p.name}-{i}")
                h.add_done_callback(lambda h: order.append(h.name))
                hs.append(h)
        g.resume()
        for h in hs:
            _result(h)
    # One slot on one worker: tasks finish in the order they start.
    assert order == [
        "CRITICAL-0", "CRITICAL-1", "HIGH-0", "HIGH-1", "NORMAL-0", "NORMAL-1", "LOW-0", "LOW-1"
    ]  # fmt: skip


def test_pause_resume_and_move_of_pending_tasks(local_ray: None) -> None:
    with RayGrid(2, concurrency=1, aging=None, name="test-ray-pause") as g:
        g.pause()
        held = g.spawn(where, priority=Priority.CRITICAL, worker=0)
        moved = g.spawn(where, worker=0)
        assert held.pause() is True
        assert held.state == TaskState.PAUSED
        moved.move(1)
        others = [g.spawn(where, worker=0) for _ in range(3)]
        g.resume()
        assert [_result(h) for h in others] == [0, 0, 0]
        assert _result(moved) == 1
        # Had the pause not held it, this CRITICAL task would have started
        # first on worker 0's single slot, before the three above.
        assert held.state == TaskState.PAUSED and not held.done()
        assert held.resume() is True
        assert _result(held) == 0


def test_a_paused_worker_is_sent_nothing(grid: RayGrid) -> None:
    grid.workers[0].pause()
    assert grid.workers[0].paused and grid.stats()["workers"][0]["paused"]
    assert [_result(grid.spawn(where)) for _ in range(6)] == [1] * 6
    grid.workers[0].resume()
    assert _result(grid.spawn(where, worker=0)) == 0


def test_async_with_and_await_on_the_callers_loop(local_ray: None) -> None:
    async def main() -> list[Any]:
        async with RayGrid(2, name="test-ray-async") as g:
            return list(await asyncio.gather(*[g.spawn(double, i) for i in range(6)]))

    assert [r[0] for r in asyncio.run(main())] == [0, 2, 4, 6, 8, 10]


def test_a_running_task_cannot_pause(grid: RayGrid) -> None:
    gate = Gate.remote()  # type: ignore[attr-defined]
    h = grid.spawn(arrive_then_hang, gate)
    ray.get(gate.wait_for.remote(1), timeout=60)
    with pytest.raises(asyncio.InvalidStateError, match="running on worker"):
        h.pause()


def test_cancel_pending_and_running(local_ray: None) -> None:
    with RayGrid(1, concurrency=1, name="test-ray-cancel") as g:
        gate = Gate.remote()  # type: ignore[attr-defined]
        running = g.spawn(arrive_then_hang, gate)
        pending = g.spawn(where)
        ray.get(gate.wait_for.remote(1), timeout=60)
        assert pending.state == TaskState.PENDING  # the only slot is taken
        assert pending.cancel() is True
        assert pending.cancelled()
        assert running.cancel("enough") is True
        with pytest.raises(asyncio.CancelledError):
            _result(running)
        assert running.cancelled()
        stats = g.stats()
    assert stats["totals"]["cancelled"] == 2
    assert stats["totals"]["started"] == 1  # the pending one never started


def test_task_exception_reaches_the_handle_as_itself(grid: RayGrid) -> None:
    with pytest.raises(ValueError, match="boom 7"):
        _result(grid.spawn(fail, "boom 7"))
    with pytest.raises(RuntimeError, match=r"_Unpicklable: holds a lock.*cannot be pickled"):
        _result(grid.spawn(fail_unpicklable))
    assert grid.stats()["totals"]["failed"] == 2


def test_children_spawned_on_a_busy_worker_are_stolen(local_ray: None) -> None:
    with RayGrid(2, concurrency=1, name="test-ray-steal") as g:
        # The parent holds worker 0's only slot until its children are done, so
        # worker 0 runs none of them: each one is stolen by worker 1.
        h = g.spawn(parent, 20, worker=0)
        results = _result(h)
        stats = g.stats()
    assert [r[0] for r in results] == [2 * i for i in range(20)]
    assert {r[1] for r in results} == {1}
    w0, w1 = stats["workers"]
    assert w0["spawned"] == 20 and stats["totals"]["spawned"] == 21
    assert w1["stolen_in"] == w0["stolen_out"] == 20
    assert w1["completed"] == 20 and w0["completed"] == 1


def test_a_child_exception_reaches_its_parent(grid: RayGrid) -> None:
    assert _result(grid.spawn(parent_of_failing_child)) == "caught child failed"


def test_close_waits_for_a_child_its_parent_did_not_await(local_ray: None) -> None:
    g = RayGrid(1, name="test-ray-orphan")
    gate = Gate.remote()  # type: ignore[attr-defined]
    h = g.spawn(fire_and_forget, gate)
    g.close()
    assert h.result() == "parent done"
    stats = g.stats()
    assert stats["totals"]["spawned"] == stats["totals"]["completed"] == 2
    assert ray.get(gate.wait_for.remote(1), timeout=60) == [0]


def test_spawn_outside_a_worker_process_is_refused() -> None:
    with pytest.raises(loopgrid.NotOnGridError, match="outside a RayGrid worker process"):
        loopgrid.ray.spawn(double, 1)


# -- bad input ------------------------------------------------------------------------


def test_unpicklable_function_or_argument_is_named(grid: RayGrid) -> None:
    lock = threading.Lock()
    with pytest.raises(TypeError, match=r"argument 1 \(<unlocked _thread.lock.*cannot be pickled"):
        grid.spawn(double, 1, lock)
    with pytest.raises(TypeError, match=r"the function <.*_AsyncCallableWithLock.*cannot be"):
        grid.spawn(_AsyncCallableWithLock())
    coro = double(1)
    with pytest.raises(TypeError, match=r"coroutine object .* cannot be sent to another process"):
        grid.spawn(coro)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="synchronous callable"):
        grid.spawn(sync_function)  # type: ignore[arg-type]
    assert grid.stats()["totals"]["spawned"] == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"loops": 0}, "loops must be an int >= 1 or None, got 0"),
        ({"concurrency": 0}, "concurrency must be an int >= 1, got 0"),
        ({"retries": -1}, "retries must be an int >= 0, got -1"),
        ({"aging": 0}, r"aging \(or None\) must be a number of seconds > 0, got 0"),
        ({"start_timeout": -1}, "start_timeout must be a number of seconds > 0, got -1"),
    ],
)
def test_bad_grid_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RayGrid(**kwargs)


def test_bad_spawn_arguments(grid: RayGrid) -> None:
    with pytest.raises(ValueError, match=r"priority must be .* got 7"):
        grid.spawn(where, priority=7)
    with pytest.raises(ValueError, match=r"worker must be an int from 0 to 1 .* got 2"):
        grid.spawn(where, worker=2)
    with pytest.raises(ValueError, match="retries must be an int >= 0, got 'x'"):
        grid.spawn(where, retries="x")  # type: ignore[arg-type]


def test_bad_address() -> None:
    with pytest.raises(TypeError, match=r"address must be a str .* got 6379"):
        RayGrid(1, address=6379)  # type: ignore[arg-type]


# -- faults ---------------------------------------------------------------------------


def test_a_killed_worker_loses_no_pending_task(local_ray: None) -> None:
    with RayGrid(2, concurrency=2, name="test-ray-kill") as g:
        gate = Gate.remote()  # type: ignore[attr-defined]
        running = [g.spawn(arrive_then_hang, gate, worker=0) for _ in range(2)]
        ray.get(gate.wait_for.remote(2), timeout=60)
        # Worker 0's two slots are taken: these wait in the driver for it.
        pending = [g.spawn(where, worker=0) for _ in range(3)]
        assert all(h.state == TaskState.PENDING for h in pending)
        ray.kill(g.workers[0].actor)
        for h in running:
            with pytest.raises(WorkerDiedError, match=r"was running on worker 0 of grid"):
                _result(h)
        assert [_result(h) for h in pending] == [1, 1, 1]
        # The grid goes on with the worker left.
        assert _result(g.spawn(where)) == 1
        stats = g.stats()
    assert [w["alive"] for w in stats["workers"]] == [False, True]
    assert stats["workers"][0]["error"]
    assert stats["totals"]["failed"] == 2
    assert stats["totals"]["completed"] == 4


def test_a_running_task_is_retried_elsewhere_when_asked(local_ray: None) -> None:
    with RayGrid(2, retries=1, name="test-ray-retry") as g:
        gate = Gate.remote()  # type: ignore[attr-defined]
        h = g.spawn(hang_on_worker_0, gate, worker=0)
        ray.get(gate.wait_for.remote(1), timeout=60)
        no_retry = g.spawn(arrive_then_hang, gate, worker=0, retries=0)
        ray.get(gate.wait_for.remote(2), timeout=60)
        ray.kill(g.workers[0].actor)
        assert _result(h) == 1  # started again, on the worker left
        with pytest.raises(WorkerDiedError, match="worker 0"):
            _result(no_retry)
        stats = g.stats()
    assert stats["workers"][0]["retried"] == 1
    assert stats["totals"]["completed"] == 1 and stats["totals"]["failed"] == 1


def test_when_every_worker_dies_pending_tasks_fail(local_ray: None) -> None:
    with RayGrid(1, concurrency=1, name="test-ray-alldead") as g:
        gate = Gate.remote()  # type: ignore[attr-defined]
        running = g.spawn(arrive_then_hang, gate)
        ray.get(gate.wait_for.remote(1), timeout=60)
        pending = g.spawn(where)
        ray.kill(g.workers[0].actor)
        with pytest.raises(WorkerDiedError, match="was running on worker 0"):
            _result(running)
        with pytest.raises(WorkerDiedError, match=r"could not start: every worker .* has died"):
            _result(pending)


# -- lifecycle ------------------------------------------------------------------------


def test_close_waits_then_refuses_and_kills_the_actors(local_ray: None) -> None:
    g = RayGrid(2, name="test-ray-close")
    hs = [g.spawn(double, i) for i in range(20)]
    actors = [w.actor for w in g.workers]
    g.close()
    assert all(h.done() for h in hs) and [h.result()[0] for h in hs] == [2 * i for i in range(20)]
    with pytest.raises(GridClosedError, match="is closed"):
        g.spawn(where)
    for a in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(a.info.remote(), timeout=60)
    g.close()  # idempotent


def test_close_cancel_ends_pending_and_running(local_ray: None) -> None:
    g = RayGrid(1, concurrency=1, name="test-ray-close-cancel")
    gate = Gate.remote()  # type: ignore[attr-defined]
    running = g.spawn(arrive_then_hang, gate)
    ray.get(gate.wait_for.remote(1), timeout=60)
    pending = [g.spawn(where) for _ in range(3)]
    g.close(cancel=True)
    assert running.cancelled() and all(h.cancelled() for h in pending)
    assert g.stats()["totals"]["cancelled"] == 4


_LOOPBACK = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")


def _descendants(pid: int) -> set[int]:
    """``pid`` and every live process below it, from /proc (Linux)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue  # exited meanwhile
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parent[int(entry)] = int(fields[1])
    out = {pid}
    grew = True
    while grew:
        more = {p for p, pp in parent.items() if pp in out} - out
        out |= more
        grew = bool(more)
    return out


@pytest.mark.skipif(
    shutil.which("ss") is None or not os.path.isdir("/proc"),
    reason="needs ss (iproute2) and /proc to list this process tree's sockets",
)
def test_the_private_instance_listens_on_loopback_only(grid: RayGrid) -> None:
    assert _result(grid.spawn(where)) in (0, 1)
    ours = _descendants(os.getpid())
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    listening = []
    for line in out.splitlines():
        fields = line.split()
        pids = {int(p.split("=")[1]) for p in line.split(",") if p.startswith("pid=")}
        if pids & ours:
            listening.append(fields[3])
    assert listening, f"found no socket of this process and its children in:\n{out}"
    assert all(addr.startswith(_LOOPBACK) for addr in listening), listening


_ALONE = """
import os, ray, test_ray
from loopgrid.ray import RayGrid
with RayGrid(1) as g:
    assert g.address == "local (127.0.0.1)"
    assert g.spawn(test_ray.where).result(timeout=60) == 0
assert not ray.is_initialized()
left = test_ray._descendants(os.getpid()) - {os.getpid()}
assert not left, left
print("ok")
"""


def test_a_private_instance_stops_with_its_grid() -> None:
    # In a process of its own: this module's Ray instance outlives any one grid.
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": tests}
    proc = subprocess.run(
        [sys.executable, "-c", _ALONE], capture_output=True, text=True, env=env, timeout=240
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


_JOIN = """
import sys, ray, test_ray
from loopgrid.ray import RayGrid
# On a cluster the workers get what the runtime_env ships (here: this directory).
code = {"runtime_env": {"env_vars": {"PYTHONPATH": sys.argv[2]}}}
with RayGrid(1, address=sys.argv[1], name="joined", actor_options=code) as g:
    assert g.address == sys.argv[1], g.address
    assert g.spawn(test_ray.where).result(timeout=60) == 0
assert not ray.is_initialized()  # disconnected; the cluster itself goes on
print("ok")
"""


def test_address_joins_an_existing_cluster(grid: RayGrid) -> None:
    address = ray.get_runtime_context().gcs_address
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": tests}
    proc = subprocess.run(
        [sys.executable, "-c", _JOIN, address, tests], capture_output=True, text=True, env=env,
        timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
    # The cluster the other process joined (this module's) is still there.
    assert _result(grid.spawn(where)) in (0, 1)


def test_importing_loopgrid_does_not_import_ray() -> None:
    code = "import sys, loopgrid; assert 'ray' not in sys.modules, 'ray imported'; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr
