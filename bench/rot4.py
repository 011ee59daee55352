"""What the 4-rotation embedding (`+rot4`) still buys now that candidates are also voted by keypoints (issue 28).

  TORCH_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python -m bench.rot4 [--source shared|generated|both]
      [--photos 40] [--filler 100] [--scenes 40] [--top-k 10] [--edits a,b] [--groups-only]

For efficientnet-lite0 `+plain` and `+rot4` (the default), side by side, on the shared sample photos
(core.settings.sample_data_dir(), photos/) when present and on generated photos (core.sample_data.generate_photos)
always. Every original gets copies made with duplicates.edits: turned 90, 180 (two 90° turns) and 270 degrees,
alone and after crop_80, jpeg_q30, text_bar or resize_50 (edit first, then the turn, as a phone storing an edited
photo sideways), and, so that a change elsewhere shows, unturned copies (those four edits, thumb_96, screenshot).
Each copy is measured three ways, through the code the server runs:
  search  POST /search/image: the copy's vectors as the server makes them for an upload (`embed_rotations`: the
          4 rotations of a `+plain` query, one vector of a `+rot4` one), serving.search.search over the whole index
          (best score across the rows), serving.relations.verify_hits (the verified rerank, keypoint votes
          included); hit = the original within the top-k.
  check   POST /events/{code}/duplicates/check: the same with the event's scope and the route's floor
          (CANDIDATE_COSINE); hit = the original among the matches with relation `copy`.
  groups  GET /events/{code}/duplicates: an event of the originals, one copy of each (this edit) and filler,
          verified by indexing.relations.compute.event_verdicts and grouped by serving.relations.event_groups;
          hit = the original and its copy in one copy group.
The index and the event hold the originals and filler photos (shared: other shared photos; generated:
generate_photos seed 7), each stored as the pipeline stores it (vector of the model version, fingerprint of the
image decoded for the model). Same-scene pairs (shared scenes, or core.sample_data.generate_scene_shots): the first
shot is in the event, the second is checked (a `duplicate` answer is a false copy) and, in one more event with
both shots, a copy group holding both is a false copy. The served index is a brute-force stand-in with the
ServedIndex methods the routes call (exact, like a per-event search); the fingerprints come from memory instead of
Parquet. A stored copy's vector is row 0 of its upload's `embed_rotations` (the plain vector of row 0 is
`embed_images`, docs/embeddings.md). Seeds are fixed; the quality figures do not depend on the machine's load.
"model ms per photo" is the model alone (prepared 224-px arrays, batches of 32, TORCH_THREADS threads): wall ms
and CPU ms of this process per photo, measured in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = {"plain": "efficientnet-lite0+plain", "rot4": "efficientnet-lite0+rot4"}
TURNS = ("rotate_90", "rotate_180", "rotate_270")
WITH = ("crop_80", "jpeg_q30", "text_bar", "resize_50")  # edits combined with a turn
UNTURNED = (*WITH, "thumb_96", "screenshot")
EVENT = "00000000-0000-4000-8000-000000000028"
PHOTO_SEED, FILLER_SEED, SCENE_SEED = 0, 7, 2800


def edit_names() -> list[str]:
    """The copies measured: every turn alone and after each of WITH, then the unturned edits."""
    return [*TURNS, *(f"{e}+{t}" for t in TURNS for e in WITH), *UNTURNED]


def make_edit(name: str) -> Callable[[Any], Any]:
    """`a+b` applies duplicates.edits `a`, then `b`; `rotate_180` is two 90° turns."""
    from duplicates.edits import EDITS

    steps = [EDITS[p] for part in name.split("+")
             for p in (("rotate_90", "rotate_90") if part == "rotate_180" else (part,))]

    def apply(img: Any) -> Any:
        for step in steps:
            img = step(img)
        return img
    return apply


def rate(hits: Sequence[bool]) -> float:
    return float(np.mean(hits)) if len(hits) else float("nan")


@dataclass
class Stored:
    """One image as the pipeline stores it, per model version: its vector and fingerprint."""

    vector: dict[str, np.ndarray]
    fp: Any


class MemoryIndex:
    """The ServedIndex methods serving.search and serving.relations call, over vectors in memory (exact)."""

    def __init__(self, ids: list[int], vectors: np.ndarray, model_version: str, version: int) -> None:
        self.ids = np.asarray(ids, np.int64)
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        self.count, self.dim = self.vectors.shape
        self.model_version, self.version = model_version, version

    def search(self, query: np.ndarray, k: int, event_code: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        scores = self.vectors @ np.asarray(query, np.float32).reshape(-1)
        top = np.argsort(-scores, kind="stable")[:k]
        return scores[top], self.ids[top]

    def describe_many(self, image_ids: list[int]) -> list[dict[str, Any]]:
        return [{"code": str(i), "filename": f"{i}.jpg", "event_code": EVENT} for i in image_ids]


class MemoryFingerprints:
    """Stands in for indexing.relations.fingerprints.VersionFingerprints: `get(ids)` -> {id: fingerprint}."""

    def __init__(self, fps: dict[int, Any]) -> None:
        self.fps = fps

    def get(self, ids: Any) -> dict[int, Any]:
        return {int(i): self.fps.get(int(i)) for i in ids}


def serve(model: str, ids: list[int], stored: dict[int, Stored], version: int) -> MemoryIndex:
    """A served version of these images for one model, its fingerprints registered where the routes look."""
    from core.settings import get_settings
    from serving import relations

    index = MemoryIndex(ids, np.stack([stored[i].vector[model] for i in ids]), MODELS[model], version)
    relations.relations_of(index, get_settings()).fingerprints = MemoryFingerprints(  # type: ignore[arg-type]
        {i: stored[i].fp for i in ids})
    return index


def routes(index: MemoryIndex, vectors: np.ndarray, fp: Any, top_k: int,
           loop: asyncio.AbstractEventLoop) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(POST /search/image hits, POST /events/{code}/duplicates/check matches) for one upload, as the routes
    compute them (no deleted images)."""
    from core.settings import get_settings
    from duplicates.groups import CANDIDATE_COSINE
    from serving import relations
    from serving import search as engine

    query = relations.Query(vectors, fp)
    settings = get_settings()
    out = []
    for event, floor in ((None, None), (EVENT, CANDIDATE_COSINE)):
        result = loop.run_until_complete(engine.search(index, None, vectors, top_k=relations.search_depth(top_k),
                                                       event_code=event, min_score=floor))
        out.append(relations.verify_hits(index, settings, query, result.hits, top_k))  # type: ignore[arg-type]
    return out[0], out[1]


