"""features/motion.py: content that moved is explained by a local shift, content that was added is not."""

from __future__ import annotations

import numpy as np

from duplicates.features.cells import cell_means
from duplicates.features.motion import colour_motion, shift_explained


def _moved(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[40:80, 60:100] = img[40:80, 65:105]  # a figure 5 px to the left
    return out


def _painted(img: np.ndarray) -> np.ndarray:
    out = img.copy()
    out[40:80, 60:100] = 90.0  # a flat logo
    return out


def _differing(q: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = np.ones(q.shape, bool)
    diff, used = cell_means(np.abs(q - c), mask.astype(np.float32))
    return mask, (diff > 12) & used


def test_a_shifted_region_moved_and_a_painted_one_did_not(grey: np.ndarray) -> None:
    none = np.zeros((grey.shape[0] // 4, grey.shape[1] // 4), bool)
    shares = {}
    for name, c in (("moved", _moved(grey)), ("painted", _painted(grey))):
        mask, cells = _differing(grey, c)
        assert cells.mean() > 0.03, name
        moved, faint = shift_explained(grey, c, mask, cells, 12.0, none, 255.0)
        shares[name] = (moved / cells.mean(), faint)
    assert shares["moved"][0] > 0.6, shares  # most of what differs is explained
    assert shares["painted"][0] < 0.35, shares  # at most its rim
    assert shares["moved"][1] == shares["painted"][1] == 0.0  # no calm cells asked about
    mask, cells = _differing(grey, grey)
    assert shift_explained(grey, grey.copy(), mask, cells, 12.0, none, 255.0) == (0.0, 0.0)


def test_colour_that_moved_counts_and_a_plane_below_the_floor_is_not_flowed(grey: np.ndarray) -> None:
    """One colour plane with a figure moved 5 px (the grey may not show it): a share of the region; nothing
    where nothing moved; a floor above what could differ skips the flow."""
    q = np.stack([grey, grey[::-1].copy()])
    c = np.stack([_moved(grey), grey[::-1].copy()])
    mask = np.ones(grey.shape, bool)
    region = np.ones((grey.shape[0] // 4, grey.shape[1] // 4), bool)
    share = colour_motion(q, c, mask, region, 0.0)
    assert 0.02 < share <= 0.1
    assert colour_motion(q, q.copy(), mask, region, 0.0) == 0.0
    assert colour_motion(q, c, mask, region, 0.5) == 0.0


def test_a_plane_no_tone_curve_explains_is_no_evidence(grey: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    noisy = _moved(grey) + rng.normal(0, 20, grey.shape).astype(np.float32)  # beyond any tone curve
    q, c = np.stack([grey, grey]), np.stack([noisy, noisy])
    region = np.ones((grey.shape[0] // 4, grey.shape[1] // 4), bool)
    assert colour_motion(q, c, np.ones(grey.shape, bool), region, 0.0) == 0.0
