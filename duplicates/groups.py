"""Event groups: copies (stars around a reference, never chains) and same-scene shots.

Candidate pairs come from the global vectors (each image's nearest neighbours
above a low cosine floor) and, further down its GROUP_WIDE nearest, from keypoint
votes (duplicates.shortlist: a hard edit's original can rank past the nearest ten),
so an event of n photos costs about n * (NEIGHBOURS + VOTED) verifications, not n².
Only verified relations make a group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from duplicates.fingerprint import Fingerprint
from duplicates.relation import Relation, Verdict
from duplicates.shortlist import GROUP_WIDE, to_verify
from duplicates.verify import relate

NEIGHBOURS = 10  # candidates per image verified
CANDIDATE_COSINE = 0.30  # below this two photos are not even candidates
_BLOCK = 1024


@dataclass(frozen=True)
class Group:
    members: list[int]  # image ids; members[0] is the reference ("first image")
    score: float  # weakest verdict score between the reference and a member


def candidate_pairs(vectors: np.ndarray, k: int = NEIGHBOURS, floor: float = CANDIDATE_COSINE,
                    fingerprints: Sequence[Fingerprint | None] | None = None,
                    threads: int = 1) -> dict[tuple[int, int], float]:
    """{(i, j) row pairs with i < j: cosine} for each row's top-k neighbours above `floor`, and, given the
    rows' fingerprints, the keypoint-voted ones among the rest of its GROUP_WIDE nearest, whatever their
    cosine (duplicates.shortlist): a turned copy's plain vector can fall under the floor, its keypoints do not.
    `threads`: rows voted on at once (FAISS searches without the GIL); the pairs are the same, in the same order."""
    vecs = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vecs)
    pairs: dict[tuple[int, int], float] = {}
    if n < 2:
        return pairs
    k = min(k, n - 1)
    pool = ThreadPoolExecutor(threads) if threads > 1 and fingerprints is not None else None
    try:
        for start in range(0, n, _BLOCK):
            sims = vecs[start:start + _BLOCK] @ vecs.T
            for r in range(len(sims)):
                sims[r, start + r] = -2.0
            wide = min(max(k, GROUP_WIDE if fingerprints is not None else k), n - 1)
            top = np.argpartition(-sims, wide - 1, axis=1)[:, :wide]

            def row(r: int, sims: np.ndarray = sims, top: np.ndarray = top, start: int = start) -> np.ndarray:
                i = start + r
                cols = top[r][np.argsort(-sims[r, top[r]], kind="stable")]
                head = int(np.count_nonzero(sims[r, cols[:k]] >= floor))  # the top-k above the floor
                if fingerprints is not None and fingerprints[i] is not None and len(cols) > head:
                    # Votes look past the floor: a turned copy's plain vector can sit under it (docs/embeddings.md).
                    return cols[to_verify(fingerprints[i], [fingerprints[j] for j in cols], head, len(cols))]
                return cols[:head]

            rows = pool.map(row, range(len(sims))) if pool is not None else map(row, range(len(sims)))
            for r, chosen in enumerate(rows):
                i = start + r
                for j in chosen.tolist():
                    pairs[(min(i, j), max(i, j))] = float(sims[r, j])
    finally:
        if pool is not None:
            pool.shutdown()
    return pairs


Pair = tuple[Fingerprint, Fingerprint, float]  # relate()'s arguments: query, candidate, cosine


def verified_pairs(ids: Sequence[int], vectors: np.ndarray, fingerprints: Mapping[int, Fingerprint],
                   known: Mapping[tuple[int, int], Verdict] | None = None, *, threads: int = 1,
                   relate_all: Callable[[list[Pair]], list[Verdict]] | None = None,
                   ) -> dict[tuple[int, int], Verdict]:
    """{(row i, row j): verdict} for candidate pairs whose both fingerprints are known.

    `known`: verdicts decided before, keyed (id of the earlier row, id of the later row), the order
    `relate(query, candidate)` took them in (it is not symmetric). A candidate pair found there is not
    verified again; pairs that are not candidates now are ignored. The caller vouches that each holds
    the same two fingerprints (indexing/relations/reuse.py: unchanged ids and embedded_at). A verdict's one
    input besides them is the cosine, which only a related verdict carries (its score): one whose
    score is not this pair's cosine is verified again, so the answer is exactly the one without `known`.
    `threads` (candidate_pairs) and `relate_all` (the pairs to verify, in order, verified elsewhere: the index
    build's processes) change where the work runs, never the answer.
    """
    out: dict[tuple[int, int], Verdict | int] = {}
    todo: list[Pair] = []
    by_row = [fingerprints.get(int(x)) for x in ids]
    for (i, j), cos in candidate_pairs(vectors, fingerprints=by_row, threads=threads).items():
        a, b = int(ids[i]), int(ids[j])
        fi, fj = fingerprints.get(a), fingerprints.get(b)
        if fi is None or fj is None:
            continue
        before = known.get((a, b)) if known else None
        if before is not None and _holds(before, cos):
            out[(i, j)] = before
        else:
            out[(i, j)] = len(todo)
            todo.append((fi, fj, cos))
    verdicts = relate_all(todo) if relate_all is not None and todo else [relate(*pair) for pair in todo]
    return {key: verdicts[v] if isinstance(v, int) else v for key, v in out.items()}


def _holds(verdict: Verdict, cosine: float) -> bool:
    """Whether a verdict decided before stands at this cosine: copy and same-scene verdicts do not depend
    on it (verify.decide), a related one's score is the cosine clipped to 0..1 (relation.py)."""
    return verdict.relation is not Relation.RELATED or verdict.score == float(min(1.0, max(0.0, cosine)))


def _stars(ids: Sequence[int], edges: dict[tuple[int, int], Verdict],
           vetoes: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset()) -> list[Group]:
    """Greedy stars: the image with most links is a reference; its unassigned neighbours join it.

    Every member is linked to members[0] directly, so a chain a~b~c never makes
    a, c one group through b; and a member whose pair with one already in the
    group is a veto (copy groups: verified as another shot) does not join either.
    """
    nbrs: dict[int, dict[int, float]] = {}
    for (i, j), v in edges.items():
        nbrs.setdefault(i, {})[j] = v.score
        nbrs.setdefault(j, {})[i] = v.score
    order = sorted(nbrs, key=lambda i: (-len(nbrs[i]), int(ids[i])))
    taken: set[int] = set()
    groups = []
    for ref in order:
        if ref in taken:
            continue
        members: list[int] = []
        for j in sorted(nbrs[ref], key=lambda j: (-nbrs[ref][j], int(ids[j]))):
            if j not in taken and not any((min(j, m), max(j, m)) in vetoes for m in members):
                members.append(j)
        if not members:
            continue
        taken.add(ref)
        taken.update(members)
        groups.append(Group([int(ids[ref]), *sorted(int(ids[j]) for j in members)],
                            min(nbrs[ref][j] for j in members)))
    groups.sort(key=lambda g: (-len(g.members), g.members[0]))
    return groups


def copy_groups(ids: Sequence[int], vectors: np.ndarray, fingerprints: Mapping[int, Fingerprint],
                verdicts: dict[tuple[int, int], Verdict] | None = None) -> list[Group]:
    """Copies only: every member verified as a COPY of members[0]; never a chain."""
    verdicts = verified_pairs(ids, vectors, fingerprints) if verdicts is None else verdicts
    copies = {p: v for p, v in verdicts.items() if v.relation is Relation.COPY}
    # Only "another shot" keeps a verified copy of the reference out. Two hard edits of one photo (a 96-px
    # thumbnail and a cropped, captioned re-encode) often fail to verify against each other: RELATED is
    # missing evidence, not evidence against, and each member is verified against members[0] anyway.
    return _stars(ids, copies, {p for p, v in verdicts.items() if v.relation is Relation.SAME_SCENE})


def scene_groups(ids: Sequence[int], vectors: np.ndarray, fingerprints: Mapping[int, Fingerprint],
                 verdicts: dict[tuple[int, int], Verdict] | None = None) -> list[Group]:
    """Same-scene shots; copies collapsed into one member (the copy group's reference)."""
    verdicts = verified_pairs(ids, vectors, fingerprints) if verdicts is None else verdicts
    copies = copy_groups(ids, vectors, fingerprints, verdicts)
    row = {int(x): r for r, x in enumerate(ids)}
    rep = {row[m]: row[g.members[0]] for g in copies for m in g.members}
    edges: dict[tuple[int, int], Verdict] = {}
    for (i, j), v in verdicts.items():
        if v.relation is not Relation.SAME_SCENE:
            continue
        a, b = rep.get(i, i), rep.get(j, j)
        if a != b:
            key = (min(a, b), max(a, b))
            if key not in edges or v.score > edges[key].score:
                edges[key] = v
    vetoes = {p for p, v in verdicts.items() if v.relation is Relation.RELATED}
    return _stars(ids, edges, vetoes)
