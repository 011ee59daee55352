"""Event groups: exactly the planted copies, stars around a reference (never chains), scenes with copies collapsed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from duplicates.edits import EDITS, encode
from duplicates.fingerprint import fingerprint
from duplicates.groups import Group, candidate_pairs, copy_groups, scene_groups, verified_pairs
from duplicates.relation import Relation, Verdict
from embeddings.loading import load_image


def _verdict(relation: Relation, score: float = 0.9) -> Verdict:
    return Verdict(relation, score, "test")


def test_copy_groups_never_chain() -> None:
    """a~b and b~c verified, a~c not: no group holds a and c; every member is linked to members[0]."""
    ids = [10, 11, 12, 13]
    vectors = np.eye(4, dtype=np.float32)
    verdicts = {(0, 1): _verdict(Relation.COPY), (1, 2): _verdict(Relation.COPY),
                (2, 3): _verdict(Relation.COPY), (0, 2): _verdict(Relation.SAME_SCENE)}
    groups = copy_groups(ids, vectors, {}, verdicts)
    linked = {(ids[i], ids[j]) for (i, j), v in verdicts.items() if v.relation is Relation.COPY}
    linked |= {(b, a) for a, b in linked}
    for g in groups:
        assert all((g.members[0], m) in linked for m in g.members[1:]), g
        assert not {10, 12} <= set(g.members) and not {11, 13} <= set(g.members)
    assert sorted(m for g in groups for m in g.members) == sorted(set(m for g in groups for m in g.members))


def test_reference_is_the_most_connected_member() -> None:
    ids = [1, 2, 3, 4]
    verdicts = {(0, 3): _verdict(Relation.COPY), (1, 3): _verdict(Relation.COPY), (2, 3): _verdict(Relation.COPY)}
    assert copy_groups(ids, np.eye(4, dtype=np.float32), {}, verdicts) == [Group([4, 1, 2, 3], 0.9)]


def test_candidate_pairs_are_top_k_above_the_floor() -> None:
    v = np.array([[1, 0], [0.99, 0.141], [0, 1], [-1, 0]], np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    pairs = candidate_pairs(v, k=1, floor=0.5)
    assert set(pairs) == {(0, 1)} and pairs[(0, 1)] == pytest.approx(0.99, abs=0.01)


@pytest.fixture(scope="module")
def event(synthetic_photos: list[Image.Image], synthetic_scene_pairs):
    """4 photos, 2 planted copies of photo 0 and 1 of photo 2, 2 same-scene pairs (one with a copy of its shot)."""
    images = list(synthetic_photos)
    images += [EDITS["jpeg_q5"](synthetic_photos[0]), EDITS["crop_40_offcentre"](synthetic_photos[0]),
               EDITS["text_bar"](synthetic_photos[2])]
    (s0, s1), (t0, t1) = synthetic_scene_pairs[:2]
    images += [s0, s1, t0, t1, EDITS["resize_50"](s1)]
    raws = [encode(im) for im in images]
    fps = {100 + i: fingerprint(load_image(r), r) for i, r in enumerate(raws)}
    # Vectors: every image a neighbour of every other (the worst case for chaining); verification decides.
    rng = np.random.default_rng(0)
    vectors = np.ones((len(raws), 16), np.float32) + rng.normal(0, 0.05, (len(raws), 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = list(fps)
    return ids, vectors, fps


def test_event_copy_groups_are_exactly_the_planted_copies(event) -> None:
    ids, vectors, fps = event
    verdicts = verified_pairs(ids, vectors, fps)
    groups = copy_groups(ids, vectors, fps, verdicts)
    assert sorted(sorted(g.members) for g in groups) == [[100, 104, 105], [102, 106], [108, 111]]
    for g in groups:
        assert g.members[0] in (100, 102, 108, 111)


def test_scene_groups_hold_the_scene_pairs_with_copies_collapsed(event) -> None:
    ids, vectors, fps = event
    groups = [sorted(g.members) for g in scene_groups(ids, vectors, fps)]
    pair_one = next(g for g in groups if 107 in g)
    assert len({108, 111} & set(pair_one)) == 1, pair_one  # shot 1 and its copy count once
    assert [109, 110] in groups
    assert all(len(g) == 2 for g in groups) and len(groups) == 2


def _counting_relate(monkeypatch, fps) -> list[tuple[int, int]]:  # type: ignore[no-untyped-def]
    """Patch the relate() verified_pairs calls; returns the list of (query id, candidate id) it verified."""
    from duplicates import groups

    real, calls, id_of = groups.relate, [], {id(fp): i for i, fp in fps.items()}

    def counting(query, candidate, cosine):  # type: ignore[no-untyped-def]
        calls.append((id_of[id(query)], id_of[id(candidate)]))
        return real(query, candidate, cosine)

    monkeypatch.setattr(groups, "relate", counting)
    return calls


def test_known_verdicts_are_reused_and_only_new_pairs_verified(event, monkeypatch) -> None:
    """An event that grew (a merge): verdicts of its earlier candidate pairs are lent, only the pairs that
    were not candidates before are verified, pairs no longer candidates are dropped: the answer is exactly
    the one computed from scratch, pair for pair (relation, score, reason)."""
    from duplicates.fingerprint import Fingerprint

    ids0, vectors0, fps0 = event
    before = verified_pairs(ids0, vectors0, fps0)
    known = {(ids0[i], ids0[j]): v for (i, j), v in before.items()}
    # Twelve more: re-encodings of every photo (their own fingerprint objects), vectors beside theirs.
    rng = np.random.default_rng(1)
    extra = np.asarray(vectors0[:12]) + rng.normal(0, 0.01, (12, vectors0.shape[1])).astype(np.float32)
    vectors = np.vstack([vectors0, extra / np.linalg.norm(extra, axis=1, keepdims=True)])
    fps = {**fps0, **{200 + t: Fingerprint.from_bytes(fps0[ids0[t]].to_bytes()) for t in range(12)}}
    ids = list(fps)
    scratch = verified_pairs(ids, vectors, fps)
    calls = _counting_relate(monkeypatch, fps)
    reused = verified_pairs(ids, vectors, fps, known)
    assert reused == scratch  # Verdict equality: relation, score and reason
    new_pairs = {(ids[i], ids[j]) for i, j in scratch} - set(known)
    assert sorted(calls) == sorted(new_pairs) and 0 < len(calls) < len(scratch)
    assert set(known) - {(ids[i], ids[j]) for i, j in scratch}, "some earlier candidates are no longer candidates"
    assert all(reused[(ids.index(a), ids.index(b))] is known[(a, b)]
               for a, b in set(known) & {(ids[i], ids[j]) for i, j in scratch})


def test_known_verdicts_never_stand_for_another_order_or_cosine(event, monkeypatch) -> None:
    """relate() is asked query first: a verdict keyed the other way round is not used; a related verdict
    carries its cosine as score: one of another cosine is verified again; non-candidates are ignored."""
    ids, vectors, fps = event
    scratch = verified_pairs(ids, vectors, fps)
    (i, j), related = next((p, v) for p, v in scratch.items() if v.relation is Relation.RELATED)
    (k, m), other = next((p, v) for p, v in scratch.items() if v.relation is not Relation.RELATED)
    bogus = Verdict(Relation.COPY, 0.5, "not this pair's")
    known = {(ids[j], ids[i]): bogus,  # the reversed order
             (ids[i], ids[j]): Verdict(Relation.RELATED, related.score / 2, related.reason),
             (ids[k], ids[m]): other, (1, 2): bogus}  # (1, 2): no such ids, never a candidate
    calls = _counting_relate(monkeypatch, fps)
    assert verified_pairs(ids, vectors, fps, known) == scratch
    assert (ids[i], ids[j]) in calls and (ids[k], ids[m]) not in calls and len(calls) == len(scratch) - 1


def test_two_hard_edits_that_fail_each_other_still_join_their_original() -> None:
    """r~a and r~b copies; a~b unverifiable (related): one group. a~b another shot: b stays out."""
    ids = [1, 2, 3]
    base = {(0, 1): _verdict(Relation.COPY), (0, 2): _verdict(Relation.COPY)}
    related = copy_groups(ids, np.eye(3, dtype=np.float32), {}, {**base, (1, 2): _verdict(Relation.RELATED)})
    assert [g.members for g in related] == [[1, 2, 3]]
    scene = copy_groups(ids, np.eye(3, dtype=np.float32), {}, {**base, (1, 2): _verdict(Relation.SAME_SCENE)})
    assert [g.members for g in scene] == [[1, 2]]
