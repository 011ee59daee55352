"""Build a new version folder: `rebuild` from scratch or `merge` into the current version.

A rebuild sorts rows by (event_code, image_id) so each event is a contiguous slice of
the base's flat storage, stages the vectors in a memory-mapped file (one Parquet part
in memory at a time) and adds them to the chosen index. A merge is planned first
(plan.py: a pure comparison of the ledger with the parent's meta, or the reason it
must be a rebuild), then applied: it hard-links the parent's read-only base, masks out
deleted and re-embedded ids (`removed.npy`) and writes the changed vectors to a small
exact `delta.faiss`: its cost grows with the change, not the total. Either way the
version's duplicate relations are computed next (indexing/relations/), then meta, removed
ids and the manifest are written and the folder is renamed into place.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.settings import Settings
from indexing.build import choice, sources
from indexing.build.plan import MergePlan, plan_merge, read_parent
from indexing.build.sources import BuildError
from indexing.parts import dataset_dir, list_parts, resolve_part
from indexing.relations import compute
from indexing.relations.format import Rules
from indexing.relations.reuse import read_parent_relations
from indexing.store.files import fsync_dir, fsync_file, link_or_copy, make_read_only, write_synced
from indexing.store.integrity import IndexCorrupt, sha256_file
from indexing.store.layout import (
    DELTA_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    META_DELTA_FILE,
    META_FILE,
    RELATIONS_DELTA_FILE,
    RELATIONS_FILE,
    REMOVED_FILE,
    VECTORS_FILE,
    IndexStore,
    Manifest,
    version_name,
)
from indexing.store.segments import flat_view

ADD_CHUNK = 20_000
IVF_TRAIN_MAX = 100_000


def next_version(store: IndexStore, db_max: int | None) -> int:
    on_disk = store.versions()
    return max([0, db_max or 0, *on_disk]) + 1


def _meta_table(frame: pd.DataFrame) -> Any:
    import pyarrow as pa

    return pa.table({
        "image_id": pa.array(frame["image_id"].to_numpy(np.int64), pa.int64()),
        # An EMS row without a code (NULL; "" in the ledger's CSV) stays null, never the text "None".
        "image_code": pa.array([c if isinstance(c, str) and c else None for c in frame["image_code"]], pa.string()),
        "event_code": pa.array(frame["event_code"].astype(str), pa.string()),
        "filename": pa.array(frame["filename"].astype(str), pa.string()),
        "embedded_at": pa.array(pd.to_datetime(frame["embedded_at"], utc=True), pa.timestamp("us", tz="UTC")),
        "parquet_part": pa.array(frame["parquet_part"].astype(str), pa.string()),
        "segment": pa.array(frame["segment"].to_numpy(np.int8), pa.int8()),
        "row": pa.array(frame["row"].to_numpy(np.int64), pa.int64()),
    })


def _write_flat(path: Path, ids: np.ndarray, vectors: np.ndarray, dim: int) -> None:
    import faiss

    index = choice.make_index("flat", dim, {})
    for a in range(0, len(ids), ADD_CHUNK):
        index.add_with_ids(np.ascontiguousarray(vectors[a:a + ADD_CHUNK], dtype=np.float32), ids[a:a + ADD_CHUNK])
    faiss.write_index(index, str(path))


def _event_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["event_code", "image_id"], kind="stable").reset_index(drop=True)


@dataclass
class Pieces:
    """A version's content before `finalize` writes meta, removed ids and the manifest."""

    frame: pd.DataFrame  # the meta rows this build writes: ledger columns + segment, row
    meta_file: str  # META_FILE (rebuild: every base row) or META_DELTA_FILE (merge: the delta's rows)
    count: int  # live vectors of the version
    index_type: str
    params: dict[str, Any]
    base_count: int
    delta_count: int
    removed: np.ndarray  # base ids masked out
    inherited: dict[str, str]  # files hard-linked from the parent -> their sha256 (not re-hashed)
    base_version: int | None
    changes: dict[str, int] | None = None
    vectors: np.ndarray | None = None  # the vectors of `frame`'s rows (rebuild: the staged base; merge: the delta)
    plan: MergePlan | None = None  # (merge only) what changed since the parent
    stage: Path | None = None  # (rebuild only) staged vectors to delete once relations are computed


