"""tests/selection.py: a test that reads the sample folder unmarked fails; marks come from fixtures too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

INNER = '''
import os
from pathlib import Path

import pytest

from tests.selection import reads_samples

SAMPLES = Path(os.environ["SAMPLE_DATA_DIR"])


@pytest.fixture(scope="session")
@reads_samples
def marked_photos():
    return sorted((SAMPLES / "photos").glob("*.jpg"))


@pytest.fixture(scope="session")
def unmarked_photos():
    return [p.read_bytes() for p in sorted((SAMPLES / "photos").glob("*.jpg"))]


def test_reads_unmarked():
    assert (SAMPLES / "photos" / "a.jpg").read_bytes()


@pytest.mark.samples
def test_reads_marked():
    assert (SAMPLES / "photos" / "a.jpg").read_bytes()


def test_marked_through_its_fixture(marked_photos):
    assert marked_photos


def test_reads_through_an_unmarked_fixture(unmarked_photos):
    assert unmarked_photos


def test_second_user_of_the_unmarked_fixture(unmarked_photos):
    assert unmarked_photos


def test_reads_nothing(tmp_path):
    (tmp_path / "x").write_text("x")
    assert (tmp_path / "x").read_text() == "x"


def test_uses_the_database(pg_database):
    pass
'''


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "samples" / "photos").mkdir(parents=True, exist_ok=True)
    (tmp_path / "samples" / "photos" / "a.jpg").write_bytes(b"not really a photo")
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n"
        "@pytest.fixture(scope='session')\n"
        "def pg_database():\n"
        "    return 'unused'\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "SAMPLE_DATA_DIR": str(tmp_path / "samples")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.selection", "-q", "-rA", "-p",
                           "no:cacheprovider", "--rootdir", str(tmp_path), *args, str(tmp_path / "test_inner.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _outcomes(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        for outcome in ("PASSED", "FAILED"):
            if line.startswith(outcome + " "):
                found[line.split("::")[1].split(" ")[0]] = outcome
    return found


def test_an_unmarked_read_fails_and_says_what_to_add(tmp_path: Path) -> None:
    r = _run(tmp_path, "-m", "not never")
    got = _outcomes(r.stdout)
    assert got == {
        "test_reads_unmarked": "FAILED",
        "test_reads_marked": "PASSED",
        "test_marked_through_its_fixture": "PASSED",
        "test_reads_through_an_unmarked_fixture": "FAILED",
        "test_second_user_of_the_unmarked_fixture": "FAILED",  # the fixture read once, for the first user
        "test_reads_nothing": "PASSED",
        "test_uses_the_database": "PASSED",
    }, r.stdout[-3000:]
    assert "is not marked `samples`: add @pytest.mark.samples" in r.stdout
    assert "through the fixture 'unmarked_photos'" in r.stdout


def test_the_marks_select_the_second_passes(tmp_path: Path) -> None:
    samples = _outcomes(_run(tmp_path, "-m", "samples").stdout)
    assert set(samples) == {"test_reads_marked", "test_marked_through_its_fixture"}
    db = _run(tmp_path, "-m", "db", "--collect-only")
    assert [line.split("::")[1] for line in db.stdout.splitlines() if "::" in line] == ["test_uses_the_database"], \
        db.stdout[-2000:]
