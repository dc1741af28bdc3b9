"""`python -m ledviz`: the same as the `ledviz` command (see ledviz/cli.py)."""

import sys

from .cli import main

sys.exit(main())
