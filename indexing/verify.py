"""Checks a version must pass before it may be published (and `verify vN` re-runs them).

1. manifest, sizes and sha256 of every file, shapes and ids (`open_version`; IndexCorrupt otherwise);
2. model version and dim match the request and the Parquet dataset;
3. the vectors of live images equal the ledger's embedded count for live images
   (as of the build's ledger snapshot; images deleted since are tolerated, the next build drops them);
4. a sample of indexed vectors is L2-normalised and finds itself at rank 1 (`check_loaded`).

The search server runs 1 and 4 (the checks that need no database) before it serves
any version: loading is verifying, with the same code. `check_usable` is those two, and
`ensure_intact` (a rollback's) restores a version that fails them from BACKUP_DIR.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.settings import Settings
from indexing.build import sources
from indexing.parts import list_parts
from indexing.search.loaded import LoadedIndex, open_version
from indexing.store.backup import copy_version
from indexing.store.integrity import IndexCorrupt
from indexing.store.layout import IndexStore, backup_store, version_name

SAMPLE = 64
# Share of the sample that must find itself first: exact is exact; ANN may miss a few.
SELF_RECALL_MIN = {"flat": 1.0, "hnsw": 0.95, "ivfpq": 0.8}


class VerificationFailed(RuntimeError):
    """The version must not be published; the message says why."""


def check_loaded(loaded: LoadedIndex, *, sample: int = SAMPLE) -> str:
    """Sampled vectors are L2-normalised and find themselves first; returns "hits/checked".

    Raises VerificationFailed naming the version and the image ids at fault.
    """
    name = version_name(loaded.version)
    if not loaded.count:
        return "0/0"
    rng = np.random.default_rng(loaded.version)
    picks = rng.choice(loaded.ids, size=min(sample, loaded.count), replace=False)
    vectors = np.stack([loaded.vector(int(i)) for i in picks])  # type: ignore[misc]
    if not np.all(np.isfinite(vectors)):
        bad = picks[~np.all(np.isfinite(vectors), axis=1)][:5]
        raise VerificationFailed(f"{name}: vectors are not finite (image ids {list(map(int, bad))})")
    norms = np.linalg.norm(vectors, axis=1)
    if not np.allclose(norms, 1.0, atol=1e-3):
        bad = picks[np.abs(norms - 1.0) > 1e-3][:5]
        raise VerificationFailed(f"{name}: vectors are not L2-normalised (image ids {list(map(int, bad))})")
    scores, ids = loaded.search(vectors, 10)
    hits = 0
    for pick, row_s, row_i in zip(picks, scores, ids, strict=True):
        # Identical photos tie at the top: finding itself among the best-scoring ties counts.
        ties = row_i[row_s >= row_s[0] - 1e-5]
        hits += int(pick in ties)
    need = SELF_RECALL_MIN.get(loaded.index_type, 1.0)
    if hits < need * len(picks):
        raise VerificationFailed(f"{name}: only {hits}/{len(picks)} sampled vectors find themselves at rank 1 "
                                 f"({loaded.index_type} needs {need:.0%})")
    return f"{hits}/{len(picks)}"


def check_version(conninfo: str, settings: Settings, model_version: str, version: int, *,
                  sample: int = SAMPLE) -> dict[str, Any]:
    """Run every check; returns a small report, raises VerificationFailed with the first failure."""
    store = IndexStore(settings, model_version)
    try:
        loaded = open_version(store, version, float16=False)  # checked, not served
    except IndexCorrupt as exc:
        raise VerificationFailed(str(exc)) from None
    try:
        return _check_against_data(conninfo, settings, model_version, loaded, sample)
    finally:
        loaded.close()


def _check_against_data(conninfo: str, settings: Settings, model_version: str, loaded: LoadedIndex,
                        sample: int) -> dict[str, Any]:
    """Checks 2-4: model, dim, the ledger's count, normalisation and self-search."""
    from datetime import datetime

    import pandas as pd

    name = version_name(loaded.version)
    if loaded.model_version != model_version:
        raise VerificationFailed(f"{name}: built for model {loaded.model_version!r}, not {model_version!r}")
    dim = sources.dataset_dim(list_parts(settings, model_version))
    if dim is not None and dim != loaded.dim:
        raise VerificationFailed(f"{name}: index dim {loaded.dim} but the {model_version} embeddings have dim {dim}")

    ledger = sources.read_ledger(conninfo, model_version)
    snap_text = loaded.manifest.ledger_snapshot
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
    self_rank1 = check_loaded(loaded, sample=sample)
    return {"version": loaded.version, "count": loaded.count, "expected": len(expected), "dim": loaded.dim,
            "index_type": loaded.index_type, "self_rank1": self_rank1}


def check_usable(store: IndexStore, version: int) -> None:
    """The server's load checks (files, shapes, normalisation, self-search); IndexCorrupt otherwise."""
    loaded = open_version(store, version, float16=False)  # checked, not served
    try:
        check_loaded(loaded)
    except VerificationFailed as exc:
        raise IndexCorrupt(str(exc)) from None
    finally:
        loaded.close()


def ensure_intact(settings: Settings, model_version: str, version: int) -> str:
    """Make sure the live store holds an intact `version`: "store" when it does, "restored" when it
    was copied back from BACKUP_DIR. IndexCorrupt naming the bad files when neither copy is usable.
    The caller holds the store lock."""
    store = IndexStore(settings, model_version)
    backup = backup_store(settings, model_version)
    problem = f"{version_name(version)} is not in {store.root}"
    if store.version_dir(version).is_dir():
        try:
            check_usable(store, version)
            return "store"
        except IndexCorrupt as exc:
            problem = str(exc)
    if not backup.version_dir(version).is_dir():
        raise IndexCorrupt(f"{problem} (and {backup.root} holds no copy of {version_name(version)} to restore; "
                           "`python -m indexing backup` makes them)")
    try:
        check_usable(backup, version)
        copy_version(backup, store, version)
        check_usable(store, version)
    except IndexCorrupt as exc:
        raise IndexCorrupt(f"{problem}; the backup copy is no better: {exc}") from None
    return "restored"
