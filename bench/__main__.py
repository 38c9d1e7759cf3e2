"""``python -m bench``: the same as ``python bench/run.py`` (see its docstring)."""

from bench.run import main

raise SystemExit(main())
