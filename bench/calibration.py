"""Calibration of the duplicate decision: the Evidence of every labelled pair, each threshold's margins, a sweep.

  .venv/bin/python bench/calibration.py [--photos 12] [--out calibration.parquet]

Pairs (duplicates/labelled.py): the generated set (every edit of synthetic photos, other shots of synthetic
scenes, different pictures; fixed seeds) and, when the sample-data folder is there (SAMPLE_DATA_DIR), every
edit of `--photos` shared photos (spread over the folder), every within-group pair of the shared same-scene
photos, and neighbouring shared photos as different pictures. Besides the near-static frames of the generated set,
a held-out set of them (`--stills` scenes per kind, `--still-copies` of them with every edit; seeds
labelled.STILL_HELD_OUT_SEED, fixed before any rule looked at them) is measured too. Each pair is measured once
(query = the edit or the later shot) and decided on its Evidence (rules.decide); relate() is not run, so a pair the
rules would judge again from the other side is counted one way here (the golden table and bench/duplicates.py count
relate()).

Prints, per threshold of duplicates/thresholds.toml that one rule compares one Evidence field with:
- the margin to the nearest copy: how far the closest true copy that passes every other copy rule is from the
  threshold (negative: copies this threshold alone refuses);
- the margin to the nearest other shot or different picture that passes every other copy rule (negative:
  it stays out; positive: a false copy this threshold alone lets in);
- a sweep of the threshold (x0.5 ... x2): copy recall and false copies, every other threshold as it is.
Then the operating point: per true relation, what the rules decided, and per set of pairs (generated, near-static
frames, held-out near-static frames, shared) the copy recall, its worst edit, and the other pairs called copies.
The Evidence goes to Parquet (--out).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from duplicates.relation import Relation

SWEEP = (0.5, 0.8, 0.9, 1.0, 1.1, 1.25, 2.0)

# threshold name -> (Evidence field, direction): +1 a copy needs field >= threshold, -1 field <= threshold.
# (The weak-fit thresholds and the motion combination are rules over several fields: swept, no margin.)
SIMPLE: dict[str, tuple[str, int]] = {
    "projective_f": ("projective", -1),
    "reframe_max": ("reframed", -1),
    "copy_agree": ("agree", +1),
    "copy_interior_bad": ("interior_bad", -1),
    "max_noise": ("noise", -1),
    "copy_structure": ("structure", +1),
    "faint_moved": ("faint", -1),
    "colour_moved": ("colour_moved", -1),
    "copy_textured": ("textured", +1),
}

# Measured beside the Evidence, used by no rule (labelled.measure_pair's probe): value -> the limit a candidate rule
# would set (a copy needs value < limit). The report shows each value's distribution per set (copies, other pairs)
# and what the rules as shipped plus that candidate rule would decide. shifted (duplicates/residuals.py, issue 26):
# the largest compact cluster of matches the fit leaves off the same way, on the fingerprints as computed (as every
# Evidence field here) and, shifted_stored, as stored (keypoint positions rounded to 1/64 px, what the pipeline
# compares); limit 7 fixed on the golden near-static set and the generated copies (copies 0-4, near-static other
# shots 3-59) before the held-out set was measured. docs/duplicates.md, "What is left", (g).
PROBES: dict[str, float] = {"shifted": 7, "shifted_stored": 7}


def probe(query: object, cand: object) -> dict[str, float | int]:
    """The PROBES values of one pair (labelled.Probe)."""
    from duplicates import residuals
    from duplicates.fingerprint import Fingerprint

    assert isinstance(query, Fingerprint) and isinstance(cand, Fingerprint)
    fresh = residuals.measure(query, cand)
    stored = residuals.measure(Fingerprint.from_bytes(query.to_bytes()), Fingerprint.from_bytes(cand.to_bytes()))
    return {"shifted": fresh.size, "shifted_px": fresh.px, "shifted_stored": stored.size}


def shared_pairs(photos: int) -> Iterator[object]:
    """Labelled pairs from the sample-data folder (nothing when it is absent)."""
    from core.settings import sample_data_dir
    from duplicates.edits import EDITS, encode
    from duplicates.labelled import LabelledPair
    from embeddings.loading import load_image

    data = sample_data_dir()
    if data is None or not (data / "photos").is_dir():
        return
    files = sorted((data / "photos").glob("*.jpg"))
    chosen = files[:: max(1, len(files) // photos)][:photos]
    for path in chosen:
        raw = path.read_bytes()
        full = load_image(raw, draft_side=None)
        for edit, apply in EDITS.items():
            yield LabelledPair(f"shared/{path.stem}/{edit}", Relation.COPY, encode(apply(full)), raw)
    for a, b in itertools.pairwise(chosen):
        yield LabelledPair(f"shared/{a.stem}/{b.stem}", Relation.RELATED, b.read_bytes(), a.read_bytes())
    table = data / "scenes" / "groups.csv"
    if table.is_file():
        groups: dict[str, list[Path]] = {}
        with open(table, newline="") as fh:
            for row in csv.DictReader(fh):
                groups.setdefault(row["group"], []).append(data / "scenes" / row["file"])
        for group, members in sorted(groups.items()):
            for x, y in itertools.combinations(members, 2):
                yield LabelledPair(f"scene/{group}/{x.stem}~{y.stem}", Relation.SAME_SCENE, y.read_bytes(),
                                   x.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12, help="shared photos whose every edit is a copy pair")
    parser.add_argument("--out", type=Path, default=None, help="write the Evidence table here (Parquet)")
    parser.add_argument("--stills", type=int, default=40,
                        help="held-out near-static scenes per kind (hand, video): frame 1 against frame 0")
    parser.add_argument("--still-copies", type=int, default=4,
                        help="of those, scenes per kind whose frame 0 gets every edit as a copy")
    args = parser.parse_args(argv)

    import pandas as pd

    from duplicates import opencv, rules
    from duplicates.labelled import STILL_HELD_OUT_SEED, generated_pairs, measure_pair, still_pairs
    from duplicates.verify import RULES_VERSION, Evidence

    opencv.cv2()
    started = time.perf_counter()
    held_out = still_pairs(STILL_HELD_OUT_SEED, args.stills, args.still_copies, prefix="held-out")
    pairs = itertools.chain(generated_pairs(), held_out, shared_pairs(args.photos))
    rows = [measure_pair(p, probe=probe) for p in pairs]
    table = pd.DataFrame([r.flat() for r in rows])
    print(f"rules {RULES_VERSION}: {len(table)} labelled pairs measured in {time.perf_counter() - started:.0f} s "
          f"({dict(Counter(table['truth']))})")
    if args.out:
        table.to_parquet(args.out, index=False)
        print(f"evidence: {args.out}")

    evidence = [Evidence(**r.evidence) for r in rows]  # type: ignore[arg-type]
    truth = [Relation(r.truth) for r in rows]
    base = rules.THRESHOLDS

    def decided(t: rules.Thresholds) -> list[Relation]:
        return [rules.decide(ev, 0.5, t).relation for ev in evidence]

    def rates(found: list[Relation]) -> tuple[float, int]:
        copies = [f for f, want in zip(found, truth, strict=True) if want is Relation.COPY]
        false = sum(f is Relation.COPY and want is not Relation.COPY for f, want in zip(found, truth, strict=True))
        return sum(f is Relation.COPY for f in copies) / max(1, len(copies)), false

    def others_pass(name: str) -> Callable[[Evidence], bool]:
        """Every copy rule but the one comparing with `name` holds."""
        field = SIMPLE[name][0]
        deciding = {"projective": "one_plane", "reframed": "one_framing", "agree": "pixels_agree",
                    "interior_bad": "interior_agrees", "noise": "low_noise", "structure": "same_structure",
                    "faint": "nothing_moved", "colour_moved": "nothing_moved", "textured": "enough_detail"}[field]
        return lambda ev: all(r.holds(ev, base) for r in rules.COPY_RULES if r.name != deciding)

    header = "\nthreshold                 value   nearest copy  nearest other   sweep x"
    print(header + " ".join(f"{f:>5}" for f in SWEEP))
    for f in dataclasses.fields(rules.Thresholds):
        value = getattr(base, f.name)
        sweep = []
        for factor in SWEEP:
            changed = value * factor if isinstance(value, float) else round(value * factor)
            recall, false = rates(decided(dataclasses.replace(base, **{f.name: changed})))
            sweep.append(f"{recall:.3f}/{false}")
        near_copy = near_other = "-"
        if f.name in SIMPLE:
            field, sign = SIMPLE[f.name]
            gate = others_pass(f.name)
            slack = [(sign * (getattr(ev, field) - value), want) for ev, want in zip(evidence, truth, strict=True)
                     if gate(ev)]
            copies = [s for s, want in slack if want is Relation.COPY]
            others = [s for s, want in slack if want is not Relation.COPY]
            near_copy = f"{min(copies):+.4f}" if copies else "-"
            near_other = f"{max(others):+.4f}" if others else "none"
        print(f"{f.name:<24}{value:>7.3f}  {near_copy:>12}  {near_other:>13}   " + " ".join(sweep))
    print("(sweep cells: copy recall / false copies with that threshold times the factor, the rest unchanged; "
          "margins in the field's units, positive = on the copy side)")

    found = decided(base)
    print("\noperating point (rules as shipped, one way):")
    for want in Relation:
        got = Counter(f.value for f, t in zip(found, truth, strict=True) if t is want)
        shares = ", ".join(f"{k} {v}" for k, v in got.items())
        print(f"  true {want.value:<11} {sum(got.values()):>4} pairs -> {shares}")
    recall, false = rates(found)
    non_copies = sum(t is not Relation.COPY for t in truth)
    print(f"  copy recall {recall:.3f}; other shots or different pictures called copies: {false} of {non_copies}")

    print("\nper set (one way): copies found (worst edit), other pairs called copies")
    for name, members in _by_set([r.name for r in rows]).items():
        copies = [i for i in members if truth[i] is Relation.COPY]
        others = [i for i in members if truth[i] is not Relation.COPY]
        per_edit: dict[str, list[bool]] = {}
        for i in copies:
            per_edit.setdefault(rows[i].name.rsplit("/", 1)[1], []).append(found[i] is Relation.COPY)
        worst = min(per_edit.items(), key=lambda kv: sum(kv[1]) / len(kv[1]), default=None)
        found_copies = sum(found[i] is Relation.COPY for i in copies)
        called = sum(found[i] is Relation.COPY for i in others)
        worst_text = "" if worst is None else " (every edit)" if all(worst[1]) else \
            f" (worst {worst[0]} {sum(worst[1])}/{len(worst[1])})"
        print(f"  {name:<26} copies {found_copies:>4}/{len(copies):<4}{worst_text:<34} "
              f"called copies {called:>3}/{len(others)}")
    _probe_report(rows, truth, found)
    return 0


def _probe_report(rows: list, truth: list, found: list) -> None:
    """PROBES: per set, the values for copies and for other pairs (those the rules call copies marked *), and
    copies found / other pairs called copies with the candidate rule added to the rules as shipped."""
    for field, limit in PROBES.items():
        value = {i: rows[i].probed[field] for i in range(len(rows))}
        print(f"\nmeasured, not used by a rule: {field} (candidate rule: a copy needs {field} < {limit:g})")
        for name, members in _by_set([r.name for r in rows]).items():
            copies = [i for i in members if truth[i] is Relation.COPY]
            others = [i for i in members if truth[i] is not Relation.COPY]
            values = sorted(value[i] for i in copies)
            quant = "-" if not values else (f"max {values[-1]:g}, p99 {values[int(0.99 * (len(values) - 1))]:g}, "
                                            f"median {values[len(values) // 2]:g}")
            other_values = sorted((value[i], found[i] is Relation.COPY) for i in others)
            shown = " ".join(f"{v:g}{'*' if c else ''}" for v, c in other_values)
            print(f"  {name:<26} copies {len(copies):>4}: {quant}")
            print(f"  {'':<26} others {len(others):>4}: {shown[:600]}")
            kept = [i for i in copies if found[i] is Relation.COPY and value[i] < limit]
            lost = [rows[i].name for i in copies if found[i] is Relation.COPY and value[i] >= limit]
            called = sum(found[i] is Relation.COPY and value[i] < limit for i in others)
            print(f"  {'':<26} with the rule: copies {len(kept)}/{len(copies)} (lost {lost}), "
                  f"called copies {called}/{len(others)} (today {sum(found[i] is Relation.COPY for i in others)})")


def _by_set(names: list[str]) -> dict[str, list[int]]:
    """Row indices per set of pairs, by the pair's name (duplicates/labelled.py and shared_pairs name them)."""
    sets: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        key = ("near-static (golden)" if name.startswith("still-") else
               "near-static (held out)" if name.startswith("held-out-") else
               "shared photos" if name.startswith("shared/") else
               "shared scenes" if name.startswith("scene/") else "generated photos, scenes")
        sets.setdefault(key, []).append(i)
    return sets


if __name__ == "__main__":
    sys.exit(main())
