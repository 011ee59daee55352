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
Geometric support without pixel agreement means SAME_SCENE; without
geometric support two photos are only RELATED, whatever their cosine: a global
embedding scores two different goldfinches as high as two shots of one.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from duplicates import opencv, rules
from duplicates.fingerprint import Fingerprint, Keypoints, chroma_planes, resize_long
from duplicates.relation import Relation, Verdict

# --- measurement parameters (the decision's thresholds are data: duplicates/thresholds.toml, rules.py) ---
# Relations computed under other rules are stale: RULES_VERSION is derived from this module's code, the rules
# and the thresholds (rules_version below), so any change to them re-verifies stored relations; the pinned
# value in tests/duplicates/test_rules.py makes such a change visible in review. History of the hand-made
# versions: v10 colour that moved counts; v9 faint motion; v8 edge motion, overlay bands; v7 overlay depth;
# v6 another shot judged from both sides; v5 keypoint-vote candidates, loose weak fits.
MIN_MATCHES = 8  # ratio-test survivors needed to try a fit
MATCH_RATIOS = (0.8, 0.9)  # Lowe's ratio test; the second only when the first found no fit
MIN_INLIERS = 10  # inliers of the similarity fit that make it "the same scene geometry"
BLUR = 1.2  # Gaussian sigma (thumbnail px) both sides get before comparing
RANSAC_PX = 4.0  # inlier distance in feature-image pixels (480 px long side)
CELL = 4  # pixel agreement cell, thumbnail pixels
CELL_TOL = 12.0  # a cell whose mean abs difference (of 255) is under this always agrees
NOISE_FACTOR = 3.0  # ... and so does one under this many times the pair's median cell difference
TONE_BINS = 16
CELL_NCC = 0.97  # structure similarity under which a differing cell disagrees
FLAT_STD = 2.0  # a window this flat (std, of 255) has no structure to compare
DRIFT_CLIP = 30.0  # a slow tone drift (of 255) is estimated from pixels differing less than this
DRIFT_SIGMA = 8.0
EDGE_BAND = 0.2  # disagreement within this share of the overlap's edges may be an overlay
ECC_ITERS = 30
FEW_KEYPOINTS = 80  # below this many keypoints an image gets the whole-frame fallback
COARSE_SIDE = 20  # px: ... which compares in full only the turns/flips whose pictures correlate at this size
WHOLE_FRAME_COARSE_NCC = 0.5  # ... this well (a copy's tone curve is monotone: ~0.9 and up)
ECC_RESCUE = 0.15  # refine the alignment only when this share of interior cells or fewer disagree
MAX_ANISO = 1.2  # singular value ratio of a refined alignment (copies: <= 1.004 real, <= 1.053 generated)
# Two numbers of the decision the measurement also uses (which alignment to keep, when a strip is a reframing):
# read from the thresholds, not repeated. (Measurement that knows no decision is issue 26's next step.)
MAX_NOISE = rules.THRESHOLDS.max_noise
REFRAME_MAX = rules.THRESHOLDS.reframe_max
MIN_OVERLAP = 0.25  # overlap share of the smaller image needed to judge pixels
SHARPNESS_RATIO = 1.3  # gradient energies this far apart: blur the sharper side to match
BLUR_STEPS = (0.6, 0.9, 1.2, 1.6, 2.0, 2.5, 3.0)  # thumbnail px
REFRAME_AREA = (0.8, 1.25)  # area ratio of the two frames that counts as "one size"
REFRAME_SHAPE = 0.03  # |log| of the aspect ratios' ratio that counts as "one shape"
CANVAS_TEXTURED = 0.3  # a strip with fewer textured pixels than this is added canvas, not picture
POSITION_NOISE = 0.1  # px: below this inlier position noise a bend is too small to be perspective
TEXTURE_STD = 6.0  # window std (of 255) above which a cell has structure
# Overlays (a caption bar, a logo, a letterbox) are solid or saturated on one side: a disagreeing
# region touching the overlap's edge whose cells mostly look like that is an overlay, not a moved person.
OVERLAY_DARK, OVERLAY_LIGHT = 24.0, 231.0  # cell means at or beyond these are saturated
OVERLAY_SHARE = 0.5
# ... and it stays near the edge it touches: a caption bar, a logo or a watermark sits within this share
# of the overlap from one edge (text bar: 16%, blurred ~20%; logo: ~20%). A disagreeing region that
# reaches further in is content: two different pictures that share a caption bar fit on the caption,
# and their pictures' differences form regions from the top edge down to the bar.
OVERLAY_DEPTH = 1 / 3
OVERLAY_BAND = 0.6  # ... and a region near one edge spanning this share of it is a band (a bar over dark picture
# parts agrees there, so a caption bar's disagreement need not span the whole width)
MOVED_PX = 2.0  # thumbnail px: a local shift this large is motion, not what is left of the fit's error
# Faint motion: cells that agree (a difference under CELL_TOL) yet differ beyond FAINT_TOL and FAINT_NOISE x the
# pair's typical difference where a local shift of FAINT_PX or more explains it, FAINT_MARGIN cells or more from the
# overlap's border and from overlays; counted in clusters (a neighbour too). Pair by pair (relate() looks from
# both sides): generated other shots whose moved figure is close to its background's tone 0.018-0.068 of the
# overlap, but 0.002-0.010 where the figures moved about 2 thumbnail px or less; copies, shared and generated,
# every edit: at most 0.013 (JPEG q5, a colour filter); from one side alone up to 0.039 (a weak-fit 40% crop).
FAINT_TOL = 4.0
FAINT_NOISE = 2.0
FAINT_PX = 1.5
FAINT_MARGIN = 2
# Colour motion (rules v10): a figure of another colour but the same brightness as its background moves without a
# grey difference at all. In each colour plane (Cb, Cr) mapped by its own tone curve, cells of the faint test's
# region that differ (over CELL_TOL and NOISE_FACTOR x the plane's median) where a local shift of MOVED_PX explains
# it: colour_moved (thresholds.toml) of the overlap (the faint test's share) is another moment. Pair by pair (either
# side may clear it), 640 generated scene pairs and 294 shared / 60 generated photos x 20 edits: such scenes
# 0.018-0.028, copies at most 0.009 (shared JPEG q5; generated 0.003). Seen from one side only a copy reaches 0.046
# (a combination's caption rim), so a veto gets the second look as every motion veto does. A plane whose typical
# cell difference is over COLOUR_NOISE was changed beyond a tone curve (a colour filter clipping in RGB, sepia): no
# evidence either way.
COLOUR_NOISE = 1.5
CLIP_DARK, CLIP_LIGHT = 6.0, 249.0  # cell means (of 255) of a clipped region


