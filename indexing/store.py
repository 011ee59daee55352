"""The versioned index store on disk, and read-only loading for servers.

Layout (DESIGN.md): `DATA_DIR/indexes/<model_version>/v000042/` holds
`index.faiss`, `meta.parquet`, `manifest.json`; `CURRENT` beside the version
folders names the served version. A version folder only ever appears by an
atomic rename of a fully written temp folder, and `CURRENT` is replaced by an
atomic rename, so a reader sees a whole version or none.

A version is made of segments so that a merge costs what changed, not the
total: `index.faiss` is the base (exact, HNSW or IVF-PQ, rows sorted by
event_code at rebuild; a merge hard-links the parent's unchanged base),
`delta.faiss` holds vectors added since the base (exact), `removed.npy` the
base ids masked out (deleted or re-embedded). `meta.parquet` lists the live
rows with their segment and row, which gives each event a contiguous slice of
the base's flat storage: an exact per-event search reads only that slice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.settings import Settings

INDEX_FILE = "index.faiss"
DELTA_FILE = "delta.faiss"
REMOVED_FILE = "removed.npy"
VECTORS_FILE = "vectors.npy"  # raw base vectors, only for IVF-PQ bases (exact per-event search)
META_FILE = "meta.parquet"
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
MANIFEST_FORMAT = 1
FLAT_SCAN_MAX_QUERIES = 8  # fewer queries: one SIMD scan each (no OpenMP); more: FAISS's BLAS path
META_COLUMNS = ("image_id", "image_code", "event_code", "filename")
_VERSION_RE = re.compile(r"^v(\d{6,})$")
_SAFE_MODEL_RE = re.compile(r"[^A-Za-z0-9._@+-]")  # as embeddings.dataset.safe_model_version


class IndexCorrupt(RuntimeError):
    """A version cannot be trusted (missing, half-written, checksum mismatch); never serve it."""


def version_name(version: int) -> str:
    """Folder name of a version: v000042."""
    return f"v{int(version):06d}"


def parse_version(text: str) -> int:
    """'v000042', 'v42' or '42' -> 42; ValueError with a clear message otherwise."""
    raw = str(text).strip()
    digits = raw[1:] if raw[:1] in ("v", "V") else raw
    if not digits.isdigit() or int(digits) < 1:
        raise ValueError(f"not a version: {text!r} (expected vN, e.g. v3 or v000003)")
    return int(digits)


def model_dir_name(model_version: str) -> str:
    """A model version as a single safe path component (model versions may contain '/')."""
    if not model_version or not model_version.strip():
        raise ValueError("model_version is empty")
    return _SAFE_MODEL_RE.sub("_", model_version.strip())


def sha256_file(path: Path, chunk: int = 16 << 20) -> str:
    """Hex sha256 of a file, read in large chunks (hashlib releases the GIL on them)."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write a small file under a temp name, fsync, then rename over the target."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class IndexStore:
    """The versions of one model's index: listing, CURRENT, manifests. Never loads vectors."""

    def __init__(self, settings: Settings, model_version: str) -> None:
        self.settings = settings
        self.model_version = model_version
        self.root = settings.indexes_dir / model_dir_name(model_version)

    def version_dir(self, version: int) -> Path:
        return self.root / version_name(version)

    def versions(self) -> list[int]:
        """Complete versions on disk, ascending (temp folders of builds in progress are not listed)."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            match = _VERSION_RE.match(entry.name)
            if match and entry.is_dir():
                found.append(int(match.group(1)))
        return sorted(found)

    def current_version(self) -> int | None:
        """The version CURRENT names, or None when nothing was published yet."""
        path = self.root / CURRENT_FILE
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        try:
            return parse_version(text)
        except ValueError:
            raise IndexCorrupt(f"{path} does not name a version (contains {text[:40]!r})") from None

    def set_current(self, version: int) -> None:
        """Point CURRENT at a version by an atomic rename."""
        if not self.version_dir(version).is_dir():
            raise IndexCorrupt(f"cannot make {version_name(version)} current: {self.version_dir(version)} missing")
        write_atomic(self.root / CURRENT_FILE, (version_name(version) + "\n").encode())

    def read_manifest(self, version: int) -> dict[str, Any]:
        """The parsed manifest of a version, or IndexCorrupt saying why it cannot be read."""
        path = self.version_dir(version) / MANIFEST_FILE
        if not self.version_dir(version).is_dir():
            raise IndexCorrupt(f"{version_name(version)} of {self.model_version} does not exist ({path.parent})")
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise IndexCorrupt(f"{version_name(version)}: {MANIFEST_FILE} missing") from None
        except (OSError, ValueError) as exc:
            raise IndexCorrupt(f"{version_name(version)}: {MANIFEST_FILE} unreadable ({exc})") from None
        if not isinstance(manifest, dict):
            raise IndexCorrupt(f"{version_name(version)}: {MANIFEST_FILE} is not a JSON object")
        return manifest

    def check_manifest(self, version: int, manifest: dict[str, Any], *, checksums: bool = True) -> None:
        """Fields present and consistent, every listed file there with its size and sha256."""
        name = version_name(version)
        for key in ("version", "model_version", "dim", "index_type", "count", "sha256"):
            if key not in manifest:
                raise IndexCorrupt(f"{name}: manifest lacks {key!r}")
        if manifest["version"] != version:
            raise IndexCorrupt(f"{name}: manifest says version {manifest['version']}")
        if manifest["model_version"] != self.model_version:
            raise IndexCorrupt(
                f"{name}: manifest is for model {manifest['model_version']!r}, not {self.model_version!r}"
            )
        files: dict[str, str] = manifest["sha256"]
        for required in (INDEX_FILE, META_FILE):
            if required not in files:
                raise IndexCorrupt(f"{name}: manifest has no checksum for {required}")
        sizes: dict[str, int] = manifest.get("bytes", {})
        folder = self.version_dir(version)
        for fname, expected in files.items():
            path = folder / fname
            if not path.is_file():
                raise IndexCorrupt(f"{name}: {fname} missing")
            if fname in sizes and path.stat().st_size != sizes[fname]:
                raise IndexCorrupt(
                    f"{name}: {fname} is {path.stat().st_size} bytes, manifest says {sizes[fname]} (truncated?)"
                )
            if checksums and sha256_file(path) != expected:
                raise IndexCorrupt(f"{name}: {fname} checksum mismatch (file changed or corrupt)")


@dataclass
class _Segment:
    """One FAISS file of a version: the id-mapped index and a read-only view of its raw vectors."""

    index: Any
    ids: np.ndarray  # int64, row order
    vectors: np.ndarray  # (n, dim) float32, row order, read-only view (memory-mapped where possible)


def _open_faiss(path: Path, dim: int, *, mmap: bool = True) -> Any:
    import faiss

    flags = faiss.IO_FLAG_MMAP_IFC if mmap else 0
    try:
        index = faiss.read_index(str(path), flags)
    except RuntimeError:
        if not mmap:
            raise
        index = faiss.read_index(str(path))  # types FAISS cannot map are read into memory
    if index.d != dim:
        raise IndexCorrupt(f"{path.name} has dim {index.d}, manifest says {dim}")
    return index


def flat_view(index: Any) -> np.ndarray | None:
    """A zero-copy (n, d) float32 view of the raw vectors of a flat or HNSW-flat index (IDMap unwrapped)."""
    import faiss

    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else faiss.downcast_index(index)
    if hasattr(inner, "storage"):  # HNSW keeps its vectors in a flat storage index
        inner = faiss.downcast_index(inner.storage)
    if not isinstance(inner, faiss.IndexFlat):
        return None
    n, d = inner.ntotal, inner.d
    if n == 0:
        return np.empty((0, d), dtype=np.float32)
    view = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)
    view.flags.writeable = False
    return view


def _segment(path: Path, dim: int, raw_path: Path | None = None) -> _Segment:
    import faiss

    index = _open_faiss(path, dim)
    ids = faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)
    if raw_path is not None:
        vectors = np.load(raw_path, mmap_mode="r")
    else:
        vectors = flat_view(index)
        if vectors is None:
            raise IndexCorrupt(f"{path.name}: no raw vectors for exact search and no {VECTORS_FILE}")
    if vectors.shape != (len(ids), dim):
        raise IndexCorrupt(f"{path.name}: {vectors.shape[0]} vectors for {len(ids)} ids")
    return _Segment(index, ids, vectors)


def dot_rows(vectors: np.ndarray, lo: int, hi: int, query: np.ndarray) -> np.ndarray:
    """Inner products of rows lo..hi of a C-contiguous float32 (n, d) array with one query.

    FAISS's SIMD kernel reads unaligned memory at full speed; numpy falls back to a slow
    loop on the (unaligned) memory-mapped flat storage of a FAISS file: 0.14 ms vs 12 ms for
    2,000 x 1280 on the benchmark machine.
    """
    import faiss

    n, d = hi - lo, vectors.shape[1]
    out = np.empty(n, dtype=np.float32)
    if n <= 0:
        return out
    if not vectors.flags.c_contiguous or vectors.dtype != np.float32:
        return np.asarray(vectors[lo:hi], dtype=np.float32) @ query
    q = np.ascontiguousarray(query, dtype=np.float32)
    addr = vectors.__array_interface__["data"][0] + int(lo) * d * 4
    faiss.fvec_inner_products_ny(faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.cast_integer_to_float_ptr(addr),
                                 d, n)
    return out


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must have shape (n, {dim}), got {np.shape(queries)}")
    return np.ascontiguousarray(q)


def _top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k of one query's candidate scores, descending."""
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        scores, ids = scores[part], ids[part]
    order = np.argsort(-scores, kind="stable")
    return scores[order].astype(np.float32, copy=False), ids[order].astype(np.int64, copy=False)


