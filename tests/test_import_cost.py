"""``import loopgrid`` imports nothing optional until it is used (issue 23, item 5).

Why: every program, CLI run and test worker pays for the import, and the
optional packages cost more than asyncio itself (structlog with rich, about
120 ms; ``http.server`` for a debug endpoint few grids open). These tests
check the cause in fresh interpreters, by the modules in ``sys.modules``; the
cost itself is a ratio in ``bench/bench_import.py``, never asserted here.
Also here: structlog, imported late, still sees loopgrid's task context as
one variable per key, whichever of the two was imported first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from helpers import WAIT

#: Not imported by ``import loopgrid`` (unless ``import asyncio`` imports it on
#: this interpreter, as it does ``ssl``): the optional and third-party packages,
#: and the standard library's heavy modules that only some features use.
NOT_AT_IMPORT = (
    # structlog, and what it imports: rich (its console renderer), greenlet.
    "structlog",
    "rich",
    "pygments",
    "greenlet",
    # Dependencies or extras used by some features only.
    "anyio",
    "sniffio",
    "uvloop",
    "uvicorn",
    "starlette",
    "httpx",
    "sqlalchemy",
    "prometheus_client",
    "ray",
    # 3.10's ExceptionGroup backport, with typing_extensions: imported when a
    # TaskGroup first raises a group.
    "exceptiongroup",
    "typing_extensions",
    # The debug endpoint's HTTP server, the metrics exporter's, the CLI's.
    "http.server",
    "http.client",
    "socketserver",
    "email",
    "wsgiref",
    "urllib.request",
    "argparse",
    "ssl",
    # importlib.abc imports these through importlib.resources (3.11, 3.12).
    "importlib.resources",
    "tempfile",
    "shutil",
)

#: Modules besides asyncio's and loopgrid's own that ``import loopgrid`` may
#: import, each for a reason: sysconfig tells a free-threaded build (for the
#: loop factory and the monitor); ``from __future__ import annotations`` imports
#: ``__future__``.
ALLOWED_PREFIXES = ("sysconfig", "_sysconfigdata", "__future__")


def _modules_after(statement: str) -> set[str]:
    """The names in ``sys.modules`` of a fresh interpreter after ``statement``."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT * 2
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.fixture(scope="module")
def imported() -> tuple[set[str], set[str]]:
    """(modules after ``import asyncio``, modules after ``import loopgrid``)."""
    return _modules_after("import asyncio"), _modules_after("import loopgrid")


