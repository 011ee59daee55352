"""Labelled pairs and their Evidence: what the decision is calibrated and tested on.

Every pair carries the relation it truly has: `copy` (an edit of one photograph,
duplicates/edits.py), `same_scene` (another shot of one synthetic scene: moved
figures, a moved camera) or `related` (two different pictures). The generated set
is fixed by its seeds, so a table of its Evidence (tests/duplicates/golden_pairs.csv)
can pin every verdict; bench/calibration.py adds the shared photos and scenes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from duplicates.relation import Relation

if TYPE_CHECKING:
    from duplicates.fingerprint import Fingerprint

# A measurement beside the Evidence (bench/calibration.py's probes): (query, candidate) -> named values.
Probe = Callable[["Fingerprint", "Fingerprint"], dict[str, float | int]]

# The generated set (fixed before any rule is tuned on it: change them only with the golden table).
PHOTO_SEED = 7100
PHOTOS = 3
SCENE_SEED = 7300
SCENES = 6
# Near-static frames (issue 26: duplicates.synthetic.still_frame): per kind ("hand": a fixed camera, one hand moved;
# "video": frames 1/25 s apart), STILLS pairs of frames 0 and 1 as other shots, and every edit of frame 0 of
# STILL_COPIES scenes as copies. Seeds fixed before any rule was set on them; bench/calibration.py adds a second,
# held-out set (STILL_HELD_OUT_SEED) that no rule was looked at on.
STILL_SEED = 7500
STILLS = 10
STILL_COPIES = 1
STILL_HELD_OUT_SEED = 7700


@dataclass(frozen=True)
class LabelledPair:
    """Two encoded photos and what they truly are to each other."""

    name: str
    truth: Relation
    query: bytes
    candidate: bytes


def generated_pairs() -> Iterator[LabelledPair]:
    """Every edit of a few synthetic photos (copies), other shots of synthetic scenes, different pictures."""
    from duplicates import synthetic
    from duplicates.edits import EDITS, encode

    photos = synthetic.photos(PHOTOS, seed=PHOTO_SEED)
    raws = [encode(p) for p in photos]
    for (i, photo), (edit, apply) in itertools.product(enumerate(photos), EDITS.items()):
        yield LabelledPair(f"photo{i}/{edit}", Relation.COPY, encode(apply(photo)), raws[i])
    for g, shots in enumerate(synthetic.scene_groups(SCENES, 2, seed=SCENE_SEED)):
        yield LabelledPair(f"scene{g}/shot1", Relation.SAME_SCENE, encode(shots[1]), encode(shots[0]))
    for i, j in itertools.combinations(range(PHOTOS), 2):
        yield LabelledPair(f"photo{i}/photo{j}", Relation.RELATED, raws[i], raws[j])
    yield from still_pairs(STILL_SEED, STILLS, STILL_COPIES)


def still_pairs(seed: int, scenes: int, copied: int, prefix: str = "still") -> Iterator[LabelledPair]:
    """Near-static frames of `scenes` scenes per kind (seeds `seed`, `seed` + 1, ...; the video kind's from
    `seed` + 100): frame 1 against frame 0 as another shot, and every edit of frame 0 of the first `copied`
    scenes as copies."""
    from duplicates import synthetic
    from duplicates.edits import EDITS, encode

    for k, kind in enumerate(synthetic.STILL_KINDS):
        for g in range(scenes):
            first = synthetic.still_frame(seed + 100 * k + g, kind, 0)
            raw = encode(first)
            if g < copied:
                for edit, apply in EDITS.items():
                    yield LabelledPair(f"{prefix}-{kind}{g}/{edit}", Relation.COPY, encode(apply(first)), raw)
            yield LabelledPair(f"{prefix}-{kind}{g}/frame1", Relation.SAME_SCENE,
                               encode(synthetic.still_frame(seed + 100 * k + g, kind, 1)), raw)


@dataclass(frozen=True)
class EvidenceRow:
    """One pair measured one way (query against candidate), the decision on it, and relate()'s verdict."""

    name: str
    truth: str
    decided: str  # decide(measure(query, candidate))
    related: str  # relate(query, candidate): both sides where the rules ask for it
    rule: str  # the rule that decided (rules.decide)
    evidence: dict[str, float | int | bool]
    probed: dict[str, float | int] = field(default_factory=dict)  # measured beside the Evidence, used by no rule

    def flat(self) -> dict[str, object]:
        out = {k: v for k, v in asdict(self).items() if k not in ("evidence", "probed")}
        return {**out, **self.evidence, **self.probed}


def measure_pair(pair: LabelledPair, cosine: float = 0.5, probe: Probe | None = None) -> EvidenceRow:
    """Fingerprint both files as the pipeline does, measure, decide and relate; `probe` measures more of the
    same fingerprints (its values in `probed`, which no verdict reads)."""
    from duplicates.fingerprint import fingerprint
    from duplicates.verify import decide, measure, relate
    from embeddings.loading import load_image

    q = fingerprint(load_image(pair.query), pair.query)
    c = fingerprint(load_image(pair.candidate), pair.candidate)
    ev = measure(q, c)
    verdict = decide(ev, cosine)
    return EvidenceRow(pair.name, pair.truth.value, verdict.relation.value, relate(q, c, cosine).relation.value,
                       verdict.rule, {f.name: getattr(ev, f.name) for f in fields(ev)},
                       {} if probe is None else probe(q, c))


def write_table(path: str) -> None:
    """The generated set's EvidenceRows as CSV: `python -m duplicates.labelled tests/duplicates/golden_pairs.csv`
    rewrites the golden table after a deliberate change of the rules (review the verdicts that moved)."""
    import csv

    from duplicates import opencv

    opencv.cv2()  # one OpenCV thread, as the tests and the pipeline run it
    rows = [measure_pair(pair).flat() for pair in generated_pairs()]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    import sys

    write_table(sys.argv[1])
