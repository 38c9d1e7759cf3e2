"""The live view of a grid: one frame of ``loopgrid top`` (and of the demo).

A frame is built from a ``grid.stats()`` snapshot only, so the same function
draws a grid in this process (the demo) and one across the debug endpoint
(``loopgrid top --url``), and a test renders a frame without a terminal.
What a reader should see at a glance: which loops work and which idle (busy
bars), whether a loop is late or stuck (lag, a red STALLED), where work waits
(pending per priority, and in the injection queue) and how it moves (steals,
tasks moved off stalled loops).

rich is imported lazily: it is in the ``cli`` extra (and the ``dev`` extra),
not a dependency of the library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["busy_bar", "render"]

_PRIORITIES = ("low", "normal", "high", "critical")
_BAR = 10


def busy_bar(fraction: float, width: int = _BAR) -> str:
    """``█████░░░░░  52%``: a busy fraction as a bar and a percentage."""
    fraction = min(1.0, max(0.0, fraction))
    full = round(fraction * width)
    return "█" * full + "░" * (width - full) + f" {fraction:4.0%}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def _pending(counts: dict[str, int]) -> str:
    return "/".join(str(counts.get(p, 0)) for p in _PRIORITIES)


def render(stats: dict[str, Any], *, rates: dict[int, float] | None = None) -> RenderableType:
    """One frame for ``stats`` (``grid.stats()``); ``rates``: completions/s per worker."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = stats["totals"]
    head = Text()
    head.append(f"grid {stats['grid']}", style="bold")
    head.append(f"  {stats['loops']} loops  {stats['state']}")
    if stats.get("paused"):
        head.append("  PAUSED", style="bold yellow")
    head.append(
        f"\ncompleted {t['completed']}  failed {t['failed']}  cancelled {t['cancelled']}  "
        f"running {t['running']}  pending {t['pending']}  stolen {t['stolen_in']}  "
        f"moved off stalls {t.get('shed', 0)}"
    )
    head.append(
        f"\nbusy {t.get('busy', 0.0):.0%}  imbalance {t.get('imbalance', 0.0):.0%}  "
        f"lag p99 {_ms(t.get('lag_p99', 0.0))} ms  stalls {t.get('stalls', 0)}"
    )

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("worker", justify="right")
    table.add_column("busy", no_wrap=True)
    table.add_column("lag p50/p99 ms", justify="right")
    table.add_column("pending L/N/H/C", justify="right")
    table.add_column("running", justify="right")
    table.add_column("done", justify="right")
    if rates is not None:
        table.add_column("done/s", justify="right")
    table.add_column("steals in/out", justify="right")
    table.add_column("stalls", justify="right")
    table.add_column("", no_wrap=True)
    for w in stats["workers"]:
        state = ""
        style = None
        if w.get("stalled"):
            state, style = "STALLED", "bold red"
        elif w.get("paused"):
            state, style = "paused", "yellow"
        busy = w.get("busy", 0.0)
        row: list[RenderableType] = [
            str(w["index"]),
            Text(busy_bar(busy), style="red" if busy > 0.9 else "green" if busy > 0.1 else "dim"),
            f"{_ms(w.get('lag_p50', 0.0))}/{_ms(w.get('lag_p99', 0.0))}",
            _pending(w["pending"]),
            str(w["running"]),
            str(w["completed"]),
        ]
        if rates is not None:
            row.append(f"{rates.get(w['index'], 0.0):,.0f}")
        row += [
            f"{w['stolen_in']}/{w['stolen_out']}",
            str(w.get("stalls", 0)),
            Text(state, style=style or ""),
        ]
        table.add_row(*row)
    inj = Text(f"injection queue (any worker) L/N/H/C: {_pending(stats['injection'])}")
    return Group(head, Text(""), table, Text(""), inj)
