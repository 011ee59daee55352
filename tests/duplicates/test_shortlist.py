"""shortlist: a hard edit's keypoints vote for its original wherever the cosine ranked it."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from PIL import Image

from duplicates import synthetic
from duplicates.edits import EDITS, encode
from duplicates.fingerprint import Fingerprint, fingerprint
from duplicates.groups import candidate_pairs
from duplicates.rerank import rerank
from duplicates.shortlist import MIN_VOTES, keypoint_votes, to_verify
from embeddings.loading import load_image


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    """30 different generated photos (made once: each is a rendered scene)."""
    return synthetic.photos(30)


@pytest.fixture(scope="module")
def library(photos: list[Image.Image]) -> list[Fingerprint]:
    """Their fingerprints: the candidates an index would return."""
    return [fingerprint(load_image(encode(im))) for im in photos]


@pytest.mark.parametrize("edit", ["jpeg_q5", "crop_40_offcentre", "screenshot", "flip"])
def test_votes_find_the_original_below_the_cosine_depth(edit: str, library: list[Fingerprint],
                                                       photos: list[Image.Image]) -> None:
    original = 17
    query = fingerprint(load_image(encode(EDITS[edit](photos[original]))))
    votes = keypoint_votes(query, library)
    assert int(np.argmax(votes)) == original and votes[original] >= MIN_VOTES
    assert votes[original] > 3 * np.sort(votes)[-2]  # the strangers' votes are chance
    # The cosine ranked it last: the first 5 are verified, and the original, voted for.
    order = [i for i in range(30) if i != original] + [original]
    chosen = to_verify(query, [library[i] for i in order], depth=5)
    assert chosen[:5] == [0, 1, 2, 3, 4] and 29 in chosen and len(chosen) <= 5 + 5


def test_no_votes_without_fingerprints(library: list[Fingerprint]) -> None:
    assert keypoint_votes(library[0], [None, None]).tolist() == [0, 0]
    assert to_verify(library[0], [None] * 8, depth=3) == [0, 1, 2]  # nothing voted: the cosine head only


def test_an_upload_without_keypoints_verifies_the_cosine_head(library: list[Fingerprint]) -> None:
    """A flat upload (no corner for ORB) has nothing to vote with: the cosine head only, and no copy in it."""
    flat = fingerprint(Image.new("RGB", (640, 480), (90, 120, 150)))
    assert len(flat.keypoints) == 0 and len(flat.mirrored) == 0
    assert keypoint_votes(flat, library).tolist() == [0] * len(library)
    assert to_verify(flat, library, depth=4) == [0, 1, 2, 3]
    ranked = rerank(flat, [(i, 0.9 - i / 100, fp) for i, fp in enumerate(library)], depth=4)
    assert [i for i, _, _ in ranked] == [0, 1, 2, 3]
    assert not any(v.duplicate for _, _, v in ranked)


def test_candidate_pairs_add_the_voted_copy(library: list[Fingerprint], photos: list[Image.Image]) -> None:
    """Row 30 is a 40% crop of row 3 whose vector is far from row 3's: the cosine top-1 misses it, the votes not."""
    fps = [*library, fingerprint(load_image(encode(EDITS["crop_40_offcentre"](photos[3]))))]
    rng = np.random.default_rng(1)
    vectors = rng.normal(0, 1, (31, 8)).astype(np.float32) + 3.0  # all alike (cosine ~0.9)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[30] = vectors[np.argsort(vectors @ vectors[3])[1]]  # the copy's vector: one of row 3's least alike
    plain = candidate_pairs(vectors, k=1, floor=0.0)
    voted = candidate_pairs(vectors, k=1, floor=0.0, fingerprints=fps)
    assert (3, 30) not in plain and (3, 30) in voted
    assert set(plain) <= set(voted) and len(voted) <= len(plain) + 31 * 5


def test_votes_look_past_the_cosine_floor(library: list[Fingerprint], photos: list[Image.Image]) -> None:
    """Row 30 is row 3 turned 90 degrees, its vector under the floor (a plain embedding's turned copy can sit at
    cosine 0.27): the floor keeps it out of the cosine head, the keypoints vote it in all the same."""
    fps = [*library, fingerprint(load_image(encode(EDITS["rotate_90"](photos[3]))))]
    rng = np.random.default_rng(2)
    vectors = rng.normal(0, 1, (31, 64)).astype(np.float32)  # strangers: cosines around 0
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    other = vectors[30] - (vectors[30] @ vectors[3]) * vectors[3]
    vectors[30] = 0.25 * vectors[3] + np.sqrt(1 - 0.25**2) * other / np.linalg.norm(other)  # cosine 0.25 to row 3
    assert abs(float(vectors[3] @ vectors[30]) - 0.25) < 1e-5
    plain = candidate_pairs(vectors, k=2, floor=0.30)
    voted = candidate_pairs(vectors, k=2, floor=0.30, fingerprints=fps)
    assert (3, 30) not in plain and (3, 30) in voted
    assert all(cos >= 0.30 for cos in plain.values())  # without fingerprints the floor holds


def test_rows_voted_on_threads_give_the_same_pairs_in_the_same_order(library: list[Fingerprint]) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(0, 1, (30, 16)).astype(np.float32) + 1.0
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    one = candidate_pairs(vectors, k=3, floor=0.5, fingerprints=library)
    two = candidate_pairs(vectors, k=3, floor=0.5, fingerprints=library, threads=2)
    assert list(two.items()) == list(one.items()) and len(one) > 30


def test_votes_on_threads_are_the_votes_on_one(library: list[Fingerprint], photos: list[Image.Image]) -> None:
    query = fingerprint(load_image(encode(EDITS["crop_40_offcentre"](photos[7]))))
    one = keypoint_votes(query, library)
    assert one[7] >= MIN_VOTES and one.sum() > one[7]  # the original and chance votes elsewhere
    for threads in (2, 3):
        assert np.array_equal(keypoint_votes(query, library, threads), one)


def test_an_upload_checked_on_threads_gets_the_same_answer(library: list[Fingerprint], photos: list[Image.Image]
                                                            ) -> None:
    query = fingerprint(load_image(encode(EDITS["screenshot"](photos[4]))))
    candidates = [(i + 1, 0.9 - 0.01 * i, fp) for i, fp in enumerate(library)]
    one = rerank(query, candidates, depth=5)
    teams = faiss.omp_get_max_threads()
    two = rerank(query, candidates, depth=5, threads=2)  # votes on a thread of their own, beside the head
    assert two == one and one[0][0] == 5
    assert faiss.omp_get_max_threads() == teams  # the votes' one-thread OpenMP team stayed on their thread
