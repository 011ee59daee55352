"""Exact re-ranking of ANN candidates from the raw float32 vectors.

An ANN index over compressed codes (8-bit scalar quantisation, PQ) finds the
neighbourhood cheaply but orders it approximately; fetching r*k candidates and
re-scoring them with the raw vectors (memory-mapped: only the candidates' rows
are read) gives exact scores and most of the lost recall back, as FAISS's
IndexRefine does. bench/ann_curve.py measures it; indexing/build/choice.py holds the
chosen `rerank` factor.
"""

from __future__ import annotations

import numpy as np


def exact_scores(queries: np.ndarray, rows: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Inner products of each query (nq, d) with its candidate rows (nq, c) of `vectors` (n, d).

    Rows < 0 (no candidate) score -inf. Only the candidates' rows are read.
    """
    out = np.full(rows.shape, -np.inf, dtype=np.float32)
    for r in range(rows.shape[0]):
        valid = rows[r] >= 0
        if valid.any():
            picked = rows[r][valid]
            order = np.argsort(picked, kind="stable")  # read the mapped file forwards
            block = np.asarray(vectors[picked[order]], dtype=np.float32)
            scores = np.empty(len(picked), dtype=np.float32)
            scores[order] = block @ np.asarray(queries[r], dtype=np.float32)
            out[r, valid] = scores
    return out


def rerank(queries: np.ndarray, rows: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of each query among its candidate rows: (scores, rows), each (nq, k), best first.

    Missing results are padded with row -1 and score -inf.
    """
    scores = exact_scores(queries, rows, vectors)
    nq = rows.shape[0]
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_r = np.full((nq, k), -1, dtype=np.int64)
    for r in range(nq):
        kk = min(k, rows.shape[1])
        top = np.argsort(-scores[r], kind="stable")[:kk]
        keep = np.isfinite(scores[r][top])
        m = int(keep.sum())
        out_s[r, :m], out_r[r, :m] = scores[r][top][keep], rows[r][top][keep]
    return out_s, out_r


def one_thread_per_query() -> None:
    """Let FAISS answer each search on one OpenMP thread (a server process: one query per request).

    With several threads, a single query pays for waking and spinning the others: on 2 shared cores
    HNSW top-10 (efSearch 512, 100K) measured p50 9.6 ms with 2 threads vs 1.2 ms with one. Requests
    still run in parallel (each in its own thread); builds run in other processes with every core.
    """
    import faiss

    faiss.omp_set_num_threads(1)
