"""Search one served version: normalise, search (global or one event), drop deleted images, describe.

Deleted images are dropped through `serving.deleted.DeletedImages`: from the
set the server keeps fresh by NOTIFY (no query per search), or, while that set
is stale or not built yet, one `id = ANY(...)` query over the candidates.
Candidates are over-fetched a little so that deletions rarely cost a second
round; when neither can say, the stale set is applied and the result says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from serving.deleted import DeletedImages
from serving.served import ServedIndex

# Global searches over big indexes run in a worker thread so the event loop keeps serving.
_INLINE_MAX_VECTORS = 50_000


def query_vector(values: list[float] | np.ndarray, dim: int, model: str) -> np.ndarray:
    """The client's vector as a unit-length float32 array, or a 422 naming what is wrong."""
    vec = np.asarray(values, dtype=np.float32).reshape(-1)
    if vec.shape[0] != dim:
        raise HTTPException(422, f"vector has {vec.shape[0]} values; the served model {model} expects {dim}")
    if not np.all(np.isfinite(vec)):
        raise HTTPException(422, "vector values must be finite float32 numbers (no NaN or Infinity)")
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0.0:
        raise HTTPException(422, "vector has zero length; it cannot be normalised")
    return vec / norm


@dataclass
class SearchResult:
    hits: list[dict[str, Any]]
    filtered: bool = True  # False when the database was down and deleted images were not checked
    removed: list[int] = field(default_factory=list)
    age: float | None = None  # when not filtered: how old the applied set of deletions is (None: none applied)


def _merge(served: ServedIndex, queries: np.ndarray, k: int, event_code: str | None) -> tuple[dict[int, float], bool]:
    """Best score per id across the query rows (rotations); also whether the index ran out of results."""
    best: dict[int, float] = {}
    exhausted = True
    for q in queries:
        scores, ids = served.search(q, k, event_code)
        if len(ids) >= k:
            exhausted = False
        for s, i in zip(scores.tolist(), ids.tolist(), strict=True):
            if s > best.get(i, -np.inf):
                best[i] = s
    return best, exhausted


async def search(
    served: ServedIndex,
    deleted: DeletedImages | None,
    queries: np.ndarray,
    *,
    top_k: int,
    event_code: str | None = None,
    min_score: float | None = None,
    exclude: Iterable[int] = (),
    check_too: Iterable[int] = (),
) -> SearchResult:
    """Top-k hits best first; `queries` is (r, dim) unit rows whose results merge by max score.

    `check_too` ids ride along in the same deleted-image check (a deleted one lands in `removed`).
    """
    excluded = {int(i) for i in exclude}
    extra = [int(i) for i in check_too]
    queries = queries.reshape(-1, served.dim)
    k = min(max(served.count, 1), top_k + len(excluded) + max(5, top_k // 2))
    offload = event_code is None and served.count > _INLINE_MAX_VECTORS
    checked: set[int] = set()
    dead: set[int] = set()
    filtered = True
    age: float | None = None
    for _ in range(4):
        if offload:
            best, exhausted = await run_in_threadpool(_merge, served, queries, k, event_code)
        else:
            best, exhausted = _merge(served, queries, k, event_code)
        ranked = sorted(((s, i) for i, s in best.items() if i not in excluded), key=lambda t: (-t[0], t[1]))
        if min_score is not None:
            ranked = [(s, i) for s, i in ranked if s >= min_score]
        unchecked = [i for _, i in ranked if i not in checked] + [i for i in extra if i not in checked]
        if deleted is not None and unchecked:
            verdict = await deleted.dead_among(served, unchecked)
            dead.update(verdict.dead)
            if verdict.checked:
                checked.update(unchecked)
            else:
                filtered, age = False, verdict.age
        kept = [(s, i) for s, i in ranked if i not in dead]
        if len(kept) >= top_k or exhausted or k >= served.count:
            break
        k = min(served.count, k * 4)
    hits = []
    best = kept[:top_k]
    for (score, image_id), row in zip(best, served.describe_many([i for _, i in best]), strict=True):
        hits.append({"id": image_id, "code": row["code"], "filename": row["filename"],
                     "similarity_score": round(float(score), 6), "event_code": row["event_code"]})
    return SearchResult(hits=hits, filtered=filtered, removed=sorted(dead), age=age)
