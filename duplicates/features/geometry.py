"""Geometry: ORB matches between two photos and the similarity that maps one onto the other.

Every edit of one photograph (resize, crop, letterbox, an inset in a screenshot,
a turn, a mirror image) moves its pixels by one similarity: rotation incl. 90°
turns, uniform scale, translation. A RANSAC fit of one to the matched keypoints
(the query also as its mirror image) is the geometric support both a copy and
another shot of the scene need; how much better a homography fits says whether
the camera moved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from duplicates import opencv
from duplicates.fingerprint import Fingerprint, Keypoints

MIN_MATCHES = 8  # ratio-test survivors needed to try a fit
MATCH_RATIOS = (0.8, 0.9)  # Lowe's ratio test; the second only when the first found no fit
MIN_INLIERS = 10  # inliers of the similarity fit that make it "the same scene geometry"
RANSAC_PX = 4.0  # inlier distance in feature-image pixels (480 px long side)
POSITION_NOISE = 0.1  # px: below this inlier position noise a bend is too small to be perspective
RANSAC_CONFIDENCE = 0.995
RANSAC_MAX_ITERS = 2000


@dataclass(frozen=True)
class Fit:
    """The best similarity fit of a pair (candidate -> query, feature pixels) and what it rests on."""

    matches: int = 0  # ratio-test matches it was fit to
    inliers: int = 0
    residual: float = 99.0  # median inlier residual, feature pixels
    mirrored: bool = False  # fit to the query's mirror image
    projective: float = 0.0  # F statistic of a homography over the similarity (projective())
    m: np.ndarray | None = None  # 2x3 similarity, None when no fit was found


def best_fit(query: Fingerprint, cand: Fingerprint) -> Fit:
    """The fit with the most inliers over the query as it is and mirrored, the strict ratio test first.

    A looser ratio test only when the strict one found no fit (MIN_INLIERS): a 40% crop or a heavy blur keeps
    few distinctive matches; chance fits it lets in still need the weak-fit evidence of the copy rules.
    """
    best = Fit()
    attempts = [(ratio, mirrored, qk) for ratio in MATCH_RATIOS
                for mirrored, qk in ((False, query.keypoints), (True, query.mirrored))]
    near: dict[bool, np.ndarray] = {}
    for ratio, mirrored, qk in attempts:
        if ratio != MATCH_RATIOS[0] and best.inliers >= MIN_INLIERS:
            break
        if mirrored not in near:
            near[mirrored] = nearest(qk, cand.keypoints)
        qpts, cpts = match(qk, cand.keypoints, near[mirrored], ratio)
        m, inl = fit(qpts, cpts)
        n_in = int(inl.sum())
        if m is not None and n_in > best.inliers:
            proj = cpts[inl] @ m[:, :2].T + m[:, 2]
            resid = float(np.median(np.linalg.norm(proj - qpts[inl], axis=1)))
            best = Fit(len(qpts), n_in, resid, mirrored, projective(qpts[inl], cpts[inl]), m)
    return best


def nearest(q: Keypoints, c: Keypoints) -> np.ndarray:
    """Each query descriptor's two nearest candidate descriptors: rows (query index, nearest index,
    nearest distance, second distance). One search serves every ratio test of the pair.

    What a brute-force k=2 Hamming search (OpenCV's BFMatcher.knnMatch) gives, row for row: the nearest is the
    lowest-indexed candidate at the smallest distance, the second distance the next smallest (equal to the first
    when two candidates tie). All distances at once (hamming_distances) cost a tenth of the matcher's search and
    its per-match objects (tests/duplicates/features/test_geometry.py holds them equal)."""
    if len(q) < 2 or len(c) < 2:
        return np.zeros((0, 4))
    dist = hamming_distances(q.desc, c.desc)
    rows = np.arange(len(dist))
    best = dist.argmin(axis=1)  # the first of equal minima: the lowest index, as the matcher keeps it
    first = dist[rows, best]
    dist[rows, best] = np.iinfo(dist.dtype).max
    return np.column_stack([rows, best, first, dist.min(axis=1)]).astype(np.float64)


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int32 (len(a), len(b)) Hamming distances between two sets of binary descriptors (uint8 rows of one width)."""
    import faiss

    a, b = np.ascontiguousarray(a, np.uint8), np.ascontiguousarray(b, np.uint8)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"descriptors of different widths: {a.shape}, {b.shape}")
    out = np.empty((len(a), len(b)), np.int32)
    if out.size:
        faiss.hammings(faiss.swig_ptr(a), faiss.swig_ptr(b), len(a), len(b), a.shape[1], faiss.swig_ptr(out))
    return out


