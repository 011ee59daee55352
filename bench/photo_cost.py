"""A photo's cost through the pipeline, "today" against "new" (issue 28): photos/s end to end, CPU per stage,
the bound, quality and the upload check's latency, all from one event in one run.

  .venv/bin/python -m bench.photo_cost [--photos 1000] [--source shared|generated] [--configs today,new]
      [--new-model SPEC] [--originals N] [--scenes N] [--model-cache DIR]

Configs, run one after the other on the same photos, each in a fresh PostgreSQL database and DATA_DIR of its own:
  today  EMBEDDING_RUNTIME=torch, model version efficientnet-lite0@crop224+rot4 (the issue's baseline)
  new    --new-model (default: what EMBEDDING_MODEL=efficientnet-lite0 parses to in this checkout,
         embeddings.models.parse_name), ONNX Runtime (the default runtime)
Both use every core for the model (torch_threads = os.cpu_count()) and the other settings' defaults (batch 32,
2 decode threads).

The event: --photos images: --originals photos (default a quarter), each with two copies made with
duplicates.edits (the edits cycle through bench/rot4.py's list: every turn alone and after crop_80, jpeg_q30,
text_bar or resize_50, and six unturned edits), --scenes same-scene pairs (default one pair per 20 photos; shared:
core.sample_data.sample_scene_pairs, generated: generate_scene_shots) and filler photos up to --photos (the photos
of bench/rot4.py's load_source; shared photos short of the count are topped up with generated ones). Each config:
  register  rows in `images` (one event) and the files under IMAGE_ROOT (not timed in photos/s)
  embed     embeddings.runner.run_scope over the event (plan and claim, parts of 256, decode threads + model,
            fingerprints, Parquet parts, ledger rows), as the DAG's tasks do; the model is loaded (and its ONNX file
            exported and published) and run once on a dummy batch before the clock starts
  build     indexing.pipeline.build (rebuild): the FAISS index and the event's relations (verified copy pairs),
            in a spawned process of its own (the DAG's build task is not the embedding's process; in the
            embedding's process, after torch, other threads took a fifth of the verification's process CPU)
  publish   indexing.pipeline.publish (not in photos/s), then a server (uvicorn in this process, as
            bench/event_relations.py's _Server) answers GET /events/{code}/duplicates from it
photos/s = N / (embed wall + build wall).

CPU per photo, per stage (this process's CPU; the run is alone in it while it is measured):
  decode + preprocess   thread CPU inside runner.decode_one (file read, decode, resize, normalise) minus the
                        fingerprint's, plus the reader threads' (runner._ReadWindow.read)
  fingerprint           thread CPU inside runner.fingerprint_bytes (duplicates.fingerprint in the decode threads)
  Parquet + ledger      thread CPU inside runner.build_table, runner.write_part and embeddings.ledger.record
  model (+ runner)      the embed step's process CPU minus the three above: the forwards on every model thread,
                        with the runner's planning, claims and stacking; beside it, the bare forward's CPU (the
                        config's embedder on prepared arrays of these photos, batch 32, rot4.model_ms)
  relations             the build's report: CPU of the verification (indexing/relations/compute.py cpu_seconds)
  index build           the build's CPU (its process and the relations' worker processes) minus the relations'
                        (ledger and Parquet reads, FAISS, manifest, relations file)
The bound: efficientnet-lite0+plain on ONNX Runtime, every core, prepared arrays of these photos, batch 32 (the
model alone: no decoding, no fingerprint), photos/s measured in this run (bench/rot4.py's model_ms, best of two).

Quality, per config, from the served route: an original and its copy in one copy group of GET
/events/{code}/duplicates (per edit), and false copies: the two shots of a same-scene pair in one copy group.
Upload check: POST /events/{code}/duplicates/check over HTTP against the "new" served version, 10 warm-up
requests then 50 measured (25 fresh edited copies of event originals, 25 unrelated generated photos), p50 / p90.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.event_relations import _Server
from bench.provenance import code_state
from bench.rot4 import FILLER_SEED, edit_names, load_source, make_edit, model_ms, together

TODAY = "efficientnet-lite0@crop224+rot4"
BOUND = "efficientnet-lite0+plain"
UPLOAD_EDITS = ("jpeg_q30", "crop_80+rotate_90", "thumb_96", "resize_50+text_bar", "screenshot",
                "rotate_270+jpeg_q30")
UNRELATED_SEED, ORDER_SEED = 2900, 28
WARM_UP, MEASURED = 10, 50


@dataclass
class Photo:
    name: str
    raw: bytes
    kind: str  # original, copy, scene_a, scene_b, filler
    edit: str | None = None
    of: int | None = None  # a copy: its original's index; scene_b: scene_a's index


def event_photos(source: str, n: int, originals: int, scenes: int, tmp: Path) -> list[Photo]:
    """The event's photos in registration order (shuffled, seed fixed)."""
    from core.sample_data import generate_photos
    from duplicates.edits import encode
    from embeddings.loading import load_image

    filler = n - 3 * originals - 2 * scenes
    if filler < 0:
        raise SystemExit(f"--photos {n} cannot hold {originals} originals with 2 copies each and {scenes} pairs")
    names, orig, fill, pairs = load_source(source, originals, filler, scenes, tmp)
    short = n - 3 * len(orig) - 2 * len(pairs) - len(fill)  # shared photos run out: generated filler
    if short > 0:
        extra = generate_photos(tmp / "more-filler", len(fill) + short, seed=FILLER_SEED)[len(fill):]
        fill += [p.read_bytes() for p in extra]
    out = [Photo(name, raw, "original") for name, raw in zip(names, orig, strict=True)]
    edits = edit_names()
    for k, raw in enumerate(orig):
        full = load_image(raw, draft_side=None)
        for e in (edits[(2 * k) % len(edits)], edits[(2 * k + 1) % len(edits)]):
            out.append(Photo(f"{Path(names[k]).stem}_{e}.jpg", encode(make_edit(e)(full)), "copy", e, k))
    for a, b in pairs:
        out.append(Photo(f"scene_{len(out)}_a.jpg", a, "scene_a"))
        out.append(Photo(f"scene_{len(out)}_b.jpg", b, "scene_b", of=len(out) - 1))
    out += [Photo(f"filler_{k}.jpg", raw, "filler") for k, raw in enumerate(fill)]
    order = np.random.default_rng(ORDER_SEED).permutation(len(out))
    where = {int(old): new for new, old in enumerate(order)}
    return [Photo(p.name, p.raw, p.kind, p.edit, None if p.of is None else where[p.of])
            for p in (out[int(i)] for i in order)]


