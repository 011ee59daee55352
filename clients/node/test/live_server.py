"""A real search server over a freshly built index, for the Node.js client's tests.

Run by test/live.js with the project's venv: `.venv/bin/python clients/node/test/live_server.py`.
It creates a database (on the configured PostgreSQL, else a private one), applies the
migrations, registers sample photos as images of two events under a temp IMAGE_ROOT,
embeds them (efficientnet-lite0), and starts `python -m serving` on a free port BEFORE
any index is published, so the client first meets a server still waiting for its index.

Protocol, one JSON object per line (stdout carries nothing else; logs go to stderr):
  -> {"event": "started", "baseUrl", "apiKey", "eventCode", "otherEventCode", "images": [...],
      "files": {...}, "modelVersion", "imageRoot"}     once the server listens (it answers 503)
  <- "publish"   embed pending images (those the client added too), build, verify, publish
  -> {"event": "published", "version", "count", "embedded": [image ids], "seconds"}
  <- "quit" or stdin closed or SIGTERM: stop the server, drop the database, remove temp files
  -> {"event": "stopped"}
Any failure answers {"event": "error", "message"} (and exits when it happens during setup).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

MODEL = "efficientnet-lite0"
API_KEY = "node-client-test-key"
EVENT_A_PHOTOS = 16
EVENT_B_PHOTOS = 6
SPARE_PHOTOS = 12  # never registered: candidates for uploads the index has not seen
MAX_UPLOAD_MB = 2  # small, so the 413 test sends little


def emit(**payload: Any) -> None:
    """One protocol line on stdout."""
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    print(f"[live_server] {message}", file=sys.stderr, flush=True)


class Stop(Exception):
    """SIGTERM: leave the command loop and clean up."""


def admin_conninfo(state: dict[str, Any], workdir: Path) -> str:
    """The configured PostgreSQL (DB_* env) when it answers, else a private one, as tests/conftest.py does."""
    from core.localpg import configured_or_private

    info, server = configured_or_private(workdir, log)
    if server is not None:
        state["local_pg"] = server
    return info


def transformed_copy(src: Path, dest: Path, *, crop: float, size: int, quality: int) -> Path:
    """A re-encoded, cropped, resized copy: what a second upload of the same photo looks like."""
    from PIL import Image

    with Image.open(src) as img:
        img = img.convert("RGB")
        w, h = img.size
        dx, dy = int(w * crop), int(h * crop)
        img = img.crop((dx, dy, w - dx, h - dy))
        img.thumbnail((size, size))
        dest.parent.mkdir(parents=True, exist_ok=True)
        img.save(dest, "JPEG", quality=quality)
    return dest


def register(conn: psycopg.Connection, image_root: Path, event_code: str, src: Path, name: str) -> dict[str, Any]:
    """Copy a photo under IMAGE_ROOT and insert its images row, as the Event Management app would."""
    from PIL import Image

    rel = f"/events/{event_code}/{name}"
    dest = image_root / rel.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    with Image.open(dest) as img:
        width, height = img.size
    row = conn.execute(
        """INSERT INTO images (event_code, filename, file_path, file_size, mime_type, width, height)
           VALUES (%s, %s, %s, %s, 'image/jpeg', %s, %s) RETURNING id, code""",
        (event_code, name, rel, dest.stat().st_size, width, height),
    ).fetchone()
    assert row is not None
    return {"id": row[0], "code": str(row[1]), "filename": name, "eventCode": event_code, "path": str(dest),
            "source": src.name}


def wait_listening(proc: subprocess.Popen[bytes], url: str, timeout: float = 120.0) -> None:
    """Until the server answers anything at all on GET / (503 is expected: no index yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"python -m serving exited with {proc.returncode} before listening")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"python -m serving did not listen on {url} within {timeout:.0f} s")


