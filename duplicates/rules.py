"""The duplicate decision: named rules over one frozen Thresholds object, kept as data (thresholds.toml).

`verify.measure()` produces Evidence; `decide()` here turns it into a relation and
names the rule that decided. A copy must pass every COPY rule; otherwise a pair is
the same scene when it passes every SCENE rule; otherwise it is related. The
verdict's `rule` is `copy` for a copy, else the first copy rule that failed (same
scene) or the first scene rule that failed (related), so a changed verdict can be
traced to one rule and one threshold.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from duplicates.relation import Relation, Verdict

if TYPE_CHECKING:
    from duplicates.verify import Evidence

THRESHOLDS_FILE = Path(__file__).with_name("thresholds.toml")


@dataclass(frozen=True)
class Thresholds:
    """Every number the decision compares Evidence with (thresholds.toml says where each comes from)."""

    projective_f: float
    reframe_max: float
    copy_agree: float
    copy_interior_bad: float
    max_noise: float
    copy_textured: float
    weak_fit_inliers: int
    copy_textured_weak_fit: float
    copy_textured_loose_fit: float
    consistent_fit: float
    weak_fit_structure: float
    copy_structure: float
    moved_min: float
    moved_share: float
    faint_moved: float
    colour_moved: float
    scene_inliers: int
    scene_noise: float

    @classmethod
    def load(cls, path: Path = THRESHOLDS_FILE) -> Thresholds:
        """The file's values; a missing or unknown name is an error (no silent default)."""
        data = tomllib.loads(path.read_text())
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise ValueError(f"{path.name}: missing {sorted(names - set(data))}, unknown {sorted(set(data) - names)}")
        return cls(**data)


THRESHOLDS = Thresholds.load()


def weak(ev: Evidence, t: Thresholds) -> bool:
    """A fit where chance lives: few inliers, or the whole-frame fallback."""
    return ev.whole_frame or ev.inliers < t.weak_fit_inliers


def textured_needed(ev: Evidence, t: Thresholds) -> float:
    """Agreeing detail a copy must show: more where the fit is weak, most where it is also loose."""
    if not weak(ev, t):
        return t.copy_textured
    if ev.whole_frame or ev.inliers >= t.consistent_fit * ev.matches:
        return t.copy_textured_weak_fit
    return t.copy_textured_loose_fit


def moved(ev: Evidence, t: Thresholds) -> bool:
    """Part of the picture moved against the rest: another moment, however alike the rest is."""
    return ((ev.moved >= t.moved_min and ev.moved >= t.moved_share * ev.edge_bad) or ev.faint >= t.faint_moved
            or ev.colour_moved >= t.colour_moved)


@dataclass(frozen=True)
class Rule:
    """One named condition a relation needs."""

    name: str
    holds: Callable[[Evidence, Thresholds], bool]


COPY_RULES: tuple[Rule, ...] = (
    Rule("one_plane", lambda e, t: e.projective <= t.projective_f),
    Rule("one_framing", lambda e, t: e.reframed < t.reframe_max),
    Rule("pixels_agree", lambda e, t: e.agree >= t.copy_agree),
    Rule("interior_agrees", lambda e, t: e.interior_bad <= t.copy_interior_bad),
    Rule("low_noise", lambda e, t: e.noise <= t.max_noise),
    Rule("nothing_moved", lambda e, t: not moved(e, t)),
    Rule("enough_detail", lambda e, t: e.textured >= textured_needed(e, t)),
    Rule("same_structure", lambda e, t: e.structure >= (t.weak_fit_structure if weak(e, t) else t.copy_structure)),
)
SCENE_RULES: tuple[Rule, ...] = (
    Rule("scene_geometry", lambda e, t: e.inliers >= t.scene_inliers),
    Rule("scene_pixels", lambda e, t: e.noise <= t.scene_noise),
)


def first_failed(rules: tuple[Rule, ...], ev: Evidence, t: Thresholds = THRESHOLDS) -> Rule | None:
    return next((r for r in rules if not r.holds(ev, t)), None)


def is_copy(ev: Evidence, t: Thresholds = THRESHOLDS) -> bool:
    return first_failed(COPY_RULES, ev, t) is None


def is_moved(ev: Evidence, t: Thresholds = THRESHOLDS) -> bool:
    return moved(ev, t)


def decide(ev: Evidence, cosine: float, t: Thresholds = THRESHOLDS) -> Verdict:
    """The relation the evidence supports; the verdict names the rule that decided."""
    how = "whole frame" if ev.whole_frame else f"inliers {ev.inliers}" + (", mirrored" if ev.mirrored else "")
    detail = (f"{how}, perspective F {ev.projective:.1f}, agree {ev.agree:.2f}, "
              f"interior disagree {ev.interior_bad:.3f}, moved {ev.moved:.3f}, faint {ev.faint:.3f}, "
              f"colour moved {ev.colour_moved:.3f}, "
              f"textured {ev.textured:.2f}, structure {ev.structure:.2f}")
    not_copy = first_failed(COPY_RULES, ev, t)
    if not_copy is None:
        return Verdict(Relation.COPY, ev.agree, detail, rule="copy")
    not_scene = first_failed(SCENE_RULES, ev, t)
    if not_scene is None:
        return Verdict(Relation.SAME_SCENE, min(1.0, ev.inliers / 100),
                       detail + f": another shot (not a copy: {not_copy.name})", rule=not_copy.name)
    return Verdict(Relation.RELATED, float(min(1.0, max(0.0, cosine))),
                   f"cosine {cosine:.2f} (not the same scene: {not_scene.name})", rule=not_scene.name)