def copy_groups_of(model: str, ids: list[int], stored: dict[int, Stored]) -> list[set[int]]:
    """The event's copy groups as GET /events/{code}/duplicates answers them (verdicts as the build makes them)."""
    from indexing.relations.compute import event_verdicts
    from serving.relations import EventPairs, event_groups

    arr = np.asarray(ids, np.int64)
    vecs = np.stack([stored[i].vector[model] for i in ids])
    found = event_verdicts(arr, vecs, {i: stored[i].fp for i in ids})
    pairs = EventPairs(arr, vecs, found.verdicts, found.unverifiable, found.seconds)
    return [set(g.members) for g in event_groups(pairs, None, "copies").groups]


def neighbour_rank(model: str, event: list[int], stored: dict[int, Stored], a: int, b: int) -> int:
    """b's rank (1 = nearest) among a's neighbours in the event by cosine: within 10 a candidate pair, within
    GROUP_WIDE (100) one the keypoints may vote for (duplicates.shortlist); either only at a cosine of at least
    CANDIDATE_COSINE (duplicates.groups), which is why a miss line prints the pair's cosine."""
    sims = np.asarray([float(stored[a].vector[model] @ stored[i].vector[model]) for i in event if i != a])
    return int((sims > float(stored[a].vector[model] @ stored[b].vector[model])).sum()) + 1


def together(groups: list[set[int]], a: int, b: int) -> bool:
    return any(a in g and b in g for g in groups)


