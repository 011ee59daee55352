"""The cell grid every pixel measure counts on: cell means, window correlations, when a cell differs.

Aligned thumbnails are compared in CELL-px cells, not pixel by pixel: a cell's
mean difference is robust to a JPEG block or a fraction of a pixel of misfit,
and counting cells makes every share (agreement, motion, overlay) one unit.
"""

from __future__ import annotations

import numpy as np

from duplicates import opencv

CELL = 4  # pixel agreement cell, thumbnail pixels
CELL_TOL = 12.0  # a cell whose mean abs difference (of 255) is under this always agrees
NOISE_FACTOR = 3.0  # ... and so does one under this many times the pair's median cell difference
FLAT_STD = 2.0  # a window this flat (std, of 255) has no structure to compare
TEXTURE_STD = 6.0  # window std (of 255) above which a cell has structure


def cell_means(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell mean of `values` over `mask`, and which cells are mostly covered."""
    h, w = values.shape
    hh, ww = h - h % CELL, w - w % CELL
    shape = (hh // CELL, CELL, ww // CELL, CELL)
    sums = (values * mask)[:hh, :ww].reshape(shape).sum(axis=(1, 3))
    cover = mask[:hh, :ww].reshape(shape).sum(axis=(1, 3))
    used = cover >= CELL * CELL * 0.75
    return np.where(used, sums / np.maximum(cover, 1), 0.0), used


def window_moments(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of `img` over the (2 CELL)-wide window around each pixel (cell_ncc's windows)."""
    cv2 = opencv.cv2()
    k = (2 * CELL, 2 * CELL)
    mean = cv2.blur(img, k)
    return mean, np.maximum(cv2.blur(img * img, k) - mean * mean, 0)


def cell_ncc(q: np.ndarray, c: np.ndarray, m: np.ndarray,
             q_moments: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised cross-correlation of q and c over a (2 CELL)-wide window centred on each cell,
    and the two windows' standard deviations.

    Flat in both (std under FLAT_STD): 1 (nothing to disagree about); flat in one only: 0.
    `q_moments`: window_moments(q), when q is compared with more than one image.
    """
    cv2 = opencv.cv2()
    k = (2 * CELL, 2 * CELL)
    mq, vq = window_moments(q) if q_moments is None else q_moments
    mc, vc = window_moments(c)
    cov = cv2.blur(q * c, k) - mq * mc
    ncc = cov / np.sqrt(vq * vc + 1e-6)
    flat_q, flat_c = vq < FLAT_STD**2, vc < FLAT_STD**2
    ncc = np.where(flat_q & flat_c, 1.0, np.where(flat_q | flat_c, 0.0, ncc))
    h, w = q.shape

    def at_cells(a: np.ndarray) -> np.ndarray:
        return a[CELL // 2:h - h % CELL:CELL, CELL // 2:w - w % CELL:CELL][: h // CELL, : w // CELL]

    return at_cells(ncc), at_cells(np.sqrt(vq)), at_cells(np.sqrt(vc))


def differ_tol(noise: float) -> float:
    """The mean cell difference beyond which a cell differs, for a pair whose median cell difference is `noise`:
    a JPEG q5 copy whose every cell is a little off still agrees while a moved arm does not."""
    return max(CELL_TOL, NOISE_FACTOR * noise)
