"""Decide the relation of two photos from their fingerprints (and the global cosine).

Measurement and decision apart: the feature modules (duplicates/features/) measure,
rules.py with thresholds.toml decides; this module runs the stages, cheapest first,
each either deciding or handing over:
1. sha256 equal: the same file, a COPY at no cost.
2. Geometry (features/geometry.py): ORB matches (the query also as its mirror image)
   and a RANSAC similarity fit (what every edit of one photograph does to its pixels).
3. Aligned pixels (features/pixels.py, with overlays.py and framing.py): the candidate's
   thumbnail warped onto the query's by that fit and compared cell by cell; motion
   (features/motion.py) only for a would-be copy, the flow costing more than the rest.
4. Whole-frame fallback (features/whole_frame.py) when keypoints are too few.
Geometric support without pixel agreement means SAME_SCENE; without
geometric support two photos are only RELATED, whatever their cosine: a global
embedding scores two different goldfinches as high as two shots of one.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import pkgutil
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from duplicates import features, fingerprint, opencv, rules, shortlist
from duplicates.features import framing, geometry, pixels, whole_frame
from duplicates.fingerprint import Fingerprint
from duplicates.relation import Relation, Verdict

# Relations computed under other rules are stale: RULES_VERSION is derived from the measurement's code (this
# module, duplicates/features/, the fingerprint, the candidate pairs), the rules and the thresholds (rules_version
# below), so any change to them re-verifies stored relations; the pinned value in tests/duplicates/test_rules.py
# makes such a change visible in review. History of the hand-made versions: v10 colour that moved counts; v9 faint
# motion; v8 edge motion, overlay bands; v7 overlay depth; v6 another shot judged from both sides; v5 keypoint-vote
# candidates, loose weak fits.


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


def measure(query: Fingerprint, cand: Fingerprint) -> Evidence:
    """Run the geometric and pixel stages; the evidence decide() turns into a relation.

    Three of the decision's numbers tell the measurement where precision stops mattering (never what to decide):
    max_noise (a comparison noisier is broken: never the one kept), reframe_max (a smaller strip needs no canvas
    check), colour_moved (a plane that cannot reach it needs no flow).
    """
    t = rules.THRESHOLDS
    fit = geometry.best_fit(query, cand)
    if fit.m is not None and fit.inliers >= geometry.MIN_INLIERS:
        a = geometry.thumb_affine(fit.m, query, cand)
        agr, overlap, inputs = pixels.warp_compare(query, cand, a, fit.mirrored, t.max_noise)
        ev = Evidence(fit.matches, fit.inliers, fit.residual, fit.mirrored, overlap, agr.agree, agr.interior_bad,
                      agr.noise, aniso=agr.aniso, textured=agr.textured, structure=agr.structure,
                      projective=fit.projective,
                      reframed=framing.reframed(query, cand, fit.m, fit.mirrored, t.reframe_max),
                      edge_bad=agr.edge_bad)
        if inputs is not None and is_copy(ev):
            # Only a would-be copy needs to know whether something moved (the flow costs more than the rest),
            # measured on the comparison chosen (pixels.motion_of: what comparing its inputs again with motion gives).
            colour = pixels.colour_planes(query, cand, a, fit.mirrored)
            motion = pixels.motion_of(agr, inputs, colour, t.colour_moved)
            ev = replace(ev, moved=motion.moved, faint=motion.faint, colour_moved=motion.colour_moved)
        return ev
    whole = whole_frame.whole_frame(query, cand, t.max_noise) if whole_frame.starved(query, cand) else None
    if whole is None:
        return Evidence(fit.matches, fit.inliers, fit.residual, fit.mirrored)
    return Evidence(fit.matches, fit.inliers, fit.residual, fit.mirrored, 1.0, whole.agree, whole.interior_bad,
                    whole.noise, True, textured=whole.textured, structure=whole.structure)


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


def measurement_files() -> list[Path]:
    """The source files a verdict depends on: the fingerprint, the candidate pairs (shortlist, and groups, read
    as a file: it imports this module), every feature module, this one (and rules.py, the decision)."""
    found = [importlib.import_module(f"{features.__name__}.{m.name}")
             for m in sorted(pkgutil.iter_modules(features.__path__), key=lambda m: m.name)]
    modules = [fingerprint, shortlist, rules, features, *found, sys.modules[__name__]]
    return [*(Path(str(m.__file__)) for m in modules), Path(__file__).with_name("groups.py")]


def rules_version() -> str:
    """A digest of what a verdict depends on: the code of the measurement (measurement_files()), the rules, and
    the thresholds' values. Comments and docstrings do not count (the code is compared as parsed, docstrings
    dropped), so only a change that can change a verdict makes stored relations stale."""
    digest = hashlib.sha256()
    for path in measurement_files():
        tree = ast.parse(path.read_text())
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
