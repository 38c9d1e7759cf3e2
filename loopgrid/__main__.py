"""``python -m loopgrid``: the ``loopgrid`` command (see ``cli.py``)."""

from loopgrid.cli import main

# Guarded: processes started by "spawn" (web offload) import the main module.
if __name__ == "__main__":
    raise SystemExit(main())