def match(q: Keypoints, c: Keypoints, near: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Ratio-test matches (Lowe) among `nearest(q, c)`, as point arrays (query points, candidate points)."""
    good = near[near[:, 2] < ratio * near[:, 3]]
    return q.xy[good[:, 0].astype(int)].reshape(-1, 2), c.xy[good[:, 1].astype(int)].reshape(-1, 2)


def fit(qpts: np.ndarray, cpts: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Similarity candidate->query by RANSAC; (2x3 matrix or None, inlier mask)."""
    cv2 = opencv.cv2()
    if len(qpts) < MIN_MATCHES:
        return None, np.zeros(len(qpts), bool)
    m, mask = cv2.estimateAffinePartial2D(cpts, qpts, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                          maxIters=iterations(len(qpts)), confidence=RANSAC_CONFIDENCE,
                                          refineIters=10)
    if m is None or mask is None:
        return None, np.zeros(len(qpts), bool)
    return m, mask.ravel().astype(bool)


def iterations(matches: int) -> int:
    """RANSAC iterations that find a fit of MIN_INLIERS among `matches` at RANSAC_CONFIDENCE, at most RANSAC_MAX_ITERS.

    RANSAC stops by this rule once it has a fit (OpenCV's RANSACUpdateNumIters: log(1 - confidence) /
    log(1 - inlier share ** 2), two points a similarity); before it has one, it ran all 2,000 iterations, which two
    different photos never end (their best chance fit has a few inliers): most of a different pair's cost. A fit
    of fewer than MIN_INLIERS decides nothing (verify.measure), so searching longer for one than this only costs."""
    share = MIN_INLIERS / max(matches, MIN_INLIERS)
    if share >= 1.0:
        return RANSAC_MAX_ITERS
    return min(RANSAC_MAX_ITERS, math.ceil(math.log(1.0 - RANSAC_CONFIDENCE) / math.log(1.0 - share**2)))


def projective(qpts: np.ndarray, cpts: np.ndarray) -> float:
    """F statistic of a homography (8 dof) over a similarity (4 dof), least squares on the inliers.

    Under "the same photograph" the similarity is the true model and the
    homography only fits noise: F ~ F(4, 2n - 8), about 1. A second exposure
    from a camera that turned or moved bends straight lines by perspective; the
    homography then explains much more of the residual than chance.
    """
    cv2 = opencv.cv2()
    n = len(qpts)
    if n < 10:
        return 0.0
    src = cpts.astype(np.float64)
    dst = qpts.astype(np.float64)
    centre, spread = src.mean(axis=0), float(src.std()) or 1.0
    norm = (src - centre) / spread
    a = np.zeros((2 * n, 4))
    a[0::2] = np.column_stack([norm[:, 0], -norm[:, 1], np.ones(n), np.zeros(n)])
    a[1::2] = np.column_stack([norm[:, 1], norm[:, 0], np.zeros(n), np.ones(n)])
    p, *_ = np.linalg.lstsq(a, dst.ravel(), rcond=None)
    ss_sim = float(((a @ p - dst.ravel()) ** 2).sum())
    h, _ = cv2.findHomography(norm, dst, 0)
    if h is None:
        return 0.0
    proj = cv2.perspectiveTransform(norm.reshape(-1, 1, 2), h).reshape(-1, 2)
    ss_hom = float(((proj - dst) ** 2).sum())
    noise = max(ss_hom / (2 * n - 8), POSITION_NOISE**2)
    return max(0.0, (ss_sim - ss_hom) / 4) / noise


def _centred_scale(sx: float, sy: float) -> np.ndarray:
    """Resize between pixel grids whose pixel centres sit at +0.5 (what cv2.resize does)."""
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], np.float64)


def thumb_affine(m: np.ndarray, query: Fingerprint, cand: Fingerprint) -> np.ndarray:
    """The feature-space fit expressed between the two thumbnails."""
    qth, qtw = query.thumb.shape
    cth, ctw = cand.thumb.shape
    to_q = _centred_scale(qtw / query.feature_size[0], qth / query.feature_size[1])
    from_c = _centred_scale(cand.feature_size[0] / ctw, cand.feature_size[1] / cth)
    full = to_q @ np.vstack([m, [0, 0, 1]]) @ from_c
    return full[:2]