class Builder:
    """One build: gathers inputs, writes files into a temp folder, renames it into place."""

    def __init__(self, settings: Settings, model_version: str, store: IndexStore) -> None:
        self.settings = settings
        self.model_version = model_version
        self.store = store
        self.tmp = store.root / f".tmp-build-{uuid.uuid4().hex[:12]}"

    # -- rebuild --------------------------------------------------------------
    def rebuild(self, ledger: sources.Ledger, parts: list[Path], dim: int, index_type: str | None) -> Pieces:
        import faiss

        rows = ledger.rows
        located = sources.locate_latest(parts, rows["image_id"].to_numpy())
        frame = _event_order(rows.merge(located, on="image_id", how="inner"))
        n = len(frame)
        kind, params = choice.choose(n, dim, self.settings, index_type)
        check_space(self.store.root, choice.disk_bytes(n, dim, kind, params))
        self.tmp.mkdir(parents=True)
        stage_path = self.tmp / VECTORS_FILE
        stage = np.lib.format.open_memmap(stage_path, mode="w+", dtype=np.float32, shape=(n, dim))
        _reserve(stage_path)  # a memory map over a hole on a full disk dies of SIGBUS at the first write

        def write(target: np.ndarray, vectors: np.ndarray) -> None:
            stage[target] = vectors

        sources.scatter_vectors(parts, frame[["image_id", "part_no", "part_row"]], np.arange(n), dim, write)
        ids = frame["image_id"].to_numpy(np.int64)
        index = choice.make_index(kind, dim, params)
        if kind == "ivfpq":
            rng = np.random.default_rng(0)
            sample = np.sort(rng.choice(n, size=min(n, IVF_TRAIN_MAX), replace=False)) if n else np.empty(0, int)
            if n == 0:
                raise BuildError("cannot train an IVF-PQ index on zero vectors")
            index.train(np.ascontiguousarray(stage[sample]))
        for a in range(0, n, ADD_CHUNK):
            index.add_with_ids(np.ascontiguousarray(stage[a:a + ADD_CHUNK]), ids[a:a + ADD_CHUNK])
        faiss.write_index(index, str(self.tmp / INDEX_FILE))
        del index
        stage.flush()
        frame["segment"] = 0
        frame["row"] = np.arange(n)
        return Pieces(frame=frame, meta_file=META_FILE, count=n, index_type=kind, params=params, base_count=n,
                      delta_count=0, removed=np.empty(0, np.int64), inherited={}, base_version=None,
                      vectors=stage, stage=stage_path if kind != "ivfpq" else None)

    # -- merge ----------------------------------------------------------------
    def apply_merge(self, plan: MergePlan, ledger: sources.Ledger, parts: list[Path], dim: int) -> Pieces:
        """Write the merged version's new files (the delta and its meta); base and base meta are shared."""
        todo = plan.todo
        pdir = self.store.version_dir(plan.parent)
        # Vectors of new and re-embedded rows, from the parts the ledger names (all parts if one is missing).
        named = [resolve_part(self.settings, self.model_version, p) for p in todo["parquet_part"].unique()]
        use_parts = sorted({p for p in named if p is not None}) if all(named) else parts
        located = sources.locate_latest(use_parts, todo["image_id"].to_numpy())
        added = todo.merge(located, on="image_id", how="inner")

        # Delta = kept old delta rows (their meta from the parent's delta meta) + added rows, in event order.
        keep_cols = ["image_id", "image_code", "event_code", "filename", "embedded_at", "parquet_part", "row"]
        delta_rows = pd.concat([
            plan.delta_keep.reindex(columns=keep_cols).assign(src="old"),
            added.assign(src="new"),
        ], ignore_index=True)
        delta_rows = _event_order(delta_rows)
        nd = len(delta_rows)
        delta_vecs = np.empty((nd, dim), dtype=np.float32)
        self.tmp.mkdir(parents=True)
        if len(plan.delta_keep):
            old_delta = _read_faiss(pdir / DELTA_FILE)
            view = flat_view(old_delta)
            if view is None or view.shape[0] < len(plan.delta_keep):
                raise BuildError(f"{pdir / DELTA_FILE}: not the exact delta the manifest describes; rebuild")
            sel = np.flatnonzero((delta_rows["src"] == "old").to_numpy())
            delta_vecs[sel] = view[delta_rows["row"].to_numpy()[sel].astype(np.int64)]
            del view, old_delta
        new_sel = np.flatnonzero((delta_rows["src"] == "new").to_numpy())

        def write(target: np.ndarray, vectors: np.ndarray) -> None:
            delta_vecs[target] = vectors

        sources.scatter_vectors(use_parts, delta_rows.iloc[new_sel][["image_id", "part_no", "part_row"]],
                                new_sel, dim, write)
        delta_ids = delta_rows["image_id"].to_numpy(np.int64)
        inherited: dict[str, str] = {}
        for fname in (INDEX_FILE, VECTORS_FILE, META_FILE):
            if plan.parent_manifest.has(fname):
                link_or_copy(pdir / fname, self.tmp / fname)
                inherited[fname] = plan.parent_manifest.sha256[fname]
        if nd:
            _write_flat(self.tmp / DELTA_FILE, delta_ids, delta_vecs, dim)

        delta_frame = delta_rows.assign(segment=1, row=np.arange(nd))
        changes = {**plan.changes, "missing_vectors": int(len(todo) - len(added))}
        pm = plan.parent_manifest
        return Pieces(frame=delta_frame, meta_file=META_DELTA_FILE, count=plan.base_live + nd,
                      index_type=pm.index_type, params=pm.params, base_count=pm.base_count or pm.count,
                      delta_count=nd, removed=plan.removed, inherited=inherited,
                      base_version=pm.base_version or plan.parent, changes=changes, vectors=delta_vecs, plan=plan)

    # -- duplicate relations -------------------------------------------------
    def relations(self, pieces: Pieces, reuse_from: int | None) -> dict[str, Any]:
        """Verify the changed events' candidate pairs into the version (indexing/relations/).

        A rebuild computes every event, or with `reuse_from` (a merge turned rebuild) copies the
        events of that version whose ids, order and embedded_at are unchanged; a merge computes the
        changed events and keeps the parent's others. A changed event the parent holds verifies only
        the pairs the parent has no verdict for. The staged vectors go once this is done.
        """
        started = time.perf_counter()
        try:
            if pieces.plan is not None:
                plan = pieces.plan
                added = sorted(set(plan.todo["event_code"].astype(str)))
                report, inherited = compute.for_merge(
                    self.settings, self.model_version, parent_dir=self.store.version_dir(plan.parent),
                    parent_manifest=plan.parent_manifest, dropped=plan.dropped, removed=plan.removed,
                    added_events=added, delta_frame=pieces.frame, delta_vectors=pieces.vectors, folder=self.tmp)
                pieces.inherited.update(inherited)
            else:
                reuse, parent = None, None
                if reuse_from is not None:
                    try:
                        parent = (self.store.version_dir(reuse_from), self.store.read_manifest(reuse_from))
                        reuse = read_parent_relations(*parent)
                    except IndexCorrupt as exc:
                        compute.log.info("relations of %s not reused: %s", version_name(reuse_from), exc)
                assert pieces.vectors is not None
                report = compute.for_rebuild(self.settings, self.model_version, pieces.frame, pieces.vectors,
                                             self.tmp, reuse, parent)
            report.step_seconds = time.perf_counter() - started
            return report.as_dict()
        except Exception as exc:  # an optimisation: never the reason a version cannot be built
            compute.log.exception("duplicate relations not precomputed (the server will compute each event on "
                                  "its first request)")
            for fname in (RELATIONS_FILE, RELATIONS_DELTA_FILE):
                (self.tmp / fname).unlink(missing_ok=True)
                pieces.inherited.pop(fname, None)
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            return {"rules_version": Rules.current().rules_version, "computed": 0, "kept": 0,
                    "skipped": 0, "error": f"{type(exc).__name__}: {first}",
                    "step_seconds": round(time.perf_counter() - started, 3)}
        finally:
            pieces.vectors = None
            if pieces.stage is not None:
                pieces.stage.unlink()
                pieces.stage = None

    # -- finish ---------------------------------------------------------------
    def finalize(self, version: int, pieces: Pieces, dim: int, extra: dict[str, Any]) -> Built:
        """Write meta, removed ids and the manifest, fsync, make every file read-only, rename into place."""
        import pyarrow.parquet as pq

        if len(pieces.frame) or pieces.meta_file == META_FILE:
            pq.write_table(_meta_table(pieces.frame), self.tmp / pieces.meta_file)
        if len(pieces.removed):
            np.save(self.tmp / REMOVED_FILE, np.asarray(pieces.removed, dtype=np.int64))
        sha: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for path in sorted(self.tmp.iterdir()):
            sizes[path.name] = path.stat().st_size
            if path.name in pieces.inherited:
                sha[path.name] = pieces.inherited[path.name]
            else:
                fsync_file(path)
                sha[path.name] = sha256_file(path)
            make_read_only(path)
        manifest = Manifest(
            version=version, model_version=self.model_version, dim=dim, index_type=pieces.index_type,
            count=pieces.count, sha256=sha, sizes=sizes, params=pieces.params, base_count=pieces.base_count,
            delta_count=pieces.delta_count, removed_count=len(pieces.removed),
            base_version=pieces.base_version or version, changes=pieces.changes,
            created_at=datetime.now(UTC).isoformat(), **extra,
        )
        data = manifest.to_json()
        write_synced(self.tmp / MANIFEST_FILE, data)
        make_read_only(self.tmp / MANIFEST_FILE)
        fsync_dir(self.tmp)
        final = self.store.version_dir(version)
        os.rename(self.tmp, final)  # fails if a version of that number appeared meanwhile
        fsync_dir(self.store.root)
        return Built(manifest=manifest, path=final, digest=hashlib.sha256(data).hexdigest())

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