def setup(state: dict[str, Any]) -> dict[str, Any]:
    from core.localpg import free_port
    from core.migrate import apply_migrations
    from core.sample_data import sample_photos
    from core.settings import get_settings

    workdir: Path = state["workdir"]
    admin = admin_conninfo(state, workdir)
    dbname = f"imgsim_node_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    state.update(admin=admin, dbname=dbname)
    params = psycopg.conninfo.conninfo_to_dict(admin)
    port = free_port()
    image_root = workdir / "images"
    image_root.mkdir()
    os.environ.update(
        DB_HOST=str(params["host"]), DB_PORT=str(params.get("port", 5432)), DB_USER=str(params.get("user", "postgres")),
        DB_NAME=dbname, DATA_DIR=str(workdir / "data"), IMAGE_ROOT=str(image_root), EMBEDDING_MODEL=MODEL,
        API_HOST="127.0.0.1", API_PORT=str(port), API_KEY=API_KEY, SWAP_POLL_SECONDS="0.5",
        MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
    )
    get_settings.cache_clear()
    settings = get_settings()
    conninfo = settings.conninfo()
    state["conninfo"] = conninfo

    with psycopg.connect(conninfo, autocommit=True) as conn:
        apply_migrations(conn)
        event_a, event_b = (
            str(conn.execute("INSERT INTO events (name) VALUES (%s) RETURNING code", (name,)).fetchone()[0])
            for name in ("node client: party", "node client: other")
        )
        photos = sample_photos(EVENT_A_PHOTOS + EVENT_B_PHOTOS + SPARE_PHOTOS, out_dir=workdir / "generated")
        a_src, rest = photos[:EVENT_A_PHOTOS], photos[EVENT_A_PHOTOS:]
        b_src, spare = rest[:EVENT_B_PHOTOS], rest[EVENT_B_PHOTOS:]
        images = [register(conn, image_root, event_a, p, f"a{i:02d}_{p.name}") for i, p in enumerate(a_src)]
        images += [register(conn, image_root, event_b, p, f"b{i:02d}_{p.name}") for i, p in enumerate(b_src)]
        # A second upload of a[0] inside event A: the pair eventDuplicates must find.
        resaved = transformed_copy(a_src[0], workdir / "derived" / "a00_resaved.jpg", crop=0.0, size=400, quality=80)
        images.append(register(conn, image_root, event_a, resaved, "a00_resaved.jpg"))

    uploads = workdir / "uploads"
    uploads.mkdir()
    # What a guest would upload again: a[1] slightly cropped and re-encoded, never registered.
    probe = transformed_copy(a_src[1], uploads / "probe_a01.jpg", crop=0.04, size=448, quality=85)
    # A new photo already in IMAGE_ROOT, for addImage; the next "publish" embeds and indexes it.
    addable = image_root / "uploads" / f"new_{spare[0].name}"
    addable.parent.mkdir()
    shutil.copyfile(spare[0], addable)
    not_image = uploads / "notes.jpg"
    not_image.write_text("this is not an image, whatever its name says\n")
    truncated = uploads / "truncated.jpg"
    truncated.write_bytes(Path(a_src[2]).read_bytes()[:600])

    embedded = embed_pending(state)
    log(f"embedded {len(embedded)} images with {state['model_version']}")
    # "A new photo" must be new to the model too: generated scenes (no shared photos) can look alike.
    a_ids = [i["id"] for i in images if i["eventCode"] == event_a]
    fresh = [shutil.copyfile(p, uploads / f"fresh_{i}_{p.name}")
             for i, p in enumerate(least_similar(state, spare[1:], a_ids, 2))]

    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "serving"], cwd=workdir, env=env,
                            stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), stderr=sys.stderr.fileno())
    state["server"] = proc
    wait_listening(proc, url)
    return {
        "event": "started", "baseUrl": url.rstrip("/"), "apiKey": API_KEY, "imageRoot": str(image_root),
        "eventCode": event_a, "otherEventCode": event_b, "modelVersion": state["model_version"],
        "maxUploadMb": MAX_UPLOAD_MB, "images": images,
        "files": {
            "probe": str(probe), "probeOf": images[1]["id"], "fresh": [str(p) for p in fresh],
            "notImage": str(not_image), "truncated": str(truncated),
            "addable": {"path": str(addable), "file_path": f"/uploads/{addable.name}", "filename": addable.name},
            "duplicatePair": [images[0]["id"], images[-1]["id"]],
        },
    }


