"""Re-rank an index's top-k by verification: verified copies first, then same scene, then related.

A hard edit (96-px thumbnail, JPEG q5, an off-centre crop, a screenshot inset)
often lands its original at rank 2..20 of a global embedding; the geometric and
pixel evidence puts it first.
"""

from __future__ import annotations

from collections.abc import Sequence

from duplicates.fingerprint import Fingerprint
from duplicates.relation import Relation, Verdict
from duplicates.verify import relate

_RANK = {Relation.COPY: 0, Relation.SAME_SCENE: 1, Relation.RELATED: 2}


def rerank(query: Fingerprint, candidates: Sequence[tuple[int, float, Fingerprint | None]]
           ) -> list[tuple[int, float, Verdict]]:
    """[(image_id, cosine, verdict)]: copies first (best agreement first), then same scene, then by cosine.

    A candidate without a fingerprint (not computed yet) is judged by cosine alone.
    """
    out = []
    for image_id, cosine, fp in candidates:
        if fp is None:
            verdict = Verdict(Relation.RELATED, float(min(1.0, max(0.0, cosine))), "no fingerprint yet")
        else:
            verdict = relate(query, fp, cosine)
        out.append((image_id, float(cosine), verdict))
    out.sort(key=lambda t: (_RANK[t[2].relation], -t[2].score, -t[1]))
    return out
