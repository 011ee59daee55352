"""`python -m serving` as a user runs it: a subprocess configured only through the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.localpg import free_port
from core.settings import REPO_ROOT


def test_python_m_serving_honours_the_environment(main, base) -> None:
    scn, _ = main
    s = scn.settings
    port = free_port()
    env = {**os.environ, "DB_HOST": s.db_host, "DB_PORT": str(s.db_port), "DB_NAME": s.db_name,
           "DB_USER": s.db_user, "DATA_DIR": str(s.data_dir), "IMAGE_ROOT": str(s.image_root),
           "EMBEDDING_MODEL": "efficientnet-lite0", "API_HOST": "127.0.0.1", "API_PORT": str(port),
           "TORCH_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "serving"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        body = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                if r.status_code == 200:
                    body = r.json()
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert body is not None and body["status"] == "ready" and body["total_vectors"] == base.total
        hits = httpx.get(f"http://127.0.0.1:{port}/images/{base.ids[0]}/similar", params={"top_k": 1}).json()
        assert hits[0]["id"] == base.dup_pairs[0][1]
        with open(base.rotated_upload, "rb") as fh:
            r = httpx.post(f"http://127.0.0.1:{port}/extract_features", files={"file": fh}, timeout=120)
        assert r.status_code == 200 and len(r.json()["vector"]) == 1280
        # The served process embeds with ONNX Runtime and never loads torch (~700 MB of libraries).
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "onnxruntime" in maps and "libtorch" not in maps
    finally:
        proc.terminate()
        log, _ = proc.communicate(timeout=20)
    assert proc.returncode in (0, -15)
    # The start log says which model and why, and nothing that reads like a failure (faiss's loader probing).
    assert "serving: model efficientnet-lite0 (EMBEDDING_MODEL)" in log, log
    assert "faiss" not in log.lower() and "No module named" not in log, log


def test_bad_setting_is_one_line(tmp_path) -> None:
    env = {**os.environ, "API_PORT": "not-a-port"}
    r = subprocess.run([sys.executable, "-m", "serving"], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO_ROOT)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "API_PORT" in r.stderr and "Traceback" not in r.stderr
    # A model the registry does not know stops it at start too (it used to serve 503s, logging nothing).
    r = subprocess.run([sys.executable, "-m", "serving"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "EMBEDDING_MODEL": "foo", "PYTHONPATH": str(REPO_ROOT)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == ("error: unknown model 'foo' (EMBEDDING_MODEL): choose one of places365-resnet50, "
                                "efficientnet-lite0")