def _is(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def test_import_loopgrid_imports_no_optional_package(
    imported: tuple[set[str], set[str]],
) -> None:
    by_asyncio, by_loopgrid = imported
    assert "loopgrid" in by_loopgrid
    unwanted = sorted(
        name for name in by_loopgrid - by_asyncio for module in NOT_AT_IMPORT if _is(name, module)
    )
    assert unwanted == [], (
        f"import loopgrid imported {unwanted}; import it where it is used "
        "(see which module does with: python -X importtime -c 'import loopgrid')"
    )


def test_import_loopgrid_adds_only_its_own_modules_to_asyncio(
    imported: tuple[set[str], set[str]],
) -> None:
    """The general guard behind the list above: what loopgrid adds to what
    asyncio imports is its own package and a few named modules, so that a new
    import at module level (a standard library module included) is a choice."""
    by_asyncio, by_loopgrid = imported
    extra = sorted(
        name
        for name in by_loopgrid - by_asyncio
        if not _is(name, "loopgrid") and not name.startswith(ALLOWED_PREFIXES)
    )
    assert extra == [], (
        f"import loopgrid also imports {extra}: import them where they are used, "
        "or add them to ALLOWED_PREFIXES with the reason"
    )


def _run(code: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )
    assert out.returncode == 0, out.stderr
    return out


def test_a_grid_that_logs_nothing_does_not_import_structlog() -> None:
    """loopgrid's own info events (grid.started, grid.closed) are filtered out
    by the ``"loopgrid"`` logger's default level: nothing loads structlog for them."""
    out = _run(
        """
        import sys
        import loopgrid

        async def work(x):
            return x * 2

        with loopgrid.Grid(2) as grid:
            assert grid.spawn(work, 21).result(timeout=30) == 42
        print("structlog" in sys.modules)
        """
    )
    assert out.stdout.strip() == "False"


def test_a_warning_without_configuration_imports_structlog_and_reaches_stderr() -> None:
    """The first event that passes the level imports structlog and renders as
    before: through the stdlib logger, on stderr (logging's last resort)."""
    out = _run(
        """
        import sys
        from loopgrid import logs

        assert "structlog" not in sys.modules
        logs.warning("probe.event", answer=42)
        print("structlog" in sys.modules)
        """
    )
    assert out.stdout.strip() == "True"
    assert "probe.event" in out.stderr
    assert "answer=42" in out.stderr


@pytest.mark.parametrize("first", ["loopgrid", "structlog"])
def test_structlog_binds_loopgrid_s_task_variables_whichever_came_first(first: str) -> None:
    """In a task, ``bind_contextvars(task=...)`` sets loopgrid's own ``task``
    variable (one variable per key, so merge_contextvars has one value to pick),
    and ``unbind_contextvars("task")`` removes it, as when loopgrid made its
    variables through structlog at import. With structlog first, a key it had
    already bound is the variable loopgrid uses."""
    before = (
        "import structlog; structlog.contextvars.bind_contextvars(task='main')"
        if first == "structlog"
        else "pass"
    )
    out = _run(
        f"""
        import contextvars
        {before}
        import loopgrid
        from loopgrid import logs
        import structlog

        assert logs._KEY_PREFIX == structlog.contextvars.STRUCTLOG_KEY_PREFIX

        async def probe():
            sc = structlog.contextvars
            seen = [sc.get_contextvars()["task"]]
            sc.bind_contextvars(task="mine", grid="other")
            named = [v.name for v in contextvars.copy_context() if v.name.startswith("structlog_")]
            seen.append(sc.get_contextvars()["task"])
            sc.unbind_contextvars("task")
            seen.append(sc.get_contextvars().get("task"))
            return seen, sorted(named)

        with loopgrid.Grid(1) as grid:
            print(repr(grid.spawn(probe, name="probe").result(timeout=30)))
        """
    )
    seen, named = eval(out.stdout.strip().splitlines()[-1])
    assert seen == ["probe", "mine", None]
    assert named == ["structlog_grid", "structlog_task", "structlog_task_id", "structlog_worker"]


def test_the_lazily_imported_modules_wait_for_their_first_use(
    imported: tuple[set[str], set[str]],
) -> None:
    """The primitives, the runner, the decorator, task groups and LoopLocal
    are imported at their first use (``loopgrid.__getattr__``)."""
    import loopgrid

    _, by_loopgrid = imported
    lazy = {f"loopgrid.{module}" for module in loopgrid._LAZY.values()}
    assert lazy & by_loopgrid == set(), (
        "a module that import loopgrid loads imports these now; import them where they "
        "are used, or take them out of loopgrid._LAZY"
    )


def test_every_public_name_resolves_to_its_module_s_object() -> None:
    import importlib

    import loopgrid

    namespace: dict[str, object] = {}
    exec("from loopgrid import *", namespace)
    assert set(loopgrid.__all__) <= set(namespace)
    assert set(loopgrid.__all__) <= set(dir(loopgrid))
    for name, module in loopgrid._LAZY.items():
        defined = getattr(importlib.import_module(f"loopgrid.{module}"), name)
        assert getattr(loopgrid, name) is defined is namespace[name]
    assert loopgrid.sync is importlib.import_module("loopgrid.sync")
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        loopgrid.Nope  # noqa: B018
