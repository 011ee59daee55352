"""The three relations of docs/design.md (What "duplicate" means) and one verdict object."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Relation(StrEnum):
    COPY = "copy"  # the same photograph (the only "duplicate")
    SAME_SCENE = "same_scene"  # another exposure of the same moment or place
    RELATED = "related"  # similar content only (global embedding neighbours)


@dataclass(frozen=True)
class Verdict:
    """A decided relation with its evidence.

    `score` is in 0..1 and sorts verdicts within one relation: for COPY the
    fraction of the overlap whose aligned pixels agree, for SAME_SCENE the
    geometric support (inlier share), for RELATED the cosine clipped to 0..1.
    `reason` is short and human-readable ("sha256 equal", "inliers 143, agree 0.97").
    """

    relation: Relation
    score: float
    reason: str
    # The rule that decided (duplicates/rules.py; the reason names it too). Not stored with precomputed
    # relations, so not part of equality: a verdict read back equals the one computed.
    rule: str = field(default="", compare=False)

    @property
    def duplicate(self) -> bool:
        """Only a copy is a duplicate, in every route and field of the API."""
        return self.relation is Relation.COPY
