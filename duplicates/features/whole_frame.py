"""The whole-frame fallback: two thumbnails compared directly when keypoints are too few for a fit.

Tiny thumbnails, JPEG q5 or a heavy blur leave too few corners for ORB; a copy of
such a photo still agrees pixel for pixel once turned or flipped the right way,
so the frames are compared whole under the 8 turns/flips whose aspect ratio fits.
"""

from __future__ import annotations

import numpy as np

from duplicates import opencv
from duplicates.features import pixels
from duplicates.fingerprint import Fingerprint, resize_long

FEW_KEYPOINTS = 80  # below this many keypoints an image gets the whole-frame fallback
COARSE_SIDE = 20  # px: ... which compares in full only the turns/flips whose pictures correlate at this size
WHOLE_FRAME_COARSE_NCC = 0.5  # ... this well (a copy's tone curve is monotone: ~0.9 and up)


def starved(query: Fingerprint, cand: Fingerprint) -> bool:
    """Whether either side has too few keypoints for a fit to be expected (FEW_KEYPOINTS)."""
    return min(len(query.keypoints), len(cand.keypoints)) < FEW_KEYPOINTS


def _scale(sx: float, sy: float) -> np.ndarray:
    return np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], np.float64)


def _dihedral(k: int, flip: bool, w: int, h: int) -> np.ndarray:
    """Affine (2x3) taking pixel coords of a (w x h) image to those of np.rot90(img, k) (then mirrored)."""
    m = np.eye(3)
    cw, ch = w, h
    for _ in range(k % 4):  # np.rot90: counter-clockwise; (x, y) -> (y, cw - 1 - x)
        m = np.array([[0, 1, 0], [-1, 0, cw - 1], [0, 0, 1]], float) @ m
        cw, ch = ch, cw
    if flip:
        m = np.array([[-1, 0, cw - 1], [0, 1, 0], [0, 0, 1]], float) @ m
    return m[:2]


def whole_frame(query: Fingerprint, cand: Fingerprint, max_noise: float) -> pixels.Agreement | None:
    """Best whole-frame agreement under the 8 turns/flips when the aspect ratios agree (None: none compared).

    A turn or flip whose coarse picture (COARSE_SIDE px) does not correlate is not compared in full: a
    starved upload (a 40% crop with 48 keypoints) met every candidate of its shape four times over, at
    ~30 ms a comparison (2.4 s for one upload check). `max_noise`: see pixels.preference.
    """
    cv2 = opencv.cv2()
    h, w = query.thumb.shape
    ch, cw = cand.thumb.shape
    q_coarse = resize_long(query.thumb.astype(np.float32), COARSE_SIDE).ravel()
    best: pixels.Agreement | None = None
    for k in range(4):
        rw, rh = (cw, ch) if k % 2 == 0 else (ch, cw)
        if abs(np.log((rw / rh) / (w / h))) > 0.04:
            continue
        for flip in (False, True):
            d = np.vstack([_dihedral(k, flip, cw, ch), [0, 0, 1]])
            a = (_scale(w / rw, h / rh) @ d)[:2]
            turned = cv2.warpAffine(cand.thumb.astype(np.float32), a.astype(np.float32), (w, h))
            c_coarse = resize_long(turned, COARSE_SIDE).ravel()
            if np.std(q_coarse) > 0 and np.std(c_coarse) > 0 and \
                    np.corrcoef(q_coarse, c_coarse)[0, 1] < WHOLE_FRAME_COARSE_NCC:
                continue
            agr, _, _ = pixels.warp_compare(query, cand, a, False, max_noise)
            if best is None or (agr.agree - agr.interior_bad) > (best.agree - best.interior_bad):
                best = agr
    return best
