"""`python -m indexing ...` (see indexing/cli.py)."""

import sys

from indexing.cli import main

sys.exit(main())
