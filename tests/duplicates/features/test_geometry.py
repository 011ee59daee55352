"""features/geometry.py: the similarity fit finds the turn, the mirror image, the scale; strangers get none."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageOps

from duplicates.features import geometry
from duplicates.fingerprint import Fingerprint
from duplicates.synthetic import shot


def _angle_scale(m: np.ndarray) -> tuple[float, float]:
    return math.degrees(math.atan2(m[1, 0], m[0, 0])), float(math.hypot(m[0, 0], m[1, 0]))


def test_the_fit_finds_a_quarter_turn(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    photo = shot(5001, 0)
    fit = geometry.best_fit(fp_of(photo.transpose(Image.Transpose.ROTATE_90)), fp_of(photo))
    assert fit.m is not None and fit.inliers >= 50 and not fit.mirrored
    angle, scale = _angle_scale(fit.m)
    assert abs(angle + 90) < 1.0 and abs(scale - 1) < 0.02, (angle, scale)  # (x, y) -> (y, w - 1 - x)
    assert fit.residual < 1.0 and fit.matches >= fit.inliers


def test_the_fit_finds_a_mirror_image_and_a_half_size_copy(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    photo = shot(5002, 0)
    original = fp_of(photo)
    mirrored = geometry.best_fit(fp_of(ImageOps.mirror(photo)), original)
    assert mirrored.mirrored and mirrored.inliers >= 50
    assert abs(_angle_scale(mirrored.m)[0]) < 1.0  # type: ignore[arg-type]
    small = fp_of(photo.resize((photo.width // 2, photo.height // 2)))
    fit = geometry.best_fit(small, original)
    assert fit.m is not None and not fit.mirrored
    # Feature images are at least MIN_FEATURE_SIDE on their long side: the fit is between those.
    expected = small.feature_size[0] / original.feature_size[0]
    assert abs(_angle_scale(fit.m)[1] - expected) < 0.02


def test_two_different_photos_get_no_fit_worth_keeping(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    fit = geometry.best_fit(fp_of(shot(5003, 0)), fp_of(shot(5004, 0)))
    assert fit.inliers < geometry.MIN_INLIERS


def test_the_projective_statistic_tells_a_bend_from_a_similarity() -> None:
    rng = np.random.default_rng(1)
    c = rng.uniform(0, 480, (60, 2))
    theta, s = 0.3, 1.2
    rot = s * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    similar = c @ rot.T + (10, 20) + rng.normal(0, 0.3, c.shape)
    assert geometry.projective(similar, c) < 5
    h = np.array([[1.0, 0.05, 5], [0.02, 1.0, 3], [2e-4, 1e-4, 1.0]])
    ph = np.c_[c, np.ones(len(c))] @ h.T
    bent = ph[:, :2] / ph[:, 2:] + rng.normal(0, 0.3, c.shape)
    assert geometry.projective(bent, c) > 50
    assert geometry.projective(similar[:9], c[:9]) == 0.0  # too few inliers to tell


def test_the_thumbnail_affine_of_the_identity_is_the_identity(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    fp = fp_of(shot(5001, 0))
    a = geometry.thumb_affine(np.array([[1.0, 0, 0], [0, 1.0, 0]]), fp, fp)
    assert np.allclose(a, [[1, 0, 0], [0, 1, 0]])


def _knn_rows(q: np.ndarray, c: np.ndarray) -> np.ndarray:
    """nearest()'s rows as OpenCV's brute-force matcher gives them (what nearest() computed before issue 28)."""
    import cv2

    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(q, c, k=2)
    rows = [(m.queryIdx, m.trainIdx, m.distance, n.distance) for m, n in (p for p in pairs if len(p) == 2)]
    return np.array(rows, np.float64).reshape(-1, 4)


def test_nearest_is_the_brute_force_matchers_answer_ties_included(fp_of: Callable[[Image.Image], Fingerprint]
                                                                    ) -> None:
    """Row for row and bit for bit: the nearest index (the lowest of tied ones), both distances."""
    from duplicates.fingerprint import Keypoints

    a, b = fp_of(shot(5005, 0)), fp_of(shot(5005, 1))
    cases = [(a.keypoints.desc, b.keypoints.desc), (a.mirrored.desc, b.keypoints.desc),
             (b.keypoints.desc, a.mirrored.desc)]
    rng = np.random.default_rng(3)
    few = rng.integers(0, 256, (6, 32), dtype=np.uint8)  # descriptors drawn from a few: ties everywhere
    cases += [(few[rng.integers(0, 6, 40)], few[rng.integers(0, 6, 70)]),
              (rng.integers(0, 256, (50, 32), dtype=np.uint8), rng.integers(0, 256, (2, 32), dtype=np.uint8)),
              (rng.integers(0, 256, (2, 32), dtype=np.uint8), rng.integers(0, 256, (300, 32), dtype=np.uint8))]
    tied = 0
    for q, c in cases:
        got = geometry.nearest(Keypoints(np.zeros((len(q), 2), np.float32), q),
                               Keypoints(np.zeros((len(c), 2), np.float32), c))
        want = _knn_rows(q, c)
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
        tied += int((want[:, 2] == want[:, 3]).sum())
    assert tied > 30  # the tie-break was exercised
    one = Keypoints(np.zeros((1, 2), np.float32), few[:1])
    assert geometry.nearest(one, Keypoints(np.zeros((6, 2), np.float32), few)).shape == (0, 4)


def test_hamming_distances_count_differing_bits() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 256, (7, 32), dtype=np.uint8), rng.integers(0, 256, (5, 32), dtype=np.uint8)
    bits = np.unpackbits(a[:, None, :] ^ b[None, :, :], axis=2).sum(axis=2)
    assert np.array_equal(geometry.hamming_distances(a, b), bits)
    assert geometry.hamming_distances(a[:0], b).shape == (0, 5)


def test_ransac_stops_where_a_fit_worth_keeping_would_have_been_found() -> None:
    """The iterations find a fit of MIN_INLIERS among n matches at RANSAC_CONFIDENCE (OpenCV's own stopping rule)
    instead of 2,000 for every pair of different photos; few matches need few, many keep the cap."""
    assert [geometry.iterations(n) for n in (8, 10, 20, 60, 100, 400)] == [2000, 2000, 19, 189, 528, 2000]
    for n in (11, 20, 60, 150):
        k = geometry.iterations(n)
        assert (1 - (geometry.MIN_INLIERS / n) ** 2) ** k <= 1 - geometry.RANSAC_CONFIDENCE


def test_a_fit_of_min_inliers_among_chance_matches_is_still_found() -> None:
    """MIN_INLIERS true matches (a turn, half the size, a shift) hidden among chance ones: found in 39 or more of 40
    draws at 60 matches (189 iterations where 2,000 ran before; 0.995 confidence expects 0.2 misses)."""
    found = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        cand = rng.uniform(0, 480, (60, 2)).astype(np.float32)
        query = rng.uniform(0, 480, (60, 2)).astype(np.float32)
        true = rng.choice(60, geometry.MIN_INLIERS, replace=False)
        m = np.array([[0.0, -0.5, 300.0], [0.5, 0.0, 20.0]])
        query[true] = cand[true] @ m[:, :2].T + m[:, 2]
        fit, inliers = geometry.fit(query, cand)
        found += fit is not None and int(inliers[true].sum()) == geometry.MIN_INLIERS
    assert found >= 39  # 20 iterations find it in about 17 of 40
