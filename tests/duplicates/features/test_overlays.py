"""features/overlays.py: a saturated band at the edge is an overlay; the same disagreement inside is not."""

from __future__ import annotations

import numpy as np

from duplicates.features.cells import CELL, cell_means, cell_ncc
from duplicates.features.overlays import overlay_cells, overlay_like


def test_overlay_like_is_saturated_on_one_side_or_black_against_white() -> None:
    a = np.array([10.0, 10.0, 128.0, 240.0, 10.0, 128.0])
    b = np.array([128.0, 10.0, 128.0, 128.0, 250.0, 140.0])
    assert overlay_like(a, b).tolist() == [True, False, False, True, True, False]


def _bad_where_changed(q: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    m = np.ones(q.shape, np.float32)
    diff, used = cell_means(np.abs(q - c), m)
    _, sq, sc = cell_ncc(q, c, m)
    return (diff > 12) & used, m, sq, sc


def test_a_black_bar_along_the_bottom_is_an_overlay_and_a_black_slab_inside_is_not(grey: np.ndarray) -> None:
    h, w = grey.shape
    box = (0, h // CELL, 0, w // CELL)
    bar = grey.copy()
    bar[-16:] = 0.0
    bad, m, sq, sc = _bad_where_changed(grey, bar)
    assert bad[-4:].mean() > 0.8
    overlay = overlay_cells(bad, grey, bar, m, sq, sc, box)
    assert (overlay == bad).all()
    inside = grey.copy()
    inside[48:72, 60:100] = 0.0
    bad, m, sq, sc = _bad_where_changed(grey, inside)
    assert bad.sum() >= 20
    assert not overlay_cells(bad, grey, inside, m, sq, sc, box).any()


def test_textured_content_at_the_edge_is_not_an_overlay(grey: np.ndarray) -> None:
    """A region changed at the edge to other texture (a person who moved there) looks like no overlay."""
    h, w = grey.shape
    moved = grey.copy()
    moved[-16:, :60] = grey[20:36, 90:150]
    bad, m, sq, sc = _bad_where_changed(grey, moved)
    assert bad.sum() >= 10
    assert not overlay_cells(bad, grey, moved, m, sq, sc, (0, h // CELL, 0, w // CELL)).any()


def test_a_region_reaching_past_a_third_from_the_edge_is_content(grey: np.ndarray) -> None:
    """Two pictures sharing a caption differ from the edge down to the bar: not an overlay however dark."""
    h, w = grey.shape
    deep = grey.copy()
    deep[h // 2:, 40:100] = 0.0
    bad, m, sq, sc = _bad_where_changed(grey, deep)
    assert bad[-1].any() and bad[h // CELL // 2].any()
    assert not overlay_cells(bad, grey, deep, m, sq, sc, (0, h // CELL, 0, w // CELL)).any()


def test_overlay_cells_given_the_cell_levels_are_the_same(grey: np.ndarray) -> None:
    h, w = grey.shape
    m = np.ones(grey.shape, np.float32)
    bar = grey.copy()
    bar[int(h * 0.85):] = 0.0
    diff, used = cell_means(np.abs(grey - bar), m)
    _, sq, sc = cell_ncc(grey, bar, m)
    bad = used & (diff > 12)
    box = (0, h // CELL, 0, w // CELL)
    levels = cell_means(grey, m)[0], cell_means(bar, m)[0]
    want = overlay_cells(bad, grey, bar, m, sq, sc, box)
    assert want.any() and np.array_equal(overlay_cells(bad, grey, bar, m, sq, sc, box, levels), want)
