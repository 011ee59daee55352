"""features/tone.py: a tone curve learnt from aligned pixel pairs maps a filtered copy back, overlays left out."""

from __future__ import annotations

import numpy as np

from duplicates.features.tone import tone_curve, tone_pairs


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
