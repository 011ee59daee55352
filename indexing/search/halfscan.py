"""Exact top-k inner products from float16 copies of a segment's vectors (half the memory).

Why: searching the float32 vectors where they are memory-mapped (the verified
private copy, indexing/store/integrity.py) makes every page a search reads
resident, so once every event had been searched the server's RSS held the whole
float32 array (100K x 2048: +781 MB, bench/serve_memory.py). Here a segment is
held once more, as float16 in memory (`HalfVectors`, half the size, converted
from the verified float32 rows at load), and scanned with FAISS's SIMD
scalar-quantizer kernel. The best candidates are re-scored from float32 rows
read with pread from the private copy (`ExactRows`: never through a mapping, so
those pages do not become the process's), and an error bound proves that no
row left out can reach the k-th exact score; when it cannot, more candidates are
scanned for, up to the whole block. The answer (ids and float32 scores) is the
one a float32 scan with the same kernel (`dot_rows`) gives.

The bound, for a row v, its float16 copy h and a query q (u = 2^-24, float32's
unit roundoff, g = d*u / (1 - d*u)):
  float16 rounding (to nearest, |v_i| <= 65504):  ||v - h|| <= 2^-11 ||v|| + 2^-25 sqrt(d)
  a dot product computed in float32 (any summation order, FMA or not) is within g ||q|| ||x|| of the true one,
so |approx - exact| <= ||q|| * (2^-11 ||v|| + 2^-25 sqrt(d) + g (||v|| + ||h||)) <= ||q|| * bound.
A row outside a block's k' candidates has exact <= approx_k' + ||q|| * bound; when that is
below the k-th best exact score among the candidates, it cannot be in the top k.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

HALF_MAX = 65504.0  # largest finite float16
CHUNK_ROWS = 4096  # rows streamed at a time for batch searches: a few tens of MB
HALF_CHUNK_BYTES = 4 << 20  # float32 read and converted at a time when building a float16 copy (stays in cache)
_U = 2.0 ** -24


def dot_rows(vectors: np.ndarray, lo: int, hi: int, query: np.ndarray) -> np.ndarray:
    """Inner products of rows lo..hi of a C-contiguous float32 (n, d) array with one query.

    FAISS's SIMD kernel reads unaligned memory at full speed; numpy falls back to a slow
    loop on the (unaligned) memory-mapped flat storage of a FAISS file: 0.14 ms vs 12 ms for
    2,000 x 1280 on the benchmark machine.
    """
    import faiss

    n, d = int(hi) - int(lo), int(vectors.shape[1])
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


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k of one query's candidate scores, descending."""
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
        scores, ids = scores[part], ids[part]
    order = np.argsort(-scores, kind="stable")
    return scores[order].astype(np.float32, copy=False), ids[order].astype(np.int64, copy=False)