def upload_photos(photos: list[Photo], tmp: Path) -> list[tuple[str, bytes]]:
    """(kind, bytes) of the check's uploads, copies and unrelated photos alternating: fresh edits of event originals
    (none equal to a copy the event holds) and generated photos the event does not hold."""
    from core.sample_data import generate_photos
    from duplicates.edits import encode
    from embeddings.loading import load_image

    count = (WARM_UP + MEASURED) // 2
    originals = [i for i, p in enumerate(photos) if p.kind == "original"]
    held = defaultdict(set)
    for p in photos:
        if p.kind == "copy":
            held[p.of].add(p.edit)
    copies = []
    for k in range(count):
        i = originals[(k * 7) % len(originals)]
        edit = next(e for j in range(len(UPLOAD_EDITS)) if (e := UPLOAD_EDITS[(k + j) % len(UPLOAD_EDITS)])
                    not in held[i])
        copies.append(encode(make_edit(edit)(load_image(photos[i].raw, draft_side=None))))
    unrelated = [p.read_bytes() for p in generate_photos(tmp / "unrelated", count, seed=UNRELATED_SEED)]
    return [x for pair in zip((("copy", c) for c in copies), (("unrelated", u) for u in unrelated), strict=True)
            for x in pair]


class StageClock:
    """Thread CPU spent inside some of the runner's functions, per stage, while patched in (`with clock:`)."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()
        self.patches: list[tuple[Any, str, Callable[..., Any], str]] = []

    def watch(self, owner: Any, name: str, stage: str) -> None:
        self.patches.append((owner, name, getattr(owner, name), stage))

    def _timed(self, real: Callable[..., Any], stage: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return real(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                with self.lock:
                    self.cpu[stage] += spent
        return timed

    def __enter__(self) -> StageClock:
        for owner, name, real, stage in self.patches:
            setattr(owner, name, self._timed(real, stage))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, real, _ in self.patches:
            setattr(owner, name, real)


def runner_clock() -> StageClock:
    from embeddings import ledger, runner

    clock = StageClock()
    clock.watch(runner, "decode_one", "decode")  # includes the fingerprint (subtracted below)
    clock.watch(runner, "fingerprint_bytes", "fingerprint")
    clock.watch(runner._ReadWindow, "read", "read")
    for name in ("build_table", "write_part"):
        clock.watch(runner, name, "write")
    clock.watch(ledger, "record", "write")
    return clock


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


@dataclass
class Config:
    label: str
    spec: str
    runtime: str
    settings: Any = None
    res: dict[str, Any] = field(default_factory=dict)


def run_config(cfg: Config, photos: list[Photo], uploads: list[tuple[str, bytes]], admin: str, workdir: Path,
               cache: Path, latency: bool) -> None:
    """Register, embed, build, publish and serve the event under one config; figures into cfg.res."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from core.migrate import apply_migrations
    from core.settings import load_settings
    from embeddings.models import get_embedder
    from embeddings.onnx_export import publish_for
    from embeddings.planning import Selection
    from embeddings.runner import run_scope
    from indexing import pipeline

    dbname = f"imgsim_bench_cost_{cfg.label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    server = None
    try:
        info = make_conninfo(admin, dbname=dbname)
        with psycopg.connect(info) as conn:
            apply_migrations(conn)
        p = conninfo_to_dict(info)
        cfg.settings = settings = load_settings(
            db_host=p["host"], db_port=int(p.get("port") or 5432), db_name=dbname, db_user=p.get("user", "postgres"),
            db_pass=p.get("password") or "", data_dir=workdir / cfg.label / "data", image_root=workdir / "images",
            model_cache_dir=cache, embedding_model=cfg.spec, embedding_runtime=cfg.runtime,
            torch_threads=os.cpu_count() or 1, swap_poll_seconds=0.3, api_key=None)
        n = len(photos)
        with psycopg.connect(info, autocommit=True) as conn:
            event = str(conn.execute("INSERT INTO events (name) VALUES ('bench') RETURNING code").fetchone()[0])
            with conn.cursor() as cur:
                started = time.perf_counter()
                ids = [int(cur.execute("INSERT INTO images (event_code, filename, file_path, file_size, mime_type) "
                                       "VALUES (%s, %s, %s, %s, 'image/jpeg') RETURNING id",
                                       (event, ph.name, f"/uploads/{k:05d}_{ph.name}", len(ph.raw))).fetchone()[0])
                       for k, ph in enumerate(photos)]
        cfg.res["register_s"] = time.perf_counter() - started
        load = os.getloadavg()[0]
        embedder = get_embedder(cfg.spec, settings)
        publish_for(embedder, settings)
        embedder.forward(np.zeros((settings.embed_batch_size, 3, 224, 224), np.float32))  # warm
        mv = embedder.model_version
        cfg.res["mv"] = mv
        print(f"[{cfg.label}] {mv} on {embedder.backend.runtime}: embedding {n} photos", file=sys.stderr, flush=True)

        clock = runner_clock()
        with clock:
            got, e_wall, e_cpu = timed(lambda: run_scope(Selection(scope="event", event_code=event),
                                                         settings=settings, model_name=cfg.spec,
                                                         run_id=f"bench-{cfg.label}"))
        assert got["embedded"] == n and got["failed"] == 0, {k: got[k] for k in ("embedded", "failed", "failures")}
        with multiprocessing.get_context("spawn").Pool(1) as pool:  # a process of its own, as the DAG's task
            built, b_wall, b_cpu, build_us, rel_thread = pool.apply(build_apart, (info, settings, mv))
        _, pub_wall, _ = timed(lambda: pipeline.publish(info, settings, mv, built["version"]))
        rel = built["relations"]
        cfg.res.update(embed_s=e_wall, embed_cpu=e_cpu, build_s=b_wall, build_cpu=b_cpu, publish_s=pub_wall,
                       rel=rel, stages=dict(clock.cpu), parts=len(got["parts"]), load=(load, os.getloadavg()[0]),
                       build_us=build_us, rel_thread=rel_thread)
        print(f"[{cfg.label}] embed {e_wall:.1f} s, build {b_wall:.1f} s", file=sys.stderr, flush=True)

        server = _Server(settings)
        body, g_wall, _ = server.timed_get(f"/events/{event}/duplicates")
        assert body["index_version"] == built["version"], body["index_version"]
        groups = [{int(im["id"]) for im in g["images"]} for g in body["groups"]]
        cfg.res.update(first_get_s=g_wall, groups=len(groups), checked=body["images_checked"],
                       unverifiable=body["images_unverifiable"])
        hits: dict[str, list[bool]] = defaultdict(list)
        false_copies = scenes = 0
        for k, ph in enumerate(photos):
            if ph.kind == "copy":
                hits[ph.edit].append(together(groups, ids[ph.of], ids[k]))  # type: ignore[index]
            elif ph.kind == "scene_b":
                scenes += 1
                false_copies += together(groups, ids[ph.of], ids[k])  # type: ignore[index]
        cfg.res.update(recall=dict(hits), false_copies=false_copies, scenes=scenes)
        if latency:
            cfg.res["check"] = check_latency(server, event, uploads)
    finally:
        if server is not None:
            server.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def build_apart(info: str, settings: Any, mv: str) -> tuple[dict[str, Any], float, float, tuple[float, float], float]:
    """pipeline.build (rebuild) timed in this (spawned) process: (result, wall s, CPU s and (user, system) s of
    it and its relations workers, the CPU of the thread that called event_verdicts). The modules it uses are
    imported before the clock starts."""
    import importlib

    from indexing import pipeline
    from indexing.relations import compute

    for name in ("duplicates.groups", "duplicates.verify", "duplicates.fingerprint"):
        importlib.import_module(name)
    clock = StageClock()
    clock.watch(compute, "event_verdicts", "relations")
    before = os.times()
    with clock:
        built, wall, _ = timed(lambda: pipeline.build(info, settings, mv, mode="rebuild"))
    after = os.times()
    # With the relations' worker processes (RELATIONS_PROCESSES; joined when the build ends, so counted as
    # this process's children).
    user = after.user + after.children_user - before.user - before.children_user
    system = after.system + after.children_system - before.system - before.children_system
    return built, wall, user + system, (user, system), clock.cpu["relations"]


