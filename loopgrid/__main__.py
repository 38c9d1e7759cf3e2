"""``python -m loopgrid``: the ``loopgrid`` command (see ``cli.py``)."""

from loopgrid.cli import main

raise SystemExit(main())
