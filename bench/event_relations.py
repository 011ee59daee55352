"""Duplicate relations of one event: what the pipeline now pays for it, and what the first request costs now.

One event of --photos images (the sample photos, two edited copies of every third, generated
filler), registered in a private database and embedded the real way (`embeddings.runner.embed_batch`:
vectors and fingerprints in Parquet, ledger rows). Then, same run, same machine:
  build       `indexing.pipeline.build` (rebuild) + publish: the event's relations verified into the
              version (the manifest's `relations`: seconds, pairs) beside the index build itself
  first GET   /events/{code}/duplicates on a fresh server (uvicorn in this process): answered from the
              version's relations, against the peer: a server whose RULES_VERSION differs from the
              file's ignores it and verifies the event itself (the path every first request took before)
  merge       --add more photos into the same event, `build --mode merge`: only the event's pairs the
              parent holds no verdict for are verified (now), against the peer: the same merge from the
              same parent with nothing lent, the event verified whole (before); both must store the same
              verdicts, pair for pair
Times are wall seconds and this process's CPU seconds (every thread: the pipeline and the server run here).

  .venv/bin/python bench/event_relations.py [--photos 2000] [--add 10] [--model efficientnet-lite0+plain]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class _Server:
    """`serving.app.create_app(settings)` under uvicorn in a thread (as tests/serving does)."""

    def __init__(self, settings: Any) -> None:
        import httpx
        import uvicorn

        from core.localpg import free_port
        from serving.app import create_app

        port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.client.get("/").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server not ready")

    def timed_get(self, path: str) -> tuple[dict[str, Any], float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        r = self.client.get(path)
        r.raise_for_status()
        return r.json(), time.perf_counter() - wall, time.process_time() - cpu

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(15)


def _photos(n: int, workdir: Path) -> list[tuple[str, bytes]]:
    """n images: sample photos, two edited copies of every third, generated filler up to n."""
    from core.sample_data import generate_photos, sample_photos
    from duplicates.edits import EDITS, encode
    from embeddings.loading import load_image

    out: list[tuple[str, bytes]] = []
    names = ["jpeg_q30", "resize_50", "text_bar", "crop_40_offcentre", "rotate_90", "letterbox"]
    names = [e for e in names if e in EDITS]
    for k, path in enumerate(sample_photos(min(n // 2, 294), out_dir=workdir / "generated")):
        raw = path.read_bytes()
        out.append((path.name, raw))
        if k % 3 == 0:
            full = load_image(raw, draft_side=None)
            for e in (names[k % len(names)], names[(k + 1) % len(names)]):
                out.append((f"{path.stem}_{e}.jpg", encode(EDITS[e](full))))
        if len(out) >= n:
            break
    filler = max(0, n - len(out))
    out += [(p.name, p.read_bytes()) for p in generate_photos(workdir / "filler", filler, seed=11)] if filler else []
    return out[:n]


def _register_and_embed(conninfo: str, settings: Any, event: str, photos: list[tuple[str, bytes]], model: str,
                        run: str) -> list[int]:
    import psycopg

    from embeddings.runner import embed_batch

    root = Path(settings.image_root) / "uploads"
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for name, raw in photos:
            fname = f"{run}_{len(ids)}_{name}"
            (root / fname).write_bytes(raw)
            ids.append(int(conn.execute("INSERT INTO images (event_code, filename, file_path) VALUES (%s, %s, %s) "
                                        "RETURNING id", (event, fname, f"/uploads/{fname}")).fetchone()[0]))
    for b, start in enumerate(range(0, len(ids), 256)):  # parts of 256, as the DAG plans them
        got = embed_batch(conninfo, ids[start:start + 256], model_name=model, run_id=run, batch_no=b,
                          settings=settings)
        assert got["embedded"] + got["failed"] == len(ids[start:start + 256]), got
    return ids


def _timed(fn: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--add", type=int, default=10, help="photos merged into the event afterwards")
    parser.add_argument("--model", default="efficientnet-lite0+plain",
                        help="embedding model (default: one forward pass per photo; the relations do not depend "
                             "on it)")
    args = parser.parse_args(argv)

    import psycopg
    import torch
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    torch.set_num_threads(1)
    from bench.serving_corpus import admin_conninfo
    from core.migrate import apply_migrations
    from core.settings import load_settings
    from embeddings.models import get_embedder
    from indexing import pipeline
    from indexing.store.layout import IndexStore

    workdir = Path(tempfile.mkdtemp(prefix="imgsim-bench-rel-"))
    admin, private_pg = admin_conninfo(workdir)
    dbname = f"imgsim_bench_rel_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    info = make_conninfo(admin, dbname=dbname)
    servers: list[_Server] = []
    try:
        with psycopg.connect(info) as conn:
            apply_migrations(conn)
        p = conninfo_to_dict(info)
        settings = load_settings(db_host=p["host"], db_port=int(p.get("port") or 5432), db_name=dbname,
                                 db_user=p.get("user", "postgres"), db_pass=p.get("password") or "",
                                 data_dir=workdir / "data", image_root=workdir / "images",
                                 embedding_model=args.model, torch_threads=1, swap_poll_seconds=0.3)
        mv = get_embedder(args.model, settings).model_version
        with psycopg.connect(info, autocommit=True) as conn:
            event = str(conn.execute("INSERT INTO events (name) VALUES ('bench') RETURNING code").fetchone()[0])
        photos = _photos(args.photos, workdir)
        _, wall, _ = _timed(lambda: _register_and_embed(info, settings, event, photos, args.model, "bench"))
        print(f"event: {len(photos)} photos embedded with {mv} in {wall:.0f} s")

        built, b_wall, b_cpu = _timed(lambda: pipeline.build(info, settings, mv, mode="rebuild"))
        pipeline.publish(info, settings, mv, built["version"])
        rel = built["relations"]
        manifest = IndexStore(settings, mv).read_manifest(built["version"])
        size = manifest.sizes.get("relations.parquet", 0)
        print(f"build (rebuild) v{built['version']}: {b_wall:.1f} s wall, {b_cpu:.1f} s CPU; of it the relations: "
              f"{rel['seconds']:.1f} s ({rel['cpu_seconds']:.1f} s CPU) for {rel['images']} images, {rel['pairs']} "
              f"pairs ({1000 * rel['cpu_seconds'] / max(1, rel['images']):.1f} ms CPU per image); relations.parquet "
              f"{size / 1e6:.2f} MB")

        path = f"/events/{event}/duplicates"
        srv = _Server(settings)
        servers.append(srv)
        pre, pre_wall, pre_cpu = srv.timed_get(path)
        _, again_wall, _ = srv.timed_get(path)
        _, shots_wall, _ = srv.timed_get(f"/events/{event}/similar-shots")
        srv.stop()

        from duplicates import verify

        real_rules = verify.RULES_VERSION
        verify.RULES_VERSION = "bench-peer"  # this server ignores the version's relations: it verifies itself
        try:
            peer = _Server(settings.model_copy(update={"relations_wait_seconds": 60}))  # (it verifies: minutes)
            servers.append(peer)
            lazy, lazy_wall, lazy_cpu = peer.timed_get(path)
            peer.stop()
        finally:
            verify.RULES_VERSION = real_rules
        same = pre["groups"] == lazy["groups"]

        more = _photos(args.photos + args.add, workdir)[args.photos:] or _photos(args.add, workdir / "more")
        _register_and_embed(info, settings, event, more, args.model, "more")
        merged, m_wall, m_cpu = _timed(lambda: pipeline.build(info, settings, mv, mode="merge"))
        mrel = merged["relations"]
        from indexing.relations.format import RelationsFile
        from indexing.relations.reuse import ParentVerdicts
        from indexing.store.layout import RELATIONS_DELTA_FILE

        lend = ParentVerdicts.event
        ParentVerdicts.event = lambda self, code: None  # type: ignore[method-assign]  # the peer
        try:  # the same merge from the same parent (CURRENT is still the rebuild), the event verified whole
            whole, w_wall, w_cpu = _timed(lambda: pipeline.build(info, settings, mv, mode="merge"))
        finally:
            ParentVerdicts.event = lend  # type: ignore[method-assign]
        wrel = whole["relations"]
        store = IndexStore(settings, mv)
        now_pairs, peer_pairs = (f.verdicts(event, f.events[event]) for f in (
            RelationsFile(store.version_dir(b["version"]) / RELATIONS_DELTA_FILE, "delta")
            for b in (merged, whole)))
        same_pairs = now_pairs == peer_pairs

        n = len(photos)
        print()
        print(f"{'event of ' + str(n) + ' photos':<52}{'wall s':>10}{'CPU s':>10}")
        print(f"{'pipeline: relations in the rebuild':<52}{rel['seconds']:>10.1f}{rel['cpu_seconds']:>10.1f}")
        print(f"{'pipeline: whole rebuild (index + relations)':<52}{b_wall:>10.1f}{b_cpu:>10.1f}")
        print(f"{'pipeline: merge of ' + str(len(more)) + ' photos, new pairs only (now)':<52}{m_wall:>10.1f}"
              f"{m_cpu:>10.1f}   (relations {mrel['seconds']:.1f} s wall, {mrel['cpu_seconds']:.1f} s CPU: "
              f"{mrel['pairs'] - mrel['reused']} pairs verified, {mrel['reused']} the parent's)")
        print(f"{'pipeline: the same merge, verified whole (peer)':<52}{w_wall:>10.1f}{w_cpu:>10.1f}"
              f"   (relations {wrel['seconds']:.1f} s wall, {wrel['cpu_seconds']:.1f} s CPU: "
              f"{wrel['pairs'] - wrel['reused']} pairs verified)")
        print(f"{'  ratio now / peer (whole merge; relations CPU)':<52}{m_wall / w_wall:>10.4f}"
              f"{mrel['cpu_seconds'] / max(wrel['cpu_seconds'], 1e-9):>10.4f}")
        print(f"{'first GET /duplicates, precomputed (now)':<52}{pre_wall:>10.3f}{pre_cpu:>10.3f}")
        print(f"{'first GET /duplicates, server verifies (peer)':<52}{lazy_wall:>10.3f}{lazy_cpu:>10.3f}")
        print(f"{'  ratio now / peer':<52}{pre_wall / lazy_wall:>10.4f}{pre_cpu / max(lazy_cpu, 1e-9):>10.4f}")
        print(f"{'next GET /duplicates (cached), first /similar-shots':<52}{again_wall:>10.3f}{shots_wall:>10.3f}")
        print(f"groups: {len(pre['groups'])} copy groups; identical to the server's own computation: {same}")
        print(f"merge: the event's verdicts identical to the peer's, pair for pair: {same_pairs}")
        return 0 if same and same_pairs else 1
    finally:
        for s in servers:
            s.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if private_pg is not None:
            private_pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