# -- float32 rows, read on demand ---------------------------------------------------------------
class ExactRows:
    """The float32 rows of one segment: read with pread from the private copy when `view` is a
    mapping of it (found in /proc/self/maps and checked), else taken from `view` (in memory)."""

    def __init__(self, view: np.ndarray, fh: BinaryIO | None = None, offset: int = 0) -> None:
        self.view = view
        self.n, self.d = int(view.shape[0]), int(view.shape[1])
        self.row_bytes = self.d * 4
        self._fh = fh
        self._offset = int(offset)

    @classmethod
    def of(cls, view: np.ndarray, fh: BinaryIO | None) -> ExactRows:
        if fh is None or view.size == 0 or view.dtype != np.float32 or not view.flags.c_contiguous:
            return cls(view)
        offset = _file_offset(view, fh.fileno())
        if offset is None:
            return cls(view)
        rows = cls(view, fh, offset)
        ends = np.array(sorted({0, rows.n - 1}), dtype=np.int64)
        if rows.take(ends).tobytes() != np.ascontiguousarray(view[ends]).tobytes():
            return cls(view)  # the mapping is not what we thought: read through it instead
        return rows

    @property
    def reads_file(self) -> bool:
        """Whether rows come from the file (pread) rather than through memory."""
        return self._fh is not None

    def span(self, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows lo..hi as a (hi - lo, d) float32 array: new, or the leading rows of `out` (reused buffer)."""
        lo, hi = int(lo), int(hi)
        m = max(hi - lo, 0)
        out = np.empty((m, self.d), dtype=np.float32) if out is None else out[:m]
        if self._fh is None:
            out[:] = self.view[lo:hi]
        elif m:
            self._read(memoryview(out).cast("B"), lo)
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (any order, repeats allowed) as a new (m, d) float32 array, in that order."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if self._fh is None or not len(rows):
            return np.array(self.view[rows], dtype=np.float32)
        if rows.min() < 0 or rows.max() >= self.n:
            raise IndexError(f"rows out of range 0..{self.n}")
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        buf = np.empty((len(rows), self.d), dtype=np.float32)
        view = memoryview(buf).cast("B")
        starts = np.flatnonzero(np.diff(ordered, prepend=-2) != 1)  # runs of consecutive rows: one pread each
        ends = np.append(starts[1:], len(ordered))
        rb = self.row_bytes
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            self._read(view[s * rb:e * rb], int(ordered[s]))
        if np.all(order[1:] > order[:-1]):
            return buf
        out = np.empty_like(buf)
        out[order] = buf
        return out

    def take_sorted(self, rows: list[int]) -> np.ndarray:
        """Rows given in ascending order (a short Python list: the per-search re-scoring) as (m, d) float32."""
        if self._fh is None:
            return np.array(self.view[rows], dtype=np.float32)
        if rows and (rows[0] < 0 or rows[-1] >= self.n):
            raise IndexError(f"rows out of range 0..{self.n}")
        buf = np.empty((len(rows), self.d), dtype=np.float32)
        if not rows:
            return buf
        view, rb = memoryview(buf).cast("B"), self.row_bytes
        start = 0
        for i in range(1, len(rows) + 1):
            if i == len(rows) or rows[i] != rows[i - 1] + 1:
                self._read(view[start * rb:i * rb], rows[start])
                start = i
        return buf

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            lo, hi, step = key.indices(self.n)
            if step == 1:
                return self.span(lo, hi)
            return self.take(np.arange(lo, hi, step))
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([int(key)]))[0]
        return self.take(np.asarray(key))

    def _read(self, out: memoryview, row: int) -> None:
        assert self._fh is not None
        fd, pos, done = self._fh.fileno(), self._offset + row * self.row_bytes, 0
        while done < len(out):
            got = os.preadv(fd, [out[done:]], pos + done)
            if got <= 0:
                raise OSError(f"short read of the served vectors at byte {pos + done}")
            done += got


def _file_offset(view: np.ndarray, fd: int) -> int | None:
    """Where in the file open as `fd` the memory of `view` comes from (a mapping of that file), or None."""
    addr = int(view.__array_interface__["data"][0])
    try:
        inode = os.fstat(fd).st_ino
        with open("/proc/self/maps") as fh:
            for line in fh:
                parts = line.split()
                lo_s, _, hi_s = parts[0].partition("-")
                lo, hi = int(lo_s, 16), int(hi_s, 16)
                if lo <= addr < hi:
                    if len(parts) < 5 or int(parts[4]) != inode or addr + view.nbytes > hi:
                        return None
                    return addr - lo + int(parts[2], 16)
    except (OSError, ValueError):
        return None
    return None


# -- float16 copies and their scan ------------------------------------------------------------
class NotHalfable(ValueError):
    """A segment holds values float16 cannot carry (non-finite, or beyond 65504): scan float32 instead."""


def _numpy_half(block: np.ndarray, out: np.ndarray) -> None:
    np.copyto(out, block, casting="same_kind")  # IEEE round to nearest even


def _opencv_half(block: np.ndarray, out: np.ndarray) -> None:
    import cv2

    cv2.convertFp16(block, out.view(np.int16))


def _to_half(block: np.ndarray, out: np.ndarray) -> None:
    """float32 -> float16, rounded to nearest. OpenCV's F16C conversion is ~40x faster than numpy's
    (0.1 vs 4-6 ns per value here: ~1 s of a 100K x 2048 load); used once it gave numpy's very bits."""
    global _HALF
    if _HALF is None:
        _HALF = _numpy_half
        try:
            probe = np.empty_like(out)
            _opencv_half(block, probe)
            _numpy_half(block, out)
            if np.array_equal(probe.view(np.uint16), out.view(np.uint16)):
                _HALF = _opencv_half
            return
        except (ImportError, AttributeError, TypeError, ValueError):
            pass
    try:
        _HALF(block, out)
    except Exception:  # cv2 refused this block (e.g. a shape it cannot take): numpy's result is the same
        _numpy_half(block, out)


_HALF: Any = None


class HalfVectors:
    """A segment's vectors as float16 (in memory: half the float32 size) and their error bound."""

    def __init__(self, exact: ExactRows) -> None:
        n, d = exact.n, exact.d
        self.n, self.d = n, d
        self.codes = np.empty((n, d), dtype=np.float16)
        max_norm = 0.0
        rows = max(1, HALF_CHUNK_BYTES // (d * 4))  # one cache-sized buffer, reused: no page faults
        buf = np.empty((min(rows, n), d), dtype=np.float32)
        for lo in range(0, n, rows):
            block = exact.span(lo, min(n, lo + rows), out=buf)
            top = max(float(block.max()), -float(block.min()))
            if not top <= HALF_MAX:  # also catches NaN
                raise NotHalfable(f"values up to {top} do not fit float16")
            max_norm = max(max_norm, float(np.sqrt(np.einsum("ij,ij->i", block, block).max())))
            _to_half(block, self.codes[lo:lo + len(block)])
        g = d * _U / (1 - d * _U)
        # max over rows of the bound above (||h|| <= ||v|| (1 + 2^-11) + 2^-25 sqrt(d)); 1% head-room for
        # the float32 arithmetic of the norms themselves.
        tiny = 2.0 ** -25 * np.sqrt(d)
        self.bound = 1.01 * (2.0 ** -11 * max_norm + tiny + g * (max_norm + max_norm * (1 + 2.0 ** -11) + tiny))

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes)

    def scan(self, query: np.ndarray, lo: int, hi: int, k: int,
             keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate best k of rows lo..hi (only those where `keep`, a bool mask over lo..hi):
        (scores, rows) descending, rows are segment rows. Fewer than k when fewer rows qualify."""
        import faiss

        lo, hi, k = int(lo), int(hi), int(k)
        m = hi - lo
        if m <= 0 or k <= 0:
            return np.empty(0, dtype=np.float32), np.empty(0, dtype=np.int64)
        q = np.ascontiguousarray(query, dtype=np.float32)
        dist = np.full(k, -np.inf, dtype=np.float32)
        labels = np.full(k, -1, dtype=np.int64)
        scanner = _scanners().get(self.d, None if keep is None else (m + 7) // 8)
        if keep is not None:
            bits = np.packbits(np.asarray(keep, dtype=bool), bitorder="little")
            scanner.bitmap[:len(bits)] = bits
        ids = _local_ids(m)
        codes = faiss.cast_integer_to_uint8_ptr(self.codes.ctypes.data + lo * self.d * 2)
        sc = scanner.scanner
        sc.set_query(faiss.swig_ptr(q))
        sc.set_list(0, 0.0)
        sc.scan_codes(m, codes, faiss.swig_ptr(ids), faiss.swig_ptr(dist), faiss.swig_ptr(labels), k)
        found = labels >= 0
        dist, labels = dist[found], labels[found] + lo
        order = np.lexsort((labels, -dist))
        return dist[order], labels[order]


@dataclass
class Block:
    """Rows lo..hi of one segment (only those where `keep`, when given) and the ids they carry."""

    half: HalfVectors
    exact: ExactRows
    ids: np.ndarray  # image id per segment row
    lo: int
    hi: int
    keep: np.ndarray | None = None

    def members(self) -> int:
        return int(self.hi - self.lo) if self.keep is None else int(np.count_nonzero(self.keep))


def exact_top_k(query: np.ndarray, blocks: list[Block], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (scores, ids) over the blocks, descending, at most k long; see the module doc.

    Each block gives its best k' rows by the float16 scan. Only the candidates that can still matter
    are re-scored (pread + the float32 kernel): the k best by approximate score, then those whose
    approximate score plus the bound reaches the k-th exact score found so far (usually a few). The
    candidate lists are short (k' ~ 2k), so they are handled as Python lists: numpy's per-call cost
    would be most of the time.
    """
    q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    q_norm = float(np.sqrt(np.dot(q.astype(np.float64), q.astype(np.float64))))
    want = 2 * k + 8
    while True:
        cands: list[tuple[float, float, int, int]] = []  # (approx, approx + bound, block, row)
        limits = []
        for n, b in enumerate(blocks):
            members = b.members()
            kb = min(want, members)
            approx, rows = b.half.scan(q, b.lo, b.hi, kb, b.keep)
            slack = q_norm * b.half.bound
            if kb < members:  # rows left out score at most this (exactly, as computed)
                limits.append(float(approx[-1]) + slack if len(approx) == kb else np.inf)
            cands += [(a, a + slack, n, r) for a, r in zip(approx.tolist(), rows.tolist(), strict=True)]
        cands.sort(key=lambda c: -c[0])
        exact = _rescore(q, blocks, cands[:k])
        if len(exact) >= k:
            kth = sorted(exact.values(), reverse=True)[k - 1]
            more = [c for c in cands[k:] if c[1] >= kth]
            if more:
                exact.update(_rescore(q, blocks, more))
        best = sorted(exact.items(), key=lambda item: -item[1])[:k]  # stable: exact ties keep scan order
        kth = best[k - 1][1] if len(best) >= k else -np.inf
        if all(limit < kth for limit in limits):
            return (np.array([s for _, s in best], dtype=np.float32),
                    np.array([blocks[n].ids[r] for (n, r), _ in best], dtype=np.int64))
        want *= 4


def _rescore(q: np.ndarray, blocks: list[Block],
             cands: list[tuple[float, float, int, int]]) -> dict[tuple[int, int], float]:
    """Exact float32 scores of candidates, keyed (block, row): their rows read in file order, one pread
    per run of consecutive rows, then the float32 kernel."""
    by_block: dict[int, list[int]] = {}
    for c in cands:
        by_block.setdefault(c[2], []).append(c[3])
    out: dict[tuple[int, int], float] = {}
    for n, rows in by_block.items():
        rows.sort()
        vectors = blocks[n].exact.take_sorted(rows)
        for r, s in zip(rows, dot_rows(vectors, 0, len(rows), q).tolist(), strict=True):
            out[(n, r)] = s
    return out


# -- per-thread FAISS scanners --------------------------------------------------------------
@dataclass
class _Scanner:
    scanner: Any
    selector: Any = None
    bitmap: np.ndarray | None = None


_QUANTIZERS: dict[int, Any] = {}  # one fp16 ScalarQuantizer per dimension, kept for the scanners made from it
_QUANTIZERS_LOCK = threading.Lock()
_THREAD = threading.local()
_IDS = np.arange(0, dtype=np.int64)
_IDS_LOCK = threading.Lock()


class _ThreadScanners:
    """A thread's scanners, reused: FAISS's Python binding cannot free an InvertedListScanner, so making
    one per search would leak; a masked scanner owns a bitmap selector whose bytes each scan rewrites."""

    def __init__(self) -> None:
        self.plain: dict[int, _Scanner] = {}
        self.masked: dict[int, _Scanner] = {}

    def get(self, d: int, bitmap_bytes: int | None) -> _Scanner:
        import faiss

        with _QUANTIZERS_LOCK:
            sq = _QUANTIZERS.get(d)
            if sq is None:
                sq = _QUANTIZERS[d] = faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16)
        if bitmap_bytes is None:
            got = self.plain.get(d)
            if got is None:
                got = self.plain[d] = _Scanner(
                    sq.select_InvertedListScanner(faiss.METRIC_INNER_PRODUCT, None, False, None, False))
            return got
        got = self.masked.get(d)
        if got is None or got.bitmap is None or len(got.bitmap) < bitmap_bytes:
            size = max(bitmap_bytes, 2 * len(got.bitmap) if got is not None and got.bitmap is not None else 0, 1024)
            bitmap = np.zeros(size, dtype=np.uint8)
            selector = faiss.IDSelectorBitmap(size, faiss.swig_ptr(bitmap))
            got = self.masked[d] = _Scanner(
                sq.select_InvertedListScanner(faiss.METRIC_INNER_PRODUCT, None, False, selector, False),
                selector, bitmap)
        return got


def _scanners() -> _ThreadScanners:
    got = getattr(_THREAD, "scanners", None)
    if got is None:
        got = _THREAD.scanners = _ThreadScanners()
    return got


def _local_ids(m: int) -> np.ndarray:
    """0..m-1 as int64 (shared, grown when needed; FAISS labels scanned rows with them)."""
    global _IDS
    ids = _IDS
    if len(ids) >= m:
        return ids
    with _IDS_LOCK:
        if len(_IDS) < m:
            _IDS = np.arange(max(m, 2 * len(_IDS)), dtype=np.int64)
        return _IDS


def batch_top_k(queries: np.ndarray, exact: ExactRows, ids: np.ndarray, k: int,
                dead: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of many queries over a whole segment, streaming its float32 rows by pread in chunks
    (BLAS per chunk, as FAISS's batch path): (scores, ids), each (nq, k), padded with -inf / -1."""
    nq = queries.shape[0]
    best_s = np.full((nq, k), -np.inf, dtype=np.float32)
    best_i = np.full((nq, k), -1, dtype=np.int64)
    for lo in range(0, exact.n, CHUNK_ROWS):
        hi = min(exact.n, lo + CHUNK_ROWS)
        s = queries @ exact.span(lo, hi).T
        if dead is not None:
            s[:, dead[lo:hi]] = -np.inf
        cand_s = np.concatenate([best_s, s], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(ids[lo:hi], s.shape)], axis=1)
        part = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, part, axis=1)
        best_i = np.take_along_axis(cand_i, part, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    best_s, best_i = np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)
    best_i[np.isneginf(best_s)] = -1
    return best_s.astype(np.float32, copy=False), best_i
