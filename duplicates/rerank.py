"""Re-rank an index's candidates by verification: verified copies first, then same scene, then related.

A hard edit (96-px thumbnail, JPEG q5, an off-centre crop, a screenshot inset)
often lands its original at rank 2..200 of a global embedding; the geometric and
pixel evidence puts it first. Which candidates are verified is `duplicates.shortlist`'s
rule: the cosine top `depth` and those the query's keypoints vote for further down.
"""

from __future__ import annotations

from collections.abc import Sequence

from duplicates.fingerprint import Fingerprint
from duplicates.relation import Relation, Verdict
from duplicates.shortlist import to_verify
from duplicates.verify import relate

_RANK = {Relation.COPY: 0, Relation.SAME_SCENE: 1, Relation.RELATED: 2}


def rerank(query: Fingerprint, candidates: Sequence[tuple[int, float, Fingerprint | None]],
           depth: int | None = None, threads: int = 1) -> list[tuple[int, float, Verdict]]:
    """[(image_id, cosine, verdict)] of the verified candidates: copies first (best agreement first), then
    same scene, then by cosine.

    `candidates` come best cosine first. With `depth`, the first `depth` and the keypoint-voted ones of
    the rest are verified and returned (duplicates.shortlist); without it, all of them.
    A candidate without a fingerprint (not computed yet) is judged by cosine alone.
    `threads`: the keypoint votes' (shortlist.keypoint_votes); the verifications stay on this thread (measured:
    two threads gained nothing, most of a verification holds the GIL).
    """
    chosen = (range(len(candidates)) if depth is None
              else to_verify(query, [c[2] for c in candidates], depth, threads=threads))
    out = []
    for k in chosen:
        image_id, cosine, fp = candidates[k]
        if fp is None:
            verdict = Verdict(Relation.RELATED, float(min(1.0, max(0.0, cosine))), "no fingerprint yet")
        else:
            verdict = relate(query, fp, cosine)
        out.append((image_id, float(cosine), verdict))
    out.sort(key=lambda t: (_RANK[t[2].relation], -t[2].score, -t[1]))
    return out
