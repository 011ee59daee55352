"""ANN recall/latency curve: which global index, with which parameters (indexing/build/choice.py uses the result).

On N vectors that look like real embeddings (bench/index_data.py: the shared photos
embedded with efficientnet-lite0, mixed and jittered), one query at a time as the
server sends them, against exact search (IndexFlatIP) measured in the same run:
  hnsw-flat  M, efConstruction built once; efSearch swept; optional over-fetch (r*k candidates)
  hnsw-sq8   the graph over 8-bit codes (a quarter of the memory), r*k candidates re-ranked exactly
             from the raw float32 vectors (indexing/search/ann.py, what LoadedIndex does)
  ivf-flat   nlist built once; nprobe swept
  ivf-pq     indexing/build/choice.py's IVF-PQ (nlist, m sub-quantizers of 8 bits), nprobe swept, r*k candidates
             re-ranked exactly from the raw vectors (the codes are ~1/20 of the memory)
Each row: p50/p99 ms of top-10, recall@10 vs exact, the index's memory (its serialized size),
build seconds, and whether it meets the goal (recall@10 >= 0.98 at p50 <= 2 ms).
Usage:
  .venv/bin/python bench/ann_curve.py [--n 100000] [--queries 200] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.index_data import anchors, jittered, percentiles
from indexing.search.ann import rerank

K = 10
GOAL_RECALL, GOAL_P50_MS = 0.98, 2.0


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / K for f, t in zip(found, truth, strict=True)]))


def timed(search, queries: np.ndarray) -> tuple[np.ndarray, float, float]:  # type: ignore[no-untyped-def]
    """Top-10 ids of each query (one at a time) and the (p50, p99) latency in ms.

    One thread, as a server worker per request: on a shared machine, OpenMP threads waiting on a single
    query only add noise (an exact scan measured 588 ms p50 with 2 threads). Builds keep every thread.
    """
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return _timed(search, queries)
    finally:
        faiss.omp_set_num_threads(threads)


def _timed(search, queries: np.ndarray) -> tuple[np.ndarray, float, float]:  # type: ignore[no-untyped-def]
    for q in queries[:5]:
        search(q[None, :])
    out, times = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(search(q[None, :])[0])
        times.append(time.perf_counter() - t)
    p50, p99 = percentiles(times)
    return np.stack(out), p50, p99


def index_mb(index) -> float:  # type: ignore[no-untyped-def]
    import faiss

    return faiss.serialize_index(index).nbytes / 2**20


def row(name: str, params: str, found: np.ndarray, truth: np.ndarray, p50: float, p99: float, exact_p50: float,
        mb: float, build_s: float) -> None:
    r = recall(found, truth)
    ok = r >= GOAL_RECALL and p50 <= GOAL_P50_MS
    print(f"  {name:9s} {params:28s} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  recall@10 {r:.3f}  "
          f"x{exact_p50 / p50:6.1f} vs exact  {mb:7.0f} MB  build {build_s:6.1f} s  {'GOAL' if ok else ''}",
          flush=True)


def main() -> int:
    import faiss

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--sigma", type=float, default=0.35)
    ap.add_argument("--quick", action="store_true", help="20K vectors, fewer settings")
    ap.add_argument("--only", default="hnsw-flat,hnsw-sq8,ivf-flat,ivf-pq", help="index families to measure")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.n
    base, desc = anchors()
    x = jittered(base, n, seed=1000)
    q = jittered(base, args.queries, seed=7)
    d = x.shape[1]
    print(f"ANN curve: N={n:,} dim={d}, {len(q)} queries one at a time, top-{K}; anchors = {desc}; "
          f"cpus {os.cpu_count()}, 1 faiss thread per query")

    exact = faiss.IndexFlatIP(d)
    exact.add(x)
    _, truth = exact.search(q, K)
    ex_found, ex50, ex99 = timed(lambda v: exact.search(v, K)[1], q)
    row("exact", "IndexFlatIP", ex_found, truth, ex50, ex99, ex50, index_mb(exact), 0.0)

    only = {f.strip() for f in args.only.split(",")}
    ms = () if "hnsw-flat" not in only else (32,) if args.quick else (16, 32)
    efs = (64, 128, 256) if args.quick else (64, 128, 256, 512)
    for m in ms:
        for efc in ((40,) if args.quick else (40, 200)):
            t = time.perf_counter()
            hnsw = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = efc
            hnsw.add(x)
            build = time.perf_counter() - t
            mb = index_mb(hnsw)
            for ef in efs:
                hnsw.hnsw.efSearch = ef
                found, p50, p99 = timed(lambda v, index=hnsw: index.search(v, K)[1], q)
                row("hnsw-flat", f"M={m} efC={efc} efS={ef}", found, truth, p50, p99, ex50, mb, build)

    if "hnsw-sq8" in only:
        hnsw_sq8(x, q, truth, ex50, args.quick)
    if "ivf-flat" in only:
        ivf_flat(x, q, truth, ex50, args.quick)
    if "ivf-pq" in only:
        ivf_pq(x, q, truth, ex50, args.quick)
    return 0


def hnsw_sq8(x: np.ndarray, q: np.ndarray, truth: np.ndarray, ex50: float, quick: bool) -> None:
    import faiss

    d = x.shape[1]
    t = time.perf_counter()
    sq = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT)
    sq.hnsw.efConstruction = 40
    sq.train(x)
    sq.add(x)
    build = time.perf_counter() - t
    mb = index_mb(sq)
    for ef, r in ((64, 4), (128, 4), (128, 10), (256, 10)) if not quick else ((128, 4), (128, 10)):
        sq.hnsw.efSearch = ef
        kk = max(K * r, K)

        def search_rerank(v: np.ndarray, kk: int = kk) -> np.ndarray:
            _, cand = sq.search(v, kk)
            return rerank(v, cand, x, K)[1]  # candidates are row numbers here (no id map)

        found, p50, p99 = timed(search_rerank, q)
        row("hnsw-sq8", f"M=32 efS={ef} rerank {r}x", found, truth, p50, p99, ex50, mb, build)



def ivf_flat(x: np.ndarray, q: np.ndarray, truth: np.ndarray, ex50: float, quick: bool) -> None:
    import faiss

    n, d = x.shape
    nlist = int(4 * np.sqrt(n))
    t = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x[:: max(1, n // (64 * nlist))] if n > 64 * nlist else x)
    ivf.add(x)
    build = time.perf_counter() - t
    mb = index_mb(ivf)
    for nprobe in (8, 16, 32, 64) if not quick else (16, 32):
        ivf.nprobe = nprobe
        found, p50, p99 = timed(lambda v: ivf.search(v, K)[1], q)
        row("ivf-flat", f"nlist={nlist} nprobe={nprobe}", found, truth, p50, p99, ex50, mb, build)


def ivf_pq(x: np.ndarray, q: np.ndarray, truth: np.ndarray, ex50: float, quick: bool) -> None:
    """The store's IVF-PQ exactly as indexing/build/choice.py parameterises and LoadedIndex re-ranks it."""
    import faiss

    from core.settings import load_settings
    from indexing.build.choice import choose

    n, d = x.shape
    _, params = choose(n, d, load_settings(), "ivfpq")
    t = time.perf_counter()
    pq = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, int(params["nlist"]), int(params["m"]), int(params["nbits"]),
                          faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    pq.train(x[np.sort(rng.choice(n, size=min(n, 100_000), replace=False))])
    pq.add(x)
    build = time.perf_counter() - t
    mb = index_mb(pq)
    for nprobe, r in ((8, 4), (16, 4), (16, 10), (32, 10)) if not quick else ((16, 4), (16, 10)):
        pq.nprobe = nprobe

        def search_rerank(v: np.ndarray, kk: int = K * r) -> np.ndarray:
            _, cand = pq.search(v, kk)
            return rerank(v, cand, x, K)[1]

        found, p50, p99 = timed(search_rerank, q)
        row("ivf-pq", f"nlist={params['nlist']} m={params['m']} nprobe={nprobe} rerank {r}x", found, truth, p50,
            p99, ex50, mb, build)


if __name__ == "__main__":
    sys.exit(main())
