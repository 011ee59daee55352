"""Which FAISS index to build for a size and a memory budget (in the spirit of autofaiss).

- `flat`: exact inner product (IndexFlatIP) while it is fast enough:
  up to INDEX_EXACT_MAX_VECTORS and while the raw vectors fit INDEX_MEMORY_BUDGET_MB.
- `hnsw`: IndexHNSWFlat (inner product) beyond that, when vectors + graph fit the budget.
  HNSW can neither merge nor remove ids, so every HNSW build is a rebuild.
- `ivfpq`: IndexIVFPQ when even that does not fit: codes in memory, raw vectors kept on disk
  (memory-mapped `vectors.npy`) for exact per-event search and to re-rank the PQ candidates
  (`rerank` x k candidates re-scored exactly, as IndexRefine does).
All are wrapped in IndexIDMap2 so FAISS ids are images.id.
"""

from __future__ import annotations

import math
from typing import Any

from core.settings import Settings

INDEX_TYPES = ("flat", "hnsw", "ivfpq")

# HNSW parameters chosen by bench/ann_curve.py on 100K real-jittered 1280-d embeddings (docs/indexing.md has the
# curve): efSearch 512 is where recall@10 jumps past 0.98 (0.998 at p50 1.8 ms with M=32; 0.89 at efSearch 256,
# 0.88 at 128): the photos' neighbourhoods hold a few hundred near-equal vectors and the search must cover one.
# efConstruction 200 cost 2.7x the build for no gain at efSearch 512. INDEX_HNSW_EF_SEARCH overrides.
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 512


def flat_bytes(n: int, dim: int) -> int:
    return n * dim * 4


def hnsw_bytes(n: int, dim: int, m: int) -> int:
    """Vectors plus the level-0 graph (2M neighbours, int32) and ~10% for upper levels."""
    return int(n * (dim * 4 + 2 * m * 4 * 1.1))


def disk_bytes(n: int, dim: int, kind: str, params: dict[str, Any]) -> int:
    """What a rebuild of n vectors writes, about: the staged vectors, the index, the meta and relations
    files, plus 4 MB; checked against the free space before anything is written."""
    staged = flat_bytes(n, dim)
    if kind == "hnsw":
        index = hnsw_bytes(n, dim, int(params["m"]))
    elif kind == "ivfpq":
        index = n * (int(params["m"]) + 16) + staged  # codes and ids, and the raw vectors kept for re-ranking
    else:
        index = flat_bytes(n, dim)
    return staged + index + n * (8 + 256 + 64) + (4 << 20)


def _pq_m(dim: int, n: int, budget_bytes: int) -> int:
    """Sub-quantizers: the largest divisor of dim whose codes (1 byte each) fit the budget, <= dim/4."""
    per_vector = max(1, budget_bytes // max(n, 1) - 16)  # 8-byte id + list overhead
    best = 1
    for m in range(1, dim // 4 + 1):
        if dim % m == 0 and m <= per_vector and m <= 256:
            best = m
    return best


def choose(n: int, dim: int, settings: Settings, requested: str | None = None) -> tuple[str, dict[str, Any]]:
    """(index_type, params) for n vectors of dim; `requested` forces a type (still parameterised)."""
    if requested is not None and requested not in INDEX_TYPES:
        raise ValueError(f"unknown index type {requested!r} (choose from {', '.join(INDEX_TYPES)})")
    budget = settings.index_memory_budget_mb * 1024 * 1024
    kind = requested
    if kind is None:
        if n <= settings.index_exact_max_vectors and flat_bytes(n, dim) <= budget:
            kind = "flat"
        elif hnsw_bytes(n, dim, settings.index_hnsw_m) <= budget:
            kind = "hnsw"
        else:
            kind = "ivfpq"
    if kind == "flat":
        return kind, {}
    if kind == "hnsw":
        return kind, {"m": settings.index_hnsw_m, "ef_construction": HNSW_EF_CONSTRUCTION,
                      "ef_search": settings.index_hnsw_ef_search or HNSW_EF_SEARCH}
    nlist = max(1, min(int(4 * math.sqrt(max(n, 1))), max(1, n // 39)))
    nbits = 8 if n >= 256 * 39 else max(1, min(8, int(math.log2(max(n // 39, 2)))))
    return kind, {"nlist": nlist, "m": _pq_m(dim, n, budget), "nbits": nbits,
                  "nprobe": max(1, min(nlist, 32)), "rerank": 10, "raw_vectors_on_disk": True}


def make_index(kind: str, dim: int, params: dict[str, Any]) -> Any:
    """An empty IndexIDMap2 over the chosen inner-product index (IVF-PQ still needs training)."""
    import faiss

    if kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, int(params["m"]), faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = int(params["ef_construction"])
        inner.hnsw.efSearch = int(params["ef_search"])
    elif kind == "ivfpq":
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFPQ(quantizer, dim, int(params["nlist"]), int(params["m"]), int(params["nbits"]),
                                 faiss.METRIC_INNER_PRODUCT)
        inner.nprobe = int(params["nprobe"])
    else:
        raise ValueError(f"unknown index type {kind!r}")
    return faiss.IndexIDMap2(inner)  # the Python wrapper keeps `inner` (and the quantizer) alive
