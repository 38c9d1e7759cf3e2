#!/usr/bin/env python3
"""Run the loopgrid benchmarks; write RESULTS.md and results.json.

Usage, from the repository root::

    python bench/run.py                  # full sizes -> bench/RESULTS.md, bench/results.json
    python bench/run.py --quick          # smaller sizes, fewer rounds (a few seconds each)
    python bench/run.py --quick --smoke  # tiny sizes, checks shape only -> bench/out/
    python bench/run.py --only spawn,steal

Each benchmark module exposes ``run(quick: bool, *, smoke: bool = False) -> dict``
with keys ``benchmark``, ``title``, ``params``, ``results`` (entries with
``name``, ``unit``, ``value``, ``target``, ``met`` and, for comparisons,
``baseline`` and per-round ``ratio`` statistics), ``details`` and ``notes``;
``_harness.validate`` defines the shape. A result may also carry ``plots``
(see ``bench/plots.py``), drawn as PNG files next to RESULTS.md and shown in
it. Targets not met are reported, not failures: the exit status is 0 when
every benchmark ran and returned a well-formed result, 1 otherwise. No timing is ever asserted.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import json
import logging
import os
import shlex
import sys
import traceback
from importlib.util import find_spec
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import _harness, plots  # noqa: E402

BENCHMARKS = {
    "spawn": "bench.bench_spawn",
    "crossloop": "bench.bench_crossloop",
    "steal": "bench.bench_steal",
    "primitives": "bench.bench_primitives",
    "control": "bench.bench_control",
    "observe": "bench.bench_observe",
    "latency": "bench.bench_latency",
    "memory": "bench.bench_memory",
    "priority": "bench.bench_priority",
    "isolation": "bench.bench_isolation",
    "scaling": "bench.bench_scaling",
    "parallel": "bench.bench_parallel",
    "import": "bench.bench_import",
    "balance": "bench.bench_balance",
    "loops": "bench.bench_loops",
    "ray": "bench.bench_ray",
}

#: Benchmarks that need an optional package: left out of a default run when it
#: is not installed (``--only`` runs them anyway, and fails clearly without it).
REQUIRES = {"ray": "ray"}

#: Seconds after which a hung benchmark dumps every thread's stack and exits 1.
WATCHDOG = {"full": 900, "quick": 180, "smoke": 120}


def _command() -> str:
    """The command line that produced these results, with paths relative to the cwd."""

    def rel(p: str) -> str:
        try:
            return os.path.relpath(p)
        except ValueError:
            return p

    return shlex.join([rel(sys.executable), rel(sys.argv[0]), *sys.argv[1:]])


def _fmt(x: float) -> str:
    if x >= 1000:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}" if x < 1 else f"{x:.2f}"


def _met(met: bool | None) -> str:
    return "-" if met is None else "yes" if met else "**no**"


def _notes_index(out_dir: Path) -> list[str]:
    """Links to the hand-written evaluations in bench/notes/, which runs never rewrite.

    Relative to ``out_dir``, where RESULTS.md goes (``--out`` may be another folder).
    """
    notes_dir = ROOT / "bench" / "notes"
    rel = Path(os.path.relpath(notes_dir, out_dir.resolve())).as_posix()
    notes = sorted(notes_dir.glob("*.md"))
    if not notes:
        return []
    out = ["Hand-written evaluations (decisions taken on these figures, kept across runs):", ""]
    for path in notes:
        title = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        out.append(f"- [{title}]({rel}/{path.name})")
    return [*out, ""]


#: A line that marks a section of RESULTS.md as written by hand (a load test run
#: by its own script, say): a run carries such sections over, after its own.
KEEP_MARK = "<!-- hand-written: bench/run.py keeps this section -->"


def _kept_sections(path: Path) -> list[str]:
    """The ``## `` sections of ``path`` that carry :data:`KEEP_MARK`, verbatim."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    sections, current = [], None
    for line in text.splitlines():
        if line.startswith("## "):
            if current is not None:
                sections.append(current)
            current = [line]
        elif current is not None:
            current.append(line)
    if current is not None:
        sections.append(current)
    return ["\n".join(sec).rstrip() for sec in sections if KEEP_MARK in sec]


