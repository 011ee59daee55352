"""A build on a full disk fails clean: one line naming the folder and the space needed, scratch removed, never
SIGBUS (exit 135) nor faiss's traceback. The index store sits on a small tmpfs the test mounts (root only)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.indexing.conftest import MODEL, unit_vectors

REPO = Path(__file__).resolve().parents[3]
DIM = 256


@pytest.fixture
def small_disk(settings) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """The model's index store folder on a 3 MB tmpfs."""
    from indexing.store.layout import IndexStore

    root = IndexStore(settings, MODEL).root
    root.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(root)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def _left(folder: Path) -> list[str]:
    """What a build left in the store (its lock file aside)."""
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock")


def _corpus(corpus, n: int) -> None:  # type: ignore[no-untyped-def]
    ids = corpus.images(corpus.event(), n)
    corpus.embed(ids, unit_vectors(7, n, DIM), dim=DIM)


def test_a_build_too_big_for_the_disk_is_one_line_and_leaves_nothing(corpus, settings, small_disk) -> None:  # type: ignore[no-untyped-def]
    _corpus(corpus, 3000)  # 3 MB of vectors: staged, then indexed: about 10 MB
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "indexing", "--model-version", MODEL, "build", "--publish"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"not enough disk space in {small_disk}" in result.stderr and "MB free" in result.stderr
    assert _left(small_disk) == []  # no scratch, no version


def test_running_out_during_the_build_is_a_build_error_not_sigbus(corpus, settings, small_disk, monkeypatch  # type: ignore[no-untyped-def]
                                                                  ) -> None:
    """The estimate said it fits (here: told so), the disk fills up anyway: the staged vectors' blocks are
    allocated before they are mapped, and faiss's write error becomes the same one line."""
    from indexing import pipeline
    from indexing.build import builder
    from indexing.build.sources import BuildError

    _corpus(corpus, 3000)
    monkeypatch.setattr(builder, "check_space", lambda folder, needed: None)
    with pytest.raises(BuildError, match=rf"^disk full in {small_disk} while building v000001 \(scratch removed"):
        pipeline.build(settings.conninfo(), settings, MODEL, mode="rebuild")
    assert _left(small_disk) == []
    # With room (a smaller corpus in a new store), the same build works: the check is not in the way.
    corpus.delete(list(corpus.vectors)[1000:])
    built = pipeline.build(settings.conninfo(), settings, MODEL, mode="rebuild")
    assert _left(small_disk) == [f"v{int(built['version']):06d}"]
