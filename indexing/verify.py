"""Checks a version must pass before it may be published (and `verify vN` re-runs them).

1. manifest and sha256 of every file (IndexCorrupt otherwise);
2. model version and dim match the request and the Parquet dataset;
3. the vectors of live images equal the ledger's embedded count for live images
   (as of the build's ledger snapshot; images deleted since are tolerated, the next build drops them);
4. a sample of indexed vectors is L2-normalised and finds itself at rank 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.settings import Settings
from indexing import sources
from indexing.store import IndexCorrupt, IndexStore, load_version, version_name

SAMPLE = 64
# Share of the sample that must find itself first: exact is exact; ANN may miss a few.
SELF_RECALL_MIN = {"flat": 1.0, "hnsw": 0.95, "ivfpq": 0.8}


class VerificationFailed(RuntimeError):
    """The version must not be published; the message says why."""


def check_version(conninfo: str, settings: Settings, model_version: str, version: int, *,
                  sample: int = SAMPLE) -> dict[str, Any]:
    """Run every check; returns a small report, raises VerificationFailed with the first failure."""
    from datetime import datetime

    import pandas as pd

    store = IndexStore(settings, model_version)
    name = version_name(version)
    try:
        manifest = store.read_manifest(version)
        store.check_manifest(version, manifest, checksums=True)
        loaded = load_version(settings, model_version, version, verify_checksums=False)
    except IndexCorrupt as exc:
        raise VerificationFailed(str(exc)) from None

    if loaded.model_version != model_version:
        raise VerificationFailed(f"{name}: built for model {loaded.model_version!r}, not {model_version!r}")
    dim = sources.dataset_dim(sources.list_parts(settings, model_version))
    if dim is not None and dim != loaded.dim:
        raise VerificationFailed(f"{name}: index dim {loaded.dim} but the {model_version} embeddings have dim {dim}")

    ledger = sources.read_ledger(conninfo, model_version)
    snap_text = manifest.get("ledger_snapshot")
    snapshot = datetime.fromisoformat(snap_text) if snap_text else ledger.snapshot
    live = ledger.rows
    expected = live[live["embedded_at"] <= pd.Timestamp(snapshot)]
    live_index = pd.Index(loaded.ids)
    indexed_live = int((live_index.get_indexer(live["image_id"].to_numpy()) >= 0).sum())
    missing = expected["image_id"].to_numpy()[live_index.get_indexer(expected["image_id"].to_numpy()) < 0]
    if len(missing) or indexed_live < len(expected):
        example = ", ".join(str(i) for i in missing[:5])
        raise VerificationFailed(
            f"{name}: wrong count: {indexed_live} vectors of live images, but the ledger has {len(expected)} "
            f"embedded live images for {model_version} ({len(missing)} missing, e.g. image ids {example})"
        )

    self_hits, checked = 0, 0
    if loaded.count:
        rng = np.random.default_rng(version)
        picks = rng.choice(loaded.ids, size=min(sample, loaded.count), replace=False)
        vectors = np.stack([loaded.vector(int(i)) for i in picks])  # type: ignore[misc]
        norms = np.linalg.norm(vectors, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            bad = picks[np.abs(norms - 1.0) > 1e-3][:5]
            raise VerificationFailed(f"{name}: vectors are not L2-normalised (image ids {list(map(int, bad))})")
        scores, ids = loaded.search(vectors, 10)
        for pick, row_s, row_i in zip(picks, scores, ids, strict=True):
            # Identical photos tie at the top: finding itself among the best-scoring ties counts.
            ties = row_i[row_s >= row_s[0] - 1e-5]
            self_hits += int(pick in ties)
        checked = len(picks)
        need = SELF_RECALL_MIN.get(loaded.index_type, 1.0)
        if self_hits < need * checked:
            raise VerificationFailed(
                f"{name}: only {self_hits}/{checked} sampled vectors find themselves at rank 1 "
                f"({loaded.index_type} needs {need:.0%})"
            )
    return {"version": version, "count": loaded.count, "expected": len(expected), "dim": loaded.dim,
            "index_type": loaded.index_type, "self_rank1": f"{self_hits}/{checked}"}
