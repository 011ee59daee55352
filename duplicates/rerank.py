"""Re-rank an index's candidates by verification: verified copies first, then same scene, then related.

A hard edit (96-px thumbnail, JPEG q5, an off-centre crop, a screenshot inset)
often lands its original at rank 2..200 of a global embedding; the geometric and
pixel evidence puts it first. Which candidates are verified is `duplicates.shortlist`'s
rule: the cosine top `depth` and those the query's keypoints vote for further down.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from duplicates.fingerprint import Fingerprint
from duplicates.relation import Relation, Verdict
from duplicates.shortlist import voted
from duplicates.verify import relate

_RANK = {Relation.COPY: 0, Relation.SAME_SCENE: 1, Relation.RELATED: 2}


def rerank(query: Fingerprint, candidates: Sequence[tuple[int, float, Fingerprint | None]],
           depth: int | None = None, threads: int = 1) -> list[tuple[int, float, Verdict]]:
    """[(image_id, cosine, verdict)] of the verified candidates: copies first (best agreement first), then
    same scene, then by cosine.

    `candidates` come best cosine first. With `depth`, the first `depth` and the keypoint-voted ones of
    the rest are verified and returned (duplicates.shortlist); without it, all of them.
    `threads`: with more than one, the keypoint votes run on threads - 1 of them while this thread verifies the
    first `depth` (which need no votes), then the voted ones; the verifications stay on this thread (measured:
    two threads gained nothing, most of a verification holds the GIL; the votes' FAISS search does not).
    """
    if depth is None:
        out = [_judge(query, candidates[k]) for k in range(len(candidates))]
    else:
        fps = [c[2] for c in candidates]
        head = range(min(depth, len(candidates)))
        if threads > 1:
            with ThreadPoolExecutor(1) as pool:
                extra = pool.submit(_voted_apart, query, fps, depth, threads - 1)
                out = [_judge(query, candidates[k]) for k in head]
                out += [_judge(query, candidates[k]) for k in extra.result()]
        else:
            out = [_judge(query, candidates[k]) for k in (*head, *voted(query, fps, depth))]
    out.sort(key=lambda t: (_RANK[t[2].relation], -t[2].score, -t[1]))
    return out


def _judge(query: Fingerprint, candidate: tuple[int, float, Fingerprint | None]) -> tuple[int, float, Verdict]:
    """(image_id, cosine, verdict) of one candidate; one without a fingerprint (not computed yet) is judged by
    cosine alone."""
    image_id, cosine, fp = candidate
    if fp is None:
        return image_id, float(cosine), Verdict(Relation.RELATED, float(min(1.0, max(0.0, cosine))),
                                                "no fingerprint yet")
    return image_id, float(cosine), relate(query, fp, cosine)


def _voted_apart(query: Fingerprint, fps: list[Fingerprint | None], depth: int, threads: int) -> list[int]:
    """shortlist.voted on a thread of its own, beside the verifications: FAISS's OpenMP team would otherwise
    spin on the verifying core (measured: votes beside them on two OpenMP threads gained nothing)."""
    import faiss

    faiss.omp_set_num_threads(1)  # this thread's OpenMP regions only: not spinning on the verifying core
    return voted(query, fps, depth, threads=threads)
