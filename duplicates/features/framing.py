"""Framing: whether two frames of one size each show a strip of picture the other lacks (a panned camera).

Every edit of one photograph keeps one picture inside the other's frame (a crop
inside its original; an original inside a letterbox, a screenshot, a frame), so
one of the two shares outside is ~0; two frames of a camera that panned a little
each show a strip the other lacks. Added canvas (a border, a mat) is not picture.
"""

from __future__ import annotations

import numpy as np

from duplicates import opencv
from duplicates.features.cells import CELL, TEXTURE_STD
from duplicates.features.geometry import thumb_affine
from duplicates.fingerprint import Fingerprint

REFRAME_AREA = (0.8, 1.25)  # area ratio of the two frames that counts as "one size"
REFRAME_SHAPE = 0.03  # |log| of the aspect ratios' ratio that counts as "one shape"
CANVAS_TEXTURED = 0.3  # a strip with fewer textured pixels than this is added canvas, not picture


def reframed(query: Fingerprint, cand: Fingerprint, m: np.ndarray, mirrored: bool, strip_min: float) -> float:
    """min(share of the query outside the candidate's frame, share of the candidate outside the query's),
    when the two frames have one size and shape (0.0 otherwise).

    Copies: at most 1.5%. Only frames of about the same size and shape are judged, so a cropped photo
    inside an app's frame (both shares large, sizes unequal) stays a copy. A share of `strip_min` or more
    (the smallest the decision calls a reframing) is checked for added canvas, judged on the thumbnails
    (0.0 when the strip is canvas); a smaller share is returned as it is.
    """
    cv2 = opencv.cv2()
    qw, qh = query.feature_size
    cw, ch = cand.feature_size
    corners = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    mapped = (corners @ m[:, :2].T + m[:, 2]).astype(np.float32)
    area_q, area_c = float(qw * qh), abs(float(cv2.contourArea(mapped)))
    sides_c = sorted(np.linalg.norm(np.roll(mapped, -1, axis=0) - mapped, axis=1)[:2])
    same_shape = abs(np.log((min(qw, qh) / max(qw, qh)) / (sides_c[0] / max(sides_c[1], 1e-9)))) <= REFRAME_SHAPE
    if not same_shape or not REFRAME_AREA[0] <= area_c / max(area_q, 1.0) <= REFRAME_AREA[1]:
        return 0.0
    inside, _ = cv2.intersectConvexConvex(np.array([[0, 0], [qw, 0], [qw, qh], [0, qh]], np.float32), mapped)
    share = min(1 - inside / area_q, 1 - inside / max(area_c, 1.0))
    if share < strip_min:
        return float(max(0.0, share))
    # A strip of added canvas (a border, a mat, a frame) is not picture: judged on the thumbnails.
    a = thumb_affine(m, query, cand)
    q = np.ascontiguousarray(query.thumb[:, ::-1]) if mirrored else query.thumb
    if _is_canvas(q, cand.thumb, a) or _is_canvas(cand.thumb, q, cv2.invertAffineTransform(a.astype(np.float32))):
        return 0.0
    return float(share)


def _is_canvas(img: np.ndarray, other: np.ndarray, other_to_img: np.ndarray) -> bool:
    """Whether the part of `img` outside `other`'s warped frame is mostly flat (added canvas, not picture)."""
    cv2 = opencv.cv2()
    h, w = img.shape
    covered = cv2.warpAffine(np.ones(other.shape, np.uint8), other_to_img.astype(np.float32), (w, h),
                             flags=cv2.INTER_NEAREST, borderValue=0)
    outside = cv2.erode((covered == 0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    if outside.sum() < 16:
        return True
    # Local std over the outside pixels only (a thin strip's windows must not see the picture beside it).
    f, mask = img.astype(np.float32), outside.astype(np.float32)
    k = (2 * CELL, 2 * CELL)
    weight = np.maximum(cv2.blur(mask, k), 1e-6)
    mean = cv2.blur(f * mask, k) / weight
    std = np.sqrt(np.maximum(cv2.blur(f * f * mask, k) / weight - mean * mean, 0))
    return float((std[outside] >= TEXTURE_STD).mean()) < CANVAS_TEXTURED
