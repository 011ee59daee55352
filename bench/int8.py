"""The int8 model (`+int8`, embeddings/quantize.py) against the fp32 ONNX export it is made from (issue 28).

  .venv/bin/python -m bench.int8 [--source shared|generated|both] [--agree 300] [--photos 30] [--filler 60]
      [--scenes 20] [--edits a,b] [--groups] [--rounds 3] [--pipeline-photos 64] [--speed-only]

One run, fp32 and int8 side by side (both ONNX Runtime, measured alternately in the same process):
  speed      model ms per photo: the model alone on prepared 224-px arrays, batches of EMBED_BATCH_SIZE (as the
             pipeline runs it), one forward per photo (`+plain`), 1 and 2 intra-op threads; best of --rounds;
             then photos/s of runner.embed_files (files -> Parquet: decode threads, the model, fingerprints)
             for the default version (rot4: 4 forwards) and `+plain`.
  agreement  cosine of each photo's int8 vector to its fp32 vector (min, p1, median) over --agree photos, for
             `+plain` (one forward) and the default rot4; recall@10 = the share of a photo's 10 nearest under
             fp32 that are among its 10 nearest under int8 (the same photos; the set is its own library).
  copies     duplicates.edits.EDITS applied to --photos originals (each copy re-encoded as an upload), with
             --filler other photos in the index, through the code the server runs (bench/rot4.py's routes):
             nearest  the copy's vector's nearest stored vector is its original (no rerank: the vectors alone)
             search   POST /search/image: the original within the top 10 after the verified rerank
             check    POST /events/{code}/duplicates/check: the original among the matches as a `copy`
             groups   (--groups) GET /events/{code}/duplicates: original and copy in one copy group
             and false copies: --scenes same-scene pairs (another shot of the scene checked against the first)
             answered `copy`.
Photos: the shared sample photos (SAMPLE_DATA_DIR, photos/) when present, and generated photos
(core.sample_data.generate_photos) always; seeds fixed, as in bench/rot4.py. The quality figures do not depend on
the machine's load; the timings do: compare the two columns of one run, and read them with the load printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.rot4 import (  # the routes and the stored-image stand-ins are bench/rot4.py's
    MemoryFingerprints,
    MemoryIndex,
    Stored,
    copy_groups_of,
    load_source,
    make_edit,
    rate,
    routes,
    together,
)

MODELS = {"fp32": "efficientnet-lite0+rot4", "int8": "efficientnet-lite0+rot4+int8"}  # rot4 and its int8
PLAIN = {"fp32": "efficientnet-lite0+plain", "int8": "efficientnet-lite0+plain+int8"}  # one forward per photo
AGREE_SEED = 11


def load() -> str:
    return "load average " + ", ".join(f"{x:.1f}" for x in os.getloadavg())


def speed(arrays: np.ndarray, batch: int, rounds: int) -> dict[tuple[str, int], float]:
    """{(fp32|int8, threads): model wall ms per photo}, alternating the four sessions round by round."""
    from embeddings.backends import OnnxBackend
    from embeddings.models import get_embedder

    paths = {k: get_embedder(spec).backend.path for k, spec in PLAIN.items()}  # type: ignore[attr-defined]
    backends = {(k, t): OnnxBackend(p, threads=t) for t in (1, 2) for k, p in paths.items()}
    for b in backends.values():
        b.features(arrays[:batch])  # warm-up
    best = dict.fromkeys(backends, float("inf"))
    for _ in range(rounds):
        for key, b in backends.items():
            start = time.perf_counter()
            for i in range(0, len(arrays), batch):
                b.features(arrays[i:i + batch])
            best[key] = min(best[key], (time.perf_counter() - start) * 1000 / len(arrays))
    return best


def pipeline(paths: list[Path], rounds: int, work: Path) -> dict[tuple[str, str], float]:
    """{(variant, fp32|int8): photos/s of runner.embed_files}, alternating, best of `rounds`."""
    from core.settings import get_settings
    from embeddings.runner import embed_files

    settings = get_settings()
    specs = {("rot4", k): s for k, s in MODELS.items()} | {("plain", k): s for k, s in PLAIN.items()}
    for spec in specs.values():
        embed_files(paths[:8], work / "warm.parquet", settings=settings, model_name=spec)
    best = dict.fromkeys(specs, 0.0)
    for _ in range(rounds):
        for key, spec in specs.items():
            start = time.perf_counter()
            res = embed_files(paths, work / "out.parquet", settings=settings, model_name=spec)
            assert res["failed"] == 0, res["failures"]
            best[key] = max(best[key], res["embedded"] / (time.perf_counter() - start))
    return best


def agreement(images: list[Any]) -> dict[str, dict[str, float]]:
    """{variant: cosine min/p1/median of int8 vs fp32, recall@10 of the int8 neighbours}."""
    from embeddings.models import get_embedder

    out = {}
    for variant, specs in (("plain", PLAIN), ("rot4", MODELS)):
        vecs = {}
        for k, spec in specs.items():
            emb = get_embedder(spec)
            vecs[k] = np.concatenate([emb.embed_images(images[i:i + 32]) for i in range(0, len(images), 32)])
        cos = (vecs["fp32"] * vecs["int8"]).sum(axis=1)
        top = {}
        for k, v in vecs.items():
            sims = v @ v.T
            np.fill_diagonal(sims, -np.inf)
            top[k] = np.argsort(-sims, axis=1, kind="stable")[:, :10]
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top["fp32"], top["int8"], strict=True)]))
        out[variant] = {"min": float(cos.min()), "p1": float(np.percentile(cos, 1)),
                        "median": float(np.median(cos)), "recall10": recall, "n": len(images)}
    return out


def serve(key: str, ids: list[int], stored: dict[int, Stored], version: int) -> MemoryIndex:
    """A served version of these images for fp32 or int8 (bench/rot4.serve, for this bench's models)."""
    from core.settings import get_settings
    from embeddings.models import parse_name
    from serving import relations

    index = MemoryIndex(ids, np.stack([stored[i].vector[key] for i in ids]), parse_name(MODELS[key]).model_version,
                        version)
    relations.relations_of(index, get_settings()).fingerprints = MemoryFingerprints(  # type: ignore[arg-type]
        {i: stored[i].fp for i in ids})
    return index


def copies(source: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Copy recall per edit and false copies, fp32 and int8, through the routes (bench/rot4.py's)."""
    from duplicates.edits import EDITS, encode
    from duplicates.fingerprint import fingerprint
    from embeddings.loading import load_image
    from embeddings.models import get_embedder

    embedders = {k: get_embedder(spec) for k, spec in MODELS.items()}
    kw = embedders["fp32"].load_kwargs()
    _names, originals, filler, scene_pairs = load_source(source, args.photos, args.filler, args.scenes, tmp)
    stored: dict[int, Stored] = {}
    uploads: dict[int, dict[str, np.ndarray]] = {}

    def add(raw: bytes, as_upload: bool) -> int:
        img = load_image(raw, **kw)
        i = len(stored) + 1
        rows = {k: e.embed_rotations([img])[0] for k, e in embedders.items()} if as_upload else {}
        vec = {k: (rows[k][0] if as_upload else e.embed_images([img])[0]) for k, e in embedders.items()}
        stored[i] = Stored(vec, fingerprint(img, raw))
        if as_upload:
            uploads[i] = {k: np.ascontiguousarray(r, np.float32) for k, r in rows.items()}
        return i

    orig_ids = [add(raw, False) for raw in originals]
    filler_ids = [add(raw, False) for raw in filler]
    edits = args.edits.split(",") if args.edits else list(EDITS)
    made = {e: [add(encode(make_edit(e)(load_image(raw, draft_side=None))), True) for raw in originals]
            for e in edits}
    scene_a = [add(a, False) for a, _ in scene_pairs]
    scene_b = [add(b, True) for _, b in scene_pairs]
    print(f"[{source}] {len(orig_ids)} originals x {len(edits)} edits, {len(filler_ids)} filler, "
          f"{len(scene_pairs)} scene pairs embedded", file=sys.stderr, flush=True)

    loop = asyncio.new_event_loop()
    library = orig_ids + filler_ids + scene_a
    res: dict[str, Any] = {"n": len(orig_ids), "scenes": len(scene_pairs), "edits": {}, "false": {}}
    for version, k in enumerate(MODELS, 1):
        index = serve(k, library, stored, version)
        lib = np.stack([stored[i].vector[k] for i in library])
        for e in edits:
            n_hits, s_hits, c_hits = [], [], []
            for o, c in zip(orig_ids, made[e], strict=True):
                n_hits.append(library[int(np.argmax(lib @ stored[c].vector[k]))] == o)
                hits, matches = routes(index, uploads[c][k], stored[c].fp, 10, loop)
                s_hits.append(any(h["id"] == o for h in hits))
                c_hits.append(any(h["id"] == o and h["relation"] == "copy" for h in matches))
            cells = [rate(n_hits), rate(s_hits), rate(c_hits)]
            if args.groups:
                groups = copy_groups_of(k, orig_ids + filler_ids + made[e], stored)
                cells.append(rate([together(groups, o, c) for o, c in zip(orig_ids, made[e], strict=True)]))
            res["edits"].setdefault(e, {})[k] = cells
        false = 0
        for b in scene_b:
            _, matches = routes(index, uploads[b][k], stored[b].fp, 10, loop)
            false += any(h["relation"] == "copy" for h in matches)
        res["false"][k] = false
        print(f"[{source}] {k} measured", file=sys.stderr, flush=True)
    loop.close()
    return res


def report_copies(source: str, res: dict[str, Any], groups: bool) -> None:
    cols = ["nearest", "search", "check"] + (["groups"] if groups else [])
    print(f"\n{source}: copy recall of {res['n']} originals per edit (fp32 / int8; 1.000 = all found)")
    print(f"{'edit':<20}" + "".join(f"{c:>17}" for c in cols))
    worst = {k: [1.0] * len(cols) for k in MODELS}
    differ = []
    for e, by in res["edits"].items():
        print(f"{e:<20}" + "".join(f"{by['fp32'][j]:.3f} / {by['int8'][j]:.3f}".rjust(17) for j in range(len(cols))))
        for k in MODELS:
            worst[k] = [min(w, x) for w, x in zip(worst[k], by[k], strict=True)]
        if by["fp32"] != by["int8"]:
            differ.append(e)
    print(f"{'worst edit':<20}" + "".join(f"{worst['fp32'][j]:.3f} / {worst['int8'][j]:.3f}".rjust(17)
                                         for j in range(len(cols))))
    n = res["scenes"]
    print(f"false copies (check), same-scene pairs: fp32 {res['false']['fp32']}/{n}, int8 {res['false']['int8']}/{n}")
    print(f"edits where int8 differs from fp32: {', '.join(differ) if differ else 'none'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("shared", "generated", "both"), default="both")
    parser.add_argument("--agree", type=int, default=300, help="photos for the cosine agreement and recall@10")
    parser.add_argument("--photos", type=int, default=30, help="originals per source (each gets every edit)")
    parser.add_argument("--filler", type=int, default=60, help="other photos in the index")
    parser.add_argument("--scenes", type=int, default=20, help="same-scene pairs (false copies)")
    parser.add_argument("--edits", default=None, help="comma-separated subset of duplicates.edits.EDITS")
    parser.add_argument("--groups", action="store_true", help="also the event groups (slow)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (best kept)")
    parser.add_argument("--pipeline-photos", type=int, default=64, help="photos per embed_files timing")
    parser.add_argument("--speed-only", action="store_true", help="only the timings (e.g. again on a quiet machine)")
    args = parser.parse_args(argv)

    import cv2

    cv2.setNumThreads(1)
    from core.sample_data import generate_photos
    from core.settings import get_settings, sample_data_dir
    from embeddings.loading import load_image
    from embeddings.models import get_embedder

    settings = get_settings()
    data = sample_data_dir()
    sources = ["shared", "generated"] if args.source == "both" else [args.source]
    if "shared" in sources and (data is None or not (data / "photos").is_dir()):
        print("no sample photos (SAMPLE_DATA_DIR): generated photos only", file=sys.stderr)
        sources.remove("shared")
    tmp = Path(tempfile.mkdtemp(prefix="int8-bench-"))
    print(f"cores {os.cpu_count()}, batch {settings.embed_batch_size}, decode workers {settings.embed_decode_workers}, "
          f"{load()}")
    for k, spec in MODELS.items():
        print(f"  {k}: {get_embedder(spec).model_version} <- {get_embedder(spec).backend.path.name}")  # type: ignore[attr-defined]

    def photo_set(source: str, n: int) -> list[Path]:
        if source == "shared":
            every = sorted((data / "photos").glob("*.jpg"))  # type: ignore[operator]
            return every[:: max(1, len(every) // n)][:n]
        return generate_photos(tmp / f"agree-{n}", n, seed=AGREE_SEED)

    # Speed, once, on the first source's photos.
    paths = photo_set(sources[0], args.agree)
    pre = get_embedder(PLAIN["fp32"])
    arrays = np.stack([pre.prepare(load_image(p, **pre.load_kwargs())) for p in paths[:128]])
    ms = speed(arrays, settings.embed_batch_size, args.rounds)
    rates = pipeline(paths[:args.pipeline_photos], max(1, args.rounds - 1), tmp)
    print(f"\nspeed ({sources[0]} photos; {load()} after)")
    print(f"{'':34}{'fp32':>10}{'int8':>10}{'int8 speed-up':>15}")
    for t in (1, 2):
        f, i = ms[("fp32", t)], ms[("int8", t)]
        label = f"model ms/photo, {t} thread(s), batch {settings.embed_batch_size}"
        print(f"{label:34}{f:10.1f}{i:10.1f}{f / i:14.2f}x")
    for v in ("rot4", "plain"):
        f, i = rates[(v, "fp32")], rates[(v, "int8")]
        print(f"{f'embed_files photos/s, {v}':34}{f:10.1f}{i:10.1f}{i / f:14.2f}x")
    sys.stdout.flush()

    for source in [] if args.speed_only else sources:
        started = time.perf_counter()
        images = [load_image(p) for p in photo_set(source, args.agree)]
        agree = agreement(images)
        print(f"\n{source}: int8 vs fp32 vectors over {len(images)} photos")
        print(f"{'version':10}{'cos min':>10}{'p1':>10}{'median':>10}{'recall@10':>11}")
        for v, a in agree.items():
            print(f"{v:10}{a['min']:10.4f}{a['p1']:10.4f}{a['median']:10.4f}{a['recall10']:11.3f}")
        sys.stdout.flush()
        res = copies(source, args, tmp / source)
        report_copies(source, res, args.groups)
        print(f"({time.perf_counter() - started:.0f} s, {load()})")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
