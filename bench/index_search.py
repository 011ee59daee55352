"""Index search: exact (flat) vs ANN latency and recall, and exact per-event search.

For each size N, on vectors that look like real embeddings (the shared photos embedded
with efficientnet-lite0, mixed and jittered: see bench/index_data.py), built through
indexing.build.builder.build_version and opened with indexing.search.loaded.load_version
(a verified private copy, memory-mapped):
  exact   p50/p99 of top-10 over everything (IndexFlatIP), one query at a time
  ann     p50/p99 of top-10 with the ANN type (HNSW by default) and its recall@10 against exact
  event   p50/p99 of LoadedIndex.search_event (exact, --per-event vectors per event; goal p50 <= 1 ms
          at 1M), next to the exact full search it avoids
Usage:
  .venv/bin/python bench/index_search.py [--sizes 100000,1000000] [--ann hnsw|ivfpq|none]
                                          [--ann-max 200000] [--queries 200] [--uniform]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.index_data import anchors, jittered, percentiles, synthetic_ledger, uniform_unit, write_parts

MODEL = "bench-search@v1"


def _time_each(fn, queries: np.ndarray) -> tuple[list[float], list]:
    """One query at a time on one FAISS thread, as the server runs them (indexing.search.ann.one_thread_per_query)."""
    import faiss

    from indexing.search.ann import one_thread_per_query

    threads = faiss.omp_get_max_threads()
    one_thread_per_query()
    try:
        return _time_each_query(fn, queries)
    finally:
        faiss.omp_set_num_threads(threads)


def _time_each_query(fn, queries: np.ndarray) -> tuple[list[float], list]:  # type: ignore[no-untyped-def]
    out, times = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q))
        times.append(time.perf_counter() - t)
    return times, out


def run_size(n: int, args: argparse.Namespace, base: np.ndarray) -> None:
    from core.settings import load_settings
    from indexing.build.builder import build_version
    from indexing.build.sources import Ledger
    from indexing.parts import dataset_dir
    from indexing.search.loaded import load_version

    root = Path(tempfile.mkdtemp(prefix="imgsim-bench-search-"))
    try:
        settings = load_settings(data_dir=root, index_exact_max_vectors=n * 2)
        dim = base.shape[1]

        def vectors(a: int, b: int) -> np.ndarray:
            if args.uniform:
                return uniform_unit(b - a, dim, 1000 + a)
            return jittered(base, b - a, seed=1000 + a, sigma=args.sigma)

        rows = synthetic_ledger(n, args.per_event)
        t = time.perf_counter()
        write_parts(dataset_dir(settings, MODEL), rows, vectors, MODEL)
        ledger = Ledger(rows, rows["embedded_at"].iloc[0].to_pydatetime())
        t_data = time.perf_counter() - t
        t = time.perf_counter()
        build_version(settings, MODEL, ledger, mode="rebuild", index_type="flat", version=1)
        t_flat = time.perf_counter() - t
        exact = load_version(settings, MODEL, 1)
        queries = uniform_unit(args.queries, dim, 7) if args.uniform else jittered(base, args.queries, seed=7,
                                                                                      sigma=args.sigma)
        for q in queries[:5]:  # warm the page cache and BLAS
            exact.search(q, 10)
        ex_times, ex_res = _time_each(lambda q: exact.search(q, 10)[1][0], queries)
        p50, p99 = percentiles(ex_times)
        print(f"N={n:,} dim={dim} ({'uniform noise' if args.uniform else 'jittered photo embeddings'}; "
              f"data {t_data:.0f} s)")
        print(f"  exact  flat   build {t_flat:7.1f} s   top-10 p50 {p50:8.2f} ms  p99 {p99:8.2f} ms")

        ann_kind = args.ann if args.ann != "none" and n <= args.ann_max else None
        if ann_kind:
            t = time.perf_counter()
            build_version(settings, MODEL, ledger, mode="rebuild", index_type=ann_kind, version=2)
            t_ann = time.perf_counter() - t
            ann = load_version(settings, MODEL, 2)
            for q in queries[:5]:
                ann.search(q, 10)
            an_times, an_res = _time_each(lambda q: ann.search(q, 10)[1][0], queries)
            recall = np.mean([len(set(a.tolist()) & set(e.tolist())) / 10 for a, e in zip(an_res, ex_res,
                                                                                          strict=True)])
            a50, a99 = percentiles(an_times)
            params = ", ".join(f"{k}={v}" for k, v in ann.manifest.params.items() if k != "raw_vectors_on_disk")
            print(f"  ann    {ann_kind:6} build {t_ann:7.1f} s   top-10 p50 {a50:8.2f} ms  p99 {a99:8.2f} ms  "
                  f"recall@10 {recall:.3f}  speed-up x{p50 / a50:.0f}  ({params})")
        elif args.ann != "none":
            print(f"  ann    {args.ann:6} skipped above --ann-max {args.ann_max:,}")

        rng = np.random.default_rng(3)
        events = exact.events()
        picks = [events[i] for i in rng.integers(0, len(events), len(queries))]
        for q, e in zip(queries[:5], picks[:5], strict=True):
            exact.search_event(q, e, 10)
        ev_times = []
        for q, e in zip(queries, picks, strict=True):
            t = time.perf_counter()
            exact.search_event(q, e, 10)
            ev_times.append(time.perf_counter() - t)
        e50, e99 = percentiles(ev_times)
        sizes = [len(exact.event_ids(e)) for e in picks[:20]]
        print(f"  event  exact  {int(np.median(sizes)):,} per event        p50 {e50:8.3f} ms  p99 {e99:8.3f} ms  "
              f"(x{p50 / e50:.0f} faster than the exact full search; goal p50 <= 1 ms)", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000")
    ap.add_argument("--ann", choices=("hnsw", "ivfpq", "none"), default="hnsw")
    ap.add_argument("--ann-max", type=int, default=200_000, help="skip the ANN build above this size (HNSW "
                    "construction of 1M x 1280 takes hours on 2 cores)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--per-event", type=int, default=2000)
    ap.add_argument("--sigma", type=float, default=0.35, help="jitter, in per-dimension standard deviations")
    ap.add_argument("--uniform", action="store_true", help="uniform noise instead (the ANN worst case)")
    ap.add_argument("--photos", type=int, default=294)
    args = ap.parse_args()
    base, desc = anchors(args.photos)
    print(f"index search bench: anchors = {desc}; cpus {os.cpu_count()}; one query at a time")
    for n in (int(s) for s in args.sizes.split(",")):
        run_size(n, args, base)


if __name__ == "__main__":
    main()
