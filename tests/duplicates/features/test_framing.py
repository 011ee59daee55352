"""features/framing.py: two frames of one size each showing a strip the other lacks; added canvas is no picture."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from duplicates.edits import EDITS
from duplicates.features import framing, geometry
from duplicates.fingerprint import Fingerprint
from duplicates.rules import THRESHOLDS
from duplicates.synthetic import shot

STRIP = THRESHOLDS.reframe_max


def test_a_panned_frame_shows_a_strip_the_other_lacks(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    fp = fp_of(shot(5001, 0))
    w = fp.feature_size[0]
    panned = np.array([[1.0, 0, 0.08 * w], [0, 1.0, 0]])
    assert framing.reframed(fp, fp, panned, False, STRIP) == pytest.approx(0.08, abs=0.005)
    assert framing.reframed(fp, fp, np.array([[1.0, 0, 0], [0, 1.0, 0]]), False, STRIP) == 0.0


def test_a_crop_is_inside_its_original(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    photo = shot(5001, 0)
    crop, original = fp_of(EDITS["crop_80"](photo)), fp_of(photo)
    fit = geometry.best_fit(crop, original)
    assert fit.m is not None
    assert framing.reframed(crop, original, fit.m, fit.mirrored, STRIP) == 0.0  # (frames of other sizes too)


def test_an_added_mat_is_canvas_not_picture(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    """4% cut off one side and a white mat as wide added on the other: one size, a strip each, but one is blank."""
    photo = shot(5001, 0)
    matted, original = fp_of(EDITS["shift_mat"](photo)), fp_of(photo)
    fit = geometry.best_fit(matted, original)
    assert fit.m is not None
    assert framing.reframed(matted, original, fit.m, fit.mirrored, STRIP) == 0.0
    # Under the strip the caller asks about, the share is returned unchecked.
    assert 0.02 < framing.reframed(matted, original, fit.m, fit.mirrored, 1.0) < 0.06
