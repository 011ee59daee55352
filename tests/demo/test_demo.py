"""`python -m demo` end to end on 8 photos: real PostgreSQL, real `airflow dags test`, a real server.

The first run is non-interactive (`--no-serve`): it must register the photos,
embed and index them through Airflow and print correct answers. The second
run must reuse all of it, leave a server that answers, and stop it on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from core.localpg import free_port, port_answers
from core.sample_data import sample_photos

pytestmark = pytest.mark.slow  # the whole job end to end, twice (minutes): make test-slow

REPO = Path(__file__).resolve().parents[2]
PHOTOS = 8
PLANTED = 3 + 2 + 1  # copies of 3 photos, two shots of one scene, one shot of another


@pytest.fixture(scope="module")
def demo_env(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A folder of 8 photos, a fresh DATA_DIR and IMAGE_ROOT, and a database of its own on the test server.

    The demo creates that database itself (DB_NAME missing is its first-run case), so other
    tests' rows in the shared test database never meet the demo's index verification.
    """
    root = tmp_path_factory.mktemp("demo")
    folder = root / "photos"
    folder.mkdir()
    for path in sample_photos(PHOTOS, out_dir=root / "generated"):
        (folder / path.name).symlink_to(path)  # the demo must store the file itself, not the link
    (folder / "notes.txt").write_text("not a photo")
    env = {**os.environ, "DATA_DIR": str(root / "data"), "IMAGE_ROOT": str(root / "images"),
           "EMBEDDING_MODEL": "places365-resnet50", "TORCH_THREADS": "1"}
    env.pop("MODEL_WEIGHTS", None)
    dbname = f"{psycopg.conninfo.conninfo_to_dict(pg_database)['dbname']}_demo"
    env["DB_NAME"] = dbname
    conninfo = psycopg.conninfo.make_conninfo(pg_database, dbname=dbname)
    yield {"env": env, "folder": folder, "root": root, "conninfo": conninfo}
    with psycopg.connect(psycopg.conninfo.make_conninfo(pg_database, dbname="postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def run_demo(demo_env: dict[str, object], *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "demo", str(demo_env["folder"]), *args], cwd=REPO,
                          env=demo_env["env"], capture_output=True, text=True, timeout=timeout)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def first_run(demo_env: dict[str, object]) -> subprocess.CompletedProcess[str]:
    return run_demo(demo_env, "--no-serve", "--port", str(free_port()))


def test_first_run_prints_correct_answers(first_run: subprocess.CompletedProcess[str]) -> None:
    out = first_run.stdout
    assert first_run.returncode == 0, out[-4000:] + first_run.stderr[-4000:]
    for step in range(1, 9):
        assert f"[{step}/8]" in out
    # No weights in the fresh DATA_DIR: the offline model, and the demo says why.
    assert "efficientnet-lite0 (efficientnet-lite0@" in out and "Places365 weights not found" in out
    assert f"{PHOTOS} photos from folder" in out and "plus 3 near-duplicate copies and shots of 2 scenes" in out
    assert f"{PHOTOS + PLANTED} new, 0 already registered" in out
    assert f"{PHOTOS + PLANTED} of {PHOTOS + PLANTED} demo images embedded, 0 failed" in out
    assert "embed[0]: success" in out and "index_model.publish[0]: success" in out
    assert "$ curl -s -X POST http://127.0.0.1:" in out and "/search/image -F file=@" in out
    assert "=> found its original" in out and "verified as a copy" in out
    # Every group compared with the truth: exactly the planted ones (the folder holds no other copies or scenes).
    assert "=> copies: 3 group(s): 3 of the 3 planted found exactly\n" in out
    assert "=> same scene: 1 group(s): 1 of the 1 planted found exactly\n" in out
    assert re.search(r"=> duplicate false, \S+: same_scene\n", out)
    assert re.search(r"=> duplicate true, \S+: copy\n", out)
    assert "all answers as expected" in out
    assert "stopping the search server" in out


def test_first_run_left_rows_files_and_an_index(first_run: subprocess.CompletedProcess[str],
                                                demo_env: dict[str, object]) -> None:
    assert first_run.returncode == 0
    root = Path(demo_env["root"])  # type: ignore[arg-type]
    with psycopg.connect(str(demo_env["conninfo"])) as conn:
        rows = conn.execute(
            "SELECT i.file_path, e.status, i.faiss_index FROM images i JOIN events ev ON ev.code = i.event_code "
            "LEFT JOIN image_embeddings e ON e.image_id = i.id WHERE ev.name = 'Demo: photos'").fetchall()
    assert len(rows) == PHOTOS + PLANTED
    assert {status for _, status, _ in rows} == {"embedded"}
    assert all(faiss is not None for _, _, faiss in rows), "published ids are written back to images.faiss_index"
    for file_path, _, _ in rows:
        stored = root / "images" / file_path.lstrip("/")
        assert stored.is_file() and not stored.is_symlink(), stored
    index_root = next((root / "data" / "indexes").iterdir())
    assert (index_root / "CURRENT").read_text().strip()


def test_second_run_reuses_everything_serves_and_stops_on_ctrl_c(first_run: subprocess.CompletedProcess[str],
                                                                   demo_env: dict[str, object]) -> None:
    assert first_run.returncode == 0
    root = Path(demo_env["root"])  # type: ignore[arg-type]
    index_root = next((root / "data" / "indexes").iterdir())
    versions_before = sorted(p.name for p in index_root.iterdir() if p.is_dir())
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "demo", str(demo_env["folder"]), "--port", str(port)], cwd=REPO,
                            env=demo_env["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # type: ignore[arg-type]
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C") or time.monotonic() > deadline:
                break
        out = "".join(lines)
        assert "Press Ctrl-C" in out, out[-4000:]
        assert f"0 new, {PHOTOS + PLANTED} already registered" in out
        assert "nothing new: reused" in out  # the build decided: no identical index version published again
        assert "all answers as expected" in out
        # The server it leaves answers real requests.
        health = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert health.status_code == 200 and health.json()["total_vectors"] >= PHOTOS + PLANTED
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, rest
    assert "stopping the search server" in rest
    assert not port_answers("127.0.0.1", port, timeout=0.5)
    assert sorted(p.name for p in index_root.iterdir() if p.is_dir()) == versions_before