def check_latency(server: _Server, event: str, uploads: list[tuple[str, bytes]]) -> dict[str, Any]:
    """POST /events/{event}/duplicates/check: WARM_UP requests, then MEASURED timed ones (wall ms, over HTTP)."""
    path = f"/events/{event}/duplicates/check"
    ms: list[float] = []
    flagged: dict[str, list[bool]] = defaultdict(list)
    for k, (kind, raw) in enumerate(uploads):
        started = time.perf_counter()
        r = server.client.post(path, files={"file": ("upload.jpg", raw, "image/jpeg")})
        took = (time.perf_counter() - started) * 1000
        r.raise_for_status()
        if k >= WARM_UP:
            ms.append(took)
            flagged[kind].append(bool(r.json()["duplicate"]))
    return {"p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)), "n": len(ms),
            "flagged": {k: (sum(v), len(v)) for k, v in flagged.items()}}


def bare_models(configs: list[Config], photos: list[Photo], count: int) -> dict[str, tuple[float, float]]:
    """{label or "bound": (wall ms, CPU ms) per photo} of the model alone on prepared arrays of the event's
    photos, batch 32, every core (rot4.model_ms: the models alternate, best of two)."""
    from embeddings.loading import load_image
    from embeddings.models import get_embedder

    base = configs[-1].settings.model_copy(update={"embedding_runtime": "onnx"})
    embedders = {c.label: get_embedder(c.spec, c.settings) for c in configs}
    embedders["bound"] = get_embedder(BOUND, base)
    by_prep: dict[str, dict[str, Any]] = defaultdict(dict)
    for label, emb in embedders.items():
        by_prep[f"{emb.preprocess.name} {emb.norm!r}"][label] = emb
    out: dict[str, tuple[float, float]] = {}
    for group in by_prep.values():
        first = next(iter(group.values()))
        arrays = [first.prepare(load_image(p.raw, **first.load_kwargs())) for p in photos[:count]]
        out.update(model_ms(group, arrays))
    return out