class LoadedIndex:
    """One verified version, open read-only; the search primitives the server calls.

    Thread-safe for concurrent searches (nothing is mutated after load).
    """

    def __init__(self, store: IndexStore, version: int, manifest: dict[str, Any]) -> None:
        import pyarrow.parquet as pq

        self.store = store
        self.version = version
        self.model_version: str = manifest["model_version"]
        self.manifest = manifest
        self.dim = int(manifest["dim"])
        self.index_type: str = manifest["index_type"]
        folder = store.version_dir(version)
        files = manifest["sha256"]
        raw = folder / VECTORS_FILE if VECTORS_FILE in files else None
        self._base = _segment(folder / INDEX_FILE, self.dim, raw)
        self._delta = _segment(folder / DELTA_FILE, self.dim) if DELTA_FILE in files else None
        removed = np.load(folder / REMOVED_FILE) if REMOVED_FILE in files else np.empty(0, np.int64)
        self._removed = removed.astype(np.int64, copy=False)
        self._configure(manifest.get("params", {}))

        table = pq.read_table(folder / META_FILE)
        missing = [c for c in (*META_COLUMNS, "segment", "row") if c not in table.column_names]
        if missing:
            raise IndexCorrupt(f"{version_name(version)}: {META_FILE} lacks columns {missing}")
        self.meta = table.select(list(META_COLUMNS)).to_pandas()
        self.ids: np.ndarray = self.meta["image_id"].to_numpy(dtype=np.int64)
        self.count = len(self.ids)
        if self.count != int(manifest["count"]):
            raise IndexCorrupt(f"{version_name(version)}: {META_FILE} has {self.count} rows, manifest says count "
                               f"{manifest['count']}")
        self._segment_of = table.column("segment").to_numpy().astype(np.int8)
        self._row_of = table.column("row").to_numpy().astype(np.int64)
        self._check_rows()
        self._build_lookups()

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
        name = version_name(self.version)
        for seg_no, seg in ((0, self._base), (1, self._delta)):
            mask = self._segment_of == seg_no
            if not mask.any():
                continue
            if seg is None:
                raise IndexCorrupt(f"{name}: {META_FILE} references a missing segment {seg_no}")
            rows = self._row_of[mask]
            if rows.min() < 0 or rows.max() >= len(seg.ids) or not np.array_equal(seg.ids[rows], self.ids[mask]):
                raise IndexCorrupt(f"{name}: {META_FILE} does not match the ids in the index files")
        expected_live = len(self._base.ids) - len(self._removed) + (len(self._delta.ids) if self._delta else 0)
        if expected_live != self.count:
            raise IndexCorrupt(f"{name}: index files hold {expected_live} live vectors, {META_FILE} {self.count}")

    def _build_lookups(self) -> None:
        import pandas as pd

        self._id_order = np.argsort(self.ids, kind="stable")
        base_order = np.argsort(self._base.ids, kind="stable")
        self._base_sorted = (self._base.ids[base_order], base_order)  # image id -> base row (IVF-PQ re-rank)
        self._ids_sorted = self.ids[self._id_order]
        codes, uniques = pd.factorize(self.meta["event_code"], sort=False)
        codes = codes.astype(np.int32)
        self._event_pos = {str(code): i for i, code in enumerate(uniques)}
        # Base rows: event number per row (-1 for rows masked out), and each event's [lo, hi) span.
        n_base = len(self._base.ids)
        self._base_event = np.full(n_base, -1, dtype=np.int32)
        base = self._segment_of == 0
        self._base_event[self._row_of[base]] = codes[base]
        dead = np.flatnonzero(self._base_event < 0)
        self._base_dead = dead if len(dead) else None  # removed rows of the base (masked in searches)
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

    def vector(self, image_id: int) -> np.ndarray | None:
        """The stored vector of an image (a copy), or None when it is not in this version."""
        pos = self._position(int(image_id))
        if pos is None:
            return None
        seg = self._base if self._segment_of[pos] == 0 else self._delta
        assert seg is not None
        return np.array(seg.vectors[self._row_of[pos]], dtype=np.float32)

    def row(self, image_id: int) -> dict[str, Any] | None:
        """The meta row (image_id, image_code, event_code, filename) of an image, or None."""
        pos = self._position(int(image_id))
        return None if pos is None else self.meta.iloc[pos].to_dict()

    def events(self) -> list[str]:
        return list(self._event_pos)

    def event_ids(self, event_code: str) -> np.ndarray:
        """Image ids of one event in this version (empty when the event has none)."""
        e = self._event_pos.get(str(event_code))
        if e is None:
            return np.empty(0, dtype=np.int64)
        return self.ids[self._event_meta_pos[e]]

    def event_vectors(self, event_code: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of one event, vectors (m, dim) float32; empty arrays when none."""
        e = self._event_pos.get(str(event_code))
        if e is None:
            return np.empty(0, dtype=np.int64), np.empty((0, self.dim), dtype=np.float32)
        ids_parts, vec_parts = [], []
        for seg_ids, seg_vecs in self._event_slices(e):
            ids_parts.append(seg_ids)
            vec_parts.append(np.asarray(seg_vecs, dtype=np.float32))
        return np.concatenate(ids_parts), np.ascontiguousarray(np.concatenate(vec_parts))

    def _event_slices(self, e: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The (ids, vectors) blocks of an event (vectors may be views of the mapped files)."""
        out = []
        for seg, lo, hi, keep, rows in self._event_blocks(e):
            if rows is not None:
                out.append((seg.ids[rows], seg.vectors[rows]))
            elif keep is None:
                out.append((seg.ids[lo:hi], seg.vectors[lo:hi]))
            else:
                out.append((seg.ids[lo:hi][keep], seg.vectors[lo:hi][keep]))
        return out

    def _event_blocks(self, e: int) -> list[tuple[_Segment, int, int, np.ndarray | None, np.ndarray | None]]:
        """Where an event's vectors are: (segment, lo, hi, keep-mask or None, gathered rows or None).

        Normally one contiguous base slice (masked where rows were removed) plus a few delta rows.
        """
        out: list[tuple[_Segment, int, int, np.ndarray | None, np.ndarray | None]] = []
        if self._base_count[e]:
            lo, hi = (int(x) for x in self._base_span[e])
            keep = self._base_event[lo:hi] == e
            if hi - lo <= 2 * self._base_count[e] + 64:
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
        if len(self._base.ids) and self.index_type == "flat" and n <= FLAT_SCAN_MAX_QUERIES:
            kb = min(k, len(self._base.ids))
            s = np.empty((n, kb), dtype=np.float32)
            i = np.empty((n, kb), dtype=np.int64)
            for r in range(n):
                scores = dot_rows(self._base.vectors, 0, len(self._base.ids), q[r])
                if self._base_dead is not None:
                    scores[self._base_dead] = -np.inf
                s[r], i[r] = _top_k(scores, self._base.ids, kb)
                i[r][np.isneginf(s[r])] = -1  # masked rows never come back, even when k exceeds the live count
            blocks_s.append(s)
            blocks_i.append(i)
        elif len(self._base.ids):
            params = None
            if len(self._removed):
                params = self._search_params(faiss.IDSelectorNot(faiss.IDSelectorBatch(self._removed)))
            rerank = int(self.manifest.get("params", {}).get("rerank", 0)) if self.index_type == "ivfpq" else 0
            kb = min(k * max(rerank, 1), len(self._base.ids))
            s, i = self._base.index.search(q, kb, params=params)
            if rerank:
                s = self._rescore(q, i)
            blocks_s.append(s)
            blocks_i.append(i)
        if self._delta is not None and len(self._delta.ids):
            kd = min(k, len(self._delta.ids))
            s, i = self._delta.index.search(q, kd)
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

    def _rescore(self, q: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Exact inner products of IVF-PQ candidates from the raw vectors (a refine step, like IndexRefine)."""
        from indexing import ann

        sorted_ids, order = self._base_sorted
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(sorted_ids) - 1, 0))
        return ann.exact_scores(q, np.where(ids >= 0, order[pos], -1), self._base.vectors)

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
        e = self._event_pos.get(str(event_code))
        if e is None:
            return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
        vec = q[0]
        scores, ids = [], []
        for seg, lo, hi, keep, rows in self._event_blocks(e):
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


def load_version(
    settings: Settings, model_version: str, version: int | None = None, *, verify_checksums: bool = True
) -> LoadedIndex:
    """Open a version (CURRENT when None) read-only after checking its manifest and checksums.

    Raises IndexCorrupt with the reason; a half-written or damaged version is never returned.
    """
    store = IndexStore(settings, model_version)
    if version is None:
        version = store.current_version()
        if version is None:
            raise IndexCorrupt(f"no published index for model {model_version!r} under {store.root}")
    manifest = store.read_manifest(version)
    store.check_manifest(version, manifest, checksums=verify_checksums)
    try:
        return LoadedIndex(store, version, manifest)
    except IndexCorrupt:
        raise
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IndexCorrupt(f"{version_name(version)}: cannot open ({first})") from None
