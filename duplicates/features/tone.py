"""Tone curves between aligned pixels: what a colour filter, grayscale or sepia did to one photo's levels.

A copy through a filter differs from its original everywhere by one monotone
curve; mapped by it, the two agree again, while a moved person or an overlay
still differs. Used for the grey pixels and for each colour plane.

A filter maps each colour to a colour, not each grey level to a grey level:
brightness and saturation raised together push saturated hues into clipping,
so two hues of one grey level end at different ones. Where the pixels' colour
is known, the grey map goes on with one offset per colour (colour_offsets),
learnt like the curve (medians over the pixels of that colour), so it can
follow a filter and still not explain a moved person: a place that changed is
a minority of the pixels of its colour.
"""

from __future__ import annotations

import numpy as np

from duplicates.features.cells import CELL_TOL
from duplicates.features.overlays import overlay_like

TONE_BINS = 16
# colour_offsets: a colour is its Cb and Cr, each in CHROMA_BINS bins of the 256 levels, and its grey level, in
# GREY_BINS quantile bins of the mapped side; a bin of fewer than MIN_PIXELS pixels learns no offset, nor does one
# whose pixels did not move together: a filter moves every pixel of a colour alike, so at least COHERENT of them
# must lie within CELL_TOL (a cell's agreement tolerance) of the bin's offset.
CHROMA_BINS = 8
GREY_BINS = 4
MIN_PIXELS = 40
COHERENT = 0.75
_KEY_SPAN = 4096.0  # bin-major sort keys: bin * span + residual (residuals of 0..255 images stay within +-1,000)


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
    keep = learnable(c, q)
    return c[keep], q[keep]


def learnable(c: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Which aligned pixel pairs a tone map may learn from (tone_pairs): all of them unless the overlay
    candidates can be left out with at least a quarter of the pairs remaining."""
    keep = ~(overlay_like(c, q) & (np.abs(c - q) > 40))
    return keep if keep.sum() >= max(16, len(c) // 4) else np.ones(len(c), bool)


def colour_offsets(c: np.ndarray, q: np.ndarray, mapped: np.ndarray, colour: np.ndarray,
                   mask: np.ndarray) -> np.ndarray:
    """Per-pixel grey offsets to add to `mapped` (c's grey levels through the tone curve), one per colour of c:
    the median of q - mapped over the learnable pixels (mask, learnable()) of that colour; 0 for a colour of
    fewer than MIN_PIXELS of them or whose pixels did not move together (COHERENT). `colour`: c's (Cb, Cr)
    planes on c's pixel grid (2, h, w)."""
    cb = np.clip(colour[0] * (CHROMA_BINS / 256.0), 0, CHROMA_BINS - 1).astype(np.int64)
    cr = np.clip(colour[1] * (CHROMA_BINS / 256.0), 0, CHROMA_BINS - 1).astype(np.int64)
    cm, qm = c[mask], q[mask]
    grey = np.searchsorted(np.percentile(cm, np.linspace(0, 100, GREY_BINS + 1)[1:-1]), c, side="right")
    bins = (grey * CHROMA_BINS + cb) * CHROMA_BINS + cr
    keep = learnable(cm, qm)
    b = bins[mask][keep]
    residual = np.clip((qm - mapped[mask])[keep].astype(np.float64), -1000.0, 1000.0)
    key = np.sort(b * _KEY_SPAN + residual)  # by bin, then by residual: each bin's residuals sorted
    b = np.floor((key + _KEY_SPAN / 2) / _KEY_SPAN).astype(np.int64)
    residual = key - b * _KEY_SPAN
    first = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    counts = np.diff(np.r_[first, len(b)])
    median = (residual[first + (counts - 1) // 2] + residual[first + counts // 2]) / 2
    base = b[first] * _KEY_SPAN
    together = (np.searchsorted(key, base + median + CELL_TOL, side="right")
                - np.searchsorted(key, base + median - CELL_TOL, side="left"))
    learnt = (counts >= MIN_PIXELS) & (together >= COHERENT * counts)
    offsets = np.zeros(GREY_BINS * CHROMA_BINS * CHROMA_BINS)
    offsets[b[first[learnt]]] = median[learnt]
    return offsets[bins]
