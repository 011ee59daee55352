"""features/tone.py: a tone curve learnt from aligned pixel pairs maps a filtered copy back, overlays left out; by
colour, an offset per colour that moved together (a filter clipping some hues), none for one that did not."""

from __future__ import annotations

import numpy as np

from duplicates.features import tone
from duplicates.features.tone import colour_offsets, tone_curve, tone_pairs


def test_the_curve_maps_a_filtered_copy_back_onto_its_original(grey: np.ndarray) -> None:
    q = grey.ravel()
    c = 255 * (q / 255) ** 1.8  # a darkening curve
    xs, ys = tone_curve(c, q)
    assert np.all(np.diff(ys) >= 0)  # monotone
    assert np.median(np.abs(np.interp(c, xs, ys) - q)) < 1.5
    assert np.median(np.abs(c - q)) > 15  # (it had something to undo)


def test_a_flat_side_gets_a_one_point_curve() -> None:
    xs, ys = tone_curve(np.full(100, 7.0), np.arange(100.0))
    assert xs.tolist() == [7.0] and ys.tolist() == [49.5]


def test_pairs_under_an_overlay_do_not_teach_the_curve(grey: np.ndarray) -> None:
    """A black caption bar over the bottom rows: learnt, it would map those rows' tones to black everywhere."""
    q, c = grey.ravel(), grey.copy()
    c[-20:] = 0.0
    c = c.ravel()
    pc, _ = tone_pairs(c, q)
    assert (pc == 0).sum() < 0.1 * 20 * grey.shape[1]  # the bar's pairs left out (but where the picture is dark)
    body = slice(0, (grey.shape[0] - 20) * grey.shape[1])

    def worst(xs: np.ndarray, ys: np.ndarray) -> float:
        return float(np.abs(np.interp(c[body], xs, ys) - q[body]).max())

    assert worst(*tone_curve(*tone_pairs(c, q))) < 2.0
    assert worst(*tone_curve(c, q)) > 20.0  # (what learning from every pair does)
    all_black = np.zeros(100)
    assert len(tone_pairs(all_black, np.full(100, 200.0))[0]) == 100  # too few would remain: all kept


def _curve_by_sorting_the_pairs(c: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """tone_curve as it was computed before issue 28 (the pairs sorted by c, np.median per bin): the reference."""
    from duplicates.features.tone import TONE_BINS

    edges = np.unique(np.percentile(c, np.linspace(0, 100, TONE_BINS + 1)))
    if len(edges) < 2:
        return np.array([float(c.mean())]), np.array([float(np.median(q))])
    order = np.argsort(c, kind="stable")
    cs, qs = c[order], q[order]
    cuts = np.searchsorted(cs, edges[1:-1], side="left").tolist()
    xs, ys = [], []
    for lo, hi in zip([0, *cuts], [*cuts, len(cs)], strict=True):
        if hi > lo:
            xs.append(float(cs[(lo + hi - 1) // 2] + cs[(lo + hi) // 2]) / 2)
            ys.append(float(np.median(qs[lo:hi])))
    ys = np.maximum.accumulate(np.asarray(ys)).tolist()
    k = (ys[-1] - ys[0]) / (xs[-1] - xs[0]) if len(xs) > 1 and xs[-1] > xs[0] else 1.0
    return np.asarray([xs[0] - 256.0, *xs, xs[-1] + 256.0]), np.asarray([ys[0] - 256.0 * k, *ys, ys[-1] + 256.0 * k])


def test_the_curve_is_bit_for_bit_the_sorted_pairs_medians(grey: np.ndarray) -> None:
    """Bins gathered by number and medians by partition give exactly what sorting the pairs gave (issue 28): float32
    and float64 pixels, tied levels, bins of odd and even sizes, empty bins, a flat side."""
    rng = np.random.default_rng(5)
    q = grey.ravel()
    cases = [(255 * (q / 255) ** 1.8, q), (np.round(q / 40) * 40, q), (q, np.round(q / 40) * 40)]
    for n in (1, 2, 3, 17, 33, 500, 4001):
        cases += [(rng.normal(128, 40, n).astype(np.float32), rng.uniform(0, 255, n).astype(np.float32)),
                  (rng.integers(0, 4, n).astype(np.float32) * 60, rng.integers(0, 256, n).astype(np.float32)),
                  (rng.normal(0, 1, n), rng.normal(0, 1, n)), (np.full(n, 7.0, np.float32), rng.normal(9, 3, n))]
    for c, qq in cases:
        got, want = tone_curve(c, qq), _curve_by_sorting_the_pairs(c, qq)
        assert all(g.dtype == w.dtype and g.tobytes() == w.tobytes() for g, w in zip(got, want, strict=True))


def _two_hues(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`grey`'s picture painted in two hues, left half and right half: its (Cb, Cr) planes, and a mask."""
    hues = np.empty((2, *grey.shape), np.float32)
    half = grey.shape[1] // 2
    hues[:, :, :half] = np.array([90.0, 200.0])[:, None, None]  # a saturated red
    hues[:, :, half:] = np.array([160.0, 110.0])[:, None, None]  # a blue
    return hues, np.ones(grey.shape, bool)


def test_a_filter_that_darkened_one_hue_gets_that_hues_offset(grey: np.ndarray) -> None:
    """Brightness and saturation clipped one hue 25 levels darker than the grey curve says: luma alone cannot tell
    the two hues apart, the colour's offset can."""
    hues, mask = _two_hues(grey)
    half = grey.shape[1] // 2
    q = grey.copy()
    q[:, :half] -= 25.0
    offsets = colour_offsets(grey, q, grey.astype(np.float64), hues, mask)
    assert np.median(np.abs(q - (grey + offsets))[:, :half]) < 1.0
    assert np.median(np.abs(offsets[:, half:])) < 1.0  # the other hue keeps the curve


def test_a_hue_whose_pixels_did_not_move_together_gets_no_offset(grey: np.ndarray) -> None:
    """A figure that moved leaves its colour's pixels split (some unchanged, some far off): not a filter's doing."""
    hues, mask = _two_hues(grey)
    half = grey.shape[1] // 2
    q = grey.copy()
    q[:, : half // 2] -= 60.0  # half of the red's pixels changed a lot, the other half not at all
    offsets = colour_offsets(grey, q, grey.astype(np.float64), hues, mask)
    assert not offsets[:, :half].any()  # (its median alone would be half-way: -30)


def test_a_colour_of_few_pixels_learns_nothing(grey: np.ndarray) -> None:
    hues, mask = _two_hues(grey)
    hues[:, :5, :5] = np.array([20.0, 20.0])[:, None, None]  # 25 pixels of a third colour
    q = grey.copy()
    q[:5, :5] -= 40.0
    offsets = colour_offsets(grey, q, grey.astype(np.float64), hues, mask)
    assert tone.MIN_PIXELS > 25 and not offsets[:5, :5].any()
