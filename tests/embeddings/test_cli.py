"""`python -m embeddings`: commands against the test database, and one-line errors without tracebacks."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from core.sample_data import sample_photos
from embeddings.cli import main
from tests.embeddings.helpers import add_event, add_files, register

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "embeddings", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_help_lists_every_command() -> None:
    res = _run("--help")
    assert res.returncode == 0
    for cmd in ("pending", "event", "range", "all", "failed", "files", "weights"):
        assert cmd in res.stdout


def test_unreachable_database_is_one_line_and_exit_2() -> None:
    res = _run("--model", "efficientnet-lite0", "pending", env={"DB_HOST": "127.0.0.1", "DB_PORT": "1"})
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("error: cannot connect to PostgreSQL")
    assert len(res.stderr.strip().splitlines()) == 1 and "DB_PORT" in res.stderr


@pytest.mark.samples
def test_missing_places_weights_is_one_line(tmp_path: Path) -> None:
    photo = sample_photos(1, out_dir=tmp_path)[0]
    res = _run("--model", "places365-resnet50", "files", str(photo), "--out", str(tmp_path / "o.parquet"),
               env={"MODEL_WEIGHTS": str(tmp_path / "none.pth.tar")})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "MODEL_WEIGHTS" in res.stderr and "make weights" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_weights_command_refuses_a_mismatching_download(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "resnet50_places365.pth.tar").write_bytes(b"not the real checkpoint")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/resnet50_places365.pth.tar"
        dest = tmp_path / "w" / "resnet50_places365.pth.tar"
        assert main(["-q", "weights", "--url", url, "--dest", str(dest)]) == 2
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert "does not match" in err and not dest.exists()


@pytest.mark.samples
def test_pending_event_and_files_commands(db, settings, lite0_default, tmp_path: Path,  # type: ignore[no-untyped-def]
                                          capsys: pytest.CaptureFixture[str]) -> None:
    photos = sample_photos(3, out_dir=tmp_path / "gen")
    event = add_event(db)
    ids = add_files(db, event, settings.resolved_image_root, photos)
    register(db, event, "/uploads/absent.jpg")
    assert main(["--model", "efficientnet-lite0", "pending"]) == 0
    out = capsys.readouterr()
    assert "3 embedded, 1 failed of 4 planned" in out.out
    assert "missing" in out.err
    assert main(["--model", "efficientnet-lite0", "-q", "pending"]) == 0
    assert "0 embedded, 0 failed of 0 planned" in capsys.readouterr().out
    assert main(["--model", "efficientnet-lite0", "-q", "event", event]) == 0
    assert "3 embedded, 1 failed of 4 planned" in capsys.readouterr().out
    assert db.execute("SELECT count(*), max(attempts) FROM image_embeddings").fetchone() == (4, 2)
    assert main(["-q", "event", "not-a-uuid"]) == 2
    assert "not a UUID" in capsys.readouterr().err

    out_file = tmp_path / "files.parquet"
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    assert main(["--model", "efficientnet-lite0", "-q", "files", *map(str, photos), str(bad), "--out",
                 str(out_file)]) == 0
    cap = capsys.readouterr()
    assert "3 embedded, 1 failed" in cap.out and "not an image" in cap.err
    table = pq.read_table(out_file)
    assert table["path"].to_pylist() == [str(p) for p in photos]
    assert table.schema.field("vector").type.list_size == 1280
    assert len(ids) == 3
    assert set(table["model_version"].to_pylist()) == {"efficientnet-lite0@crop224"}


@pytest.mark.samples
def test_a_rerun_right_after_a_crash_embeds_every_image_once(db, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """kill -9 of a run mid-way, then the same command again at once: every image embedded, none twice.

    (Claims used to outlive their run for the 30-minute lease: the re-run skipped the dead run's images.)
    """
    import time

    photos = sample_photos(48, out_dir=tmp_path / "gen")
    ids = add_files(db, add_event(db), settings.resolved_image_root, photos)
    args = ["--model", "efficientnet-lite0+plain", "-q", "pending", "--images-per-part", "4"]
    env = {**os.environ, "TORCH_THREADS": "1", "EMBED_DECODE_WORKERS": "1"}
    crashing = subprocess.Popen([sys.executable, "-m", "embeddings", *args, "--run-id", "crashing"], cwd=REPO,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    embedded = 0
    while embedded < 4 and time.monotonic() < deadline and crashing.poll() is None:
        embedded = db.execute("SELECT count(*) FROM image_embeddings WHERE status = 'embedded'").fetchone()[0]
        time.sleep(0.05)
    crashing.kill()
    crashing.wait(10)
    before = db.execute("SELECT count(*) FROM image_embeddings").fetchone()[0]
    assert 4 <= before < len(ids), f"the run was not killed mid-way ({before} of {len(ids)} recorded)"
    assert db.execute("SELECT count(*) FROM embedding_claims WHERE run_id = 'crashing'").fetchone()[0] > 0

    res = _run(*args)
    assert res.returncode == 0, res.stderr
    rows = db.execute("SELECT image_id, status, attempts FROM image_embeddings ORDER BY image_id").fetchall()
    assert [r[0] for r in rows] == ids
    assert {(r[1], r[2]) for r in rows} == {("embedded", 1)}  # each image once: none skipped, none twice
    assert db.execute("SELECT count(*) FROM embedding_claims").fetchone()[0] == 0
