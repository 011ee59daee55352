"""Aligned pixel agreement: the candidate's thumbnail warped onto the query's, compared cell by cell.

Both are blurred a little (JPEG q5 blocks, a 3-px blur) and tone-matched (colour
filters, grayscale). A copy agrees everywhere except under an overlay (a text
bar, a logo); another exposure of the scene disagrees where people moved and
where parallax shifted the background. Which comparison to keep (tone direction,
keypoint or refined alignment, sharpness-matched) is chosen here; what the
agreement means is the rules' business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from duplicates import opencv
from duplicates.features.cells import CELL, TEXTURE_STD, cell_means, cell_ncc, differ_tol, window_moments
from duplicates.features.motion import colour_motion, grey_motion
from duplicates.features.overlays import overlay_cells
from duplicates.features.tone import colour_offsets, tone_curve, tone_pairs
from duplicates.fingerprint import Fingerprint, chroma_planes

BLUR = 1.2  # Gaussian sigma (thumbnail px) both sides get before comparing
CELL_NCC = 0.97  # structure similarity under which a differing cell disagrees
DRIFT_CLIP = 30.0  # a slow tone drift (of 255) is estimated from pixels differing less than this
DRIFT_SIGMA = 8.0
EDGE_BAND = 0.2  # disagreement within this share of the overlap's edges may be an overlay
ECC_ITERS = 30
ECC_RESCUE = 0.15  # refine the alignment only when this share of interior cells or fewer disagree
ECC_STRUCTURE = 0.40  # ... and the textured cells' median correlation is at least this (docs/duplicates.md: where
# the refinement won for a true relation, it was >= 0.60 (copies >= 0.95); chance fits of two different photos sit
# under 0.30 and cost the refinement its 30 iterations, ~45 ms a pair)
MAX_ANISO = 1.2  # singular value ratio of a refined alignment (copies: <= 1.004 real, <= 1.053 generated)
MIN_OVERLAP = 0.25  # overlap share of the smaller image needed to judge pixels
SHARPNESS_RATIO = 1.3  # gradient energies this far apart: blur the sharper side to match
BLUR_STEPS = (0.6, 0.9, 1.2, 1.6, 2.0, 2.5, 3.0)  # thumbnail px
CLIP_DARK, CLIP_LIGHT = 6.0, 249.0  # cell means (of 255) of a clipped region


@dataclass(frozen=True)
class Agreement:
    agree: float  # share of covered cells that agree
    interior_bad: float  # share of covered cells away from the overlap's edges that disagree
    noise: float  # median cell difference (how different the two renderings are overall)
    aniso: float = 1.0  # singular value ratio of the refined affine (a copy's is a similarity: 1)
    textured: float = 0.0  # share of covered cells textured on both sides that agree
    structure: float = 0.0  # median window correlation over the cells textured on both sides
    moved: float = 0.0  # share of covered cells whose disagreement a local shift explains (motion.grey_motion;
    # measured only when asked: verify.measure() asks for a would-be copy's)
    edge_bad: float = 0.0  # share of covered cells near the edges that disagree, overlays aside
    faint: float = 0.0  # share of covered cells, away from overlays and the border, that agree but differ
    # faintly where a local shift explains it (measured with `moved`)
    colour_moved: float = 0.0  # the same region's cells whose colour differs where a local shift explains it
    # (motion.colour_motion; measured with `moved` when both sides have colour)
    calm: np.ndarray | None = field(default=None, repr=False, compare=False)  # that region (cells), with `moved`
    # What grey_motion needs of this comparison but its magnification (aligned q, tone-mapped c, mask, used, bad,
    # overlay and edge cells, noise), so a would-be copy's motion is measured without comparing again (motion_of)
    motion_inputs: tuple[Any, ...] | None = field(default=None, repr=False, compare=False)


NOTHING = Agreement(0.0, 1.0, 99.0)  # too little overlap to judge
Colour = tuple[np.ndarray, np.ndarray]  # (2, h, w) Cb, Cr planes of the query and of the candidate, each its own grid


class Inputs(NamedTuple):
    """What a comparison was made of: compare_at(q, c, inv, max_noise, by_colour=by_colour) makes it again."""

    q: np.ndarray  # query pixels
    c: np.ndarray  # candidate pixels
    inv: np.ndarray  # query pixel -> candidate pixel
    by_colour: bool = False  # the tone map followed colour (agreement's `hues`)


def blurs(a: np.ndarray) -> tuple[float, float]:
    """Gaussian sigmas (query, candidate) for thumbnail affine `a` (candidate -> query): compare at the coarser of
    the two renderings, the sharper side blurred by the warp's scale."""
    s = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
    return BLUR * max(s, 1.0), BLUR / min(s, 1.0)


