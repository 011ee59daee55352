"""duplicates/residuals.py (measured, not used: outside features/ so that RULES_VERSION does not move for it): a
compact group of matches the fit leaves off the same way is found; noise, a smooth field and scattered offsets
are not."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from duplicates import residuals
from duplicates.edits import EDITS
from duplicates.features import geometry
from duplicates.fingerprint import Fingerprint
from duplicates.synthetic import still_frame

SIZE = (480, 270)  # a 16:9 feature image


def _field(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """200 candidate points, the similarity that maps them (a small turn, a shift) and the query points it gives,
    with 0.2 px of position noise."""
    rng = np.random.default_rng(seed)
    c = rng.uniform((20, 20), (SIZE[0] - 20, SIZE[1] - 20), (200, 2))
    a = np.radians(0.5)
    m = np.array([[np.cos(a), -np.sin(a), 3.0], [np.sin(a), np.cos(a), -2.0]])
    q = c @ m[:, :2].T + m[:, 2] + rng.normal(0, 0.2, c.shape)
    return q, c, m


def test_a_compact_group_moved_the_same_way_is_one_cluster() -> None:
    q, c, m = _field(1)
    assert residuals.shifted(q, c, m, geometry.RANSAC_PX).size == 0  # noise alone
    group = np.flatnonzero((np.abs(c[:, 0] - 240) < 45) & (np.abs(c[:, 1] - 135) < 45))
    assert len(group) >= 12
    moved = q.copy()
    moved[group] += (2.5, 1.0)  # a hand moved 8 px at 1600 px: inliers of the fit all the same (RANSAC_PX 4)
    found = residuals.shifted(moved, c, m, geometry.RANSAC_PX)
    assert found.size >= len(group) - 2 and abs(found.px - np.hypot(2.5, 1.0)) < 0.3, (found, len(group))
    # Two things side by side that moved opposite ways are two clusters, not one.
    left = group[c[group, 0] < 240]
    apart = q.copy()
    apart[left] += (2.5, 1.0)
    apart[np.setdiff1d(group, left)] -= (2.5, 1.0)
    two = residuals.shifted(apart, c, m, geometry.RANSAC_PX)
    assert 3 <= two.size <= max(len(left), len(group) - len(left)), (two, len(left), len(group))
    # Past the inlier tolerance but within REACH x RANSAC_PX it still counts.
    far = q.copy()
    far[group] += (7.0, 0.0)
    assert residuals.shifted(far, c, m, geometry.RANSAC_PX).size >= len(group) - 2


def test_scattered_or_interleaved_offsets_and_a_smooth_field_are_no_cluster() -> None:
    q, c, m = _field(2)
    rng = np.random.default_rng(3)
    scattered = q.copy()
    some = rng.choice(len(q), 15, replace=False)  # as many off by as much, spread over the frame
    scattered[some] += (2.5, 1.0)
    assert residuals.shifted(scattered, c, m, geometry.RANSAC_PX).size < residuals.MIN_CLUSTER + 2
    # A ring of matches off the same way around matches that are not: linked, but it holds too few of the matches
    # inside its hull (a moved thing is off all over; PURITY).
    turn = np.linspace(0, 2 * np.pi, 17, endpoint=False)
    ring_c = np.column_stack([240 + 80 * np.cos(turn), 135 + 80 * np.sin(turn)])
    ring_q = ring_c @ m[:, :2].T + m[:, 2] + (2.5, 1.0)
    inside = int((np.hypot(c[:, 0] - 240, c[:, 1] - 135) < 80).sum())
    assert inside > 17
    ringed = residuals.shifted(np.vstack([q, ring_q]), np.vstack([c, ring_c]), m, geometry.RANSAC_PX)
    assert ringed.size == 0, (ringed, inside)
    # Perspective (a screenshot of a screen, a lens): smooth over the frame, the similarity fit to it leaves a
    # corner's matches off by several px the same way; the homography removes it.
    h = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1e-4, 1e-4, 1.0]])
    pts = np.column_stack([q, np.ones(len(q))]) @ h.T
    bent = pts[:, :2] / pts[:, 2:]
    fit, _ = geometry.fit(bent, c)
    assert fit is not None
    off = np.linalg.norm(bent - (c @ fit[:, :2].T + fit[:, 2]), axis=1)
    assert (off > 1.5).sum() >= 15 and off.max() > 3.0  # more than the noise, and more than FLAG_PX
    assert residuals.shifted(bent, c, fit, geometry.RANSAC_PX).size == 0


def test_a_moved_hand_is_found_a_reencode_and_a_resize_are_not(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    first = still_frame(7500, "hand", 0)
    original = fp_of(first)
    moved = residuals.measure(fp_of(still_frame(7500, "hand", 1)), original)
    assert moved.size >= 20 and moved.px >= 1.5, moved
    for edit in ("jpeg_q30", "resize_50"):
        copy = residuals.measure(fp_of(EDITS[edit](first)), original)
        assert copy.size < 7, (edit, copy)


def test_a_probe_reaches_the_calibration_table_and_the_golden_columns_stay() -> None:
    from dataclasses import fields

    from duplicates.labelled import measure_pair, still_pairs
    from duplicates.verify import Evidence

    pair = next(p for p in still_pairs(7500, 1, 0) if p.name == "still-hand0/frame1")
    probed = measure_pair(pair, probe=lambda q, c: {"shifted": residuals.measure(q, c).size}).flat()
    assert probed["shifted"] >= 20  # labelled.still_pairs' hand, as above
    plain = measure_pair(pair).flat()
    assert list(plain) == ["name", "truth", "decided", "related", "rule"] + [f.name for f in fields(Evidence)]
    assert {k: v for k, v in probed.items() if k != "shifted"} == plain
