"""grid.trace(): a Chrome trace-event file that Perfetto can open, with a
track per worker, task steps, wake-up and steal flows, and stalls."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, LogCatcher, identity, wait_until

import loopgrid
from loopgrid import Grid, GridClosedError
from loopgrid.trace import Tracer


def _load(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text())
    assert set(doc) >= {"traceEvents", "displayTimeUnit"}
    events: list[dict[str, Any]] = doc["traceEvents"]
    for ev in events:
        assert ev["ph"] in {"M", "X", "s", "f", "i"}
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
        if ev["ph"] != "M":
            assert isinstance(ev["ts"], (int, float)) and ev["ts"] >= 0
        if ev["ph"] == "X":
            assert isinstance(ev["dur"], (int, float)) and ev["dur"] >= 0
    return events


def _tracks(events: list[dict[str, Any]]) -> dict[str, int]:
    return {
        ev["args"]["name"]: ev["tid"]
        for ev in events
        if ev["ph"] == "M" and ev["name"] == "thread_name"
    }


def _check_flows_bind(events: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Each flow has a start and an end, each inside a slice on its own track
    (what Perfetto and chrome://tracing need to draw the arrow)."""
    flows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    slices = [ev for ev in events if ev["ph"] == "X"]
    for ev in events:
        if ev["ph"] in {"s", "f"}:
            flows[ev["id"]].append(ev)
            assert any(
                sl["tid"] == ev["tid"] and sl["ts"] <= ev["ts"] <= sl["ts"] + sl["dur"]
                for sl in slices
            ), f"flow event {ev} is in no slice of its track"
    for flow_id, ends in flows.items():
        assert sorted(e["ph"] for e in ends) == ["f", "s"], (flow_id, ends)
        start = next(e for e in ends if e["ph"] == "s")
        end = next(e for e in ends if e["ph"] == "f")
        assert end["bp"] == "e" and start["ts"] <= end["ts"]
    return flows


async def _consumer(h: loopgrid.Handle[int]) -> int:
    return await h + 1  # woken from the other loop: a wake-up flow


async def _producer(gate: asyncio.Event) -> int:
    await gate.wait()
    return 41


