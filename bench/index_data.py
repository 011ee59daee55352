"""Shared by the index benchmarks: vectors that look like real embeddings, Parquet parts, ledgers.

Real-looking vectors: the shared photos embedded with efficientnet-lite0 are the
anchors; each synthetic image is a mix of two anchors plus per-dimension jitter,
kept non-negative (the model's pooled features are post-activation) and
L2-normalised. Without the photos or the model, clustered synthetic anchors are used.
Uniform noise would be a worst case for ANN and is not what photos give.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def anchors(limit: int = 294, model: str = "efficientnet-lite0") -> tuple[np.ndarray, str]:
    """(anchor vectors, description): embedded shared photos, or clustered synthetic ones."""
    try:
        from core.sample_data import sample_photos
        from embeddings.loading import load_image
        from embeddings.models import get_embedder

        photos = sample_photos(limit, out_dir=Path(tempfile.gettempdir()) / "imgsim-bench-photos")
        embedder = get_embedder(model)
        vecs = []
        for a in range(0, len(photos), 32):
            vecs.append(embedder.embed_images([load_image(p) for p in photos[a:a + 32]]))
        return np.concatenate(vecs).astype(np.float32), f"{len(photos)} photos embedded with {model}"
    except Exception as exc:  # no torch/photos: fall back, and say so
        rng = np.random.default_rng(0)
        dim = 1280
        centres = np.abs(rng.normal(size=(32, dim)))
        x = centres[rng.integers(0, 32, limit)] + 0.5 * np.abs(rng.normal(size=(limit, dim)))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), f"clustered synthetic anchors ({type(exc).__name__}: {exc})"


def jittered(base: np.ndarray, n: int, seed: int, sigma: float = 0.35, chunk: int = 50_000) -> np.ndarray:
    """n vectors near mixes of two anchors (cosine to the nearer anchor mostly 0.7-0.9)."""
    rng = np.random.default_rng(seed)
    dim = base.shape[1]
    scale = base.std(axis=0, keepdims=True) + 1e-6
    out = np.empty((n, dim), dtype=np.float32)
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        i, j = rng.integers(0, len(base), m), rng.integers(0, len(base), m)
        w = rng.uniform(0.6, 1.0, (m, 1)).astype(np.float32)
        x = w * base[i] + (1 - w) * base[j]
        x += (sigma * scale * rng.standard_normal((m, dim), dtype=np.float32)).astype(np.float32)
        np.maximum(x, 0, out=x)
        x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
        out[a:a + m] = x
    return out


def uniform_unit(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def synthetic_ledger(n: int, per_event: int, start_id: int = 1) -> pd.DataFrame:
    """Ledger rows for n images, `per_event` per event, ids shuffled across events like real uploads."""
    rng = np.random.default_rng(n)
    ids = np.arange(start_id, start_id + n, dtype=np.int64)
    n_events = max(1, -(-n // per_event))
    events = [str(uuid.UUID(int=int(rng.integers(1, 2**62)) + e)) for e in range(n_events)]
    event_of = rng.permutation(np.repeat(np.arange(n_events), per_event)[:n])
    return pd.DataFrame({
        "image_id": ids,
        "image_code": [str(uuid.UUID(int=int(i) + 2**100)) for i in ids],
        "event_code": np.array(events, dtype=object)[event_of],
        "filename": [f"img_{i}.jpg" for i in ids],
        "embedded_at": pd.Timestamp(datetime.now(UTC)),
        "parquet_part": "",
    })


def write_parts(dataset: Path, rows: pd.DataFrame, vectors: Callable[[int, int], np.ndarray], model_version: str,
                chunk: int = 50_000, tag: str = "bench") -> list[Path]:
    """Parquet parts in the docs/design.md schema; vectors(a, b) gives the rows a..b. Returns the part paths."""
    dataset.mkdir(parents=True, exist_ok=True)
    paths = []
    for a in range(0, len(rows), chunk):
        sub = rows.iloc[a:a + chunk]
        vec = vectors(a, a + len(sub))
        dim = vec.shape[1]
        table = pa.table({
            "image_id": pa.array(sub["image_id"].to_numpy(np.int64)),
            "image_code": pa.array(sub["image_code"].tolist(), pa.string()),
            "event_code": pa.array(sub["event_code"].tolist(), pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1), pa.float32()), dim),
            "model_version": pa.array([model_version] * len(sub), pa.string()),
            "width": pa.array(np.full(len(sub), 640, np.int32)),
            "height": pa.array(np.full(len(sub), 480, np.int32)),
            "embedded_at": pa.array(pd.to_datetime(sub["embedded_at"], utc=True), pa.timestamp("us", tz="UTC")),
        })
        path = dataset / f"part-{tag}-{a // chunk:05d}.parquet"
        pq.write_table(table, path, compression="none")
        paths.append(path)
    return paths


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    ms = np.asarray(seconds) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
