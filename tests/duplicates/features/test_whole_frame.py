"""features/whole_frame.py: soft photos without keypoints compared whole, under every turn and flip."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageFilter

from duplicates.features import whole_frame
from duplicates.fingerprint import Fingerprint
from duplicates.rules import THRESHOLDS
from duplicates.synthetic import shot


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_the_dihedral_affine_maps_pixels_as_numpy_turns_them(k: int, flip: bool) -> None:
    img = np.arange(5 * 7).reshape(5, 7)  # h 5, w 7
    turned = np.rot90(img, k)
    if flip:
        turned = turned[:, ::-1]
    a = whole_frame._dihedral(k, flip, 7, 5)
    for y in range(5):
        for x in range(7):
            tx, ty = a @ (x, y, 1)
            assert turned[round(ty), round(tx)] == img[y, x]


def _soft(seed: int) -> Image.Image:
    return shot(seed, 0).filter(ImageFilter.GaussianBlur(8))


def test_a_turned_soft_copy_agrees_whole_frame(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    original = fp_of(_soft(5003))
    turned = fp_of(_soft(5003).transpose(Image.Transpose.ROTATE_270))
    assert whole_frame.starved(turned, original)
    agr = whole_frame.whole_frame(turned, original, THRESHOLDS.max_noise)
    assert agr is not None and agr.agree > 0.95 and agr.interior_bad < 0.01


def test_unlike_or_other_shaped_pictures_are_not_compared(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    original = fp_of(_soft(5003))
    assert whole_frame.whole_frame(fp_of(_soft(5004)), original, THRESHOLDS.max_noise) is None
    square = fp_of(_soft(5003).crop((60, 0, 420, 360)))
    assert whole_frame.whole_frame(square, original, THRESHOLDS.max_noise) is None


def test_a_photo_with_corners_is_not_starved(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    fp = fp_of(shot(5001, 0))
    assert len(fp.keypoints) >= whole_frame.FEW_KEYPOINTS and not whole_frame.starved(fp, fp)