def prepare(img: np.ndarray, sigma: float = 1.2) -> np.ndarray:
    """`img` as float32, blurred by `sigma` (thumbnail px)."""
    return opencv.cv2().GaussianBlur(img.astype(np.float32), (0, 0), sigma)


def preference(g: Agreement, max_noise: float) -> tuple[bool, float, float, float]:
    """Order of the comparisons tried for one pair (tone directions, alignments, sharpness): best first.

    A comparison whose typical cell difference is beyond `max_noise` was made with a
    broken tone curve or alignment: nothing in it can "disagree", so its perfect
    agreement means nothing and it never wins.
    """
    return (g.noise > max_noise, g.interior_bad, -g.agree, g.noise)


def agreement(q: np.ndarray, c: np.ndarray, mask: np.ndarray, max_noise: float, motion: float = 0.0,
              hues: Colour | None = None) -> Agreement:
    """The better of mapping c's tones onto q and q's onto c.

    The tone curve is fit from the side without an overlay: a dark text bar on
    the side being mapped would claim a whole band of tones. `max_noise`: the typical
    cell difference beyond which a comparison is broken (preference). `hues`: q's and c's (Cb, Cr) planes on
    q's pixel grid, when known: the tone map then follows each colour (tone.colour_offsets).
    """
    one = _agreement_one_way(q, c, mask, None if hues is None else hues[1])
    if one.interior_bad == 0.0 and one.noise <= max_noise:
        best = one
    else:
        two = _agreement_one_way(c, q, mask, None if hues is None else hues[0])
        # A curve bent by an overlay leaves most pixels off (typical difference above max_noise): never pick it.
        best = min(one, two, key=lambda g: preference(g, max_noise))
    # The choice reads no motion measure: what moved is measured on the comparison chosen only.
    return _with_grey_motion(best, motion) if motion else best


def _with_grey_motion(agr: Agreement, coarse: float) -> Agreement:
    """`agr` with what moved (motion.grey_motion), the candidate magnified `coarse` times, and the region the faint
    and colour tests look at (`calm`); NOTHING stays NOTHING."""
    if agr.motion_inputs is None:
        return agr
    moved, faint, calm_cells = grey_motion(*agr.motion_inputs, coarse)
    return replace(agr, moved=moved, faint=faint, calm=calm_cells)


