"""Motion: the part of the picture that moved against the rest, which makes two exposures another moment.

A person who moved between two exposures is still in the other frame, a few
pixels away: a dense optical flow between the aligned images finds them, and
warped by the flow their cells agree. An overlay (a logo, a caption) is new
content no shift explains. Three measures: disagreeing cells a shift explains
(`moved`), faintly differing ones (`faint`: a figure close to its background's
tone) and colour that moved (`colour_moved`: a figure as bright as its
background, of another colour).
"""

from __future__ import annotations

import numpy as np

from duplicates import opencv
from duplicates.features.cells import CELL, cell_means, differ_tol
from duplicates.features.tone import tone_curve

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


def grey_motion(q: np.ndarray, c: np.ndarray, mask: np.ndarray, used: np.ndarray, bad: np.ndarray,
                overlay: np.ndarray, edge: np.ndarray, noise: float, coarse: float) -> tuple[float, float, np.ndarray]:
    """(moved, faint, calm) of aligned, tone-mapped grey images: the share of covered cells among `edge`
    (disagreeing near the edges, overlays aside) and among the calm cells whose difference a local shift
    explains, and the calm cells themselves (the region colour motion is judged on).

    `used`, `bad`, `overlay`: the pixel comparison's covered, disagreeing and overlay cells; `noise` its median cell
    difference; `coarse` the candidate's magnification onto the query. Faint differences (under the disagreement
    tolerance: a figure close to its background's tone) are judged away from the overlap's border and from
    overlays, whose rims differ faintly too.
    """
    cv2 = opencv.cv2()
    k3 = np.ones((3, 3), np.uint8)
    near_overlay = cv2.dilate(overlay.astype(np.uint8), k3, iterations=FAINT_MARGIN).astype(bool)
    inner = cv2.erode(used.astype(np.uint8), k3, iterations=FAINT_MARGIN).astype(bool)
    calm = inner & ~near_overlay & ~bad
    moved, faint = shift_explained(q, c, mask, edge, differ_tol(noise), calm, max(FAINT_TOL, FAINT_NOISE * noise),
                                   coarse)
    return moved, faint, calm


def shift_explained(q: np.ndarray, c: np.ndarray, mask: np.ndarray, cells: np.ndarray, tol: float,
                    calm: np.ndarray, faint_tol: float, coarse: float = 1.0) -> tuple[float, float]:
    """Shares of covered cells whose difference a local shift of MOVED_PX or more explains: among `cells`
    (disagreeing), and among `calm` cells (agreeing) whose faint difference exceeds `faint_tol`.

    The flow's global affine part (what is left of the fit's misalignment) is removed first, so only motion
    of a part against the rest counts. A figure whose tone is close to its background's differs only faintly
    where it moved (under CELL_TOL), but the flow follows its outline all the same; a lone faint cell is
    noise, so those count in clusters.
    """
    cv2 = opencv.cv2()
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
    after, used = cell_means(np.abs(q - shifted) * m, m)
    before, _ = cell_means(np.abs(q - c) * m, m)
    size, _ = cell_means(np.linalg.norm(local, axis=2) * m, m)
    explained = after < 0.5 * before
    moved = cells & (after < tol) & explained & (size >= MOVED_PX)
    # A faint difference is a figure's outline: a smaller shift counts (1.5 thumbnail px, 1% of the width, times
    # the candidate's magnification: an upscaled candidate's detail is that much coarser).
    faint = calm & (before >= faint_tol) & explained & (size >= FAINT_PX * coarse)
    faint &= cv2.filter2D(faint.astype(np.float32), -1, np.ones((3, 3), np.float32),
                          borderType=cv2.BORDER_CONSTANT) >= 2
    n = max(int(used.sum()), 1)
    return float(moved.sum() / n), float(faint.sum() / n)


def colour_motion(q: np.ndarray, c: np.ndarray, mask: np.ndarray, region: np.ndarray, floor: float) -> float:
    """Share of covered cells in `region` whose colour (Cb or Cr plane of q (2, h, w) and of the aligned c) differs
    where a local shift explains it: a figure as bright as its background, of another colour, that moved.

    Each plane gets its own tone curve (a colour filter scales the colour); a plane the curve does not explain
    (typical cell difference over COLOUR_NOISE: sepia, a filter clipping in RGB) is no evidence either way.
    A plane with fewer differing cells than `floor` of the overlap (or than the share found already) cannot
    reach it, so the flow is not run there (a copy's usual case): shares under `floor` may come out lower.
    """
    share = 0.0
    for qc, cc in zip(q, c, strict=True):
        xs, ys = tone_curve(cc[mask], qc[mask])
        mapped = np.interp(cc, xs, ys).astype(np.float32)
        means, used = cell_means(np.abs(qc - mapped), mask.astype(np.float32))
        noise = float(np.median(means[used])) if used.any() else 99.0
        if noise > COLOUR_NOISE:
            continue
        tol = differ_tol(noise)
        differ = region & used & (means > tol)
        if differ.sum() < max(share, floor) * used.sum():
            continue  # too few differ for a shift to explain enough (a copy's usual case: no flow needed)
        moved, _ = shift_explained(qc, mapped, mask, differ, tol, np.zeros_like(used), 255.0)
        share = max(share, moved)
    return share