@dataclass(frozen=True)
class Built:
    """A version just renamed into place: its manifest, folder and the sha256 of manifest.json."""

    manifest: Manifest
    path: Path
    digest: str


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} kB"


def check_space(folder: Path, needed: int) -> None:
    """BuildError naming the folder and the space needed when its disk has less free (nothing written yet)."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise BuildError(f"not enough disk space in {folder}: this build needs about {_mb(needed)}, "
                         f"{_mb(free)} free; free some space (prune old versions: `python -m indexing prune`)")


def _reserve(path: Path) -> None:
    """Allocate a file's blocks now, so running out of space is an error here, not a signal later."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno != errno.EOPNOTSUPP:  # a filesystem without it: the pre-check is all there is
            raise
    finally:
        os.close(fd)


def _disk_full(exc: BaseException) -> bool:
    """An OSError ENOSPC/EDQUOT, or faiss's RuntimeError around one."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, RuntimeError) and ("No space left on device" in str(exc) or "Disk quota" in str(exc))


def _read_faiss(path: Path) -> Any:
    import faiss

    return faiss.read_index(str(path))


def build_version(
    settings: Settings, model_version: str, ledger: sources.Ledger, *, mode: str = "merge",
    index_type: str | None = None, version: int, parent: int | None = None, extra: dict[str, Any] | None = None,
    full_ledger: Callable[[], sources.Ledger] | None = None,
) -> Built:
    """Write version `version` (the caller holds the store lock and picked the number), merged into
    `parent` when mode is "merge" and it can be. Database-free so the benchmark can time exactly this."""
    if mode not in ("merge", "rebuild"):
        raise ValueError(f"mode must be 'merge' or 'rebuild', not {mode!r}")
    if index_type is not None and index_type not in choice.INDEX_TYPES:
        raise ValueError(f"unknown index type {index_type!r} (choose from {', '.join(choice.INDEX_TYPES)})")
    store = IndexStore(settings, model_version)
    parts = list_parts(settings, model_version)
    if not parts:
        raise BuildError(f"no embeddings for model {model_version!r} in {dataset_dir(settings, model_version)}"
                         " (run `python -m embeddings` first)")
    dim = sources.dataset_dim(parts)
    assert dim is not None
    started = time.perf_counter()
    builder = Builder(settings, model_version, store)
    reason = None
    try:
        pieces: Pieces | None = None
        if mode == "merge" and parent is not None and index_type is None:
            # A merge keeps the type its parent was asked for (an HNSW asked for once stays HNSW, also when
            # the merge must rebuild); automatic stays automatic. Only an explicit index_type changes it.
            with contextlib.suppress(IndexCorrupt):
                index_type = store.read_manifest(parent).requested_index_type
        if mode == "merge" and parent is not None:
            try:
                parent_manifest, parent_meta, parent_removed = read_parent(store, parent)
                plan: MergePlan | str = plan_merge(settings, ledger, dim, parent, parent_manifest, parent_meta,
                                                   parent_removed, index_type)
            except (IndexCorrupt, OSError, ValueError, KeyError) as exc:  # damaged parent: start afresh
                plan = f"parent {version_name(parent)} unreadable ({' '.join(str(exc).split())[:200]})"
            if isinstance(plan, str):
                reason = plan
            else:
                pieces = builder.apply_merge(plan, ledger, parts, dim)
        elif mode == "merge":
            reason = "no current version to merge into"
        used = "merge" if pieces is not None else "rebuild"
        if pieces is None:
            if ledger.partial:  # a merge's partial ledger cannot make a rebuild: read all of it
                if full_ledger is None:
                    raise BuildError("a rebuild needs the full ledger")
                ledger = full_ledger()
            pieces = builder.rebuild(ledger, parts, dim, index_type)
        relations = builder.relations(pieces, parent if mode == "merge" and used == "rebuild" else None)
        meta_extra = {"mode": used, "requested_mode": mode, "rebuild_reason": reason,
                      "requested_index_type": index_type,
                      "parent_version": parent, "ledger_snapshot": ledger.snapshot.isoformat(),
                      "ledger_watermark": ledger.watermark.isoformat() if ledger.watermark else None,
                      "relations": relations, **(extra or {})}
        meta_extra["build_seconds"] = round(time.perf_counter() - started, 3)
        return builder.finalize(version, pieces, dim, meta_extra)
    except BaseException as exc:
        builder.discard()
        if _disk_full(exc):
            raise BuildError(f"disk full in {store.root} while building {version_name(version)} (scratch removed; "
                             f"{_mb(shutil.disk_usage(store.root).free)} free now): free some space") from None
        raise
