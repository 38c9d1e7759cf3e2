"""MkDocs hook: the benchmark write-ups and the changelog as pages of the site.

Why: figures quoted in the docs come from one place, ``bench/RESULTS.md``
(and the write-ups beside it), which ``bench/run.py`` and ``bench/web.py``
write where they are. Rather than copying them into ``docs/`` (two copies to
keep in step), this adds them to the site as they are, under ``bench/``, so
that ``docs/benchmarks.md`` links ``bench/RESULTS.md`` and their own relative
links and plots keep working; strict mode checks those links too. The
changelog comes the same way, from ``CHANGELOG.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]


def on_files(files: Files, config: Any) -> Files:
    def add(path: Path) -> None:
        rel = path.relative_to(ROOT).as_posix()
        files.append(File(rel, str(ROOT), config["site_dir"], config["use_directory_urls"]))

    bench = ROOT / "bench"
    for path in sorted(bench.rglob("*")):
        # bench/out/ holds the outputs of local runs, not kept in the repository.
        if path.suffix in (".md", ".png") and path.relative_to(bench).parts[0] != "out":
            add(path)
    add(ROOT / "CHANGELOG.md")
    return files
