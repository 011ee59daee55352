"""Decide the relation of two photos from their fingerprints (and the global cosine).

Stages, cheapest first; each either decides or hands over:
1. sha256 equal: the same file, a COPY at no cost.
2. Geometry: ORB matches between the two images (the query also as its mirror
   image) and a RANSAC similarity fit (rotation incl. 90° turns, uniform scale,
   translation: what every edit of one photograph does to its pixels: resize,
   crop, letterbox, an inset in a screenshot, a turn).
3. Aligned pixels: the candidate's thumbnail is warped onto the query's with
   that fit, both are blurred a little (JPEG q5 blocks, a 3-px blur) and
   tone-matched (colour filters, grayscale), and the overlap is compared cell by
   cell. A copy agrees everywhere except under an overlay (a text bar, a logo);
   another exposure of the scene disagrees where people moved and where
   parallax shifted the background, and its keypoints do not fit one
   similarity as tightly.
4. Whole-frame fallback when keypoints are too few (tiny thumbnails, JPEG q5,
   heavy blur): the thumbnails compared directly under the 8 turns/flips when
   the aspect ratios agree.
Geometric support without pixel agreement means SAME_SCENE; no support and a
modest cosine means RELATED.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from duplicates.fingerprint import Fingerprint, Keypoints
from duplicates.relation import Relation, Verdict

# --- thresholds (tuned by bench/duplicates.py on a split; docs/duplicates.md) ---
MIN_MATCHES = 8  # ratio-test survivors needed to try a fit
MIN_INLIERS = 10  # inliers of the similarity fit that make it "the same scene geometry"
RANSAC_PX = 4.0  # inlier distance in feature-image pixels (480 px long side)
CELL = 8  # pixel agreement cell, thumbnail pixels
CELL_TOL = 14.0  # mean abs difference (of 255) under which a cell agrees
COPY_AGREE = 0.80  # share of overlap cells that must agree for a copy
MIN_OVERLAP = 0.25  # overlap share of the smaller image needed to judge pixels
SCENE_COSINE = 0.80  # with no geometric support, a cosine this high is still "same scene"


@dataclass(frozen=True)
class Evidence:
    """What the stages measured for one pair (also what the benchmark tunes on)."""

    matches: int = 0
    inliers: int = 0
    residual: float = 99.0  # median inlier residual, feature pixels
    mirrored: bool = False
    agree: float = 0.0  # share of overlap cells whose aligned pixels agree
    overlap: float = 0.0  # overlap area / smaller image area
    whole_frame: float = 0.0  # best agreement of the whole-frame fallback


def _match(q: Keypoints, c: Keypoints) -> tuple[np.ndarray, np.ndarray]:
    """Ratio-test matches (Lowe 0.8) as point arrays (query points, candidate points)."""
    import cv2

    if len(q) < 2 or len(c) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(q.desc, c.desc, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < 0.8 * n.distance]
    qi = np.array([m.queryIdx for m in good], int)
    ci = np.array([m.trainIdx for m in good], int)
    return q.xy[qi].reshape(-1, 2), c.xy[ci].reshape(-1, 2)


def _fit(qpts: np.ndarray, cpts: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Similarity candidate->query by RANSAC; (2x3 matrix or None, inlier mask)."""
    import cv2

    if len(qpts) < MIN_MATCHES:
        return None, np.zeros(len(qpts), bool)
    m, mask = cv2.estimateAffinePartial2D(cpts, qpts, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                          maxIters=2000, confidence=0.995, refineIters=10)
    if m is None or mask is None:
        return None, np.zeros(len(qpts), bool)
    return m, mask.ravel().astype(bool)


def _scale(sx: float, sy: float) -> np.ndarray:
    return np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], np.float64)


def _thumb_affine(m: np.ndarray, query: Fingerprint, cand: Fingerprint) -> np.ndarray:
    """The feature-space fit expressed between the two thumbnails."""
    qth, qtw = query.thumb.shape
    cth, ctw = cand.thumb.shape
    to_q = _scale(qtw / query.feature_size[0], qth / query.feature_size[1])
    from_c = _scale(cand.feature_size[0] / ctw, cand.feature_size[1] / cth)
    full = to_q @ np.vstack([m, [0, 0, 1]]) @ from_c
    return full[:2]


def _prepare(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), 1.2)