@dataclass(frozen=True)
class Evidence:
    """What the stages measured for one pair (also what the benchmark tunes on)."""

    matches: int = 0
    inliers: int = 0
    residual: float = 99.0  # median inlier residual, feature pixels
    mirrored: bool = False
    overlap: float = 0.0  # overlap area / smaller image area
    agree: float = 0.0  # share of overlap cells whose aligned pixels agree
    interior_bad: float = 1.0  # share of interior overlap cells that disagree
    noise: float = 99.0  # median cell difference
    whole_frame: bool = False  # pixels from the whole-frame fallback, not the keypoint fit
    aniso: float = 1.0  # of the pixel-refined affine
    textured: float = 0.0  # share of overlap cells textured on both sides that agree
    structure: float = 0.0  # median window correlation over cells textured on both sides
    projective: float = 0.0  # F statistic: how much better a homography fits the inliers than a similarity
    reframed: float = 0.0  # share of picture each frame shows that the other lacks, for frames of one size (else 0)
    moved: float = 0.0  # share of overlap cells whose disagreement a local shift explains: something moved
    edge_bad: float = 0.0  # share of overlap cells near the edges that disagree, overlays aside
    faint: float = 0.0  # share of overlap cells whose faint difference a local shift explains (a figure close
    # to its background's tone moved)
    colour_moved: float = 0.0  # share of overlap cells whose colour difference a local shift explains


def _nearest(q: Keypoints, c: Keypoints) -> np.ndarray:
    """Each query descriptor's two nearest candidate descriptors: rows (query index, nearest index,
    nearest distance, second distance). One search serves every ratio test of the pair."""
    import cv2

    if len(q) < 2 or len(c) < 2:
        return np.zeros((0, 4))
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(q.desc, c.desc, k=2)
    rows = [(m.queryIdx, m.trainIdx, m.distance, n.distance) for m, n in (p for p in pairs if len(p) == 2)]
    return np.array(rows, np.float64).reshape(-1, 4)


def _match(q: Keypoints, c: Keypoints, nearest: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Ratio-test matches (Lowe) among `_nearest(q, c)`, as point arrays (query points, candidate points)."""
    good = nearest[nearest[:, 2] < ratio * nearest[:, 3]]
    return q.xy[good[:, 0].astype(int)].reshape(-1, 2), c.xy[good[:, 1].astype(int)].reshape(-1, 2)


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


def _centred_scale(sx: float, sy: float) -> np.ndarray:
    """Resize between pixel grids whose pixel centres sit at +0.5 (what cv2.resize does)."""
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], np.float64)


def _thumb_affine(m: np.ndarray, query: Fingerprint, cand: Fingerprint) -> np.ndarray:
    """The feature-space fit expressed between the two thumbnails."""
    qth, qtw = query.thumb.shape
    cth, ctw = cand.thumb.shape
    to_q = _centred_scale(qtw / query.feature_size[0], qth / query.feature_size[1])
    from_c = _centred_scale(cand.feature_size[0] / ctw, cand.feature_size[1] / cth)
    full = to_q @ np.vstack([m, [0, 0, 1]]) @ from_c
    return full[:2]


def _blurs(a: np.ndarray) -> tuple[float, float]:
    """Gaussian sigmas (query, candidate) for thumbnail affine `a` (candidate -> query): compare at the coarser of
    the two renderings, the sharper side blurred by the warp's scale."""
    s = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
    return BLUR * max(s, 1.0), BLUR / min(s, 1.0)


def _prepare(img: np.ndarray, sigma: float = 1.2) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigma)


