"""`python -m indexing` as an operator runs it: a real process, the test database, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.indexing.conftest import MODEL

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "indexing", "--model-version", MODEL, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_build_publish_versions_verify_rollback_prune(small_corpus, settings):
    help_text = run("--help")
    assert help_text.returncode == 0 and "rollback" in help_text.stdout and "prune" in help_text.stdout

    first = run("--json", "build", "--publish")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["version"] == 1
    idle = run("build", "--publish")  # nothing embedded since v1: no identical v2
    assert idle.returncode == 0 and "nothing new since v000001" in idle.stdout, idle.stdout + idle.stderr
    assert not (settings.indexes_dir / MODEL / "v000002").exists()
    small_corpus.embed(small_corpus.images(small_corpus.event(), 2))
    second = run("build")
    assert second.returncode == 0 and "built v000002" in second.stdout and "merge" in second.stdout
    assert run("publish", "v2").returncode == 0

    listing = run("versions")
    lines = listing.stdout.splitlines()
    assert listing.returncode == 0 and lines[1].startswith("* v000002") and "published" in lines[1]
    assert "flat" in lines[2] and "60" in lines[2]

    verified = run("verify", "v1")
    assert verified.returncode == 0 and "60 vectors" in verified.stdout

    back = run("rollback")
    assert back.returncode == 0 and "now v000001" in back.stdout
    assert (settings.indexes_dir / MODEL / "CURRENT").read_text().strip() == "v000001"
    assert run("prune", "--keep", "1").stdout.strip() == "nothing to prune"  # v1 is current, v2 newest


def test_cli_errors_are_one_line_without_traceback(small_corpus):
    for args, needle in ((("verify", "v9"),  "does not exist"),
                         (("rollback",), "nothing is published"),
                         (("publish", "vx"), "not a version")):
        result = run(*args)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 2 and needle in result.stderr, result.stderr