def _agreement_one_way(q: np.ndarray, c: np.ndarray, mask: np.ndarray, c_hues: np.ndarray | None = None
                       ) -> Agreement:
    """Compare aligned, blurred images cell by cell after a robust tone match (by c's colour too, given
    `c_hues`: its (Cb, Cr) planes).

    A cell disagrees when its mean difference exceeds both CELL_TOL and
    NOISE_FACTOR x the pair's typical (median) difference (cells.differ_tol), so a JPEG q5 copy
    whose every cell is a little off still agrees while a moved arm does not.
    Disagreeing cells near the edges of the overlap are where overlays live
    (text bars, captions, logos, watermarks): they count only in `agree`.
    What moved is measured on top (_with_grey_motion, from `motion_inputs`).
    """
    cv2 = opencv.cv2()
    if mask.sum() < 4 * CELL * CELL:
        return NOTHING
    xs, ys = tone_curve(*tone_pairs(c[mask], q[mask]))
    mapped = np.interp(c, xs, ys)  # c's tones mapped onto q's
    if c_hues is not None:  # and by colour (a filter clipping some hues): tone.colour_offsets
        mapped += colour_offsets(c, q, mapped, c_hues, mask)
    signed = (q - mapped).astype(np.float32) * mask
    # Colour filters move the luma of some hues more than others: remove the slow part of the
    # difference (clipped, so a moved person or an overlay does not explain itself away).
    m = mask.astype(np.float32)
    calm = m * (np.abs(signed) <= DRIFT_CLIP)  # an overlay's or a moved person's pixels do not vote
    slow = cv2.GaussianBlur(signed * calm, (0, 0), DRIFT_SIGMA)
    slow /= np.maximum(cv2.GaussianBlur(calm, (0, 0), DRIFT_SIGMA), 1e-3)
    diff = np.abs(signed - slow * m)
    means, used = cell_means(diff, mask.astype(np.float32))
    if used.sum() < 4:
        return NOTHING
    noise = float(np.median(means[used]))
    # A cell disagrees when it differs in level AND in structure: a colour filter shifts the level
    # of some hues (structure kept); a moved arm, parallax or an overlay changes the structure.
    cm = mapped.astype(np.float32)
    q_moments = window_moments(q)
    ncc, _, _ = cell_ncc(q, cm, m, q_moments)
    _, raw_q, raw_c = cell_ncc(q, c, m, q_moments)  # the unmapped sides (the overlay test looks at them too)
    # Cells without structure on either side (clipped, or untextured both: a flat colour whose level a
    # filter moved apart from the rest, film grain against film grain) hold nothing to disagree about.
    levels = cell_means(q, m)[0], cell_means(c, m)[0]  # each side's cell means (the clip and overlay tests)
    blank = _clipped(*levels) | ((raw_q < TEXTURE_STD) & (raw_c < TEXTURE_STD))
    bad = used & (means > differ_tol(noise)) & (ncc < CELL_NCC) & ~blank
    both = used & (raw_q >= TEXTURE_STD) & (raw_c >= TEXTURE_STD)  # unmapped: a steep tone curve amplifies grain
    textured = float((both & ~bad).sum() / used.sum())
    structure = float(np.median(ncc[both])) if both.any() else 0.0
    rows, cols = np.nonzero(used)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    overlay = overlay_cells(bad, q, c, mask, raw_q, raw_c, (r0, r1, c0, c1), levels)
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
    return Agreement(float(1 - bad.sum() / used.sum()), float((clustered & interior & ~overlay).sum() / n_int),
                     noise, textured=textured, structure=structure, edge_bad=float(edge.sum() / used.sum()),
                     motion_inputs=(q, cm, mask, used, bad, overlay, edge, noise))


def _clipped(mq: np.ndarray, mc: np.ndarray) -> np.ndarray:
    """Cells burnt out to white or crushed to black on either side: they hold no structure to compare.

    A brightened or saturated copy clips highlights the original still shows
    (a white fur patch becomes flat 255); its structure there is gone, which is
    no evidence of another shot. Overlays stay disagreeing at the edges anyway.
    `mq`, `mc`: the two sides' cell means (cells.cell_means over the overlap).
    """
    return (mq >= CLIP_LIGHT) | (mc >= CLIP_LIGHT) | (mq <= CLIP_DARK) | (mc <= CLIP_DARK)


