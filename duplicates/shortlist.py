"""Which candidates to verify: the cosine top-k, plus those the query's keypoints vote for.

A hard edit (JPEG quality 5, an off-centre 40% crop, a screenshot inset) can land
its original at rank 20..200 of a global embedding, where verifying every candidate
would cost too much. Its ORB descriptors still find the original's: each query
descriptor (and each of its mirror image's) votes for the candidate owning its
nearest descriptor (Hamming), when that one is close. On generated photos in an
event of 500 the original was the first or second by votes for every such edit,
where the cosine put it past rank 20 for 15-19% of them. A vote costs one binary
brute-force search (FAISS) over the candidates' keypoints: ~600 x 60,000
descriptors for 200 candidates, tens of milliseconds on one core.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from duplicates.fingerprint import Fingerprint

WIDE = 200  # cosine-ranked candidates of an upload whose keypoints are voted on
GROUP_WIDE = 100  # ... of each photo of an event, for its groups (2,000 photos x 100: the pipeline's share)
VOTED = 5  # ... of which the most-voted this many are verified besides the cosine top-k
VOTE_DISTANCE = 64  # Hamming distance (of 256 bits) within which a nearest descriptor votes
MIN_VOTES = 6  # fewer votes than this are chance
# An event's candidate pairs depend on these: verify.RULES_VERSION is derived from this module's code too.


def keypoint_votes(query: Fingerprint, candidates: Sequence[Fingerprint | None], threads: int = 1) -> np.ndarray:
    """Votes per candidate (int array, candidates' order): query descriptors whose nearest candidate
    descriptor is theirs and within VOTE_DISTANCE. A candidate without a fingerprint gets none.
    `threads`: the query's descriptors searched in that many slices at once (FAISS searches without the GIL;
    each descriptor's nearest is the same, so are the votes)."""
    import faiss

    votes = np.zeros(len(candidates), np.int64)
    usable = [(k, c.keypoints.desc) for k, c in enumerate(candidates) if c is not None and len(c.keypoints)]
    q = np.concatenate([query.keypoints.desc, query.mirrored.desc])
    if not usable or not len(q):
        return votes
    owner = np.concatenate([np.full(len(d), k) for k, d in usable])
    descs = [d for _, d in usable]
    index = faiss.IndexBinaryFlat(256)
    index.add(np.ascontiguousarray(np.concatenate(descs), np.uint8))
    q = np.ascontiguousarray(q, np.uint8)
    if threads > 1 and len(q) >= 2 * threads:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            found = list(pool.map(lambda part: index.search(part, 1), np.array_split(q, threads)))
        dist, row = np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
    else:
        dist, row = index.search(q, 1)
    near = (row[:, 0] >= 0) & (dist[:, 0] <= VOTE_DISTANCE)
    np.add.at(votes, owner[row[near, 0]], 1)
    return votes


def to_verify(query: Fingerprint, candidates: Sequence[Fingerprint | None], depth: int,
              wide: int = WIDE, threads: int = 1) -> list[int]:
    """Positions in `candidates` (cosine order, best first) to verify: the first `depth`, then `voted`'s."""
    return list(range(min(depth, len(candidates)))) + voted(query, candidates, depth, wide, threads)


def voted(query: Fingerprint, candidates: Sequence[Fingerprint | None], depth: int,
          wide: int = WIDE, threads: int = 1) -> list[int]:
    """Positions past the first `depth` to verify too: up to VOTED among the next `wide` - `depth`, the most
    voted first (at least MIN_VOTES); `threads`: keypoint_votes'."""
    rest = candidates[depth:wide]
    if not rest:
        return []
    votes = keypoint_votes(query, rest, threads)
    order = np.argsort(-votes, kind="stable")[:VOTED]
    return [depth + int(k) for k in order if votes[k] >= MIN_VOTES]
