"""``python -m probunet``: the command line of :mod:`probunet.cli`."""
from .cli import main

raise SystemExit(main())