def report(configs: list[Config], bare: dict[str, tuple[float, float]], n: int, source: str, code: str) -> None:
    cols = [c.label for c in configs]
    res = {c.label: c.res for c in configs}
    head = "".join(f"{c:>18}" for c in cols)
    print(f"\nevent of {n} photos ({source}); {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"code at the start: {code}")
    for c in configs:
        print(f"  {c.label}: {c.res['mv']} on {c.settings.embedding_runtime}, {c.res['parts']} Parquet parts")
    print(f"{'':<40}{head}")
    rate = {c: n / (res[c]["embed_s"] + res[c]["build_s"]) for c in cols}
    rows = [("embed wall s (run_scope)", lambda c: f"{res[c]['embed_s']:.1f}"),
            ("build wall s (rebuild with relations)", lambda c: f"{res[c]['build_s']:.1f}"),
            ("photos/s = N / (embed + build)", lambda c: f"{rate[c]:.1f}"),
            ("  not counted: register / publish wall s",
             lambda c: f"{res[c]['register_s']:.1f} / {res[c]['publish_s']:.1f}"),
            ("  first GET /duplicates wall s", lambda c: f"{res[c]['first_get_s']:.3f}"),
            ("relations: pairs verified", lambda c: f"{res[c]['rel']['pairs']}"),
            ("relations: wall / CPU s",
             lambda c: f"{res[c]['rel']['seconds']:.1f} / {res[c]['rel']['cpu_seconds']:.1f}"),
            ("relations CPU: process / its thread s",
             lambda c: f"{res[c]['rel']['cpu_seconds']:.1f} / {res[c]['rel_thread']:.1f}"),
            ("build CPU: user / system s", lambda c: f"{res[c]['build_us'][0]:.1f} / {res[c]['build_us'][1]:.1f}"),
            ("load average at start / end", lambda c: f"{res[c]['load'][0]:.1f} / {res[c]['load'][1]:.1f}")]
    for label, cell in rows:
        print(f"{label:<40}" + "".join(f"{cell(c):>18}" for c in cols))

    print(f"\nCPU ms per photo (share of the total){'':<4}" + head)
    stage: dict[str, dict[str, float]] = {}
    for c in cols:
        s, r = res[c]["stages"], res[c]
        decode = s.get("decode", 0.0) - s.get("fingerprint", 0.0) + s.get("read", 0.0)
        measured = decode + s.get("fingerprint", 0.0) + s.get("write", 0.0)
        stage[c] = {"decode + preprocess": decode, "model (+ runner)": r["embed_cpu"] - measured,
                    "fingerprint": s.get("fingerprint", 0.0), "Parquet + ledger write": s.get("write", 0.0),
                    "relations (verification)": r["rel"]["cpu_seconds"],
                    "index build": r["build_cpu"] - r["rel"]["cpu_seconds"]}
    for name in stage[cols[0]]:
        print(f"  {name:<38}" + "".join(
            f"{1000 * stage[c][name] / n:>11.2f} ({100 * stage[c][name] / sum(stage[c].values()):>3.0f}%)"
            for c in cols))
    print(f"  {'total (embed + build CPU)':<38}" + "".join(
        f"{1000 * sum(stage[c].values()) / n:>11.2f} (100%)" for c in cols))
    print(f"  {'model alone, bare forward (see below)':<38}" + "".join(f"{bare[c][1]:>11.2f}{'':>7}" for c in cols))
    print("  (decode, fingerprint, write: thread CPU inside the runner's functions; model: the embed step's CPU\n"
          "   minus those; relations: the build report's cpu_seconds; index build: the build's CPU minus the\n"
          "   relations'; the bare forward: the config's embedder alone, prepared arrays, batch 32)")

    bw, bc = bare["bound"]
    print(f"\nbound: {BOUND} alone on ONNX Runtime, prepared arrays, batch 32, {os.cpu_count()} threads: "
          f"{1000 / bw:.1f} photos/s ({bw:.2f} ms wall, {bc:.2f} ms CPU per photo)")
    for c in cols:
        w, cpu = bare[c]
        print(f"  {c} model alone, same arrays: {1000 / w:.1f} photos/s ({w:.2f} ms wall, {cpu:.2f} ms CPU per photo);"
              f" its pipeline: {rate[c]:.1f} photos/s = {rate[c] * bw / 1000:.2f} of the bound")
    if "today" in rate and "new" in rate:
        ratio = rate["new"] / rate["today"]
        print(f"new / today photos/s: {ratio:.2f}x (goal >= 4x: {'met' if ratio >= 4 else 'NOT met'}); "
              f"new / bound: {rate['new'] * bw / 1000:.2f}")

    print("\ncopy recall in the served groups (GET /events/{code}/duplicates): original and copy in one group")
    print(f"{'edit':<26}{'copies':>8}" + head)
    edits = [e for e in edit_names() if e in res[cols[0]]["recall"]]
    for e in edits:
        print(f"{e:<26}{len(res[cols[0]]['recall'][e]):>8}" + "".join(
            f"{np.mean(res[c]['recall'][e]):>18.3f}" for c in cols))
    for label, pick in (("worst turned copy", lambda e: "rotate" in e), ("worst unturned copy", lambda e: "rotate"
                                                                          not in e)):
        chosen = [e for e in edits if pick(e)]
        if chosen:
            print(f"{label:<34}" + "".join(f"{min(np.mean(res[c]['recall'][e]) for e in chosen):>18.3f}"
                                            for c in cols))
    print(f"{'all copies':<34}" + "".join(
        f"{np.mean([h for e in edits for h in res[c]['recall'][e]]):>18.3f}" for c in cols))
    print(f"{'false copies, same-scene pairs':<34}" + "".join(
        f"{str(res[c]['false_copies']) + '/' + str(res[c]['scenes']):>18}" for c in cols))
    print(f"{'copy groups / images unverifiable':<34}" + "".join(
        f"{str(res[c]['groups']) + ' / ' + str(res[c]['unverifiable']):>18}" for c in cols))

    for c in cols:
        if "check" in res[c]:
            ch = res[c]["check"]
            flags = ", ".join(f"{a}/{b} {'copies' if kind == 'copy' else kind} answered duplicate"
                              for kind, (a, b) in ch["flagged"].items())
            print(f"\nPOST /events/{{code}}/duplicates/check against {c} ({res[c]['mv']}), over HTTP, {ch['n']} "
                  f"after {WARM_UP} warm-up: p50 {ch['p50']:.0f} ms, p90 {ch['p90']:.0f} ms ({flags})")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000, help="photos in the event")
    parser.add_argument("--source", choices=("shared", "generated"), default=None,
                        help="default: shared when the sample photos are there, else generated")
    parser.add_argument("--configs", default="today,new", help="comma-separated: today, new")
    parser.add_argument("--new-model", default=None, help="default: the code's default for efficientnet-lite0")
    parser.add_argument("--originals", type=int, default=None, help="originals (2 copies each; default photos/4)")
    parser.add_argument("--scenes", type=int, default=None, help="same-scene pairs (default photos/20)")
    parser.add_argument("--bare-photos", type=int, default=256, help="photos of the bare model measurements")
    parser.add_argument("--model-cache", type=Path, default=None,
                        help="MODEL_CACHE_DIR for the ONNX export (default: a fresh one per run)")
    args = parser.parse_args(argv)

    from bench.serving_corpus import admin_conninfo
    from core.settings import sample_data_dir
    from embeddings.models import parse_name

    source = args.source
    data = sample_data_dir()
    has_shared = data is not None and (data / "photos").is_dir()
    if source is None:
        source = "shared" if has_shared else "generated"
    elif source == "shared" and not has_shared:
        print("no sample photos (SAMPLE_DATA_DIR): generated photos instead", file=sys.stderr)
        source = "generated"
    new_spec = args.new_model or parse_name("efficientnet-lite0").model_version
    wanted = [c.strip() for c in args.configs.split(",") if c.strip()]
    known = {"today": Config("today", TODAY, "torch"), "new": Config("new", new_spec, "onnx")}
    if not wanted or any(c not in known for c in wanted):
        parser.error("--configs: today, new or both")
    configs = [known[c] for c in wanted]
    n = args.photos
    originals = args.originals if args.originals is not None else n // 4
    scenes = args.scenes if args.scenes is not None else max(1, n // 20)

    code = code_state()  # the tree is shared: what this process imports is the state at its start
    workdir = Path(tempfile.mkdtemp(prefix="imgsim-bench-cost-"))
    admin, private_pg = admin_conninfo(workdir)
    try:
        started = time.perf_counter()
        photos = event_photos(source, n, originals, scenes, workdir / "source")
        root = workdir / "images" / "uploads"
        root.mkdir(parents=True)
        for k, ph in enumerate(photos):
            (root / f"{k:05d}_{ph.name}").write_bytes(ph.raw)
        uploads = upload_photos(photos, workdir / "source")
        kinds = defaultdict(int)
        for ph in photos:
            kinds[ph.kind] += 1
        print(f"{source}: {dict(kinds)} ({time.perf_counter() - started:.0f} s to make)", file=sys.stderr,
              flush=True)
        cache = args.model_cache or workdir / "model-cache"
        for cfg in configs:
            run_config(cfg, photos, uploads, admin, workdir, cache, latency=cfg.label == "new")
        bare = bare_models(configs, photos, args.bare_photos)
        report(configs, bare, n, source, code)
        print(f"({time.perf_counter() - started:.0f} s)")
        return 0
    finally:
        if private_pg is not None:
            private_pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