def least_similar(state: dict[str, Any], candidates: list[Path], image_ids: list[int], n: int) -> list[Path]:
    """The n candidates whose best match among image_ids (any rotation, as the duplicate check does) is weakest."""
    import numpy as np

    from core.settings import get_settings
    from embeddings.dataset import read_latest
    from embeddings.loading import load_image
    from embeddings.models import get_embedder

    settings = get_settings()
    embedder = get_embedder(MODEL, settings)
    table = read_latest(settings, state["model_version"], columns=["image_id", "vector"]).to_pydict()
    wanted = set(image_ids)
    indexed = np.array([v for i, v in zip(table["image_id"], table["vector"], strict=True) if i in wanted],
                       dtype=np.float32)
    scored = []
    for path in candidates:
        queries = embedder.embed_rotations([load_image(path, **embedder.load_kwargs())])
        scored.append((float((queries @ indexed.T).max()), path))
    scored.sort(key=lambda pair: pair[0])
    log("fresh photos' best match in the event: " + ", ".join(f"{score:.3f}" for score, _ in scored[:n]))
    return [path for _, path in scored[:n]]


def embed_pending(state: dict[str, Any]) -> list[int]:
    """Embed every image with no ledger row for the model (those registered here and via addImage)."""
    from core.settings import get_settings
    from embeddings.models import get_embedder
    from embeddings.planning import Selection, plan
    from embeddings.runner import embed_claimed

    settings = get_settings()
    model_version = state.get("model_version") or get_embedder(MODEL, settings).model_version
    state["model_version"] = model_version
    done: list[int] = []
    run_id = f"node-{state['runs']}"
    for batch_no, ids in enumerate(plan(state["conninfo"], model_version, Selection("pending"), run_id=run_id)):
        result = embed_claimed(state["conninfo"], ids, model_name=MODEL, run_id=run_id, batch_no=batch_no,
                               settings=settings)
        if result.get("failed"):
            log(f"batch {batch_no}: {result['failed']} image(s) failed to embed")
        done += ids
    state["runs"] += 1
    return done


def publish(state: dict[str, Any]) -> dict[str, Any]:
    """Embed what is pending, build a new version (rebuild first, merge after), verify and publish it."""
    from core.settings import get_settings
    from indexing import pipeline

    started = time.monotonic()
    settings = get_settings()
    embedded = embed_pending(state)
    mode = "merge" if state["published"] else "rebuild"
    built = pipeline.build(state["conninfo"], settings, state["model_version"], mode=mode,
                           dag_run_id="node-client-test")
    pipeline.verify(state["conninfo"], settings, state["model_version"], built["version"])
    pipeline.publish(state["conninfo"], settings, state["model_version"], built["version"])
    state["published"] += 1
    return {"event": "published", "version": built["version"], "count": built["count"], "mode": mode,
            "embedded": embedded, "seconds": round(time.monotonic() - started, 3)}


def cleanup(state: dict[str, Any]) -> None:
    started = time.monotonic()
    proc: subprocess.Popen[bytes] | None = state.get("server")
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log(f"server stopped in {time.monotonic() - started:.1f} s")
    if state.get("dbname") and state.get("admin"):
        try:
            with psycopg.connect(state["admin"], autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{state["dbname"]}" WITH (FORCE)')
        except psycopg.Error as exc:
            log(f"could not drop {state['dbname']}: {exc}")
    local_pg = state.get("local_pg")
    if local_pg is not None:
        local_pg.stop()
    shutil.rmtree(state["workdir"], ignore_errors=True)
    log(f"cleaned up in {time.monotonic() - started:.1f} s")


def main() -> int:
    def on_term(signum: int, frame: object) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, on_term)
    state: dict[str, Any] = {"workdir": Path(tempfile.mkdtemp(prefix="imgsim-node-")), "runs": 0, "published": 0}
    os.chdir(state["workdir"])  # no stray .env from the caller's directory
    try:
        try:
            emit(**setup(state))
        except Exception as exc:
            traceback.print_exc()
            emit(event="error", message=f"setup failed: {type(exc).__name__}: {exc}")
            return 1
        for line in sys.stdin:
            command = line.strip()
            if not command:
                continue
            if command == "quit":
                break
            if command != "publish":
                emit(event="error", message=f"unknown command {command!r} (publish | quit)")
                continue
            try:
                emit(**publish(state))
            except Exception as exc:
                traceback.print_exc()
                emit(event="error", message=f"publish failed: {type(exc).__name__}: {exc}")
    except (Stop, KeyboardInterrupt):
        pass
    finally:
        with contextlib.suppress(Stop):
            cleanup(state)
        with contextlib.suppress(Exception):
            emit(event="stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