def _tone_match(src: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Map src's values so their distribution over `mask` equals ref's (any monotone tone curve)."""
    s = src[mask]
    r = ref[mask]
    qs = np.linspace(0, 100, 33)
    sp = np.percentile(s, qs)
    rp = np.percentile(r, qs)
    sp = np.maximum.accumulate(sp + np.arange(len(sp)) * 1e-3)
    return np.interp(src, sp, rp).astype(np.float32)


def _agreement(q: np.ndarray, c: np.ndarray, mask: np.ndarray) -> float:
    """Share of (mostly covered) cells whose mean abs difference is under CELL_TOL."""
    h, w = q.shape
    hh, ww = h - h % CELL, w - w % CELL
    if hh == 0 or ww == 0 or mask.sum() < 16:
        return 0.0
    ct = _tone_match(c, q, mask)
    diff = np.abs(q - ct) * mask
    cells = diff[:hh, :ww].reshape(hh // CELL, CELL, ww // CELL, CELL).sum(axis=(1, 3))
    cover = mask[:hh, :ww].reshape(hh // CELL, CELL, ww // CELL, CELL).sum(axis=(1, 3))
    used = cover >= CELL * CELL * 0.75
    if not used.any():
        return 0.0
    mean = cells[used] / cover[used]
    return float(np.mean(mean < CELL_TOL))


def _warp_compare(query: Fingerprint, cand: Fingerprint, m: np.ndarray, mirrored: bool) -> tuple[float, float]:
    """(agreement, overlap) of the candidate's thumbnail warped onto the query's."""
    import cv2

    q = query.thumb[:, ::-1] if mirrored else query.thumb
    a = _thumb_affine(m, query, cand)
    h, w = q.shape
    warped = cv2.warpAffine(_prepare(cand.thumb), a, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    ones = np.ones(cand.thumb.shape, np.uint8)
    mask = cv2.warpAffine(ones, a, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    smaller = min(q.size, cand.thumb.size * abs(np.linalg.det(a[:, :2])))
    overlap = float(mask.sum() / max(smaller, 1.0))
    if overlap < MIN_OVERLAP:
        return 0.0, overlap
    return _agreement(_prepare(q), warped, mask), overlap


def _whole_frame(query: Fingerprint, cand: Fingerprint) -> float:
    """Best agreement of the candidate's thumbnail over the query's under the 8 turns/flips, same aspect only."""
    import cv2

    q = _prepare(query.thumb)
    h, w = q.shape
    best = 0.0
    c0 = cand.thumb
    for k in range(4):
        rot = np.rot90(c0, k)
        ch, cw = rot.shape
        if abs(np.log((cw / ch) / (w / h))) > 0.04:
            continue
        for variant in (rot, rot[:, ::-1]):
            c = _prepare(cv2.resize(np.ascontiguousarray(variant), (w, h), interpolation=cv2.INTER_AREA))
            best = max(best, _agreement(q, c, np.ones((h, w), bool)))
    return best


def measure(query: Fingerprint, cand: Fingerprint) -> Evidence:
    """Run the geometric and pixel stages; the evidence relate() decides on."""
    best: tuple[int, np.ndarray | None, bool, int, float] = (0, None, False, 0, 99.0)
    for mirrored, qk in ((False, query.keypoints), (True, query.mirrored)):
        qpts, cpts = _match(qk, cand.keypoints)
        m, inl = _fit(qpts, cpts)
        n_in = int(inl.sum())
        if m is not None and n_in > best[0]:
            proj = cpts[inl] @ m[:, :2].T + m[:, 2]
            resid = float(np.median(np.linalg.norm(proj - qpts[inl], axis=1)))
            best = (n_in, m, mirrored, len(qpts), resid)
    n_in, m, mirrored, n_match, resid = best
    agree = overlap = 0.0
    if m is not None and n_in >= MIN_INLIERS:
        agree, overlap = _warp_compare(query, cand, m, mirrored)
    whole = 0.0
    if agree < COPY_AGREE:
        whole = _whole_frame(query, cand)
    return Evidence(n_match, n_in, resid, mirrored, agree, overlap, whole)


def decide(ev: Evidence, cosine: float) -> Verdict:
    """The relation the evidence supports (one place for every threshold)."""
    if ev.inliers >= MIN_INLIERS and ev.agree >= COPY_AGREE:
        return Verdict(Relation.COPY, ev.agree,
                       f"inliers {ev.inliers}, agree {ev.agree:.2f}" + (", mirrored" if ev.mirrored else ""))
    if ev.whole_frame >= COPY_AGREE:
        return Verdict(Relation.COPY, ev.whole_frame, f"whole frame agree {ev.whole_frame:.2f}")
    if ev.inliers >= MIN_INLIERS:
        return Verdict(Relation.SAME_SCENE, min(1.0, ev.inliers / 100),
                       f"inliers {ev.inliers}, agree {ev.agree:.2f}: another shot")
    if cosine >= SCENE_COSINE:
        return Verdict(Relation.SAME_SCENE, float(cosine), f"cosine {cosine:.2f}, no geometric fit")
    return Verdict(Relation.RELATED, float(min(1.0, max(0.0, cosine))), f"cosine {cosine:.2f}")


def relate(query: Fingerprint, candidate: Fingerprint, cosine: float) -> Verdict:
    """Decide the relation of two photos; cosine = global embedding similarity."""
    if query.sha256 == candidate.sha256:
        return Verdict(Relation.COPY, 1.0, "sha256 equal")
    return decide(measure(query, candidate), cosine)
