"""rerank(): a hard edit finds its original first even when the index ranks it low."""

from __future__ import annotations

import pytest
from PIL import Image

from duplicates.edits import EDITS, HARD, encode
from duplicates.fingerprint import fingerprint
from duplicates.relation import Relation
from duplicates.rerank import rerank
from embeddings.loading import load_image


@pytest.mark.parametrize("edit", HARD)
def test_hard_edit_puts_its_original_first(edit: str, synthetic_photos: list[Image.Image], synthetic_scene_pairs):
    fps = [fingerprint(load_image(encode(im))) for im in synthetic_photos]
    other_shot = fingerprint(synthetic_scene_pairs[0][1])
    query = fingerprint(load_image(encode(EDITS[edit](synthetic_photos[2]))))
    # The index ranked the original last, below strangers and below another shot of some scene.
    candidates = [(1, 0.93, fps[0]), (2, 0.91, fps[1]), (3, 0.90, other_shot), (4, 0.88, None), (5, 0.42, fps[2])]
    ranked = rerank(query, candidates)
    assert ranked[0][0] == 5 and ranked[0][2].relation is Relation.COPY
    assert sorted(r[0] for r in ranked) == [1, 2, 3, 4, 5]
    assert all(r[2].relation is not Relation.COPY for r in ranked[1:])
    assert next(r for r in ranked if r[0] == 4)[2].reason == "no fingerprint yet"
