"""A version opened for use: verified while it is read, held privately, and searched.

Opening a version never maps a file somebody else can change (indexing/store/integrity.py):
each segment is used from a private copy whose size and checksum matched the manifest,
small files are parsed from the very bytes that were hashed. What is served is
therefore exactly what was verified, whatever happens to the store afterwards, and
`recheck()` re-hashes both the private copies and the store's files (the server does
that periodically and on demand).

`LoadedIndex` holds the metadata once, with every per-id and per-event lookup
the server needs, and the search kernels. Exact searches (one event's
contiguous slice, a flat version) scan a float16 copy of the vectors and
re-score the candidates from float32 rows read from the private copy, exactly
(indexing/search/halfscan.py): searching never makes the float32 pages the process's;
HNSW and IVF-PQ searches go through FAISS.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.settings import Settings
from indexing.search.halfscan import (
    Block,
    ExactRows,
    HalfVectors,
    NotHalfable,
    batch_top_k,
    dot_rows,
    exact_top_k,
)
from indexing.search.halfscan import top_k as _top_k
from indexing.store.integrity import IndexCorrupt, PrivateCopy, check_file, file_identity, read_verified
from indexing.store.layout import (
    DELTA_FILE,
    INDEX_FILE,
    META_COLUMNS,
    META_DELTA_FILE,
    META_FILE,
    REMOVED_FILE,
    SIDECAR_FILES,
    VECTORS_FILE,
    IndexStore,
    Manifest,
    version_name,
)
from indexing.store.segments import flat_view

FLAT_SCAN_MAX_QUERIES = 8  # fewer queries: one SIMD scan each (no OpenMP); more: FAISS's BLAS path


# -- segments and kernels -----------------------------------------------------------------------
@dataclass
class _Segment:
    """One FAISS file of a version: the id-mapped index, its raw vectors and the float16 copy scanned."""

    index: Any
    ids: np.ndarray  # int64, row order
    vectors: np.ndarray  # (n, dim) float32, row order, read-only view (mapped): FAISS's own searches read it
    exact: ExactRows  # the same rows, read by pread (re-scoring, vector(), event_vectors())
    half: HalfVectors | None = None  # None: HNSW (FAISS reads the float32 storage anyway) or not float16-safe
    made_from: tuple[Any, ...] = ()  # what it was opened from and how (_segment): equal -> the same segment


def _open_faiss(copy: PrivateCopy, dim: int) -> Any:
    """Map the private copy (read it into memory where it cannot be mapped)."""
    import faiss

    try:
        index = faiss.read_index(copy.path, faiss.IO_FLAG_MMAP_IFC if copy.mappable else 0)
    except RuntimeError:
        if not copy.mappable:
            raise
        index = faiss.read_index(copy.path)  # types FAISS cannot map are read into memory
    if index.d != dim:
        raise IndexCorrupt(f"{copy.source}: has dim {index.d}, the manifest says {dim}")
    return index


def _segment(copy: PrivateCopy, dim: int, raw: PrivateCopy | None = None, *, half: bool = True) -> _Segment:
    """Open one segment; with `half`, also its float16 copy for exact scans (see indexing/search/halfscan.py)."""
    import faiss

    index = _open_faiss(copy, dim)
    if not hasattr(index, "id_map"):
        raise IndexCorrupt(f"{copy.source}: not an id-mapped index (IndexIDMap2)")
    ids = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    source = raw if raw is not None else copy
    if raw is not None:
        vectors = np.load(raw.path, mmap_mode="r" if raw.mappable else None)
    else:
        vectors = flat_view(index)
        if vectors is None:
            raise IndexCorrupt(f"{copy.source}: no raw vectors for exact search and no {VECTORS_FILE}")
    if vectors.shape != (len(ids), dim):
        raise IndexCorrupt(f"{copy.source}: {vectors.shape[0]} vectors for {len(ids)} ids")
    exact = ExactRows.of(vectors, source.fh if source.mappable else None)
    segment = _Segment(index, ids, vectors, exact, made_from=_made_from(copy, raw, half))
    if half:
        try:
            segment.half = HalfVectors(exact)
        except NotHalfable:
            segment.half = None  # scanned in float32 where it is mapped, as FAISS would
    return segment


def _made_from(copy: PrivateCopy, raw: PrivateCopy | None, half: bool) -> tuple[Any, ...]:
    """A segment's identity: the very private copies it reads (not their digests: one copy, one mapping)
    and whether it has a float16 copy."""
    return (id(copy), id(raw) if raw is not None else None, half)


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must have shape (n, {dim}), got {np.shape(queries)}")
    return np.ascontiguousarray(q)


# -- the loaded version -------------------------------------------------------------------------
class LoadedIndex:
    """One verified version, open read-only; the search primitives and lookups the server calls.

    Thread-safe for concurrent searches (nothing is mutated after load). Build it with
    `open_version`, which verifies every file while reading it.
    """

    def __init__(self, store: IndexStore, version: int, manifest: Manifest, tmp_dir: Path | None = None, *,
                 float16: bool = True, reuse: LoadedIndex | None = None) -> None:
        import pyarrow.parquet as pq

        self.store = store
        self.version = version
        self.manifest = manifest
        self.model_version: str = manifest.model_version
        self.dim = int(manifest.dim)
        self.index_type: str = manifest.index_type
        self.folder = store.version_dir(version)
        self._copies: list[PrivateCopy] = []  # every private copy this version reads (recheck() hashes them)
        self._own: list[PrivateCopy] = []  # ... of them the ones it made (close() closes only those)
        # A merge's unchanged base, already verified and opened by the version served: used as it is.
        self._reuse = reuse if reuse is not None and reuse.dim == self.dim and reuse.index_type == self.index_type \
            and reuse.manifest.params == manifest.params else None
        try:
            base = self._copy(INDEX_FILE, tmp_dir)
            raw = self._copy(VECTORS_FILE, tmp_dir) if manifest.has(VECTORS_FILE) else None
            self._base = self._open_segment(base, raw, half=float16 and self.index_type != "hnsw")
            self._delta = (self._open_segment(self._copy(DELTA_FILE, tmp_dir), None, half=float16)
                           if manifest.has(DELTA_FILE) else None)
            # Files the server reads later (precomputed duplicate relations): verified private copies too.
            self.sidecars = {f: self._copy(f, tmp_dir) for f in SIDECAR_FILES if manifest.has(f)}
            if manifest.has(REMOVED_FILE):
                removed = np.load(io.BytesIO(read_verified(self.folder / REMOVED_FILE, manifest)))
            else:
                removed = np.empty(0, np.int64)
            self._removed = removed.astype(np.int64, copy=False)
            self._configure(manifest.params)
            table = self._read_meta(pq)
        except BaseException:
            self.close()
            raise
        finally:
            self._reuse = None  # never a chain of every version served
        self.meta = table.select(list(META_COLUMNS)).to_pandas()
        self.ids: np.ndarray = self.meta["image_id"].to_numpy(dtype=np.int64)
        self.count = len(self.ids)
        if self.count != manifest.count:
            raise IndexCorrupt(f"{self.folder / META_FILE}: has {self.count} rows, the manifest says count "
                               f"{manifest.count}")
        self._segment_of = table.column("segment").to_numpy().astype(np.int8)
        self._row_of = table.column("row").to_numpy().astype(np.int64)
        del table
        self._check_rows()
        self._build_lookups()

    def _read_meta(self, pq: Any) -> Any:
        """The live meta rows as one Arrow table: the base meta (its removed rows masked out) then
        the delta meta, each parsed from the very bytes that were hashed."""
        import pyarrow as pa
        import pyarrow.compute as pc

        tables = []
        for fname in (META_FILE, META_DELTA_FILE):
            if fname != META_FILE and not self.manifest.has(fname):
                continue
            t = pq.read_table(io.BytesIO(read_verified(self.folder / fname, self.manifest)))
            missing = [c for c in (*META_COLUMNS, "segment", "row") if c not in t.column_names]
            if missing:
                raise IndexCorrupt(f"{self.folder / fname}: lacks columns {missing}")
            t = t.select([*META_COLUMNS, "segment", "row"])
            if fname == META_FILE and len(self._removed):
                masked = pc.and_(pc.equal(t.column("segment"), 0),
                                 pc.is_in(t.column("image_id"), value_set=pa.array(self._removed, pa.int64())))
                t = t.filter(pc.invert(masked))
            tables.append(t)
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def _copy(self, fname: str, tmp_dir: Path | None) -> PrivateCopy:
        """A verified private copy of the file: the one the version in `reuse` made of this very file (a hard
        link of it, unwritten since: same inode, size and mtime, and the same sha256 in both manifests; it
        was hashed then, and recheck() keeps hashing it and the file), else a new one, hashed as copied."""
        source = self.folder / fname
        if self._reuse is not None:
            try:
                here = file_identity(os.stat(source))
            except OSError:
                here = None  # missing: the new copy below says so
            sha256, size = self.manifest.sha256[fname], self.manifest.sizes.get(fname)
            held = next((c for c in self._reuse._copies if here is not None and c.origin == here
                         and c.sha256 == sha256 and c.size == size), None)
            if held is not None:
                self._copies.append(held)
                return held
        copy = PrivateCopy(source, self.manifest, tmp_dir)
        self._copies.append(copy)
        self._own.append(copy)
        return copy

    def _open_segment(self, copy: PrivateCopy, raw: PrivateCopy | None, *, half: bool) -> _Segment:
        """The segment `reuse` opened from these very copies (its mapping and float16 copy: nothing in a
        segment changes after load), else one opened now."""
        if self._reuse is not None:
            made_from = _made_from(copy, raw, half)
            for held in (self._reuse._base, self._reuse._delta):
                if held is not None and held.made_from == made_from:
                    return held
        return _segment(copy, self.dim, raw, half=half)

    @property
    def reused_bytes(self) -> int:
        """Bytes of private copies taken over from the version it replaced (not copied, not hashed again)."""
        return sum(c.size or 0 for c in self._copies if c not in self._own)

    def close(self) -> None:
        """Release the private copies this version made (their space is freed once unmapped too); those
        it shares with the version it replaced stay open for that one.

        Only for a version nobody searches any more (a failed load, a CLI check): a served version is
        simply dropped, and freed with its last request."""
        for copy in self._own:
            copy.close()

    def recheck(self) -> tuple[str | None, str | None]:
        """(problem with the served private copies, problem with the store's files), None when sound."""
        served = next((p for p in (c.intact() for c in self._copies) if p), None)
        try:
            self.store.check_files(self.version, self.manifest, checksums=True)
            on_disk = None
        except IndexCorrupt as exc:
            on_disk = str(exc)
        return served, on_disk

    # -- load-time structures -------------------------------------------------
    def _configure(self, params: dict[str, Any]) -> None:
        import faiss

        inner = faiss.downcast_index(self._base.index.index)
        if hasattr(inner, "hnsw") and params.get("ef_search"):
            inner.hnsw.efSearch = int(params["ef_search"])
        if hasattr(inner, "nprobe") and params.get("nprobe"):
            inner.nprobe = int(params["nprobe"])

    def _check_rows(self) -> None:
        """meta rows must point at the very ids the FAISS segments hold."""
        meta = self.folder / META_FILE
        for seg_no, seg in ((0, self._base), (1, self._delta)):
            mask = self._segment_of == seg_no
            if not mask.any():
                continue
            if seg is None:
                raise IndexCorrupt(f"{meta}: references a missing segment {seg_no}")
            rows = self._row_of[mask]
            if rows.min() < 0 or rows.max() >= len(seg.ids) or not np.array_equal(seg.ids[rows], self.ids[mask]):
                raise IndexCorrupt(f"{meta}: does not match the ids in the index files")
        expected_live = len(self._base.ids) - len(self._removed) + (len(self._delta.ids) if self._delta else 0)
        if expected_live != self.count:
            raise IndexCorrupt(f"{meta}: lists {self.count} rows, the index files hold {expected_live} live vectors")

    def _build_lookups(self) -> None:
        import pandas as pd

        self._id_order = np.argsort(self.ids, kind="stable")
        base_order = np.argsort(self._base.ids, kind="stable")
        self._base_sorted = (self._base.ids[base_order], base_order)  # image id -> base row (IVF-PQ re-rank)
        self._ids_sorted = self.ids[self._id_order]
        # Image codes are PostgreSQL uuid text (always lower case; lookups lower-case the query): held as
        # fixed-width bytes (36 per row) with their sort order, not as 100K Python str objects and a hash index.
        self._code_bytes = np.array([c.encode() if isinstance(c, str) else b""
                                     for c in self.meta["image_code"].to_numpy(dtype=object)], dtype="S")
        self._code_order = np.argsort(self._code_bytes, kind="stable")
        self._files = self.meta["filename"].to_numpy(dtype=object)
        codes, uniques = pd.factorize(self.meta["event_code"], sort=False)
        codes = codes.astype(np.int32)
        self._event_of_row = codes  # event number per meta row; its text is one shared str per event
        self._event_names = np.asarray([str(u) for u in uniques] + [""], dtype=object)  # [-1]: no event
        self._event_pos = {str(code): i for i, code in enumerate(uniques)}
        # Base rows: event number per row (-1 for rows masked out), and each event's [lo, hi) span.
        n_base = len(self._base.ids)
        self._base_event = np.full(n_base, -1, dtype=np.int32)
        base = self._segment_of == 0
        self._base_event[self._row_of[base]] = codes[base]
        dead = np.flatnonzero(self._base_event < 0)
        self._base_dead = dead if len(dead) else None  # removed rows of the base (masked in searches)
        self._base_live = (self._base_event >= 0) if len(dead) else None
        n_events = len(uniques)
        lo = np.full(n_events, np.iinfo(np.int64).max, dtype=np.int64)
        hi = np.full(n_events, -1, dtype=np.int64)
        cnt = np.zeros(n_events, dtype=np.int64)
        if base.any():
            np.minimum.at(lo, codes[base], self._row_of[base])
            np.maximum.at(hi, codes[base], self._row_of[base])
            np.add.at(cnt, codes[base], 1)
        self._base_span = np.stack([lo, hi + 1], axis=1)
        self._base_count = cnt
        # Delta rows (few) and per-event meta positions, grouped once.
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(n_events + 1))
        self._event_meta_pos = [order[bounds[i]:bounds[i + 1]] for i in range(n_events)]
        delta = self._segment_of == 1
        self._event_delta_rows: dict[int, np.ndarray] = {}
        if delta.any():
            for e in np.unique(codes[delta]):
                sel = delta & (codes == e)
                self._event_delta_rows[int(e)] = self._row_of[sel]

    # -- lookups --------------------------------------------------------------
    def _position(self, image_id: int) -> int | None:
        i = int(np.searchsorted(self._ids_sorted, image_id))
        if i < len(self._ids_sorted) and self._ids_sorted[i] == image_id:
            return int(self._id_order[i])
        return None

    def has(self, image_id: int) -> bool:
        return self._position(int(image_id)) is not None

    def id_for_code(self, code: str) -> int | None:
        """The image id of an image code (UUID text, any case), or None."""
        key = str(code).lower().encode()
        pos = -1
        if key and self.count and len(key) <= self._code_bytes.itemsize:
            i = int(np.searchsorted(self._code_bytes, key, sorter=self._code_order))
            if i < self.count and self._code_bytes[self._code_order[i]] == key:
                pos = int(self._code_order[i])
        return None if pos < 0 else int(self.ids[pos])

    def describe(self, image_id: int) -> dict[str, Any]:
        """id, code, filename and event of one image (None fields when it is not in this version)."""
        return self._describe(int(image_id), self._position(int(image_id)))

    def describe_many(self, image_ids: list[int]) -> list[dict[str, Any]]:
        """`describe` of several images at once (one vectorised id lookup: a search's hits)."""
        if not self.count:
            return [self._describe(int(i), None) for i in image_ids]
        wanted = np.asarray(image_ids, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._ids_sorted, wanted), self.count - 1)
        found = (self._ids_sorted[at] == wanted).tolist()
        return [self._describe(int(i), pos if ok else None)
                for i, ok, pos in zip(image_ids, found, self._id_order[at].tolist(), strict=True)]

    def _describe(self, image_id: int, pos: int | None) -> dict[str, Any]:
        if pos is None:
            return {"id": image_id, "code": None, "filename": None, "event_code": None}
        return {"id": image_id, "code": _text(self._code_bytes[pos].decode()), "filename": _text(self._files[pos]),
                "event_code": _text(self._event_names[self._event_of_row[pos]])}

    def vector(self, image_id: int) -> np.ndarray | None:
        """The stored vector of an image (a copy), or None when it is not in this version."""
        pos = self._position(int(image_id))
        if pos is None:
            return None
        seg = self._base if self._segment_of[pos] == 0 else self._delta
        assert seg is not None
        return seg.exact.take(np.array([self._row_of[pos]]))[0]

    def row(self, image_id: int) -> dict[str, Any] | None:
        """The meta row (image_id, image_code, event_code, filename) of an image, or None."""
        pos = self._position(int(image_id))
        return None if pos is None else self.meta.iloc[pos].to_dict()

    def events(self) -> list[str]:
        return list(self._event_pos)

    def has_event(self, event_code: str) -> bool:
        return str(event_code).lower() in self._event_pos

    def event_ids(self, event_code: str) -> np.ndarray:
        """Image ids of one event in this version (empty when the event has none)."""
        e = self._event_pos.get(str(event_code).lower())
        if e is None:
            return np.empty(0, dtype=np.int64)
        return self.ids[self._event_meta_pos[e]]

    def event_vectors(self, event_code: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of one event, vectors (m, dim) float32; empty arrays when none."""
        e = self._event_pos.get(str(event_code).lower())
        if e is None:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), dtype=np.float32)
        ids_parts, vec_parts = [], []
        for seg, lo, hi, keep, rows in self._event_blocks(e):  # read from the private copy, never mapped
            if rows is not None:
                ids_parts.append(seg.ids[rows])
                vec_parts.append(seg.exact.take(rows))
            elif keep is None:
                ids_parts.append(seg.ids[lo:hi])
                vec_parts.append(seg.exact.span(lo, hi))
            else:
                ids_parts.append(seg.ids[lo:hi][keep])
                vec_parts.append(seg.exact.span(lo, hi)[keep])
        return np.concatenate(ids_parts), np.ascontiguousarray(np.concatenate(vec_parts))

    def _event_blocks(self, e: int) -> list[tuple[_Segment, int, int, np.ndarray | None, np.ndarray | None]]:
        """Where an event's vectors are: (segment, lo, hi, keep-mask or None, gathered rows or None).

        Normally one contiguous base slice (masked where rows were removed) plus a few delta rows.
        """
        out: list[tuple[_Segment, int, int, np.ndarray | None, np.ndarray | None]] = []
        count = int(self._base_count[e])
        if count:
            lo, hi = (int(x) for x in self._base_span[e])
            if hi - lo == count:  # every row of the span is the event's (the usual case): nothing to mask
                out.append((self._base, lo, hi, None, None))
                count = 0
        if count:
            keep = self._base_event[lo:hi] == e
            if hi - lo <= 2 * count + 64:
                out.append((self._base, lo, hi, None if keep.all() else keep, None))
            else:  # scattered (an image moved between events after the base was built): gather
                out.append((self._base, lo, hi, None, lo + np.flatnonzero(keep)))
        rows = self._event_delta_rows.get(e)
        if rows is not None and self._delta is not None:
            out.append((self._delta, 0, 0, None, rows))
        return out

    # -- search ---------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product over the whole version. Returns (scores, ids), both (n, k);
        missing results are padded with id -1 and score -inf."""
        import faiss

        q = _as_queries(queries, self.dim)
        k = int(k)
        if k < 1:
            raise ValueError("k must be >= 1")
        n = q.shape[0]
        out_s = np.full((n, k), -np.inf, dtype=np.float32)
        out_i = np.full((n, k), -1, dtype=np.int64)
        if self.count == 0:
            return out_s, out_i
        blocks_s, blocks_i = [], []
        if len(self._base.ids) and self.index_type == "flat":
            s, i = self._flat_search(self._base, q, k, self._base_live)
            blocks_s.append(s)
            blocks_i.append(i)
        elif len(self._base.ids):
            params = None
            if len(self._removed):
                params = self._search_params(faiss.IDSelectorNot(faiss.IDSelectorBatch(self._removed)))
            rerank = int(self.manifest.params.get("rerank", 0)) if self.index_type == "ivfpq" else 0
            kb = min(k * max(rerank, 1), len(self._base.ids))
            s, i = self._base.index.search(q, kb, params=params)
            if rerank:
                s = self._rescore(q, i)
            blocks_s.append(s)
            blocks_i.append(i)
        if self._delta is not None and len(self._delta.ids):
            s, i = self._flat_search(self._delta, q, k, None)
            blocks_s.append(s)
            blocks_i.append(i)
        scores = np.concatenate(blocks_s, axis=1)
        ids = np.concatenate(blocks_i, axis=1)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        for r in range(n):
            s, i = _top_k(scores[r], ids[r], k)
            valid = i >= 0
            m = int(valid.sum())
            out_s[r, :m], out_i[r, :m] = s[valid], i[valid]
        return out_s, out_i

    def _flat_search(self, seg: _Segment, q: np.ndarray, k: int,
                     live: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of each query over a whole flat segment (rows where `live`, when given): (n, kb)
        scores and ids, padded with -inf / -1; masked rows never come back, even when k exceeds the live
        count. A few queries: the float16 scan + exact re-scoring; more: float32 chunks by pread + BLAS."""
        n, kb = q.shape[0], min(k, len(seg.ids))
        if n > FLAT_SCAN_MAX_QUERIES:
            return batch_top_k(q, seg.exact, seg.ids, kb, None if live is None else ~live)
        s = np.full((n, kb), -np.inf, dtype=np.float32)
        i = np.full((n, kb), -1, dtype=np.int64)
        for r in range(n):
            if seg.half is not None:
                got_s, got_i = exact_top_k(q[r], [Block(seg.half, seg.exact, seg.ids, 0, len(seg.ids), live)], kb)
            else:
                scores = dot_rows(seg.vectors, 0, len(seg.ids), q[r])
                if live is not None:
                    scores[~live] = -np.inf
                got_s, got_i = _top_k(scores, seg.ids, kb)
                got_i = np.where(np.isneginf(got_s), -1, got_i)
            s[r, :len(got_s)], i[r, :len(got_i)] = got_s, got_i
        return s, i

    def _rescore(self, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Exact inner products of IVF-PQ candidates from the raw vectors (a refine step, like IndexRefine)."""
        from indexing.search import ann

        sorted_ids, order = self._base_sorted
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(sorted_ids) - 1, 0))
        return ann.exact_scores(q, np.where(ids >= 0, order[pos], -1), self._base.exact)  # type: ignore[arg-type]

    def _search_params(self, sel: Any) -> Any:
        import faiss

        inner = faiss.downcast_index(self._base.index.index)
        if hasattr(inner, "hnsw"):
            return faiss.SearchParametersHNSW(sel=sel, efSearch=inner.hnsw.efSearch)
        if hasattr(inner, "nprobe"):
            return faiss.SearchParametersIVF(sel=sel, nprobe=inner.nprobe)
        return faiss.SearchParameters(sel=sel)

    def search_event(self, query: np.ndarray, event_code: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k within one event, reading only that event's vectors.

        Returns 1-D (scores, ids), descending, at most k long (empty for an unknown event)."""
        q = _as_queries(query, self.dim)
        if q.shape[0] != 1:
            raise ValueError("search_event takes one query vector")
        k = int(k)
        if k < 1:
            raise ValueError("k must be >= 1")
        e = self._event_pos.get(str(event_code).lower())
        if e is None:
            return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
        vec = q[0]
        blocks = self._event_blocks(e)
        if all(seg.half is not None for seg, *_ in blocks):
            return exact_top_k(vec, [_half_block(*b) for b in blocks], k)
        scores, ids = [], []
        for seg, lo, hi, keep, rows in blocks:
            if rows is not None:
                scores.append(np.asarray(seg.vectors[rows], dtype=np.float32) @ vec)
                ids.append(seg.ids[rows])
                continue
            block = dot_rows(seg.vectors, lo, hi, vec)
            block_ids = seg.ids[lo:hi]
            if keep is not None:
                block, block_ids = block[keep], block_ids[keep]
            scores.append(block)
            ids.append(block_ids)
        all_s = np.concatenate(scores) if len(scores) > 1 else scores[0]
        all_i = np.concatenate(ids) if len(ids) > 1 else ids[0]
        return _top_k(np.asarray(all_s, dtype=np.float32), all_i, k)

    def __repr__(self) -> str:
        return (f"LoadedIndex({self.model_version!r}, {version_name(self.version)}, {self.index_type}, "
                f"count={self.count}, dim={self.dim})")


def _half_block(seg: _Segment, lo: int, hi: int, keep: np.ndarray | None, rows: np.ndarray | None) -> Block:
    """One `_event_blocks` entry as a float16 scan block (gathered rows become a mask over their span)."""
    assert seg.half is not None
    if rows is not None:
        lo, hi = int(rows.min()), int(rows.max()) + 1
        keep = np.zeros(hi - lo, dtype=bool)
        keep[rows - lo] = True
        if keep.all():
            keep = None
    return Block(seg.half, seg.exact, seg.ids, lo, hi, keep)


def _text(value: Any) -> str | None:
    """A metadata cell as text; a missing one (None, pandas' NaN, "") is None: EMS rows may have no code."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return None
    return str(value)


def open_version(store: IndexStore, version: int, *, tmp_dir: Path | None = None,
                 float16: bool = True, reuse: LoadedIndex | None = None) -> LoadedIndex:
    """Read and verify one version of `store` (sizes and checksums of every file, shapes, ids).

    Raises IndexCorrupt with a one-line reason naming the file; a damaged version is never returned.
    `tmp_dir` is where the private copies go (default: beside the store). `float16=False` skips the
    float16 copies exact searches scan (a version opened only to be checked: searches then read float32).
    `reuse`: the version served now; files of the same content (a merge's base) are taken from its verified
    private copies, already opened, instead of copied and hashed again (what a swap costs is the change).
    """
    manifest = store.read_manifest(version)
    for fname in manifest.files:  # cheap first: a missing or truncated file fails before any copying
        check_file(store.version_dir(version) / fname, manifest.sha256[fname], manifest.sizes.get(fname),
                   checksums=False)
    try:
        return LoadedIndex(store, version, manifest, tmp_dir if tmp_dir is not None else store.root.parent,
                           float16=float16, reuse=reuse)
    except IndexCorrupt:
        raise
    except (RuntimeError, OSError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IndexCorrupt(f"{store.version_dir(version)}: cannot open ({first[:200]})") from None


def load_version(settings: Settings, model_version: str, version: int | None = None) -> LoadedIndex:
    """Open a version of the live store (CURRENT when None), verified; IndexCorrupt with the reason."""
    store = IndexStore(settings, model_version)
    if version is None:
        version = store.current_version()
        if version is None:
            raise IndexCorrupt(f"no published index for model {model_version!r} under {store.root}")
    return open_version(store, version)
