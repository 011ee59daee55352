"""Overlays: what an edit adds at the edges of a photo (a caption bar, a logo, a letterbox).

An overlay is new content on one side only, solid or saturated, near one edge: its
disagreement says nothing against "the same photograph". A person who moved is
textured on both sides and is rarely a solid black or white slab.
"""

from __future__ import annotations

import numpy as np

from duplicates import opencv
from duplicates.features.cells import FLAT_STD, cell_means

# Overlays (a caption bar, a logo, a letterbox) are solid or saturated on one side: a disagreeing
# region touching the overlap's edge whose cells mostly look like that is an overlay, not a moved person.
OVERLAY_DARK, OVERLAY_LIGHT = 24.0, 231.0  # cell means at or beyond these are saturated
OVERLAY_SHARE = 0.5
# ... and it stays near the edge it touches: a caption bar, a logo or a watermark sits within this share
# of the overlap from one edge (text bar: 16%, blurred ~20%; logo: ~20%). A disagreeing region that
# reaches further in is content: two different pictures that share a caption bar fit on the caption,
# and their pictures' differences form regions from the top edge down to the bar.
OVERLAY_DEPTH = 1 / 3
OVERLAY_BAND = 0.6  # ... and a region near one edge spanning this share of it is a band (a bar over dark picture
# parts agrees there, so a caption bar's disagreement need not span the whole width)


def overlay_like(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Saturated on one side only, or black on one side and white on the other (a dark bar over a bright floor)."""
    dark_a, dark_b = a <= OVERLAY_DARK, b <= OVERLAY_DARK
    light_a, light_b = a >= OVERLAY_LIGHT, b >= OVERLAY_LIGHT
    return ((dark_a | light_a) ^ (dark_b | light_b)) | (dark_a & light_b) | (light_a & dark_b)


def overlay_cells(bad: np.ndarray, q: np.ndarray, c: np.ndarray, mask: np.ndarray, std_q: np.ndarray,
                  std_c: np.ndarray, box: tuple[int, int, int, int],
                  levels: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Disagreeing cells that belong to an overlay: a connected disagreeing region touching the
    overlap's edge, staying within OVERLAY_DEPTH of it, that is a band across the overlap or whose
    cells are mostly saturated (black/white) or flat on one side only.

    A caption bar reaches into the interior past the edge band (and blurring widens it); a person who
    moved is textured on both sides and is rarely a solid black or white slab.
    `levels`: q's and c's cell means over `mask` (cells.cell_means), when the caller has them.
    """
    cv2 = opencv.cv2()
    out = np.zeros_like(bad)
    if not bad.any():
        return out
    if levels is None:
        m = mask.astype(np.float32)
        levels = cell_means(q, m)[0], cell_means(c, m)[0]
    mq, mc = levels
    saturated = overlay_like(mq, mc)
    flat_one = (std_q < FLAT_STD) ^ (std_c < FLAT_STD)
    looks = saturated | flat_one
    n, labels = cv2.connectedComponents(bad.astype(np.uint8), connectivity=8)
    r0, r1, c0, c1 = box
    depth_r, depth_c = (r1 - r0) * OVERLAY_DEPTH, (c1 - c0) * OVERLAY_DEPTH
    for k in range(1, n):
        comp = labels == k
        rows, cols = np.nonzero(comp)
        # Within OVERLAY_DEPTH of an edge (above the bottom third, say), and touching that edge.
        top, bottom = rows.max() < r0 + depth_r, rows.min() >= r1 - depth_r
        left, right = cols.max() < c0 + depth_c, cols.min() >= c1 - depth_c
        touching = ((top and rows.min() == r0) or (bottom and rows.max() == r1 - 1)
                    or (left and cols.min() == c0) or (right and cols.max() == c1 - 1))
        # A band along an edge is a caption bar or a banner, touching the edge or not (its last rows may
        # agree with a dark picture), and half as overlay-like suffices: its letters are textured, and
        # blurred neither black nor white. A person standing near the side is a band too, but a textured one
        # (generated other shots: no cell overlay-like; caption bars: 0.39-0.52).
        band = (((top or bottom) and np.ptp(cols) >= OVERLAY_BAND * (c1 - c0))
                or ((left or right) and np.ptp(rows) >= OVERLAY_BAND * (r1 - r0)))
        share = looks[comp].mean()
        if (band and share >= OVERLAY_SHARE / 2) or (touching and share >= OVERLAY_SHARE):
            out |= comp
    return out
