"""Duplicate groups within one event: images linked by a similarity at or above a threshold.

Groups are the connected components of the "similar enough" graph (a resized
copy of a resized copy lands in one group). Similarities are computed in row
blocks so a big event never builds a full n x n matrix at once.
"""

from __future__ import annotations

import numpy as np

_BLOCK = 1024


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def duplicate_groups(ids: np.ndarray, vectors: np.ndarray, threshold: float) -> list[tuple[list[int], float, float]]:
    """[(member ids, best pair score, weakest link score)] for groups of 2+, best groups first."""
    n = len(ids)
    if n < 2:
        return []
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    parent = list(range(n))
    edges: list[tuple[int, int, float]] = []
    for start in range(0, n, _BLOCK):
        block = vecs[start:start + _BLOCK] @ vecs.T
        rows, cols = np.nonzero(block >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            i = start + r
            if c > i:
                edges.append((i, c, float(block[r, c])))
    for i, j, _ in edges:
        ri, rj = _find(parent, i), _find(parent, j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(_find(parent, i), []).append(i)
    best: dict[int, float] = {}
    weakest: dict[int, float] = {}
    for i, _j, s in edges:
        root = _find(parent, i)
        best[root] = max(best.get(root, -1.0), s)
        weakest[root] = min(weakest.get(root, 2.0), s)
    groups = [
        ([int(ids[i]) for i in sorted(m, key=lambda x: int(ids[x]))], best[root], weakest[root])
        for root, m in members.items() if len(m) > 1
    ]
    groups.sort(key=lambda g: (-g[1], g[0][0]))
    return groups
