"""Exact re-ranking of ANN candidates (indexing/search/ann.py)."""

from __future__ import annotations

import numpy as np

from indexing.search.ann import exact_scores, rerank


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_rerank_gives_the_exact_order_of_the_candidates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = _unit(500, 32, 0)
    np.save(tmp_path / "v.npy", x)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")  # as LoadedIndex holds them
    q = _unit(3, 32, 1)
    cand = np.stack([np.random.default_rng(r).permutation(500)[:40] for r in range(3)])
    cand[1, 5:] = -1  # fewer candidates than k for this query
    scores, rows = rerank(q, cand, mapped, 10)
    for r in range(3):
        valid = cand[r][cand[r] >= 0]
        exact = x[valid] @ q[r]
        best = valid[np.argsort(-exact)[:10]]
        got = rows[r][rows[r] >= 0]
        assert got.tolist() == best.tolist()
        np.testing.assert_allclose(scores[r][: len(got)], np.sort(exact)[::-1][: len(got)], rtol=1e-6)
    assert (rows[1, 5:] == -1).all() and np.isneginf(scores[1, 5:]).all()


def test_exact_scores_of_missing_candidates_are_minus_infinity() -> None:
    x = _unit(10, 8, 2)
    s = exact_scores(x[:1], np.array([[3, -1, 0]]), x)
    assert np.isclose(s[0, 0], x[3] @ x[0]) and np.isneginf(s[0, 1]) and np.isclose(s[0, 2], 1.0)