def warp_compare(query: Fingerprint, cand: Fingerprint, a: np.ndarray, mirrored: bool, max_noise: float
                 ) -> tuple[Agreement, float, Inputs | None]:
    """Agreement and overlap of the candidate's thumbnail warped onto the query's by thumbnail affine `a`,
    and the inputs of the comparison chosen (None where the overlap is too small to judge)."""
    cv2 = opencv.cv2()
    q = np.ascontiguousarray(query.thumb[:, ::-1]) if mirrored else query.thumb
    # Compare at the coarser of the two renderings: blur the sharper side by the warp's scale.
    q_sigma, c_sigma = blurs(a)
    qp, cp = prepare(q, q_sigma), prepare(cand.thumb, c_sigma)
    inv = cv2.invertAffineTransform(a.astype(np.float32))  # query pixel -> candidate pixel
    smaller = min(q.size, cand.thumb.size * abs(np.linalg.det(a[:, :2])))
    first, overlap = compare_at(qp, cp, inv, max_noise)
    share = overlap / max(smaller, 1.0)
    if share < MIN_OVERLAP:
        return NOTHING, share, None
    best, inputs = _best_alignment(qp, cp, inv, first, max_noise, lambda: colour_planes(query, cand, a, mirrored))
    return best, share, inputs


