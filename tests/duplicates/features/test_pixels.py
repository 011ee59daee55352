"""features/pixels.py: aligned pixels agree for a re-encoded or tone-changed copy and not where a region changed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from duplicates.edits import EDITS
from duplicates.features import pixels
from duplicates.fingerprint import Fingerprint
from duplicates.rules import THRESHOLDS
from duplicates.synthetic import shot

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
MAX_NOISE = THRESHOLDS.max_noise


def _changed_region(img: Image.Image) -> Image.Image:
    """Another photo's middle pasted into the middle of this one (a person who is not there in the original)."""
    out = img.copy()
    w, h = img.size
    box = (w // 3, h // 3, 2 * w // 3, 2 * h // 3)
    out.paste(shot(5099, 0).crop(box), box)
    return out


def test_a_reencoded_copy_agrees_everywhere(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    photo = shot(5001, 0)
    agr, overlap, inputs = pixels.warp_compare(fp_of(EDITS["jpeg_q30"](photo)), fp_of(photo), IDENTITY, False,
                                               MAX_NOISE)
    assert overlap == pytest.approx(1.0, abs=0.05) and inputs is not None
    assert agr.agree > 0.99 and agr.interior_bad == 0.0 and agr.noise < 2.0
    assert agr.textured > 0.2 and agr.structure > 0.95


def test_a_changed_region_disagrees_inside(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    photo = shot(5001, 0)
    agr, _, _ = pixels.warp_compare(fp_of(_changed_region(photo)), fp_of(photo), IDENTITY, False, MAX_NOISE)
    assert agr.interior_bad > 0.2 and agr.agree < 0.95


def test_a_tone_change_is_matched(grey: np.ndarray) -> None:
    darker = (255 * (grey / 255) ** 1.6).astype(np.float32)
    agr = pixels.agreement(grey, darker, np.ones(grey.shape, bool), MAX_NOISE)
    assert agr.agree > 0.98 and agr.interior_bad == 0.0 and agr.noise < 2.0
    assert np.median(np.abs(grey - darker)) > 10  # (there was a change to match)


@pytest.mark.parametrize("edit", ["text_bar", "logo"])
def test_an_overlay_disagrees_at_the_edge_only(edit: str, fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    photo = shot(5001, 0)
    agr, _, _ = pixels.warp_compare(fp_of(EDITS[edit](photo)), fp_of(photo), IDENTITY, False, MAX_NOISE)
    assert agr.agree < 0.99 and agr.interior_bad == 0.0 and agr.noise < 1.0


def test_too_small_an_overlap_is_not_judged(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    fp = fp_of(shot(5001, 0))
    w = fp.thumb.shape[1]
    away = IDENTITY + np.array([[0.0, 0.0, 0.8 * w], [0.0, 0.0, 0.0]])  # 20% of the width overlaps
    agr, overlap, inputs = pixels.warp_compare(fp, fp, away, False, MAX_NOISE)
    assert overlap < pixels.MIN_OVERLAP and inputs is None and agr == pixels.NOTHING


def test_a_comparison_beyond_max_noise_never_wins() -> None:
    clean_but_noisy = pixels.Agreement(agree=1.0, interior_bad=0.0, noise=MAX_NOISE + 1)
    honest = pixels.Agreement(agree=0.9, interior_bad=0.05, noise=3.0)
    assert min(clean_but_noisy, honest, key=lambda g: pixels.preference(g, MAX_NOISE)) is honest
    assert min(clean_but_noisy, honest, key=lambda g: pixels.preference(g, 2 * MAX_NOISE)) is clean_but_noisy


def test_motion_is_measured_only_when_asked(grey: np.ndarray) -> None:
    moved = grey.copy()
    moved[10:50, 120:150] = grey[10:50, 125:155]  # a figure near the right edge, 5 px to the left
    mask = np.ones(grey.shape, bool)
    assert pixels.agreement(grey, moved, mask, MAX_NOISE).moved == 0.0
    asked = pixels.agreement(grey, moved, mask, MAX_NOISE, motion=1.0)
    assert asked.moved > 0.0 and asked.calm is not None


def test_colour_planes_are_none_without_colour(fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    from dataclasses import replace

    fp = fp_of(shot(5001, 0))
    planes = pixels.colour_planes(fp, fp, IDENTITY, False)
    assert planes is not None and planes[0].shape == (2, *fp.thumb.shape)
    assert pixels.colour_planes(replace(fp, chroma=None), fp, IDENTITY, False) is None


def test_highlights_a_brightened_copy_burnt_out_hold_nothing_to_disagree_about(grey: np.ndarray) -> None:
    bright = np.minimum(grey * 1.8, 255.0).astype(np.float32)
    assert (bright == 255.0).mean() > 0.1
    agr = pixels.agreement(grey, bright, np.ones(grey.shape, bool), MAX_NOISE)
    assert agr.interior_bad <= THRESHOLDS.copy_interior_bad and agr.agree > 0.98, agr  # (cells half clipped may not)


def test_a_filter_that_clipped_some_hues_agrees_when_the_tone_map_follows_colour(
        fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    """Brightness and saturation raised together clip saturated hues, so two hues of one grey level end at different
    ones: the grey curve alone leaves their cells disagreeing inside the picture (a copy called another shot); one
    offset per colour (tone.colour_offsets, given both sides' colour planes) maps them back."""
    from dataclasses import replace

    from duplicates import labelled, synthetic

    photo = synthetic.photos(labelled.PHOTOS, seed=labelled.PHOTO_SEED)[1]  # the golden table's photo1
    q, c = fp_of(EDITS["colour"](photo)), fp_of(photo)
    grey, _, _ = pixels.warp_compare(replace(q, chroma=None), c, IDENTITY, False, MAX_NOISE)  # no colour stored
    colour, _, inputs = pixels.warp_compare(q, c, IDENTITY, False, MAX_NOISE)
    assert grey.interior_bad > THRESHOLDS.copy_interior_bad >= colour.interior_bad, (grey, colour)
    assert inputs is not None and inputs.by_colour


def test_motion_of_the_chosen_comparison_is_what_comparing_again_with_motion_gives(
        fp_of: Callable[[Image.Image], Fingerprint]) -> None:
    """verify.measure measures a would-be copy's motion on warp_compare's choice (issue 28): the same values, bit for
    bit, as compare_at(inputs..., motion=True) comparing again."""
    from dataclasses import fields

    photo = shot(5001, 0)
    seen = 0.0
    for query in (EDITS["jpeg_q30"](photo), shot(5001, 1), _changed_region(photo), EDITS["text_bar"](photo)):
        q, c = fp_of(query), fp_of(photo)
        agr, _, inputs = pixels.warp_compare(q, c, IDENTITY, False, MAX_NOISE)
        assert inputs is not None
        colour = pixels.colour_planes(q, c, IDENTITY, False)
        for floor in (THRESHOLDS.colour_moved, 0.0):
            got = pixels.motion_of(agr, inputs, colour, floor)
            want, _ = pixels.compare_at(inputs.q, inputs.c, inputs.inv, MAX_NOISE, motion=True, colour=colour,
                                        colour_floor=floor, by_colour=inputs.by_colour)
            for f in fields(pixels.Agreement):
                if f.name not in ("aniso", "calm", "motion_inputs"):  # aniso: set by the ECC refinement only
                    assert repr(getattr(got, f.name)) == repr(getattr(want, f.name)), f.name
            assert (got.calm is None) == (want.calm is None)
            assert got.calm is None or np.array_equal(got.calm, want.calm)
            seen = max(seen, got.moved, got.faint, got.colour_moved)
    assert seen > 0.0  # motion was measured somewhere
    assert pixels.motion_of(pixels.NOTHING, inputs) is pixels.NOTHING


@pytest.mark.parametrize("structure, refined", [(0.1, False), (pixels.ECC_STRUCTURE - 0.01, False),
                                                (pixels.ECC_STRUCTURE, True), (0.95, True)])
def test_the_refinement_runs_only_where_detail_correlates(grey: np.ndarray, structure: float, refined: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A sub-pixel shift rescues a copy's slightly misaligned detail; it cannot make unrelated detail correlate, so a
    chance fit (most of the interior agreeing in tone, its textured cells not correlating) skips its ~45 ms."""
    from duplicates import opencv

    cv2 = opencv.cv2()
    calls: list[int] = []
    real = cv2.findTransformECC

    def counted(*args: object) -> object:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(cv2, "findTransformECC", counted)
    shifted = np.ascontiguousarray(np.roll(grey, 1, axis=1))
    inv = np.float32([[1, 0, 0.5], [0, 1, 0]])
    first = pixels.Agreement(agree=0.95, interior_bad=0.05, noise=3.0, structure=structure)
    best, inputs = pixels._best_alignment(grey, shifted, inv, first, MAX_NOISE)
    assert bool(calls) is refined
    if not refined:
        assert best is first and inputs[2] is inv
