"""`python -m embeddings` (see embeddings/cli.py)."""

import sys

from embeddings.cli import main

sys.exit(main())
