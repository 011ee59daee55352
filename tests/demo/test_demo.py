"""`python -m demo` end to end on 8 photos: real PostgreSQL, real `airflow dags test`, a real server.

The first run is non-interactive (`--no-serve`): it must register the photos,
embed and index them through Airflow and print correct answers. The second
run must reuse all of it, leave a server that answers, and stop it on Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shutil
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
from tests.selection import reads_samples

pytestmark = pytest.mark.slow  # the whole job end to end, twice (minutes): make test-slow

REPO = Path(__file__).resolve().parents[2]
PHOTOS = 8
TWIN = "zz_byte_identical_to_the_first.jpg"  # sorts last: not among the photos the demo plants copies of
PLANTED = 3 + 2 + 1  # copies of 3 photos, two shots of one scene, one shot of another
ROWS = PHOTOS + 1 + PLANTED  # the photos, the twin, what the demo planted


@pytest.fixture(scope="module")
@reads_samples
def demo_env(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A folder of 8 photos, a fresh DATA_DIR and IMAGE_ROOT, and a database of its own on the test server.

    The demo creates that database itself (DB_NAME missing is its first-run case), so other
    tests' rows in the shared test database never meet the demo's index verification.
    """
    root = tmp_path_factory.mktemp("demo")
    folder = root / "photos"
    folder.mkdir()
    photos = sample_photos(PHOTOS, out_dir=root / "generated")
    for path in photos:
        (folder / path.name).symlink_to(path)  # the demo must store the file itself, not the link
    # A folder may already hold a copy of a photo: right answers group it with the demo's planted copy.
    shutil.copyfile(photos[0], folder / TWIN)
    (folder / "notes.txt").write_text("not a photo")
    env = {**os.environ, "DATA_DIR": str(root / "data"), "IMAGE_ROOT": str(root / "images"),
           "TORCH_THREADS": "1"}
    for unset in ("MODEL_WEIGHTS", "EMBEDDING_MODEL"):  # the default rule: no weights, the offline model
        env.pop(unset, None)
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
    assert "efficientnet-lite0 (efficientnet-lite0@" in out and "no Places365 weights at" in out
    assert f"{PHOTOS + 1} photos from folder" in out and "plus 3 near-duplicate copies and shots of 2 scenes" in out
    assert f"{ROWS} new, 0 already registered" in out
    assert f"{ROWS} of {ROWS} demo images embedded, 0 failed" in out
    assert "embed[0]: success" in out and "index_model.publish[0]: success" in out
    assert "$ curl -s -X POST http://127.0.0.1:" in out and "/search/image -F file=@" in out
    assert "=> found its original" in out and "verified as a copy" in out
    # Every group compared with the truth: the planted ones, the first with the folder's own twin of its original.
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
    assert len(rows) == ROWS
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
        assert f"0 new, {ROWS} already registered" in out
        assert "nothing new: reused" in out  # the build decided: no identical index version published again
        assert "all answers as expected" in out
        # The server it leaves answers real requests.
        health = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert health.status_code == 200 and health.json()["total_vectors"] >= ROWS
        _wrong_truth_fails(demo_env, f"http://127.0.0.1:{port}")
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest  # Ctrl-C is how the serving step ends: no `make: *** Error 130`
    assert "stopping the search server" in rest
    assert not port_answers("127.0.0.1", port, timeout=0.5)
    assert sorted(p.name for p in index_root.iterdir() if p.is_dir()) == versions_before

    # `make serve` afterwards (the same settings, no model named) serves the index the demo built.
    port = free_port()
    env = {**demo_env["env"], "API_PORT": str(port)}  # type: ignore[dict-item]
    server = subprocess.Popen([sys.executable, "-m", "serving"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                if health.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert health is not None and health.status_code == 200, health and health.text
        assert health.json()["model_version"].startswith("efficientnet-lite0@")
        assert health.json()["total_vectors"] >= ROWS
    finally:
        server.terminate()
        server.wait(30)


def _wrong_truth_fails(demo_env: dict[str, object], url: str) -> None:
    """The demo's checks fail when an answer is not what was planted: the live server's right answers are
    compared with a truth where two planted copies are swapped and the query names another original."""
    from dataclasses import replace

    from demo.examples import run_examples
    from demo.photos import find_sources, prepare_extras

    work_dir = Path(demo_env["env"]["DATA_DIR"]) / "demo"  # type: ignore[index]
    source, _ = find_sources(Path(demo_env["folder"]), None, work_dir)  # type: ignore[arg-type]
    planted = prepare_extras(source, work_dir)  # the files the demo made (they exist: nothing is rewritten)
    assert TWIN in planted.same_file(source.files[0])

    def check(p):  # type: ignore[no-untyped-def]
        return run_examples(url, event_code=source.event_code, planted=p, strict=False, similar_id=None,
                            similar_name=None, similar_expect=None)

    assert check(planted).ok, [e.verdict for e in check(planted).examples if not e.ok]
    (o1, c1), (o2, c2), *rest = planted.copies
    swapped = check(replace(planted, copies=[(o1, c2), (o2, c1), *rest], query_original=source.files[-2]))
    failed = {e.title.split(" (")[0]: e.verdict for e in swapped.examples if not e.ok}
    search = next(k for k in failed if k.startswith("Search by photo"))
    assert "missing" in failed["Duplicate groups"] and "WRONG" in failed["Duplicate groups"], failed
    assert "expected" in failed[search], failed
