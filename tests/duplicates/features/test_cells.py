"""features/cells.py: cell means over a mask, window correlations, the differing tolerance."""

from __future__ import annotations

import numpy as np

from duplicates.features.cells import CELL, CELL_TOL, NOISE_FACTOR, cell_means, cell_ncc, differ_tol


def test_cell_means_average_each_cell_over_the_mask_and_drop_mostly_uncovered_cells() -> None:
    values = np.arange(8 * 12, dtype=np.float32).reshape(8, 12)
    mask = np.ones_like(values)
    mask[:CELL, :CELL] = 0  # cell (0, 0) uncovered
    mask[CELL:, CELL:2 * CELL][0, :] = 0  # cell (1, 1) 12 of 16 pixels covered: still used
    mask[CELL:, 2 * CELL:][:2, :] = 0  # cell (1, 2) 8 of 16: not used
    means, used = cell_means(values, mask)
    assert means.shape == used.shape == (2, 3)
    assert used.tolist() == [[False, True, True], [True, True, False]]
    assert means[0, 1] == values[:CELL, CELL:2 * CELL].mean()
    assert means[1, 1] == values[CELL + 1:, CELL:2 * CELL].mean()
    assert means[0, 0] == 0.0 and means[1, 2] == 0.0


def test_cell_ncc_tells_structure_from_level_and_flat_from_textured(grey: np.ndarray) -> None:
    m = np.ones(grey.shape, np.float32)
    ncc, sq, sc = cell_ncc(grey, 0.5 * grey + 40, m)  # a tone change keeps the structure
    assert ncc.shape == (grey.shape[0] // CELL, grey.shape[1] // CELL)
    assert np.median(ncc) > 0.99 and np.allclose(sc, 0.5 * sq, atol=0.05)
    other = np.ascontiguousarray(grey[::-1, ::-1])  # other structure
    assert np.median(cell_ncc(grey, other, m)[0]) < 0.5
    flat = np.full(grey.shape, 128, np.float32)
    assert (cell_ncc(flat, flat + 10, m)[0] == 1.0).all()  # nothing to disagree about
    assert (cell_ncc(grey, flat, m)[0][sq > 2] == 0.0).all()  # flat on one side only


def test_a_cell_differs_beyond_the_tolerance_or_the_pairs_noise() -> None:
    assert differ_tol(0.0) == CELL_TOL
    assert differ_tol(10.0) == NOISE_FACTOR * 10.0


def test_cell_ncc_with_the_query_moments_given_is_the_same(grey: np.ndarray) -> None:
    from duplicates.features.cells import window_moments

    m = np.ones(grey.shape, np.float32)
    other = np.roll(grey, 3, axis=1)
    for c in (0.5 * grey + 40, other):
        got, want = cell_ncc(grey, c, m, window_moments(grey)), cell_ncc(grey, c, m)
        assert all(g.tobytes() == w.tobytes() for g, w in zip(got, want, strict=True))