def _tone_curve(c: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A robust tone curve c -> q from aligned pixel pairs: the median q in each c quantile bin.

    Pairs (not histograms) so an overlay covering part of one image does not
    bend the curve; medians so it covers any tone change a filter makes.
    """
    edges = np.unique(np.percentile(c, np.linspace(0, 100, TONE_BINS + 1)))
    if len(edges) < 2:
        return np.array([float(c.mean())]), np.array([float(np.median(q))])
    # Bin b holds edges[b] <= c < edges[b + 1] (the last one its upper edge too): slices of the pairs sorted by c.
    order = np.argsort(c, kind="stable")
    cs, qs = c[order], q[order]
    cuts = np.searchsorted(cs, edges[1:-1], side="left").tolist()
    xs, ys = [], []
    for lo, hi in zip([0, *cuts], [*cuts, len(cs)], strict=True):
        if hi > lo:
            xs.append(float(cs[(lo + hi - 1) // 2] + cs[(lo + hi) // 2]) / 2)  # the median of a sorted slice
            ys.append(float(np.median(qs[lo:hi])))
    # Beyond the outer bins' medians the curve goes on with its overall slope (clamping would turn
    # every highlight and shadow into a difference).
    # Monotone: a filter keeps dark things darker; a bin mostly under an overlay (a dark text bar over
    # a light sky) must not fold the curve.
    ys = np.maximum.accumulate(np.asarray(ys)).tolist()
    k = (ys[-1] - ys[0]) / (xs[-1] - xs[0]) if len(xs) > 1 and xs[-1] > xs[0] else 1.0
    xs = [xs[0] - 256.0, *xs, xs[-1] + 256.0]
    ys = [ys[0] - 256.0 * k, *ys, ys[-1] + 256.0 * k]
    return np.asarray(xs), np.asarray(ys)


def _overlay_like(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Saturated on one side only, or black on one side and white on the other (a dark bar over a bright floor)."""
    dark_a, dark_b = a <= OVERLAY_DARK, b <= OVERLAY_DARK
    light_a, light_b = a >= OVERLAY_LIGHT, b >= OVERLAY_LIGHT
    return ((dark_a | light_a) ^ (dark_b | light_b)) | (dark_a & light_b) | (light_a & dark_b)


def _tone_pairs(c: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The aligned pixel pairs a tone curve may learn from: not those under an overlay.

    A black caption bar over the bottom of a gradient owns every tone of that band: learnt, it
    would map those tones to black everywhere else in the photo. Pairs where one side only is
    saturated (black/white) and the two differ a lot are overlay candidates, left out while at
    least a quarter of the pairs remain.
    """
    keep = ~(_overlay_like(c, q) & (np.abs(c - q) > 40))
    if keep.sum() >= max(16, len(c) // 4):
        return c[keep], q[keep]
    return c, q


def _cell_means(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell mean of `values` over `mask`, and which cells are mostly covered."""
    h, w = values.shape
    hh, ww = h - h % CELL, w - w % CELL
    shape = (hh // CELL, CELL, ww // CELL, CELL)
    sums = (values * mask)[:hh, :ww].reshape(shape).sum(axis=(1, 3))
    cover = mask[:hh, :ww].reshape(shape).sum(axis=(1, 3))
    used = cover >= CELL * CELL * 0.75
    return np.where(used, sums / np.maximum(cover, 1), 0.0), used


@dataclass(frozen=True)
class Agreement:
    agree: float  # share of covered cells that agree
    interior_bad: float  # share of covered cells away from the overlap's edges that disagree
    noise: float  # median cell difference (how different the two renderings are overall)
    aniso: float = 1.0  # singular value ratio of the refined affine (a copy's is a similarity: 1)
    textured: float = 0.0  # share of covered cells textured on both sides that agree
    structure: float = 0.0  # median window correlation over the cells textured on both sides
    moved: float = 0.0  # share of covered cells whose disagreement a local shift explains (_motion;
    # measured only when asked: measure() asks for a would-be copy's)
    edge_bad: float = 0.0  # share of covered cells near the edges that disagree, overlays aside
    faint: float = 0.0  # share of covered cells, away from overlays and the border, that agree but differ
    # faintly where a local shift explains it (measured with `moved`)
    colour_moved: float = 0.0  # the same region's cells whose colour differs where a local shift explains it
    # (_colour_motion; measured with `moved` when both sides have colour)
    calm: np.ndarray | None = field(default=None, repr=False, compare=False)  # that region (cells), with `moved`


Colour = tuple[np.ndarray, np.ndarray]  # (2, h, w) Cb, Cr planes of the query and of the candidate, each its own grid


def _cell_ncc(q: np.ndarray, c: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised cross-correlation of q and c over a (2 CELL)-wide window centred on each cell,
    and the two windows' standard deviations.

    Flat in both (std under FLAT_STD): 1 (nothing to disagree about); flat in one only: 0.
    """
    import cv2

    k = (2 * CELL, 2 * CELL)
    mq, mc = cv2.blur(q, k), cv2.blur(c, k)
    vq = np.maximum(cv2.blur(q * q, k) - mq * mq, 0)
    vc = np.maximum(cv2.blur(c * c, k) - mc * mc, 0)
    cov = cv2.blur(q * c, k) - mq * mc
    ncc = cov / np.sqrt(vq * vc + 1e-6)
    flat_q, flat_c = vq < FLAT_STD**2, vc < FLAT_STD**2
    ncc = np.where(flat_q & flat_c, 1.0, np.where(flat_q | flat_c, 0.0, ncc))
    h, w = q.shape

    def at_cells(a: np.ndarray) -> np.ndarray:
        return a[CELL // 2:h - h % CELL:CELL, CELL // 2:w - w % CELL:CELL][: h // CELL, : w // CELL]

    return at_cells(ncc), at_cells(np.sqrt(vq)), at_cells(np.sqrt(vc))


def _preference(g: Agreement) -> tuple[bool, float, float, float]:
    """Order of the comparisons tried for one pair (tone directions, alignments, sharpness): best first.

    A comparison whose typical cell difference is beyond MAX_NOISE was made with a
    broken tone curve or alignment: nothing in it can "disagree", so its perfect
    agreement means nothing and it never wins.
    """
    return (g.noise > MAX_NOISE, g.interior_bad, -g.agree, g.noise)


def _agreement(q: np.ndarray, c: np.ndarray, mask: np.ndarray, motion: float = 0.0) -> Agreement:
    """The better of mapping c's tones onto q and q's onto c.

    The tone curve is fit from the side without an overlay: a dark text bar on
    the side being mapped would claim a whole band of tones.
    """
    one = _agreement_one_way(q, c, mask, motion)
    if one.interior_bad == 0.0 and one.noise <= MAX_NOISE:
        return one
    two = _agreement_one_way(c, q, mask, motion)
    # A curve bent by an overlay leaves most pixels off (typical difference above MAX_NOISE): never pick it.
    return min(one, two, key=_preference)


def _agreement_one_way(q: np.ndarray, c: np.ndarray, mask: np.ndarray, motion: float = 0.0) -> Agreement:
    """Compare aligned, blurred images cell by cell after a robust tone match.

    A cell disagrees when its mean difference exceeds both CELL_TOL and
    NOISE_FACTOR x the pair's typical (median) difference, so a JPEG q5 copy
    whose every cell is a little off still agrees while a moved arm does not.
    Disagreeing cells near the edges of the overlap are where overlays live
    (text bars, captions, logos, watermarks): they count only in `agree`.
    `motion` > 0 also measures what moved (_motion), the candidate being magnified that much, and keeps the
    region the faint and colour tests look at (`calm`).
    """
    if mask.sum() < 4 * CELL * CELL:
        return Agreement(0.0, 1.0, 99.0)
    xs, ys = _tone_curve(*_tone_pairs(c[mask], q[mask]))
    import cv2

    signed = (q - np.interp(c, xs, ys)).astype(np.float32) * mask
    # Colour filters move the luma of some hues more than others: remove the slow part of the
    # difference (clipped, so a moved person or an overlay does not explain itself away).
    m = mask.astype(np.float32)
    calm = m * (np.abs(signed) <= DRIFT_CLIP)  # an overlay's or a moved person's pixels do not vote
    slow = cv2.GaussianBlur(signed * calm, (0, 0), DRIFT_SIGMA)
    slow /= np.maximum(cv2.GaussianBlur(calm, (0, 0), DRIFT_SIGMA), 1e-3)
    diff = np.abs(signed - slow * m)
    means, used = _cell_means(diff, mask.astype(np.float32))
    if used.sum() < 4:
        return Agreement(0.0, 1.0, 99.0)
    noise = float(np.median(means[used]))
    # A cell disagrees when it differs in level AND in structure: a colour filter shifts the level
    # of some hues (structure kept); a moved arm, parallax or an overlay changes the structure.
    cm = np.interp(c, xs, ys).astype(np.float32)
    ncc, _, _ = _cell_ncc(q, cm, m)
    _, raw_q, raw_c = _cell_ncc(q, c, m)  # the unmapped sides (the overlay test looks at them too)
    # Cells without structure on either side (clipped, or untextured both: a flat colour whose level a
    # filter moved apart from the rest, film grain against film grain) hold nothing to disagree about.
    blank = _clipped(q, c, m) | ((raw_q < TEXTURE_STD) & (raw_c < TEXTURE_STD))
    bad = used & (means > max(CELL_TOL, NOISE_FACTOR * noise)) & (ncc < CELL_NCC) & ~blank
    both = used & (raw_q >= TEXTURE_STD) & (raw_c >= TEXTURE_STD)  # unmapped: a steep tone curve amplifies grain
    textured = float((both & ~bad).sum() / used.sum())
    structure = float(np.median(ncc[both])) if both.any() else 0.0
    rows, cols = np.nonzero(used)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    overlay = _overlay_cells(bad, q, c, mask, raw_q, raw_c, (r0, r1, c0, c1))
    band_r = max(1, round((r1 - r0) * EDGE_BAND))
    band_c = max(1, round((c1 - c0) * EDGE_BAND))
    interior = np.zeros_like(used)
    interior[r0 + band_r:r1 - band_r, c0 + band_c:c1 - band_c] = True
    interior &= used
    n_int = max(int(interior.sum()), 1)
    # A lone disagreeing cell is noise (a JPEG block, a letter's halo); a moved arm or parallax spans
    # neighbouring cells. Interior disagreement counts cells with a disagreeing 8-neighbour.
    clustered = bad & (cv2.filter2D(bad.astype(np.float32), -1, np.ones((3, 3), np.float32),
                                    borderType=cv2.BORDER_CONSTANT) >= 2)
    # Near the edges disagreement may be an overlay the overlay test missed (a logo over texture): there it
    # counts only when a local shift explains it (content that moved, not content that was added).
    edge = clustered & ~interior & ~overlay
    moved, faint, calm_cells = 0.0, 0.0, None
    if motion:
        # Faint differences (under the disagreement tolerance: a figure close to its background's tone)
        # are judged away from the overlap's border and from overlays, whose rims differ faintly too.
        k3 = np.ones((3, 3), np.uint8)
        near_overlay = cv2.dilate(overlay.astype(np.uint8), k3, iterations=FAINT_MARGIN).astype(bool)
        inner = cv2.erode(used.astype(np.uint8), k3, iterations=FAINT_MARGIN).astype(bool)
        calm_cells = inner & ~near_overlay & ~bad
        moved, faint = _motion(q, cm, mask, edge, max(CELL_TOL, NOISE_FACTOR * noise),
                               calm_cells, max(FAINT_TOL, FAINT_NOISE * noise), motion)
    return Agreement(float(1 - bad.sum() / used.sum()), float((clustered & interior & ~overlay).sum() / n_int),
                     noise, textured=textured, structure=structure, moved=moved,
                     edge_bad=float(edge.sum() / used.sum()), faint=faint, calm=calm_cells)


def _motion(q: np.ndarray, c: np.ndarray, mask: np.ndarray, cells: np.ndarray, tol: float,
            calm: np.ndarray, faint_tol: float, coarse: float = 1.0) -> tuple[float, float]:
    """Shares of covered cells whose difference a local shift of MOVED_PX or more explains: among `cells`
    (disagreeing), and among `calm` cells (agreeing) whose faint difference exceeds `faint_tol`.

    A person who moved between two exposures is still in the other frame, a few pixels away: a dense
    optical flow between the aligned images finds it, and warped by the flow the cell agrees. An overlay
    (a logo, a caption) is new content no shift explains. The flow's global affine part (what is left of
    the fit's misalignment) is removed first, so only motion of a part against the rest counts. A figure
    whose tone is close to its background's differs only faintly where it moved (under CELL_TOL), but the
    flow follows its outline all the same; a lone faint cell is noise, so those count in clusters.
    """
    import cv2

    q8 = np.clip(q, 0, 255).astype(np.uint8)
    c8 = np.clip(c, 0, 255).astype(np.uint8)
    flow = cv2.calcOpticalFlowFarneback(q8, c8, None, 0.5, 2, 9, 3, 5, 1.1, 0)
    h, w = q.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.stack([gx, gy], -1)
    ys, xs = np.nonzero(mask[::CELL, ::CELL])
    pts = grid[ys * CELL, xs * CELL]
    a, _ = cv2.estimateAffine2D(pts, pts + flow[ys * CELL, xs * CELL], method=cv2.RANSAC,
                                ransacReprojThreshold=0.75)
    local = flow if a is None else flow - (grid @ a[:, :2].T.astype(np.float32) + a[:, 2].astype(np.float32) - grid)
    shifted = cv2.remap(c, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR)
    m = mask.astype(np.float32)
    after, used = _cell_means(np.abs(q - shifted) * m, m)
    before, _ = _cell_means(np.abs(q - c) * m, m)
    size, _ = _cell_means(np.linalg.norm(local, axis=2) * m, m)
    explained = after < 0.5 * before
    moved = cells & (after < tol) & explained & (size >= MOVED_PX)
    # A faint difference is a figure's outline: a smaller shift counts (1.5 thumbnail px, 1% of the width, times
    # the candidate's magnification: an upscaled candidate's detail is that much coarser).
    faint = calm & (before >= faint_tol) & explained & (size >= FAINT_PX * coarse)
    faint &= cv2.filter2D(faint.astype(np.float32), -1, np.ones((3, 3), np.float32),
                          borderType=cv2.BORDER_CONSTANT) >= 2
    n = max(int(used.sum()), 1)
    return float(moved.sum() / n), float(faint.sum() / n)


def _colour_motion(q: np.ndarray, c: np.ndarray, mask: np.ndarray, region: np.ndarray) -> float:
    """Share of covered cells in `region` whose colour (Cb or Cr plane of q (2, h, w) and of the aligned c) differs
    where a local shift explains it: a figure as bright as its background, of another colour, that moved.

    Each plane gets its own tone curve (a colour filter scales the colour); a plane the curve does not explain
    (typical cell difference over COLOUR_NOISE: sepia, a filter clipping in RGB) is no evidence either way.
    """
    share = 0.0
    for qc, cc in zip(q, c, strict=True):
        xs, ys = _tone_curve(cc[mask], qc[mask])
        mapped = np.interp(cc, xs, ys).astype(np.float32)
        means, used = _cell_means(np.abs(qc - mapped), mask.astype(np.float32))
        noise = float(np.median(means[used])) if used.any() else 99.0
        if noise > COLOUR_NOISE:
            continue
        tol = max(CELL_TOL, NOISE_FACTOR * noise)
        differ = region & used & (means > tol)
        if differ.sum() < max(share, rules.THRESHOLDS.colour_moved) * used.sum():
            continue  # too few differ for a shift to explain enough (a copy's usual case: no flow needed)
        moved, _ = _motion(qc, mapped, mask, differ, tol, np.zeros_like(used), 255.0)
        share = max(share, moved)
    return share


def _clipped(q: np.ndarray, c: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Cells burnt out to white or crushed to black on either side: they hold no structure to compare.

    A brightened or saturated copy clips highlights the original still shows
    (a white fur patch becomes flat 255); its structure there is gone, which is
    no evidence of another shot. Overlays stay disagreeing at the edges anyway.
    """
    mq, _ = _cell_means(q, m)
    mc, _ = _cell_means(c, m)
    return (mq >= CLIP_LIGHT) | (mc >= CLIP_LIGHT) | (mq <= CLIP_DARK) | (mc <= CLIP_DARK)


def _overlay_cells(bad: np.ndarray, q: np.ndarray, c: np.ndarray, mask: np.ndarray, std_q: np.ndarray,
                   std_c: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Disagreeing cells that belong to an overlay: a connected disagreeing region touching the
    overlap's edge, staying within OVERLAY_DEPTH of it, that is a band across the overlap or whose
    cells are mostly saturated (black/white) or flat on one side only.

    A caption bar reaches into the interior past EDGE_BAND (and blurring widens it); a person who
    moved is textured on both sides and is rarely a solid black or white slab.
    """
    import cv2

    out = np.zeros_like(bad)
    if not bad.any():
        return out
    m = mask.astype(np.float32)
    mq, _ = _cell_means(q, m)
    mc, _ = _cell_means(c, m)
    saturated = _overlay_like(mq, mc)
    flat_one = (std_q < FLAT_STD) ^ (std_c < FLAT_STD)
    looks = saturated | flat_one
    n, labels = cv2.connectedComponents(bad.astype(np.uint8), connectivity=8)
    r0, r1, c0, c1 = box
    depth_r, depth_c = (r1 - r0) * OVERLAY_DEPTH, (c1 - c0) * OVERLAY_DEPTH
    for k in range(1, n):
        comp = labels == k
        rows, cols = np.nonzero(comp)
        # Within OVERLAY_DEPTH of an edge (above the bottom third, say), and touching that edge.
        top, bottom = rows.max() < r0 + depth_r, rows.min() >= r1 - depth_r
        left, right = cols.max() < c0 + depth_c, cols.min() >= c1 - depth_c
        touching = ((top and rows.min() == r0) or (bottom and rows.max() == r1 - 1)
                    or (left and cols.min() == c0) or (right and cols.max() == c1 - 1))
        # A band along an edge is a caption bar or a banner, touching the edge or not (its last rows may
        # agree with a dark picture), and half as overlay-like suffices: its letters are textured, and
        # blurred neither black nor white. A person standing near the side is a band too, but a textured one
        # (generated other shots: no cell overlay-like; caption bars: 0.39-0.52).
        band = (((top or bottom) and np.ptp(cols) >= OVERLAY_BAND * (c1 - c0))
                or ((left or right) and np.ptp(rows) >= OVERLAY_BAND * (r1 - r0)))
        share = looks[comp].mean()
        if (band and share >= OVERLAY_SHARE / 2) or (touching and share >= OVERLAY_SHARE):
            out |= comp
    return out


def _warp_compare(query: Fingerprint, cand: Fingerprint, a: np.ndarray, mirrored: bool
                  ) -> tuple[Agreement, float, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """Agreement and overlap of the candidate's thumbnail warped onto the query's by thumbnail affine `a`,
    and the inputs of the comparison chosen (None where the overlap is too small to judge)."""
    import cv2

    q = np.ascontiguousarray(query.thumb[:, ::-1]) if mirrored else query.thumb
    # Compare at the coarser of the two renderings: blur the sharper side by the warp's scale.
    q_sigma, c_sigma = _blurs(a)
    qp, cp = _prepare(q, q_sigma), _prepare(cand.thumb, c_sigma)
    inv = cv2.invertAffineTransform(a.astype(np.float32))  # query pixel -> candidate pixel
    smaller = min(q.size, cand.thumb.size * abs(np.linalg.det(a[:, :2])))
    first, overlap = _compare_at(qp, cp, inv)
    share = overlap / max(smaller, 1.0)
    if share < MIN_OVERLAP:
        return Agreement(0.0, 1.0, 99.0), share, None
    best, inputs = _best_alignment(qp, cp, inv, first)
    return best, share, inputs


def _best_alignment(qp: np.ndarray, cp: np.ndarray, inv: np.ndarray, first: Agreement
                    ) -> tuple[Agreement, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The comparison that agrees best (the fit as given, ECC-refined, sharpness-matched) and its inputs."""
    import cv2

    if first.interior_bad == 0.0 or first.interior_bad > ECC_RESCUE:
        # Clean already, or too different for a sub-pixel shift to matter: skip the costly refinement.
        return first, (qp, cp, inv)
    try:  # sub-pixel refinement: keypoint fits are off by a fraction of a thumbnail pixel
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, ECC_ITERS, 1e-4)
        _, refined = cv2.findTransformECC(qp, cp, inv.copy(), cv2.MOTION_AFFINE, criteria, None, 1)
    except cv2.error:
        return first, (qp, cp, inv)
    # ECC pulls towards an overlay's strong edges at times: keep whichever alignment agrees better.
    second, _ = _compare_at(qp, cp, refined)
    sv = np.linalg.svd(refined[:, :2], compute_uv=False)
    second = replace(second, aniso=float(sv[0] / max(sv[1], 1e-9)))
    # A copy is a similarity: a refinement that squashed the candidate (ECC diverged on a chance fit,
    # singular values 300:1) compares smeared stripes that "agree" with anything, and never wins.
    best, inputs = first, (qp, cp, inv)
    if second.aniso <= MAX_ANISO and _preference(second) < _preference(first):
        best, inputs = second, (qp, cp, refined)
    if best.interior_bad > 0.0:
        for matched in _sharpness_matched(qp, cp, inputs[2]):
            third, _ = _compare_at(*matched, inputs[2])
            if _preference(third) < _preference(best):
                best, inputs = third, (*matched, inputs[2])
    return best, inputs


def _sharpness(img: np.ndarray) -> float:
    import cv2

    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1)
    return float(np.mean(gx * gx + gy * gy))


def _sharpness_matched(qp: np.ndarray, cp: np.ndarray, inv: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pair with the sharper side blurred to the other's sharpness (a blurred copy, a soft re-encode).

    The warp scale says how coarse each rendering is, not how blurred the file
    was: a 3-px blur leaves the original's edges sharper than the copy's, and the
    difference shows on every contrasted edge. Blurring the sharper side until
    the gradient energies match compares like with like; a moved person or
    parallax still differs in structure.
    """
    import cv2

    h, w = qp.shape
    warped = cv2.warpAffine(cp, inv, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    sq, sc = _sharpness(qp), _sharpness(warped)
    if min(sq, sc) <= 0 or max(sq, sc) / min(sq, sc) < SHARPNESS_RATIO:
        return []
    sharper_is_query = sq > sc
    target = min(sq, sc)
    src = qp if sharper_is_query else cp
    for sigma in BLUR_STEPS:
        blurred = _prepare(src, sigma)
        test = blurred if sharper_is_query else cv2.warpAffine(blurred, inv, (w, h),
                                                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        if _sharpness(test) <= target * SHARPNESS_RATIO:
            return [(blurred, cp) if sharper_is_query else (qp, blurred)]
    return []


def _compare_at(qp: np.ndarray, cp: np.ndarray, inv: np.ndarray, motion: bool = False,
                colour: Colour | None = None) -> tuple[Agreement, float]:
    """Agreement of the candidate warped by `inv` (query pixel -> candidate pixel) and the overlap in pixels;
    `colour`: the two sides' colour planes (unwarped), compared with the motion test."""
    import cv2

    h, w = qp.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(cp, inv, (w, h), flags=flags, borderValue=0)
    ones = np.ones(cp.shape, np.uint8)
    mask = cv2.warpAffine(ones, inv, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    # The candidate's magnification onto the query (a 40% crop's original: 1.6x): its detail, and the flow's,
    # is that much coarser in query pixels.
    coarse = max(1.0, 1.0 / float(np.sqrt(abs(np.linalg.det(inv[:, :2])) + 1e-12)))
    agr = _agreement(qp, warped, mask, coarse if motion else 0.0)
    if motion and colour is not None and agr.calm is not None:
        # Colour is judged once, on the region of the grey comparison chosen (tone curves map c's colour onto q's).
        cc = np.stack([cv2.warpAffine(p, inv, (w, h), flags=flags, borderValue=0) for p in colour[1]])
        agr = replace(agr, colour_moved=_colour_motion(colour[0], cc, mask, agr.calm))
    return agr, float(mask.sum())


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


def _whole_frame(query: Fingerprint, cand: Fingerprint) -> Agreement | None:
    """Best whole-frame agreement under the 8 turns/flips when the aspect ratios agree (too few keypoints).

    A turn or flip whose coarse picture (COARSE_SIDE px) does not correlate is not compared in full: a
    starved upload (a 40% crop with 48 keypoints) met every candidate of its shape four times over, at
    ~30 ms a comparison (2.4 s for one upload check).
    """
    import cv2

    h, w = query.thumb.shape
    ch, cw = cand.thumb.shape
    q_coarse = resize_long(query.thumb.astype(np.float32), COARSE_SIDE).ravel()
    best: Agreement | None = None
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
            agr, _, _ = _warp_compare(query, cand, a, False)
            if best is None or (agr.agree - agr.interior_bad) > (best.agree - best.interior_bad):
                best = agr
    return best


def _projective(qpts: np.ndarray, cpts: np.ndarray) -> float:
    """F statistic of a homography (8 dof) over a similarity (4 dof), least squares on the inliers.

    Under "the same photograph" the similarity is the true model and the
    homography only fits noise: F ~ F(4, 2n - 8), about 1. A second exposure
    from a camera that turned or moved bends straight lines by perspective; the
    homography then explains much more of the residual than chance.
    """
    import cv2

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


def _reframed(query: Fingerprint, cand: Fingerprint, m: np.ndarray, mirrored: bool) -> float:
    """min(share of the query outside the candidate's frame, share of the candidate outside the query's),
    when the two frames have one size and shape (0.0 otherwise).

    Every edit of one photograph keeps one picture inside the other's frame (a
    crop inside its original; an original inside a letterbox, a screenshot, a
    frame): one of the two shares is ~0 (copies: at most 1.5%). Two frames of
    one camera that panned a little each show a strip the other lacks. Only
    frames of about the same size and shape are judged, so a cropped photo
    inside an app's frame (both shares large, sizes unequal) stays a copy.
    """
    import cv2

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
    if share < REFRAME_MAX:
        return float(max(0.0, share))
    # A strip of added canvas (a border, a mat, a frame) is not picture: judged on the thumbnails.
    a = _thumb_affine(m, query, cand)
    q = np.ascontiguousarray(query.thumb[:, ::-1]) if mirrored else query.thumb
    if _is_canvas(q, cand.thumb, a) or _is_canvas(cand.thumb, q, cv2.invertAffineTransform(a.astype(np.float32))):
        return 0.0
    return float(share)


def _is_canvas(img: np.ndarray, other: np.ndarray, other_to_img: np.ndarray) -> bool:
    """Whether the part of `img` outside `other`'s warped frame is mostly flat (added canvas, not picture)."""
    import cv2

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


def measure(query: Fingerprint, cand: Fingerprint) -> Evidence:
    """Run the geometric and pixel stages; the evidence decide() turns into a relation."""
    best: tuple[int, np.ndarray | None, bool, int, float, float] = (0, None, False, 0, 99.0, 0.0)
    # A looser ratio test only when the strict one found no fit: a 40% crop or a heavy blur keeps few
    # distinctive matches; chance fits it lets in still need the weak-fit evidence of is_copy().
    attempts = [(ratio, mirrored, qk) for ratio in MATCH_RATIOS
                for mirrored, qk in ((False, query.keypoints), (True, query.mirrored))]
    nearest: dict[bool, np.ndarray] = {}
    for ratio, mirrored, qk in attempts:
        if ratio != MATCH_RATIOS[0] and best[0] >= MIN_INLIERS:
            break
        if mirrored not in nearest:
            nearest[mirrored] = _nearest(qk, cand.keypoints)
        qpts, cpts = _match(qk, cand.keypoints, nearest[mirrored], ratio)
        m, inl = _fit(qpts, cpts)
        n_in = int(inl.sum())
        if m is not None and n_in > best[0]:
            proj = cpts[inl] @ m[:, :2].T + m[:, 2]
            resid = float(np.median(np.linalg.norm(proj - qpts[inl], axis=1)))
            best = (n_in, m, mirrored, len(qpts), resid, _projective(qpts[inl], cpts[inl]))
    n_in, m, mirrored, n_match, resid, proj = best
    if m is not None and n_in >= MIN_INLIERS:
        a = _thumb_affine(m, query, cand)
        agr, overlap, inputs = _warp_compare(query, cand, a, mirrored)
        ev = Evidence(n_match, n_in, resid, mirrored, overlap, agr.agree, agr.interior_bad, agr.noise,
                      aniso=agr.aniso, textured=agr.textured,
                      structure=agr.structure, projective=proj, reframed=_reframed(query, cand, m, mirrored),
                      edge_bad=agr.edge_bad)
        if inputs is not None and is_copy(ev):
            # Only a would-be copy needs to know whether something moved (the flow costs more than the rest).
            motion = _compare_at(*inputs, motion=True, colour=_colour_planes(query, cand, a, mirrored))[0]
            ev = replace(ev, moved=motion.moved, faint=motion.faint, colour_moved=motion.colour_moved)
        return ev
    starved = min(len(query.keypoints), len(cand.keypoints)) < FEW_KEYPOINTS
    whole = _whole_frame(query, cand) if starved else None
    if whole is None:
        return Evidence(n_match, n_in, resid, mirrored)
    return Evidence(n_match, n_in, resid, mirrored, 1.0, whole.agree, whole.interior_bad, whole.noise, True,
                    textured=whole.textured, structure=whole.structure)


def _colour_planes(query: Fingerprint, cand: Fingerprint, a: np.ndarray, mirrored: bool) -> Colour | None:
    """Both sides' colour planes on their thumbnails' grids, blurred as _warp_compare blurs the grey (None: either
    side has no colour stored, an orb2 fingerprint)."""
    qc, cc = chroma_planes(query), chroma_planes(cand)
    if qc is None or cc is None:
        return None
    if mirrored:
        qc = np.ascontiguousarray(qc[:, :, ::-1])
    q_sigma, c_sigma = _blurs(a)
    return np.stack([_prepare(p, q_sigma) for p in qc]), np.stack([_prepare(p, c_sigma) for p in cc])


def is_copy(ev: Evidence) -> bool:
    """Every copy rule holds (duplicates/rules.py)."""
    return rules.is_copy(ev)


def decide(ev: Evidence, cosine: float) -> Verdict:
    """The relation the evidence supports (duplicates/rules.py: the rules and their thresholds, as data)."""
    return rules.decide(ev, cosine)


def relate(query: Fingerprint, candidate: Fingerprint, cosine: float) -> Verdict:
    """Decide the relation of two photos; cosine = global embedding similarity."""
    if query.sha256 == candidate.sha256:
        return Verdict(Relation.COPY, 1.0, "sha256 equal")
    opencv.cv2()  # one OpenCV thread in this process (duplicates/opencv.py says why)
    ev = measure(query, candidate)
    verdict = decide(ev, cosine)
    if verdict.relation is Relation.SAME_SCENE or rules.is_moved(ev):
        # The pixels are judged in the query's frame: its cells, its overlap's edge band, its thumbnail's
        # resolution. A 96-px thumbnail as the query smears detail the other side keeps, and an overlay at
        # the other's edge can land in this one's interior. One geometry, pixels that agree seen from
        # either side: the same photograph (shared photos: 58 of 6,758 edit pairs differ so by direction).
        # Motion is judged so too: a would-be copy vetoed by it on a weak fit (too few inliers for "same
        # scene") still gets the second look.
        back = decide(measure(candidate, query), cosine)
        if back.relation is Relation.COPY:
            return Verdict(Relation.COPY, back.score, back.reason + " (judged from the candidate's side)", back.rule)
    return verdict


def rules_version() -> str:
    """A digest of what a verdict depends on: the code of the measurement (this module, the fingerprint, the
    shortlist of candidate pairs), the rules, and the thresholds' values. Comments and docstrings do not count
    (the code is compared as parsed, docstrings dropped), so only a change that can change a verdict makes
    stored relations stale."""
    import ast
    import hashlib
    import json

    from duplicates import fingerprint, shortlist

    digest = hashlib.sha256()
    for module in (fingerprint, shortlist, rules, sys.modules[__name__]):
        tree = ast.parse(Path(str(module.__file__)).read_text())
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        digest.update(ast.dump(tree).encode())
    digest.update(json.dumps(asdict(rules.THRESHOLDS), sort_keys=True).encode())
    return "r-" + digest.hexdigest()[:12]


RULES_VERSION = rules_version()