def compare_at(qp: np.ndarray, cp: np.ndarray, inv: np.ndarray, max_noise: float, motion: bool = False,
               colour: Colour | None = None, colour_floor: float = 0.0, by_colour: bool = False
               ) -> tuple[Agreement, float]:
    """Agreement of the candidate warped by `inv` (query pixel -> candidate pixel) and the overlap in pixels;
    `colour`: the two sides' colour planes (unwarped), which the motion test compares (colour_floor: see
    motion.colour_motion) and, with `by_colour`, the tone map follows (agreement's `hues`)."""
    cv2 = opencv.cv2()
    h, w = qp.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(cp, inv, (w, h), flags=flags, borderValue=0)
    ones = np.ones(cp.shape, np.uint8)
    mask = cv2.warpAffine(ones, inv, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
    mask = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
    hues = (colour[0], _warp_planes(colour[1], inv, (w, h))) if by_colour and colour is not None else None
    agr = agreement(qp, warped, mask, max_noise, hues=hues)
    if motion:
        agr = _with_motion(agr, inv, mask, colour, colour_floor)
    return agr, float(mask.sum())


def motion_of(agr: Agreement, inputs: Inputs, colour: Colour | None = None, colour_floor: float = 0.0) -> Agreement:
    """`agr` (the comparison warp_compare chose, made of `inputs`) with what moved measured: what compare_at(q, c,
    inv, max_noise, motion=True, colour=colour, colour_floor=colour_floor, by_colour=by_colour) gives, without
    comparing again."""
    mask = agr.motion_inputs[2] if agr.motion_inputs is not None else None
    return agr if mask is None else _with_motion(agr, inputs.inv, mask, colour, colour_floor)


def _with_motion(agr: Agreement, inv: np.ndarray, mask: np.ndarray, colour: Colour | None,
                 colour_floor: float) -> Agreement:
    """Grey and colour motion of a comparison made with the candidate warped by `inv` over `mask`."""
    h, w = mask.shape
    # The candidate's magnification onto the query (a 40% crop's original: 1.6x): its detail, and the flow's,
    # is that much coarser in query pixels.
    coarse = max(1.0, 1.0 / float(np.sqrt(abs(np.linalg.det(inv[:, :2])) + 1e-12)))
    agr = _with_grey_motion(agr, coarse)
    if colour is not None and agr.calm is not None:
        # Colour is judged once, on the region of the grey comparison chosen (tone curves map c's colour onto q's).
        cc = _warp_planes(colour[1], inv, (w, h))
        agr = replace(agr, colour_moved=colour_motion(colour[0], cc, mask, agr.calm, colour_floor))
    return agr


def _warp_planes(planes: np.ndarray, inv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The candidate's colour planes on the query's pixel grid (`inv`: query pixel -> candidate pixel)."""
    cv2 = opencv.cv2()
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return np.stack([cv2.warpAffine(p, inv, size, flags=flags, borderValue=0) for p in planes])


def _best_alignment(qp: np.ndarray, cp: np.ndarray, inv: np.ndarray, first: Agreement, max_noise: float,
                    colour: Callable[[], Colour | None] = lambda: None) -> tuple[Agreement, Inputs]:
    """The comparison that agrees best (the fit as given, ECC-refined, sharpness-matched, tone-mapped by colour)
    and its inputs; `colour()`: both sides' colour planes (colour_planes; None: grey only), asked for only where a
    tone map by colour is tried."""
    cv2 = opencv.cv2()
    if first.interior_bad == 0.0 or first.interior_bad > ECC_RESCUE or first.structure < ECC_STRUCTURE:
        # Clean already, or too different for a sub-pixel shift to matter (a shift by a fraction of a pixel does
        # not make unrelated detail correlate): skip the costly refinement.
        return first, Inputs(qp, cp, inv)
    try:  # sub-pixel refinement: keypoint fits are off by a fraction of a thumbnail pixel
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, ECC_ITERS, 1e-4)
        _, refined = cv2.findTransformECC(qp, cp, inv.copy(), cv2.MOTION_AFFINE, criteria, None, 1)
    except cv2.error:
        return first, Inputs(qp, cp, inv)
    # ECC pulls towards an overlay's strong edges at times: keep whichever alignment agrees better.
    second, _ = compare_at(qp, cp, refined, max_noise)
    sv = np.linalg.svd(refined[:, :2], compute_uv=False)
    second = replace(second, aniso=float(sv[0] / max(sv[1], 1e-9)))
    # A copy is a similarity: a refinement that squashed the candidate (ECC diverged on a chance fit,
    # singular values 300:1) compares smeared stripes that "agree" with anything, and never wins.
    best, inputs = first, Inputs(qp, cp, inv)
    if second.aniso <= MAX_ANISO and preference(second, max_noise) < preference(first, max_noise):
        best, inputs = second, Inputs(qp, cp, refined)
    if best.interior_bad > 0.0:
        for matched in _sharpness_matched(qp, cp, inputs.inv):
            third, _ = compare_at(*matched, inputs.inv, max_noise)
            if preference(third, max_noise) < preference(best, max_noise):
                best, inputs = third, Inputs(*matched, inputs.inv)
    planes = colour() if best.interior_bad > 0.0 else None
    if planes is not None:
        # A filter that clipped some hues moved grey levels by colour, which one grey curve cannot follow: the
        # comparison chosen, its tone map following colour too (tone.colour_offsets).
        fourth, _ = compare_at(inputs.q, inputs.c, inputs.inv, max_noise, colour=planes, by_colour=True)
        if preference(fourth, max_noise) < preference(best, max_noise):
            best, inputs = fourth, inputs._replace(by_colour=True)
    return best, inputs


def _sharpness(img: np.ndarray) -> float:
    cv2 = opencv.cv2()
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
    cv2 = opencv.cv2()
    h, w = qp.shape
    warped = cv2.warpAffine(cp, inv, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    sq, sc = _sharpness(qp), _sharpness(warped)
    if min(sq, sc) <= 0 or max(sq, sc) / min(sq, sc) < SHARPNESS_RATIO:
        return []
    sharper_is_query = sq > sc
    target = min(sq, sc)
    src = qp if sharper_is_query else cp
    for sigma in BLUR_STEPS:
        blurred = prepare(src, sigma)
        test = blurred if sharper_is_query else cv2.warpAffine(blurred, inv, (w, h),
                                                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        if _sharpness(test) <= target * SHARPNESS_RATIO:
            return [(blurred, cp) if sharper_is_query else (qp, blurred)]
    return []


def colour_planes(query: Fingerprint, cand: Fingerprint, a: np.ndarray, mirrored: bool) -> Colour | None:
    """Both sides' colour planes on their thumbnails' grids, blurred as warp_compare blurs the grey (None: either
    side has no colour stored, an orb2 fingerprint)."""
    qc, cc = chroma_planes(query), chroma_planes(cand)
    if qc is None or cc is None:
        return None
    if mirrored:
        qc = np.ascontiguousarray(qc[:, :, ::-1])
    q_sigma, c_sigma = blurs(a)
    return np.stack([prepare(p, q_sigma) for p in qc]), np.stack([prepare(p, c_sigma) for p in cc])
