"""Plots of the benchmark figures (matplotlib, PNG), drawn by ``bench/run.py``.

A benchmark asks for a plot by adding to its result a ``"plots"`` list of specs:

``{"file": "scaling.png", "title": ..., "kind": "lines" | "cdf", "xlabel": ...,
"ylabel": ..., "series": {label: data}, "log_x": bool, "log_y": bool}``

For ``"lines"``, each series is a list of ``[x, y]`` points (a scaling curve);
for ``"cdf"``, a list of samples, drawn as their empirical distribution (a
latency CDF: the share of samples at or below each value). Plots are for
reading at a glance: one message per figure, labelled axes with units, a
legend, no decoration. Specs are checked by :func:`validate` (in smoke runs
too), so a malformed spec fails CI rather than the next full run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

__all__ = ["draw", "validate"]

KINDS = ("lines", "cdf")


def validate(plots: object) -> list[str]:
    """What is wrong with a result's ``plots`` list (empty when well-formed)."""
    if not isinstance(plots, list):
        return ["plots: not a list"]
    errors: list[str] = []
    for i, spec in enumerate(plots):
        where = f"plots[{i}]"
        if not isinstance(spec, dict):
            errors.append(f"{where}: not a dict")
            continue
        for key in ("file", "title", "xlabel", "ylabel"):
            if not isinstance(spec.get(key), str):
                errors.append(f"{where}.{key}: missing or not a str")
        if not str(spec.get("file", "")).endswith(".png"):
            errors.append(f"{where}.file: must end in .png")
        kind = spec.get("kind")
        if kind not in KINDS:
            errors.append(f"{where}.kind: {kind!r} is not one of {KINDS}")
        series = spec.get("series")
        if not isinstance(series, dict) or not series:
            errors.append(f"{where}.series: not a non-empty dict")
            continue
        for label, data in series.items():
            if not isinstance(data, list) or not data:
                errors.append(f"{where}.series[{label!r}]: not a non-empty list")
            elif kind == "lines" and not all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(_finite(v) for v in p)
                for p in data
            ):
                errors.append(f"{where}.series[{label!r}]: points must be [x, y] numbers")
            elif kind == "cdf" and not all(_finite(v) for v in data):
                errors.append(f"{where}.series[{label!r}]: samples must be finite numbers")
    return errors


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def draw(spec: dict[str, Any], out_dir: Path) -> Path:
    """Draw one plot spec into ``out_dir``; return the file's path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=110)
    try:
        for label, data in spec["series"].items():
            if spec["kind"] == "lines":
                xs = [p[0] for p in data]
                ys = [p[1] for p in data]
                ax.plot(xs, ys, marker="o", label=label)
            else:
                xs = sorted(data)
                n = len(xs)
                ax.step(xs, [(i + 1) / n for i in range(n)], where="post", label=label)
        if spec["kind"] == "lines":
            ax.set_ylim(bottom=0)  # throughput from zero, so ratios read true
            xs_all = sorted({p[0] for data in spec["series"].values() for p in data})
            ax.set_xticks(xs_all)
        if spec["kind"] == "cdf":
            ax.set_ylim(0, 1.02)
            ax.axhline(0.99, color="grey", linewidth=0.6, linestyle=":")
            ax.text(ax.get_xlim()[0], 0.99, " p99", va="bottom", color="grey", fontsize=8)
        if spec.get("log_x"):
            ax.set_xscale("log")
        if spec.get("log_y"):
            ax.set_yscale("log")
        ax.set_title(spec["title"], fontsize=11)
        ax.set_xlabel(spec["xlabel"])
        ax.set_ylabel(spec["ylabel"])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left" if spec["kind"] == "cdf" else "best")
        fig.tight_layout()
        path = out_dir / spec["file"]
        fig.savefig(path)
        return path
    finally:
        plt.close(fig)
