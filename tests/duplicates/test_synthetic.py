"""The photo-free test material: another shot moves figures the way a camera would see them move."""

from __future__ import annotations

import numpy as np

from duplicates import synthetic


def test_a_figure_that_moved_takes_its_own_texture_along() -> None:
    """A person who moved is the same person a few pixels away, clothes and all: drawn 7 px to the right, the
    figure is the same pixels 7 px to the right (before, its texture stayed in place under a moving outline,
    which no camera sees)."""
    blob = synthetic._Blob(300.0, 350.0, 30.0, 80.0, np.array([120.0, 90.0, 60.0], np.float32), 12345)
    here = np.zeros((*synthetic.WORLD[::-1], 3), np.float32)
    there = here.copy()
    synthetic._draw_blobs(here, [blob], 0, 0)
    synthetic._draw_blobs(there, [blob], 7, 0)
    inside = here.any(axis=2)
    assert inside.sum() > 5000
    assert np.array_equal(np.roll(here, 7, axis=1)[np.roll(inside, 7, axis=1)], there[np.roll(inside, 7, axis=1)])


def test_another_shot_differs_and_the_reference_shot_is_repeatable() -> None:
    assert np.array_equal(np.asarray(synthetic.shot(1000, 0)), np.asarray(synthetic.shot(1000, 0)))
    assert not np.array_equal(np.asarray(synthetic.shot(1000, 0)), np.asarray(synthetic.shot(1000, 1)))


def test_a_near_static_frame_differs_only_where_the_hand_moved() -> None:
    """Issue 26's case, generated: a fixed camera, 1600 px wide, one hand moved a few pixels. The frames differ by
    more than 20 grey levels on well under 2% of the pixels, all inside one compact box (a few percent of the
    frame); the video kind's camera drifts, so its differences are spread along every edge."""
    a = np.asarray(synthetic.still_frame(7500, "hand", 0).convert("L"), np.float32)
    b = np.asarray(synthetic.still_frame(7500, "hand", 1).convert("L"), np.float32)
    assert a.shape == (synthetic.STILL[1], synthetic.STILL[0])
    assert np.array_equal(a, np.asarray(synthetic.still_frame(7500, "hand", 0).convert("L"), np.float32))
    ys, xs = np.nonzero(np.abs(a - b) > 20)
    assert 0.0005 < len(xs) / a.size < 0.02
    assert np.ptp(xs) * np.ptp(ys) / a.size < 0.06
