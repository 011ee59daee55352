"""Shared set-up for the serving benchmarks: the same synthetic corpus, published the real way.

Vectors look like embeddings, not uniform noise: each event has its own
centre and its photos scatter around it (a few near-copies included), all
L2-normalised. They go through the real path: `images` rows, Parquet parts in
the docs/design.md schema, ledger rows, then `indexing.pipeline.build` + `publish`.
The served model must match the index's model version, so for 2048-d the
Places365 ResNet50 is loaded from a checkpoint in the CSAIL format with random
weights (its memory and speed are the real model's; its outputs are not).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from psycopg.conninfo import make_conninfo

MODEL_BY_DIM = {2048: "places365-resnet50", 1280: "efficientnet-lite0"}
PART_ROWS = 50_000


def clustered_vectors(n: int, dim: int, per_event: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n, dim) float32 unit rows, event number per row); contiguous events of `per_event`."""
    rng = np.random.default_rng(seed)
    events = np.arange(n) // per_event
    n_events = int(events[-1]) + 1
    out = np.empty((n, dim), dtype=np.float32)
    centres = np.random.default_rng(seed + 1).normal(size=(n_events, dim)).astype(np.float32)
    for start in range(0, n, 20_000):
        stop = min(n, start + 20_000)
        block = centres[events[start:stop]] * 0.6 + rng.normal(size=(stop - start, dim)).astype(np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out, events


def places365_checkpoint(path: Path) -> Path:
    """A resnet50(num_classes=365) checkpoint exactly in the CSAIL layout, random weights."""
    if path.exists():
        return path
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(0)
    model = resnet50(weights=None, num_classes=365)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 0, "arch": "resnet50",
                "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    return path


def admin_conninfo(workdir: Path):  # type: ignore[no-untyped-def]
    """(admin conninfo, private server or None): the configured PostgreSQL, else a private one."""
    from core.localpg import LocalPostgres, port_answers
    from core.settings import get_settings

    s = get_settings()
    if port_answers(s.db_host, s.db_port):
        return make_conninfo(s.conninfo(), dbname="postgres"), None
    server = LocalPostgres(workdir / "pg").start()
    return make_conninfo(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres"), server


@dataclass
class Corpus:
    workdir: Path
    admin: str
    dbname: str
    conninfo: str
    settings: object
    model_version: str
    ids: np.ndarray
    event_codes: list[str]  # per event number
    event_of: np.ndarray  # event number per row
    vectors: np.ndarray
    server: object = None

    def close(self, keep: bool = False) -> None:
        if not keep:
            with psycopg.connect(self.admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        if self.server is not None:
            self.server.stop()  # type: ignore[attr-defined]
        if not keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """Environment for `python -m serving` on this corpus."""
        s = self.settings
        return {"DB_HOST": s.db_host, "DB_PORT": str(s.db_port), "DB_NAME": s.db_name,  # type: ignore[attr-defined]
                "DB_USER": s.db_user, "DB_PASS": s.db_pass, "DATA_DIR": str(s.data_dir),  # type: ignore[attr-defined]
                "IMAGE_ROOT": str(s.image_root), "EMBEDDING_MODEL": s.embedding_model,  # type: ignore[attr-defined]
                "MODEL_WEIGHTS": str(s.model_weights or ""), "TORCH_THREADS": "2"}  # type: ignore[attr-defined]


def build_corpus(n: int, dim: int = 2048, per_event: int = 2000, workdir: Path | None = None,
                 log=print) -> Corpus:  # type: ignore[no-untyped-def]
    """Insert, write Parquet, record the ledger, build and publish; returns what the benches need."""
    from core.migrate import apply_migrations
    from core.settings import load_settings
    from embeddings.models import get_embedder
    from embeddings.writer import build_table, write_part
    from indexing import pipeline

    workdir = Path(workdir or tempfile.mkdtemp(prefix="imgsim-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    admin, server = admin_conninfo(workdir)
    dbname = f"imgsim_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    info = make_conninfo(admin, dbname=dbname)
    with psycopg.connect(info) as conn:
        apply_migrations(conn)
    model = MODEL_BY_DIM[dim]
    weights = places365_checkpoint(workdir / "weights" / "resnet50_places365.pth.tar") if dim == 2048 else None
    (workdir / "images").mkdir(exist_ok=True)
    settings = load_settings(
        db_host=psycopg.conninfo.conninfo_to_dict(info)["host"],
        db_port=int(psycopg.conninfo.conninfo_to_dict(info).get("port") or 5432), db_name=dbname,
        data_dir=workdir / "data", image_root=workdir / "images", embedding_model=model,
        model_weights=weights, torch_threads=2)
    mv = get_embedder(model, settings).model_version
    t0 = time.perf_counter()
    vectors, event_of = clustered_vectors(n, dim, per_event)
    n_events = int(event_of[-1]) + 1
    with psycopg.connect(info, autocommit=True) as conn:
        codes = [str(r[0]) for r in conn.execute(
            "INSERT INTO events (name) SELECT 'bench ' || g FROM generate_series(1, %s) g RETURNING code",
            (n_events,)).fetchall()]
        with conn.cursor().copy("COPY images (event_code, filename, file_path) FROM STDIN") as copy:
            for i in range(n):
                copy.write_row((codes[event_of[i]], f"p{i}.jpg", f"/uploads/p{i}.jpg"))
        rows = conn.execute("SELECT id, code::text FROM images ORDER BY id").fetchall()
    ids = np.asarray([r[0] for r in rows], dtype=np.int64)
    img_codes = [r[1] for r in rows]
    log(f"  {n} images in {n_events} events inserted ({time.perf_counter() - t0:.1f} s)")
    from embeddings.dataset import dataset_dir

    part_dir = dataset_dir(settings, mv)
    with psycopg.connect(info, autocommit=True) as conn:
        for b, start in enumerate(range(0, n, PART_ROWS)):
            stop = min(n, start + PART_ROWS)
            table = build_table(dim=dim, model_version=mv, image_ids=ids[start:stop].tolist(),
                                image_codes=img_codes[start:stop],
                                event_codes=[codes[e] for e in event_of[start:stop]],
                                vectors=vectors[start:stop], widths=[500] * (stop - start),
                                heights=[375] * (stop - start))
            part = write_part(table, part_dir, "bench", b)
            rel = str(part.resolve().relative_to(settings.resolved_data_dir.resolve()))
            conn.execute("""INSERT INTO image_embeddings (image_id, model_version, status, parquet_part)
                            SELECT id, %s, 'embedded', %s FROM images WHERE id BETWEEN %s AND %s""",
                         (mv, rel, int(ids[start]), int(ids[stop - 1])))
    log(f"  Parquet + ledger written ({time.perf_counter() - t0:.1f} s)")
    built = pipeline.build(info, settings, mv, mode="rebuild")
    pipeline.publish(info, settings, mv, built["version"])
    log(f"  index v{built['version']} ({built['index_type']}, {built['count']} vectors) published "
        f"({time.perf_counter() - t0:.1f} s)")
    return Corpus(workdir=workdir, admin=admin, dbname=dbname, conninfo=info, settings=settings, model_version=mv,
                  ids=ids, event_codes=codes, event_of=event_of, vectors=vectors, server=server)


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    a = np.asarray(samples_s) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS and its parts in MB: RssAnon (heap: Python, torch, model) and RssFile (mapped files: libraries and
    the memory-mapped index, clean pages the kernel can drop and that processes share)."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) / 1024
    return out
