"""Whether a merge can be made, and what it changes: decided before any file is written.

`plan_merge` compares the ledger with the parent's meta (`read_parent`: its int columns only, nothing
hashed): the plan, or the reason the build must be a rebuild instead. When the delta grows past
COMPACT_FRACTION of the base (or the base is HNSW, which can neither merge nor remove), or the size
now calls for another index type, the merge turns into a rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.settings import Settings
from indexing.build import choice, sources
from indexing.store.layout import MANIFEST_FORMAT, META_DELTA_FILE, META_FILE, REMOVED_FILE, IndexStore, Manifest

COMPACT_MIN = 10_000  # a delta this small never forces a rebuild
COMPACT_FRACTION = 0.2  # delta + removed beyond this share of the base: rebuild


@dataclass(frozen=True)
class MergePlan:
    """What a merge into `parent` changes, decided before any file is written."""

    parent: int
    parent_manifest: Manifest
    todo: pd.DataFrame  # ledger rows whose vectors go into the new delta (new or re-embedded)
    base_live: int  # parent base rows still live
    delta_keep: pd.DataFrame  # parent delta rows still live, with their meta columns
    removed: np.ndarray  # base ids masked out in the new version
    changes: dict[str, int]
    dropped: np.ndarray  # parent ids no longer served as they were (deleted or re-embedded)


def _in_sorted(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """values[i] in sorted_ids, by binary search (no sort of the big side)."""
    if len(sorted_ids) == 0:
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return sorted_ids[pos] == values


def plan_merge(settings: Settings, ledger: sources.Ledger, dim: int, parent: int, parent_manifest: Manifest,
               parent_meta: pd.DataFrame, parent_removed: np.ndarray, index_type: str | None) -> MergePlan | str:
    """Compare the ledger with the parent's meta: the plan, or the reason this must be a rebuild.

    Pure (no file is read or written here), so the decision is easy to test and to see. The
    ledger may be partial (rows embedded since the parent's watermark + the live ids): rows it
    holds that the parent has with the same embedded_at are not changes; parent rows whose ids
    are no longer live are deletions.
    """
    kind = parent_manifest.index_type
    if kind == "hnsw":
        return "HNSW can neither merge nor remove"
    if index_type is not None and index_type != kind:
        return f"index type {index_type} requested, parent is {kind}"
    if parent_manifest.dim != dim:
        return f"dim changed ({parent_manifest.dim} -> {dim})"
    if parent_manifest.format != MANIFEST_FORMAT:
        return "parent manifest has another format"
    old = parent_meta
    rows = ledger.rows
    joined = rows.merge(old[["image_id", "embedded_at"]], on="image_id", how="left", suffixes=("", "_old"))
    fresh = joined["embedded_at_old"].isna().to_numpy()
    # The ledger stamps embedded_at on every (re-)embed; compaction only repoints parquet_part.
    changed = ~fresh & (joined["embedded_at"] != joined["embedded_at_old"]).to_numpy()
    todo = rows[fresh | changed]
    live = ledger.live_ids if ledger.live_ids is not None else np.sort(rows["image_id"].to_numpy(np.int64))
    old_ids = old["image_id"].to_numpy(np.int64)
    deleted_mask = ~_in_sorted(old_ids, live)
    # Every live id is in the parent (kept), or new in the window; anything else is a row the
    # parent's read missed and the window does not cover (it cannot happen with an honest watermark).
    unseen = len(live) - (len(old_ids) - int(deleted_mask.sum())) - int(fresh.sum())
    if unseen:
        return f"{unseen} live ledger rows are neither in the parent nor embedded since its watermark"
    dropped = np.union1d(old_ids[deleted_mask], todo["image_id"].to_numpy(np.int64))
    drop_mask = _in_sorted(old_ids, dropped)
    seg = old["segment"].to_numpy()
    base_live = int(((seg == 0) & ~drop_mask).sum())
    delta_keep = old[(seg == 1) & ~drop_mask]
    base_count = parent_manifest.base_count or parent_manifest.count
    removed = np.union1d(parent_removed, old_ids[(seg == 0) & drop_mask]).astype(np.int64)
    new_delta = len(delta_keep) + len(todo)
    if len(removed) + new_delta > max(COMPACT_MIN, COMPACT_FRACTION * base_count):
        return f"delta {new_delta} + removed {len(removed)} exceed {COMPACT_FRACTION:.0%} of the base: compacting"
    expected_kind, _ = choice.choose(base_live + new_delta, dim, settings, index_type)
    if index_type is None and expected_kind != kind:
        return f"size now calls for {expected_kind}, parent is {kind}"
    return MergePlan(parent=parent, parent_manifest=parent_manifest, todo=todo, base_live=base_live,
                     delta_keep=delta_keep, removed=removed, dropped=dropped,
                     changes={"added": int(fresh.sum()), "reembedded": int(changed.sum()),
                              "deleted": int(deleted_mask.sum())})


def read_parent(store: IndexStore, parent: int) -> tuple[Manifest, pd.DataFrame, np.ndarray]:
    """The parent's manifest, live meta rows and removed ids.

    Of the shared base meta only the int columns `image_id`, `embedded_at` and `segment` are read
    (what a merge compares, ~17 bytes a row); the delta meta (small) is read whole, its rows are rewritten.
    Nothing is hashed: the checksums of inherited files come from the parent's manifest.
    """
    import pyarrow.parquet as pq

    manifest = store.read_manifest(parent)
    store.check_files(parent, manifest, checksums=False)  # a truncated base is not inherited
    pdir = store.version_dir(parent)
    base = pq.read_table(pdir / META_FILE, columns=["image_id", "embedded_at", "segment"]).to_pandas()
    removed = np.load(pdir / REMOVED_FILE) if manifest.has(REMOVED_FILE) else np.empty(0, np.int64)
    if len(removed):
        base = base[~((base["segment"] == 0).to_numpy() & np.isin(base["image_id"].to_numpy(), removed))]
    parts = [base]
    if manifest.has(META_DELTA_FILE):
        parts.append(pq.read_table(pdir / META_DELTA_FILE).to_pandas())
    meta = pd.concat(parts, ignore_index=True) if len(parts) > 1 else base.reset_index(drop=True)
    meta["embedded_at"] = pd.to_datetime(meta["embedded_at"], utc=True)
    return manifest, meta, removed