def load_source(source: str, photos: int, filler: int, scenes: int, tmp: Path
                ) -> tuple[list[str], list[bytes], list[bytes], list[tuple[bytes, bytes]]]:
    """(the originals' names, originals, filler, same-scene pairs) as file bytes; seeds fixed."""
    from core.sample_data import generate_photos, generate_scene_shots, sample_scene_pairs
    from core.settings import sample_data_dir

    if source == "shared":
        data = sample_data_dir()
        every = sorted((data / "photos").glob("*.jpg")) if data is not None else []
        step = max(1, len(every) // max(photos, 1))
        originals = every[::step][:photos]
        rest = [p for p in every if p not in set(originals)][:filler]
        pairs = sample_scene_pairs(scenes)
    else:
        originals = generate_photos(tmp / "photos", photos, seed=PHOTO_SEED)
        rest = generate_photos(tmp / "filler", filler, seed=FILLER_SEED)
        pairs = [generate_scene_shots(tmp / "scenes", seed=SCENE_SEED + i) for i in range(scenes)]
    return ([p.name for p in originals], [p.read_bytes() for p in originals], [p.read_bytes() for p in rest],
            [(a.read_bytes(), b.read_bytes()) for a, b in pairs])


def model_ms(embedders: dict[str, Any], arrays: list[np.ndarray], batch: int = 32) -> dict[str, tuple[float, float]]:
    """{model: (wall ms, CPU ms) per photo} of the model alone on prepared arrays, alternating models twice."""
    took: dict[str, list[tuple[float, float]]] = {m: [] for m in embedders}
    for _ in range(2):
        for m, emb in embedders.items():
            w, c = time.perf_counter(), time.process_time()
            for i in range(0, len(arrays), batch):
                emb.forward(np.stack(arrays[i:i + batch]))
            took[m].append(((time.perf_counter() - w) * 1000 / len(arrays),
                            (time.process_time() - c) * 1000 / len(arrays)))
    return {m: min(v) for m, v in took.items()}


def measure(source: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of one source, both models."""
    from duplicates.edits import encode
    from duplicates.fingerprint import fingerprint
    from embeddings.loading import load_image
    from embeddings.models import get_embedder

    embedders = {m: get_embedder(spec) for m, spec in MODELS.items()}
    kw = embedders["rot4"].load_kwargs()
    assert kw == embedders["plain"].load_kwargs()
    tmp = Path(tempfile.mkdtemp(prefix="rot4-"))
    names, originals, filler, scene_pairs = load_source(source, args.photos, args.filler, args.scenes, tmp)
    print(f"[{source}] {len(originals)} originals, {len(filler)} filler, {len(scene_pairs)} scene pairs",
          file=sys.stderr, flush=True)

    stored: dict[int, Stored] = {}
    uploads: dict[int, dict[str, np.ndarray]] = {}  # id -> model -> (r, dim) query rows

    def add(raw: bytes, as_upload: bool) -> int:
        """Store an image (pipeline) and, for an upload, keep its query rows (server)."""
        img = load_image(raw, **kw)
        i = len(stored) + 1
        rows = {m: e.embed_rotations([img])[0] if as_upload else None for m, e in embedders.items()}
        vec = {m: (rows[m][0] if as_upload else e.embed_images([img])[0]) for m, e in embedders.items()}
        stored[i] = Stored(vec, fingerprint(img, raw))
        if as_upload:
            uploads[i] = {m: np.ascontiguousarray(r, np.float32) for m, r in rows.items()}  # type: ignore[misc]
        return i

    orig_ids = [add(raw, False) for raw in originals]
    filler_ids = [add(raw, False) for raw in filler]
    arrays = [embedders["plain"].prepare(load_image(raw, **kw)) for raw in originals + filler]
    ms = model_ms(embedders, arrays)
    edits = args.edits.split(",") if args.edits else edit_names()
    copies: dict[str, list[int]] = {}
    for e in edits:
        fn = make_edit(e)
        copies[e] = [add(encode(fn(load_image(raw, draft_side=None))), True) for raw in originals]
        print(f"[{source}] copies made: {e}", file=sys.stderr, flush=True)
    scene_a = [add(a, False) for a, _ in scene_pairs]
    scene_b = [add(b, True) for _, b in scene_pairs]

    loop = asyncio.new_event_loop()
    library = orig_ids + filler_ids + scene_a
    res: dict[str, Any] = {"ms": ms, "n": len(orig_ids), "scenes": len(scene_pairs), "edits": {}, "misses": []}
    for version, m in enumerate(MODELS, 1):
        if m not in args.models.split(","):
            continue
        index = serve(m, library, stored, version)
        for e in edits:
            s_hits, c_hits = [], []
            for o, c in zip(orig_ids, copies[e], strict=True) if not args.groups_only else ():
                hits, matches = routes(index, uploads[c][m], stored[c].fp, args.top_k, loop)
                s_hits.append(any(h["id"] == o for h in hits))
                c_hits.append(any(h["id"] == o and h["relation"] == "copy" for h in matches))
            groups = copy_groups_of(m, orig_ids + filler_ids + copies[e], stored)
            g_hits = [together(groups, o, c) for o, c in zip(orig_ids, copies[e], strict=True)]
            event = orig_ids + filler_ids + copies[e]
            for k, hit in enumerate(g_hits):
                if not hit:
                    o, c = orig_ids[k], copies[e][k]
                    cos = float(stored[o].vector[m] @ stored[c].vector[m])
                    res["misses"].append(f"{m} groups {e} {names[k]}: cosine {cos:.3f}; the original is the copy's "
                                         f"{neighbour_rank(m, event, stored, c, o)}th nearest, the copy the "
                                         f"original's {neighbour_rank(m, event, stored, o, c)}th")
            res["edits"].setdefault(e, {})[m] = (rate(s_hits), rate(c_hits), rate(g_hits))
            print(f"[{source}] {m} {e}: {res['edits'][e][m]}", file=sys.stderr, flush=True)
        false_check = 0
        for b in scene_b if not args.groups_only else ():
            _, matches = routes(index, uploads[b][m], stored[b].fp, args.top_k, loop)
            false_check += any(h["relation"] == "copy" for h in matches)
        groups = copy_groups_of(m, orig_ids + filler_ids + scene_a + scene_b, stored)
        false_groups = sum(together(groups, a, b) for a, b in zip(scene_a, scene_b, strict=True))
        res.setdefault("scene", {})[m] = ("-" if args.groups_only else false_check, false_groups)
    loop.close()
    return res


def report(source: str, res: dict[str, Any]) -> None:
    """One table: per edit, search / check / groups, plain against rot4 (nan: not measured, --models)."""
    nan = (float("nan"),) * 3
    for by in res["edits"].values():
        for m in MODELS:
            by.setdefault(m, nan)
    for m in MODELS:
        res.setdefault("scene", {}).setdefault(m, ("-", "-"))
    print(f"\n{source}: {res['n']} originals, copy recall (plain / rot4)")
    print(f"{'copy':<22}{'search':>16}{'check':>16}{'groups':>16}")
    for e, by in res["edits"].items():
        cells = [f"{by['plain'][k]:.3f} / {by['rot4'][k]:.3f}" for k in range(3)]
        print(f"{e:<22}" + "".join(f"{c:>16}" for c in cells))
    turned = [e for e in res["edits"] if "rotate" in e]
    worst = {m: [min(res["edits"][e][m][k] for e in turned) for k in range(3)] for m in MODELS}
    print(f"{'worst turned copy':<22}" + "".join(f"{worst['plain'][k]:.3f} / {worst['rot4'][k]:.3f}".rjust(16)
                                              for k in range(3)))
    n = res["scenes"]
    sp, sr = res["scene"]["plain"], res["scene"]["rot4"]
    print(f"{'false copies, scenes':<22}{'':>16}{f'{sp[0]}/{n} / {sr[0]}/{n}':>16}{f'{sp[1]}/{n} / {sr[1]}/{n}':>16}")
    for line in res["misses"]:
        print(f"  missed: {line}")
    (pw, pc), (rw, rc) = res["ms"]["plain"], res["ms"]["rot4"]
    print(f"model ms per photo (wall / CPU): plain {pw:.1f} / {pc:.1f}, rot4 {rw:.1f} / {rc:.1f} "
          f"(TORCH_THREADS={os.environ.get('TORCH_THREADS')}, load {os.getloadavg()[0]:.1f})")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("shared", "generated", "both"), default="both")
    parser.add_argument("--photos", type=int, default=40, help="originals per source (each gets every copy)")
    parser.add_argument("--filler", type=int, default=100, help="other photos in the index and each event")
    parser.add_argument("--scenes", type=int, default=40, help="same-scene pairs")
    parser.add_argument("--edits", default=None, help="comma-separated subset of the copies (default: all)")
    parser.add_argument("--top-k", type=int, default=10, help="the routes' top_k (their default 10)")
    parser.add_argument("--models", default="plain,rot4", help="which of plain,rot4 to measure (the other's cells "
                        "print nan)")
    parser.add_argument("--groups-only", action="store_true",
                        help="only the event groups (a change to the event's candidate pairs); search and check "
                             "print nan")
    args = parser.parse_args(argv)
    # Its figures are single-thread (say otherwise in the environment): set here, not on import, so a benchmark
    # that imports this module's helpers keeps its own threads.
    os.environ.setdefault("TORCH_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import cv2

    cv2.setNumThreads(1)
    from core.settings import sample_data_dir

    data = sample_data_dir()
    sources = ["shared", "generated"] if args.source == "both" else [args.source]
    if "shared" in sources and (data is None or not (data / "photos").is_dir()):
        print("no sample photos (SAMPLE_DATA_DIR): generated photos only", file=sys.stderr)
        sources.remove("shared")
    for source in sources:
        started = time.perf_counter()
        res = measure(source, args)
        report(source, res)
        print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