def test_trace_has_worker_tracks_steps_and_wake_up_flows(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    with Grid(2, name="traced") as g, g.trace(path) as tracer:
        box: list[asyncio.Event] = []
        made = threading.Event()

        async def make_gate() -> None:
            box.append(asyncio.Event())
            made.set()

        g.spawn(make_gate, worker=1).result(timeout=WAIT)
        producer = g.spawn(_producer, box[0], worker=1, name="producer")
        consumer = g.spawn(_consumer, producer, worker=0, name="consumer")
        # The consumer has started awaiting before the producer finishes.
        assert wait_until(lambda: consumer.state == "running")
        g.workers[1].loop.call_soon_threadsafe(box[0].set)
        assert consumer.result(timeout=WAIT) == 42
        assert tracer.events  # recorded while the block runs
    events = _load(path)
    tracks = _tracks(events)
    assert {"worker 0", "worker 1", "monitor"} <= set(tracks)
    steps = [ev for ev in events if ev["ph"] == "X" and ev["cat"] == "task"]
    by_name = defaultdict(list)
    for ev in steps:
        by_name[ev["name"]].append(ev)
    # The consumer ran twice on worker 0 (start, then woken); the producer on worker 1.
    assert len(by_name["consumer"]) == 2
    assert {ev["tid"] for ev in by_name["consumer"]} == {tracks["worker 0"]}
    assert {ev["tid"] for ev in by_name["producer"]} == {tracks["worker 1"]}
    assert {ev["args"]["task_id"] for ev in by_name["consumer"]} == {consumer.id}
    flows = _check_flows_bind(events)
    wake_ups = [f for f in flows.values() if f[0]["name"] == "wake-up"]
    assert any(
        {e["ph"]: e["tid"] for e in f} == {"s": tracks["worker 1"], "f": tracks["worker 0"]}
        for f in wake_ups
    )


def test_trace_shows_steals_as_flows(tmp_path: Path) -> None:
    path = tmp_path / "steal.json"
    release = threading.Event()

    async def spawn_then_hold(n: int) -> list[loopgrid.Handle[int]]:
        hs = [loopgrid.spawn(identity, i) for i in range(n)]  # worker 0's local queue
        assert release.wait(WAIT)
        return hs

    with Grid(2, stall_threshold=None) as g, g.trace(path):
        h = g.spawn(spawn_then_hold, 40, worker=0)
        try:
            assert wait_until(lambda: g.stats()["workers"][1]["stolen_in"] > 0)
        finally:
            release.set()
        for child in h.result(timeout=WAIT):
            child.result(timeout=WAIT)
    events = _load(path)
    tracks = _tracks(events)
    flows = _check_flows_bind(events)
    w0, w1 = tracks["worker 0"], tracks["worker 1"]
    steals = [{e["ph"]: e["tid"] for e in f} for f in flows.values() if f[0]["name"] == "steal"]
    # Worker 1 stole from worker 0 while it was held; what worker 1 had not
    # started yet may have been stolen back after the release.
    assert {"s": w0, "f": w1} in steals
    assert all(f in ({"s": w0, "f": w1}, {"s": w1, "f": w0}) for f in steals)
    thief_slices = [ev for ev in events if ev["ph"] == "X" and ev["name"].startswith("steal x")]
    assert any(ev["tid"] == w1 and ev["args"]["victim"] == 0 for ev in thief_slices)
    assert all(ev["tid"] == tracks[f"worker {1 - ev['args']['victim']}"] for ev in thief_slices)


def test_trace_marks_stalls(tmp_path: Path) -> None:
    path = tmp_path / "stall.json"
    release = threading.Event()

    async def hog() -> None:
        assert release.wait(WAIT)

    with (
        LogCatcher("worker.stalled", logging.WARNING) as stalled,
        LogCatcher("worker.stall_ended", logging.WARNING) as ended,
        Grid(2, stall_threshold=0.05) as g,
        g.trace(path),
    ):
        h = g.spawn(hog, worker=1, name="hog")
        try:
            assert stalled.seen.wait(WAIT)
        finally:
            release.set()
        h.result(timeout=WAIT)
        assert ended.seen.wait(WAIT)
    events = _load(path)
    tracks = _tracks(events)
    marks = [ev for ev in events if ev["ph"] == "i"]
    assert [m["name"] for m in marks] == ["stall", "stall over"]
    assert all(m["tid"] == tracks["worker 1"] and m["s"] == "t" for m in marks)
    assert marks[0]["args"]["task"] == "hog"
    stall = [ev for ev in events if ev["ph"] == "X" and ev["cat"] == "stall"]
    assert len(stall) == 1 and stall[0]["tid"] == tracks["monitor"]
    assert stall[0]["dur"] >= 0.05 * 1e6


def test_steps_are_untimed_again_after_the_trace(tmp_path: Path) -> None:
    with Grid(1) as g:
        with g.trace(tmp_path / "a.json"):
            g.spawn(identity, 1).result(timeout=WAIT)
        assert not g.workers[0]._timing
        with g.trace(tmp_path / "b.json"):
            pass
    first = _load(tmp_path / "a.json")
    assert any(ev["ph"] == "X" and ev["name"] == "identity" for ev in first)
    assert not [ev for ev in _load(tmp_path / "b.json") if ev["ph"] == "X"]


def test_one_trace_at_a_time_and_none_on_a_closed_grid(tmp_path: Path) -> None:
    with Grid(1, name="first") as g1, Grid(1) as g2, g1.trace(tmp_path / "1.json"):  # noqa: SIM117
        with pytest.raises(RuntimeError, match="grid 'first' is already being recorded"):
            with g2.trace(tmp_path / "2.json"):
                pass
    assert not (tmp_path / "2.json").exists()
    with pytest.raises(GridClosedError, match="closed"), g1.trace(tmp_path / "3.json"):
        pass


def test_the_end_of_a_trace_waits_for_the_steps_running_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task's last step completes its handle before its worker records the
    step: a caller that got the result and left the block at once must still
    find that step in the file (seen missing on 3.13t, in examples/observe.py).
    So the end of a trace lets every worker finish the step it runs; here the
    step is still running when the trace begins to stop."""
    started, release, stopping = threading.Event(), threading.Event(), threading.Event()
    releaser = threading.Thread(target=release.set)  # the step ends while stop() runs
    stop = Tracer.stop

    def stop_and_release(self: Tracer) -> None:
        stopping.set()
        releaser.start()
        stop(self)

    async def last_step() -> int:
        started.set()
        assert release.wait(WAIT)
        return 7

    monkeypatch.setattr(Tracer, "stop", stop_and_release)
    path = tmp_path / "last.json"
    with Grid(2) as g:
        with g.trace(path):
            h = g.spawn(last_step, worker=1, name="last-step")
            assert started.wait(WAIT)
        assert stopping.is_set() and h.result(timeout=WAIT) == 7
    releaser.join(WAIT)
    assert any(ev["ph"] == "X" and ev["name"] == "last-step" for ev in _load(path))
