"""Run each example as a subprocess and check that it works and says what it should."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

from helpers import quiet_child_env

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example_full(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=quiet_child_env(),
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def run_example(name: str, *args: str) -> str:
    return run_example_full(name, *args).stdout


def test_runner() -> None:
    out = run_example("runner.py", "--loops", "2", "--tasks", "8")
    assert "main() runs on worker 0" in out
    lines = re.findall(
        r"item-\d+ (LOW|NORMAL|HIGH|CRITICAL) +ran on worker (\d+): [0-9a-f]{8}", out
    )
    assert len(lines) == 8
    assert {p for p, _ in lines} == {"LOW", "NORMAL", "HIGH", "CRITICAL"}
    assert {int(w) for _, w in lines} <= {0, 1}
    assert "tasks per worker:" in out


def test_decorator() -> None:
    out = run_example("decorator.py")
    assert "<loopgrid.task fetch priority=HIGH>" in out
    assert "await fetch('inline') -> value-of-inline (worker 0)" in out
    assert "name='fetch' priority=HIGH" in out
    for key in "abcd":
        assert re.search(rf"fetch priority=HIGH -> value-of-{key} \(worker [01]\)", out)


def test_sync_grid() -> None:
    out = run_example("sync_grid.py")
    assert "result: 5\n" in out
    assert "results: [0, 2, 4, 6, 8, 10, 12, 14]" in out
    assert "ValueError(boom)" in out
    stats = json.loads(out[out.index("{") :])
    assert stats["loops"] == 2
    assert stats["state"] == "closed"
    assert stats["totals"]["completed"] == 9
    assert stats["totals"]["failed"] == 1
    assert stats["totals"]["pending"] == stats["totals"]["running"] == 0


def test_foreign_loop() -> None:
    out = run_example("foreign_loop.py")
    assert "main loop runs in thread 'MainThread'" in out
    assert re.search(r"await: task 0 ran on worker [01]", out)
    assert len(re.findall(r"  task [1-4] ran on worker [01]", out)) == 4
    assert re.search(r"wait_for: task 5 ran on worker [01]", out)
    assert "wait_for timed out and cancelled the task: cancelled" in out
    assert "grid closed: True" in out


def test_anyio_interop() -> None:
    out = run_example("anyio_interop.py")
    squares = re.findall(r"^  (\d)\^2 = \d+ on worker (\d)$", out, re.MULTILINE)
    assert squares == [("0", "0"), ("1", "1"), ("2", "0"), ("3", "1")]
    assert "fail_after timed out and cancelled the grid task: cancelled" in out
    assert re.search(r"^from a worker thread: 7\^2 = 49 on worker [01]$", out, re.MULTILINE)
    m = re.search(
        r"^grid task on worker (\d): anyio children ran on workers \[(\d), (\d), (\d)\]; "
        r"thread '(.+)' called back into worker (\d)$",
        out,
        re.MULTILINE,
    )
    assert m, out
    here, *children, thread, back = m.groups()
    assert children == [here] * 3 and back == here
    assert not thread.startswith("loopgrid-")
    if importlib.util.find_spec("trio") is None:
        return
    assert re.search(
        r"^trio backend: await <Handle .*> in trio code: loopgrid runs on asyncio and "
        r"does not support trio",
        out,
        re.MULTILINE,
    )


def test_taskgroup() -> None:
    out = run_example("taskgroup.py", "--loops", "2")
    assert "main() runs on worker 0" in out
    checksums = re.findall(r"^checksum (\d): [0-9a-f]{8} \(worker (\d)\)$", out, re.MULTILINE)
    assert [(int(n), int(w)) for n, w in checksums] == [(0, 0), (1, 1), (2, 0), (3, 1)]
    assert (
        "the group raised ExceptionGroup('unhandled errors in a TaskGroup', "
        "[ConnectionError('server went away')])" in out
    )
    downloads = re.findall(r"^download (\d): (\w+)", out, re.MULTILINE)
    assert downloads == [("0", "cancelled"), ("1", "cancelled")]


def test_pause_resume() -> None:
    out = run_example("pause_resume.py", "--pause-for", "0.3")
    assert "ticker paused: state=paused" in out
    assert "after 0.3 s paused the count is unchanged: True" in out
    assert "resumed: the count moves again (True), state=running" in out
    assert "worker 1 paused: True" in out
    assert re.findall(r"job \d ran on worker (\d)", out) == ["0", "0", "0"]
    assert "queued behind the hog: state=pending, pinned to 1" in out
    assert "moved: queued task ran on worker 0 (pinned to 0)" in out
    assert "paused tasks now: 0" in out


def test_demo() -> None:
    out = run_example("demo.py", "--loops", "2", "--tasks", "200", "--block", "0.5", "--progress")
    assert re.search(r"^ *\d+\.\d\ds \| w0 +\d+p", out, re.MULTILINE), "no progress line"
    rows = re.findall(r"^ +([01])((?: +\d+){8})$", out, re.MULTILINE)
    assert [w for w, _ in rows] == ["0", "1"], out
    # started, completed, stolen in, stolen out, then tasks run per priority
    table = {int(w): [int(n) for n in nums.split()] for w, nums in rows}
    fed = re.search(
        r"moved (\d+) of its queued tasks to the injection queue; (\d+) tasks were fed", out
    )
    assert fed, out
    total = 401 + int(fed.group(2))  # two waves of 200, the producer, the main thread's feed
    assert int(fed.group(2)) > 0
    assert sum(r[0] for r in table.values()) == total
    assert all(r[0] == r[1] for r in table.values())
    assert sum(sum(r[4:]) for r in table.values()) == total
    m = re.search(
        r"worker 0 was blocked for 0.5 s; (\d+) of its (\d+) queued tasks were stolen", out
    )
    assert m, out
    assert int(m.group(2)) == 200
    assert int(m.group(1)) > 0, "nothing moved off the blocked worker"
    assert re.search(r"the monitor saw [1-9]\d* stall\(s\) on worker 0", out), out


def test_observe(tmp_path: Path) -> None:
    trace = tmp_path / "run.json"
    proc = run_example_full("observe.py", "--trace", str(trace), "--block", "0.3")
    out, err = proc.stdout, proc.stderr
    assert "running: slow-handler on worker 0" in out
    assert "jobs queued on worker 0 ran on workers: [1]" in out
    assert re.search(r"worker 0: busy \d+%, lag p99 [\d.]+ ms, stalls 1,", out)
    assert "worker.stalled" in err and "task=slow-handler" in err
    assert "in handler" in err and "time.sleep(seconds)" in err
    assert "worker.stall_ended" in err
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e["ph"] == "X" and e["name"] == "slow-handler" for e in events)
    assert f"trace: {trace} (" in out


def test_observe_leaves_no_trace_file_behind_unless_asked(tmp_path: Path) -> None:
    import tempfile

    before = set(Path(tempfile.gettempdir()).iterdir())
    proc = run_example_full("observe.py", "--block", "0.1")
    assert "pass --trace run.json to keep it" in proc.stdout
    after = set(Path(tempfile.gettempdir()).iterdir())
    assert not [p for p in after - before if (p / "loopgrid-trace.json").exists()]


#: Stands in for an environment without Starlette: the finder raises what
#: Python raises for a package that is not installed.
_NO_STARLETTE = """
import sys

class NoStarlette:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "starlette":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoStarlette())
from loopgrid.cli import main
sys.exit(main(["serve", "examples.webapp.app:app", "--port", "0"]))
"""


def test_serving_the_webapp_without_starlette_names_the_package() -> None:
    """The `web` extra brings uvicorn, not Starlette (any ASGI app can be
    served): the example app's import error says what to install."""
    proc = subprocess.run(
        [sys.executable, "-c", _NO_STARLETTE],
        cwd=EXAMPLES.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        "ModuleNotFoundError: examples/webapp is a Starlette app, and Starlette is not "
        "installed: pip install starlette"
    ), proc.stderr
