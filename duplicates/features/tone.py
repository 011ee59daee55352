"""Tone curves between aligned pixels: what a colour filter, grayscale or sepia did to one photo's levels.

A copy through a filter differs from its original everywhere by one monotone
curve; mapped by it, the two agree again, while a moved person or an overlay
still differs. Used for the grey pixels and for each colour plane.
"""

from __future__ import annotations

import numpy as np

from duplicates.features.overlays import overlay_like

TONE_BINS = 16


def tone_curve(c: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A robust tone curve c -> q from aligned pixel pairs: the median q in each c quantile bin.

    Pairs (not histograms) so an overlay covering part of one image does not
    bend the curve; medians so it covers any tone change a filter makes.
    """
    cs = np.sort(c)
    edges = np.unique(np.percentile(cs, np.linspace(0, 100, TONE_BINS + 1)))
    if len(edges) < 2:
        return np.array([float(c.mean())]), np.array([float(np.median(q))])
    # Bin b holds edges[b] <= c < edges[b + 1] (the last one its upper edge too): slices of the pairs sorted by c.
    # Which pairs a bin holds depends on c's values alone, so its q's are gathered by bin number (no sort of the
    # pairs) and its median taken as np.median takes it: the mean of the middle one or two of its sorted q's.
    inner = edges[1:-1]
    cuts = np.searchsorted(cs, inner, side="left")
    qs = q[np.argsort(np.searchsorted(inner, c, side="right").astype(np.uint8), kind="stable")]
    bounds = np.concatenate([[0], cuts, [len(cs)]])
    lo, hi = bounds[:-1][bounds[1:] > bounds[:-1]], bounds[1:][bounds[1:] > bounds[:-1]]
    xs = ((cs[(lo + hi - 1) // 2] + cs[(lo + hi) // 2]).astype(np.float64) / 2).tolist()  # medians of sorted slices
    middle = np.empty((len(lo), 2), qs.dtype)
    for b, (start, end) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
        kth = [(end - start - 1) // 2, (end - start) // 2]
        middle[b] = np.partition(qs[start:end], kth)[kth]
    ys = middle.mean(axis=1).astype(np.float64).tolist()
    # Beyond the outer bins' medians the curve goes on with its overall slope (clamping would turn
    # every highlight and shadow into a difference).
    # Monotone: a filter keeps dark things darker; a bin mostly under an overlay (a dark text bar over
    # a light sky) must not fold the curve.
    ys = np.maximum.accumulate(np.asarray(ys)).tolist()
    k = (ys[-1] - ys[0]) / (xs[-1] - xs[0]) if len(xs) > 1 and xs[-1] > xs[0] else 1.0
    xs = [xs[0] - 256.0, *xs, xs[-1] + 256.0]
    ys = [ys[0] - 256.0 * k, *ys, ys[-1] + 256.0 * k]
    return np.asarray(xs), np.asarray(ys)


def tone_pairs(c: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The aligned pixel pairs a tone curve may learn from: not those under an overlay.

    A black caption bar over the bottom of a gradient owns every tone of that band: learnt, it
    would map those tones to black everywhere else in the photo. Pairs where one side only is
    saturated (black/white) and the two differ a lot are overlay candidates, left out while at
    least a quarter of the pairs remain.
    """
    keep = ~(overlay_like(c, q) & (np.abs(c - q) > 40))
    if keep.sum() >= max(16, len(c) // 4):
        return c[keep], q[keep]
    return c, q
