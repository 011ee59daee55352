"""Where the server's memory goes: the index's vectors, its metadata and lookups, the model (one process).

    .venv/bin/python bench/serve_memory.py [--vectors 100000] [--dim 2048]

Builds and publishes a corpus (bench/serving_corpus.py), then, in a fresh
subprocess, records VmRSS = RssAnon (heap) + RssFile (mapped files) after each
step the server takes: imports, the version loaded (ServedIndex), every event
searched once (pages of the vectors faulted in), the model loaded, one forward
pass (and the heap after malloc_trim, to tell garbage the allocator kept from
live data). The loaded version's Python-side structures are sized one by one
(pandas deep sizes, numpy nbytes). The bound: the issue's 1,000 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_corpus import build_corpus

CHILD = r'''
import json, sys, gc
import numpy as np
from bench.serving_corpus import rss_mb
import os
out = {}
def mark(step): out[step] = rss_mb(os.getpid())
mark("python")
from core.settings import load_settings
from serving.app import create_app  # every module the server imports (torch is imported lazily by the model)
from indexing.search.loaded import load_version
from serving.served import ServedIndex
mark("imports")
import faiss, pandas, pyarrow, pyarrow.parquet  # what loading a version imports
mark("imports: faiss, pandas, pyarrow")
args = json.loads(sys.argv[1])
settings = load_settings(**args["settings"])
served = ServedIndex(load_version(settings, args["model_version"]))
gc.collect(); mark("version loaded")
import ctypes, pyarrow as pa
arrow_pool = pa.total_allocated_bytes()
ctypes.CDLL("libc.so.6").malloc_trim(0)
mark("  same, after malloc_trim")
q = np.ones(served.dim, np.float32) / np.sqrt(served.dim)
for ev in served.loaded.events():
    served.search(q, 10, ev)
mark("every event searched")
served.search(q, 10)
mark("one global search")
L = served.loaded
parts = {"meta DataFrame (deep)": int(L.meta.memory_usage(deep=True).sum())}
for name in ("ids", "_id_order", "_ids_sorted", "_segment_of", "_row_of", "_base_event", "_code_bytes",
             "_code_order", "_files", "_event_of_row"):
    a = getattr(L, name)
    parts[name + " (array)"] = int(a.nbytes)
seen = set()
def objects(a):
    total = 0
    for x in a:
        if id(x) not in seen:
            seen.add(id(x)); total += sys.getsizeof(x)
    return total
parts["_files (its Python str objects)"] = objects(L._files)
parts["_base_sorted"] = int(sum(x.nbytes for x in L._base_sorted))
parts["_event_meta_pos"] = int(sum(x.nbytes for x in L._event_meta_pos))
def resident(a):
    addr, inside = int(a.__array_interface__["data"][0]), False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= addr < hi
            elif inside and head == "Rss:":
                return int(line.split()[1]) * 1024
    return -1
base = L._base
parts["base vectors, float32 (mapped private copy), size"] = int(base.vectors.nbytes)
parts["  of which resident after the searches"] = resident(base.vectors)
if getattr(base, "half", None) is not None:
    parts["base vectors, float16 copy (scanned), size"] = int(base.half.codes.nbytes)
    parts["  of which resident after the searches "] = resident(base.half.codes)
from embeddings.models import get_embedder
emb = get_embedder(settings.embedding_model, settings)
gc.collect(); mark("model loaded")
from PIL import Image
emb.embed_images([Image.new("RGB", (500, 375), (120, 80, 40))] * 4)
mark("one forward pass (4 images)")
parts["pyarrow pool still allocated"] = int(arrow_pool)
print("RESULT" + json.dumps({"rss": out, "parts": parts}))
'''


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048, choices=[2048, 1280])
    ap.add_argument("--per-event", type=int, default=2000)
    args = ap.parse_args(argv)
    corpus = build_corpus(args.vectors, args.dim, args.per_event)
    try:
        s = corpus.settings
        payload = {"model_version": corpus.model_version, "settings": {
            "db_host": s.db_host, "db_port": s.db_port, "db_name": s.db_name,  # type: ignore[attr-defined]
            "data_dir": str(s.data_dir), "image_root": str(s.image_root),  # type: ignore[attr-defined]
            "embedding_model": s.embedding_model, "torch_threads": 2,  # type: ignore[attr-defined]
            "model_weights": str(s.model_weights) if s.model_weights else None}}  # type: ignore[attr-defined]
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(payload)], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent.parent, env={**os.environ}, check=False)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
        if line is None:
            print(proc.stdout[-2000:], proc.stderr[-4000:])
            return 1
        result = json.loads(line[len("RESULT"):])
        print(f"\nRSS of one server process, {args.vectors} x {args.dim}-d, MB     VmRSS  RssAnon  RssFile")
        prev = None
        for step, m in result["rss"].items():
            delta = "" if prev is None else f"   (+{m['VmRSS'] - prev:.0f})"
            print(f"  {step:<40} {m['VmRSS']:8.0f} {m['RssAnon']:8.0f} {m['RssFile']:8.0f}{delta}")
            prev = m["VmRSS"]
        print("\nthe loaded version's structures, MB")
        for name, size in result["parts"].items():
            print(f"  {name:<52} {size / 2**20:8.1f}")
        final = list(result["rss"].values())[-1]["VmRSS"]
        print(f"\ngoal: <= 1,000 MB -> {final:.0f} MB ({final / 1000:.2f}x the bound)")
    finally:
        corpus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