def _markdown(report: dict[str, Any], out_dir: Path) -> str:
    m = report["machine"]
    out = [
        "# loopgrid benchmarks",
        "",
        f"Command: `{report['command']}` (mode: {report['mode']}), from the repository root.",
        "",
        f"- Date: {m['date']}",
        f"- Machine: {m['platform']}, {m['cpu']}, {m['cpu_count']} CPUs "
        f"(affinity {m['cpu_affinity']}), load average at start {m['loadavg']}",
        f"- Python: {m['python']} {m['implementation']} ({m['build']}; {m['compiler']}); "
        f"free-threaded build: {m['free_threaded_build']}, GIL enabled: {m['gil_enabled']}",
        f"- uvloop {m['uvloop']}; loopgrid {m['loopgrid']} at commit {m['loopgrid_commit']}"
        + (" with uncommitted changes to loopgrid/" if m["loopgrid_dirty"] else ""),
        "",
        "Method: loopgrid and each baseline run alternately, in rotating order, for several "
        "rounds after one warm-up round, on loops and grids kept alive across rounds; "
        "`gc.collect()` before every round; timing with `time.perf_counter`. A ratio is taken "
        "per round and its median is the figure (min and max show the noise). Targets are "
        "judged on that median; missing one is reported here, never a failure.",
        "",
        *_notes_index(out_dir),
        "## Summary",
        "",
        "| benchmark | measure | ratio (median) | target | met |",
        "|---|---|---|---|---|",
    ]
    for name, res in report["benchmarks"].items():
        if "error" in res:
            out.append(f"| {name} | **failed** (see below) | | | |")
            continue
        for e in res["results"]:
            if e.get("target") is None:
                continue
            fig = e["ratio"]["median"] if "ratio" in e else e["value"]
            out.append(f"| {name} | {e['name']} | {fig:.3g} | {e['target']} | {_met(e['met'])} |")
    for name, res in report["benchmarks"].items():
        out += ["", f"## {name}: {res.get('title', '')}", ""]
        if "error" in res:
            out += ["Failed:", "", "```", res["error"].rstrip(), "```"]
            continue
        out += [
            f"Command: `{report['command']}`; this benchmark took {res['seconds']:.1f} s; "
            f"load average after it: {res.get('loadavg_after')}.",
            "",
            "| measure | loopgrid | baseline | ratio median [min, max] (rounds) | target | met |",
            "|---|---|---|---|---|---|",
        ]
        for e in res["results"]:
            unit = e["unit"]
            if "baseline" in e:
                r = e["ratio"]
                base = f"{_fmt(e['baseline']['value'])} {unit}: {e['baseline']['name']}"
                ratio = f"{r['median']:.3g} [{r['min']:.3g}, {r['max']:.3g}] ({r['n']})"
                cand = f"{_fmt(e['value'])} {unit} ({e.get('candidate', 'loopgrid')})"
            else:
                v = e.get("values", {})
                base, ratio = "", ""
                cand = f"{e['value']:.3g} {unit}"
                if v:
                    cand += f" (min {v['min']:.3g}, max {v['max']:.3g}, {v['n']} rounds)"
            target = e["target"] or "(context only)"
            out.append(f"| {e['name']} | {cand} | {base} | {ratio} | {target} | {_met(e['met'])} |")
        out.append("")
        for e in res["results"]:
            if "ratio" in e:
                out.append(f"- *{e['name']}*: ratio = {e['ratio']['definition']}.")
            if "latency_us" in e:
                lat = e["latency_us"]
                out.append(
                    "- per-call latency, us (p5 / p50 / p95): loopgrid "
                    + " / ".join(f"{lat['loopgrid'][k]:.0f}" for k in ("p5", "p50", "p95"))
                    + ", baseline "
                    + " / ".join(f"{lat['baseline'][k]:.0f}" for k in ("p5", "p50", "p95"))
                )
            if "completed_per_round" in e:
                out.append(
                    f"- completed per worker, per round: {e['completed_per_round']}; "
                    f"every round within the bound: {_met(e.get('worst_round_met'))}"
                )
        out.append("")
        out += [f"- {note}" for note in res.get("notes", [])]
        for spec in res.get("plots", []):
            out += ["", f"![{spec['title']}]({spec['file']})"]
        out += [
            "",
            "Parameters: `" + json.dumps(res["params"]) + "`",
            "",
            "Details: `" + json.dumps(res.get("details", {})) + "`",
        ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer rounds (CI)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes; check that each benchmark runs and its result is well-formed; "
        "writes into bench/out/ instead of bench/RESULTS.md",
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--out", type=Path, help="output directory (default: see above)")
    parser.add_argument(
        "--replot",
        action="store_true",
        help="only redraw the plots of the results.json in the output directory",
    )
    args = parser.parse_args(argv)
    if args.replot:
        out = args.out or Path(__file__).parent
        saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
        for res in saved["benchmarks"].values():
            for spec in res.get("plots", []):
                print(f"bench: drew {plots.draw(spec, out)}", file=sys.stderr)
        return 0

    # Several benchmarks hold a loop on purpose (100,000 spawns in one step), which
    # the stall detector reports with a stack each time; the figures are what
    # matters here, so loopgrid's log is cut to errors.
    logging.getLogger("loopgrid").setLevel(logging.ERROR)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    if not names:
        names = [n for n in BENCHMARKS if n not in REQUIRES or find_spec(REQUIRES[n])]
        for n in BENCHMARKS:
            if n not in names:
                print(f"bench: {n} left out: {REQUIRES[n]} is not installed", file=sys.stderr)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    out_dir = args.out or (Path(__file__).parent / "out" if args.smoke else Path(__file__).parent)

    report: dict[str, Any] = {
        "command": _command(),
        "mode": mode,
        "machine": _harness.machine_info(),
        "benchmarks": {},
    }
    status = 0
    for name in names:
        print(f"bench: {name} ({mode}) ...", file=sys.stderr, flush=True)
        faulthandler.dump_traceback_later(WATCHDOG[mode], exit=True)
        t0 = _harness.now()
        try:
            module = importlib.import_module(BENCHMARKS[name])
            result = module.run(args.quick, smoke=args.smoke)
        except Exception:
            status = 1
            report["benchmarks"][name] = {"error": traceback.format_exc()}
            print(f"bench: {name} crashed:\n{traceback.format_exc()}", file=sys.stderr)
            continue
        finally:
            faulthandler.cancel_dump_traceback_later()
        result["seconds"] = _harness.now() - t0
        result["loadavg_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        errors = _harness.validate(result) + plots.validate(result.get("plots", []))
        if errors:
            status = 1
            report["benchmarks"][name] = {
                "title": "malformed result",
                "error": "malformed result:\n" + "\n".join(errors),
                "raw": repr(result),
            }
            print(f"bench: {name} returned a malformed result: {errors}", file=sys.stderr)
            continue
        report["benchmarks"][name] = result
        for e in result.get("results", []):
            fig = e.get("ratio", {}).get("median", e.get("value"))
            print(
                f"bench:   {e.get('name')}: {fig:.3g} target {e.get('target')} met {e.get('met')}",
                file=sys.stderr,
            )
        print(f"bench: {name} done in {result['seconds']:.1f} s", file=sys.stderr, flush=True)

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, res in report["benchmarks"].items():
        for spec in res.get("plots", []):
            try:
                plots.draw(spec, out_dir)
            except Exception:
                status = 1
                print(f"bench: plot {spec['file']} of {name} failed:", file=sys.stderr)
                traceback.print_exc()
    (out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    kept = _kept_sections(out_dir / "RESULTS.md")
    text = _markdown(report, out_dir) + "".join(f"\n{sec}\n" for sec in kept)
    (out_dir / "RESULTS.md").write_text(text, encoding="utf-8")
    print(f"bench: wrote {out_dir / 'RESULTS.md'} and results.json", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
