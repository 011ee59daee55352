"""What a benchmark measured: the commit, and the pipeline's folders changed since (the tree is shared and moves)."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIPELINE_FOLDERS = ("core", "dags", "duplicates", "embeddings", "indexing", "serving", "storage", "sql")


def code_state() -> str:
    """`<short commit>` or `<short commit> + uncommitted <paths>`; "(no git)" outside a checkout. Call it at the
    start: what the process imported is the tree as it was then."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *PIPELINE_FOLDERS], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "(no git)"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" + uncommitted {', '.join(changed)}" if changed else "")
