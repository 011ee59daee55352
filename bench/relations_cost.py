"""Where an event's relations cost their CPU: the keypoint votes, then each class of verified pair, and what
cutting the voted pairs by a chance-relative vote threshold would keep and lose (issue 28).

  OMP_NUM_THREADS=1 .venv/bin/python -m bench.relations_cost [--photos 2000] [--source shared|generated]

The event is bench/photo_cost.py's (`event_photos`: originals with two edited copies each, same-scene pairs,
filler; seeds fixed), its vectors from efficientnet-lite0+plain (ONNX Runtime) and its fingerprints as the
pipeline computes them, all in this process on one core (no Parquet, no database: the verification alone).
Printed: the candidate pairs' CPU with and without the votes; the verification's CPU per class of pair (its
relation, the rule that decided, and the fit: none of MIN_INLIERS, 10-14 inliers, 15 or more), each with its
share of the relations' CPU (votes and verification, this run); then, for
vote thresholds relative to chance (a candidate's votes over the votes its share of the pool's keypoints
would draw by chance), the pairs an event would verify and the copy and same-scene verdicts it would keep,
against the rule in force (duplicates.shortlist). Verdicts are computed once per pair, so a threshold only
filters the voted pairs; the cosine pairs stay.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHANCE_FACTORS = (2.0, 3.0, 4.0)


def event(source: str, n: int) -> tuple[np.ndarray, list]:
    """(vectors, fingerprints) of bench/photo_cost.py's event of `n` photos."""
    from bench.photo_cost import event_photos
    from duplicates.fingerprint import fingerprint
    from embeddings.loading import load_image
    from embeddings.models import get_embedder

    photos = event_photos(source, n, n // 4, n // 20, Path(tempfile.mkdtemp(prefix="relations-cost-")))
    embedder = get_embedder("efficientnet-lite0+plain")
    kw = embedder.load_kwargs()
    vectors, fps = [], []
    for p in photos:
        image = load_image(p.raw, **kw)
        vectors.append(embedder.embed_images([image])[0])
        fps.append(fingerprint(image, p.raw))
    return np.ascontiguousarray(np.stack(vectors), np.float32), fps


def voted_with_chance(vectors: np.ndarray, fps: list) -> list[tuple[tuple[int, int], int, float]]:
    """Each row's VOTED most-voted candidates, as duplicates.groups.candidate_pairs chooses them:
    ((i, j) with i < j, votes, votes over the chance count of that candidate)."""
    from duplicates.groups import CANDIDATE_COSINE, NEIGHBOURS
    from duplicates.shortlist import GROUP_WIDE, VOTED, keypoint_votes

    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -2.0)
    out = []
    for i in range(len(fps)):
        cols = np.argsort(-sims[i], kind="stable")[:GROUP_WIDE]
        head = int(np.count_nonzero(sims[i, cols[:NEIGHBOURS]] >= CANDIDATE_COSINE))
        rest = [fps[j] for j in cols[head:]]
        votes = keypoint_votes(fps[i], rest)
        sizes = np.array([len(c.keypoints) for c in rest], float)
        chance = votes.sum() * sizes / max(sizes.sum(), 1.0)
        for k in np.argsort(-votes, kind="stable")[:VOTED]:
            j = int(cols[head + k])
            out.append(((min(i, j), max(i, j)), int(votes[k]), float(votes[k] / max(chance[k], 1e-9))))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--source", choices=("shared", "generated"), default="shared")
    args = ap.parse_args(argv)

    import faiss

    from bench.provenance import code_state
    from duplicates import rules
    from duplicates.features import geometry
    from duplicates.groups import candidate_pairs
    from duplicates.opencv import cv2
    from duplicates.shortlist import MIN_VOTES
    from duplicates.verify import RULES_VERSION, relate

    faiss.omp_set_num_threads(1)
    cv2()
    vectors, fps = event(args.source, args.photos)
    print(f"{args.photos} photos ({args.source}), {code_state()}, rules {RULES_VERSION}", flush=True)

    started = time.process_time()
    pairs = candidate_pairs(vectors, fingerprints=fps)
    votes_cpu = time.process_time() - started
    started = time.process_time()
    by_cosine = set(candidate_pairs(vectors))
    print(f"candidate pairs: {len(pairs)} with the keypoint votes in {votes_cpu:.1f} CPU s; "
          f"{len(by_cosine)} by cosine alone in {time.process_time() - started:.1f} s")

    cpu: dict[tuple[str, str, str], float] = defaultdict(float)
    count: Counter[tuple[str, str, str]] = Counter()
    relation: dict[tuple[int, int], str] = {}
    scene_inliers = rules.THRESHOLDS.scene_inliers
    for (i, j), cos in pairs.items():
        started = time.process_time()
        verdict = relate(fps[i], fps[j], cos)
        spent = time.process_time() - started
        inliers = geometry.best_fit(fps[i], fps[j]).inliers
        fit = ("no fit" if inliers < geometry.MIN_INLIERS else
               f"{geometry.MIN_INLIERS}-{scene_inliers - 1} inliers" if inliers < scene_inliers else
               f"{scene_inliers}+ inliers")
        key = (verdict.relation.value, verdict.rule or "-", fit)
        cpu[key] += spent
        count[key] += 1
        relation[(i, j)] = verdict.relation.value
    whole = votes_cpu + sum(cpu.values())
    print(f"verification: {sum(cpu.values()):.1f} CPU s over {len(pairs)} pairs; the votes' share of the relations' "
          f"CPU {votes_cpu / whole:.2f}")
    print(f"{'relation':12s} {'rule':18s} {'fit':16s} {'pairs':>7s} {'CPU s':>7s} {'ms a pair':>9s} {'share':>6s}")
    for key in sorted(cpu, key=lambda k: -cpu[k]):
        print(f"{key[0]:12s} {key[1]:18s} {key[2]:16s} {count[key]:7d} {cpu[key]:7.1f} "
              f"{1000 * cpu[key] / count[key]:9.2f} {cpu[key] / whole:6.2f}")

    voted = voted_with_chance(vectors, fps)
    total = Counter(relation.values())
    print(f"\nvoted pairs kept by a threshold relative to chance (in force: votes >= {MIN_VOTES})")
    print(f"{'rule':22s} {'pairs':>7s} {'copies':>9s} {'same scene':>11s}")
    variants = [(f"votes >= {MIN_VOTES}", lambda v, r: v >= MIN_VOTES)]
    variants += [(f"... and >= {f:g}x chance", lambda v, r, f=f: v >= MIN_VOTES and r >= f) for f in CHANCE_FACTORS]
    for name, keep in variants:
        chosen = by_cosine | {p for p, v, r in voted if keep(v, r)}
        kept = Counter(relation[p] for p in chosen if p in relation)
        print(f"{name:22s} {len(chosen):7d} {kept['copy']:4d}/{total['copy']:<4d} "
              f"{kept['same_scene']:5d}/{total['same_scene']:<5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
