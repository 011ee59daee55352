"""Residuals: keypoints the similarity fit leaves a few pixels off, together, the same way (issue 26).

In a copy, the matched keypoints' residuals under the fit (matched position minus the fit's prediction, feature
pixels) are resampling and JPEG noise: small, each its own way, or a field smooth over the frame (a screenshot's
perspective, a lens). In another moment of a near-static scene the keypoints on what moved (a hand, a person)
sit a few pixels off the fit, all in one direction, in one compact place: RANSAC_PX (4 px) keeps most of them
inliers, so the fit does not see them. Measured here: the largest cluster of such matches.

1. The ratio-test matches of the fit within REACH x RANSAC_PX of its prediction.
2. A smooth field removed: a homography fit robustly (least median) to them; what is left is each one's residual.
3. A match is off when its residual exceeds FLAG_PX and NOISE_TIMES x the pair's median residual (a resized copy's
   keypoints scatter by about a pixel; a same-size one's sit where they were).
4. Off matches within LINK_PX of each other whose residual vectors agree (differ by at most AGREE_PX, or half the
   smaller of them) are one cluster; a cluster counts only when it holds at least PURITY of the matches inside its
   convex hull (a moved hand is off everywhere on it; a 90° turn's keypoints of one pyramid level, off by a pixel
   each from the level's rounding, lie spread among keypoints that are not) and MIN_CLUSTER matches.
`Shifted.size`: the size of the largest such cluster; `Shifted.px`: the length of its mean residual.

Measured, not used (docs/duplicates.md, "What is left", (g)): no rule reads it and it is not part of
`verify.Evidence`, and it lives outside duplicates/features/ on purpose, so RULES_VERSION (a digest of that code)
does not move for it. bench/calibration.py reports it beside the Evidence. On the golden near-static set (seed
7500) and the generated copies: copies 0-4, near-static other shots 3-59 (17 of 20 at 9 or more); held out (seed
7700), with "a copy needs fewer than 7": other shots called copies 72 -> 20 of 80, but 90° turns of near-static
frames (a pyramid level's keypoints off by about 1.1 px, in one place) reach 11-14 and a shared photo's flipped,
cropped q20 copy 15: three copies lost. It also moves with the stored positions' 1/64-px rounding (one golden
pair's cluster is 14 on fresh keypoints, 25 on stored ones): too fragile to decide on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from duplicates import opencv
from duplicates.features import geometry
from duplicates.fingerprint import Fingerprint

REACH = 3.0  # x RANSAC_PX: matches this far off the fit still count (a hand moved past the inlier tolerance)
FLAG_PX = 1.0  # feature px: a residual under this is noise
NOISE_TIMES = 3.78  # x the median residual: 3 sigma of a 2-D Gaussian's residual (median 1.18 sigma)
LINK_PX = 40.0  # feature px between two matches of one cluster
AGREE_PX = 1.0  # feature px: residual vectors of one cluster differ by at most this (or half the smaller)
PURITY = 0.5  # share of the matches inside the cluster's hull that are in it
MIN_CLUSTER = 3


@dataclass(frozen=True)
class Shifted:
    """The largest coherent cluster of matches off the fit."""

    size: int = 0
    px: float = 0.0  # length of its mean residual, feature pixels


def measure(query: Fingerprint, cand: Fingerprint) -> Shifted:
    """The largest coherent cluster off the pair's fit: the matches geometry.best_fit keeps (the strict ratio test
    first, the query as it is and mirrored, the fit with the most inliers), measured by shifted()."""
    best: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
    for ratio in geometry.MATCH_RATIOS:
        if best is not None and best[0] >= geometry.MIN_INLIERS:
            break
        for qk in (query.keypoints, query.mirrored):
            qpts, cpts = geometry.match(qk, cand.keypoints, geometry.nearest(qk, cand.keypoints), ratio)
            m, inl = geometry.fit(qpts, cpts)
            if m is not None and (best is None or int(inl.sum()) > best[0]):
                best = (int(inl.sum()), qpts, cpts, m)
    if best is None or best[0] < geometry.MIN_INLIERS:
        return Shifted()
    return shifted(best[1], best[2], best[3], geometry.RANSAC_PX)


def shifted(qpts: np.ndarray, cpts: np.ndarray, m: np.ndarray, ransac_px: float) -> Shifted:
    """The largest coherent cluster of matches (query points `qpts`, candidate points `cpts`, feature pixels)
    whose positions the similarity `m` (candidate -> query) leaves off by more than noise, the same way."""
    cv2 = opencv.cv2()
    if m is None or len(qpts) < 8:
        return Shifted()
    q = np.asarray(qpts, np.float64)
    c = np.asarray(cpts, np.float64)
    off = q - (c @ m[:, :2].T + m[:, 2])
    keep = np.linalg.norm(off, axis=1) <= REACH * ransac_px
    q, c, off = q[keep], c[keep], off[keep]
    if len(q) < 8:
        return Shifted()
    h, _ = cv2.findHomography(c, q, cv2.LMEDS)
    resid = off - np.median(off, axis=0) if h is None else q - cv2.perspectiveTransform(
        c.reshape(-1, 1, 2), h).reshape(-1, 2)
    mag = np.linalg.norm(resid, axis=1)
    flagged = np.flatnonzero(mag > max(FLAG_PX, NOISE_TIMES * float(np.median(mag))))
    clusters = _clusters(q, resid, mag, flagged)
    best = Shifted()
    for members in clusters:
        if len(members) < MIN_CLUSTER or len(members) <= best.size:
            continue
        hull = cv2.convexHull(q[members].astype(np.float32))
        inside = sum(cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0 for x, y in q)
        if len(members) >= PURITY * max(inside, 1):
            best = Shifted(len(members), float(np.linalg.norm(resid[members].mean(axis=0))))
    return best


def _clusters(q: np.ndarray, resid: np.ndarray, mag: np.ndarray, flagged: np.ndarray) -> list[list[int]]:
    """Connected groups of flagged matches: near each other (LINK_PX) with agreeing residuals."""
    parent = {int(i): int(i) for i in flagged}

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for k, a in enumerate(flagged):
        rest = flagged[k + 1:]
        if not len(rest):
            break
        near = np.linalg.norm(q[rest] - q[a], axis=1) <= LINK_PX
        agree = np.linalg.norm(resid[rest] - resid[a], axis=1) <= np.maximum(
            AGREE_PX, 0.5 * np.minimum(mag[rest], mag[a]))
        for b in rest[near & agree]:
            parent[root(int(a))] = root(int(b))
    groups: dict[int, list[int]] = {}
    for i in parent:
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())
