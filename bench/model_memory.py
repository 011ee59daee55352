"""Resident memory of a process holding the model, per runtime (EMBEDDING_RUNTIME=onnx vs torch).

Each runtime is measured in a fresh subprocess (nothing shared): RSS after the
embeddings package is imported and the model built, then after what the search
server does per upload (one image, its 4 rotations = a batch of 4) and after a
pipeline batch of 32. Also prints the model's speed on that batch (img/s, best
of 3) so the memory is not bought with time. The ONNX file is exported first
(not counted). Places365 runs on a CSAIL-format checkpoint with random weights
(same size and speed as the real one). Usage:
  .venv/bin/python bench/model_memory.py [--models places365-resnet50+plain,efficientnet-lite0+plain]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHILD = r"""
import json, sys, time
import numpy as np
from PIL import Image

def rss():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) // 1024 for l in fh if l.startswith("VmRSS"))

from core.settings import load_settings
from embeddings.models import get_embedder
out = {"python": rss()}
e = get_embedder(sys.argv[1], load_settings())
out["model loaded"] = rss()
img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
e.embed_rotations([img])
out["after a server upload (4 rotations)"] = rss()
batch = np.stack([e.prepare(img)] * 32)
best = 0.0
for _ in range(3):
    t = time.perf_counter()
    e.forward(batch)
    best = max(best, 32 / (time.perf_counter() - t))
out["after a pipeline batch of 32"] = rss()
out["img/s"] = round(best, 1)
out["torch imported"] = "torch" in sys.modules
print(json.dumps(out))
"""


def main() -> int:
    from bench.embed_throughput import csail_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="places365-resnet50+plain,efficientnet-lite0+plain")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgsim-model-memory-"))
    env = {**os.environ, "DATA_DIR": str(work / "data"), "TORCH_THREADS": "2",
           "MODEL_WEIGHTS": str(csail_checkpoint(work / "resnet50_places365.pth.tar")),
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    print(f"cores {os.cpu_count()}; RSS in MB (VmRSS), one fresh process per row")
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        subprocess.run([sys.executable, "-m", "embeddings", "-q", "--model", model, "export"], env=env, check=True,
                       capture_output=True)
        rows = {}
        for runtime in ("torch", "onnx"):
            proc = subprocess.run([sys.executable, "-c", CHILD, model], env={**env, "EMBEDDING_RUNTIME": runtime},
                                  capture_output=True, text=True, check=True)
            rows[runtime] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"\n{model}")
        for key in rows["torch"]:
            t, o = rows["torch"][key], rows["onnx"][key]
            extra = f"   ({t - o:+d} MB with torch)" if isinstance(t, int) and not isinstance(t, bool) else ""
            print(f"  {key:<38} torch {t!s:>7}   onnx {o!s:>7}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
