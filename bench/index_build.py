"""Index build: merging a small change into a big version against a full rebuild, same run.

For each size N (synthetic, L2-normalised, --dim, default 2048):
  rebuild = pipeline.build(mode="rebuild") of N vectors (ledger read, Parquet streamed, index written, sha256)
  merge   = pipeline.build(mode="merge") after --change new images were embedded (and a few deleted
            and re-embedded), on top of the published rebuild
  ratio   = merge / rebuild (goal <= 5%)
verify and publish times are printed too (they hash and check everything: O(N) by design).

Runs against a private database created on the configured PostgreSQL (DB_HOST/DB_PORT/DB_USER)
and dropped at the end, and a temp DATA_DIR. 1M x 2048 is 8 GB of Parquet plus 8 GB of index:
run it when the machine is quiet. Usage:
  .venv/bin/python bench/index_build.py [--sizes 100000,1000000] [--change 1000] [--dim 2048]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.index_data import uniform_unit, write_parts

MODEL = "bench-synthetic@v1"


def _db(admin: str) -> str:
    import psycopg

    from core.migrate import apply_migrations

    name = f"imgsim_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    info = psycopg.conninfo.make_conninfo(admin, dbname=name)
    with psycopg.connect(info) as conn:
        apply_migrations(conn)
    return info


def _register(conninfo: str, n: int, per_event: int) -> pd.DataFrame:
    """n new images in events of per_event, returned as (image_id, image_code, event_code, embedded_at)."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        n_events = max(1, -(-n // per_event))
        conn.execute("INSERT INTO events (name) SELECT 'bench' FROM generate_series(1, %s)", (n_events,))
        conn.execute(
            """WITH ev AS (SELECT code, row_number() OVER (ORDER BY id DESC) - 1 AS k FROM events
                           ORDER BY id DESC LIMIT %(e)s)
               INSERT INTO images (event_code, filename, file_path, width, height)
               SELECT ev.code, 'b_' || g || '.jpg', '/uploads/b_' || g || '.jpg', 640, 480
               FROM generate_series(0, %(n)s - 1) g JOIN ev ON ev.k = g %% %(e)s""",
            {"n": n, "e": n_events},
        )
        rows = conn.execute(
            "SELECT id, code::text, event_code::text, now() FROM images ORDER BY id DESC LIMIT %s", (n,)
        ).fetchall()
    return pd.DataFrame(rows, columns=["image_id", "image_code", "event_code", "embedded_at"]).iloc[::-1]


def _embed(conninfo: str, settings, frame: pd.DataFrame, dim: int, seed: int, tag: str) -> None:
    """Write Parquet parts for these images and their ledger rows, as the embeddings part does."""
    import psycopg

    from indexing.parts import dataset_dir

    frame = frame.reset_index(drop=True)
    parts = write_parts(dataset_dir(settings, MODEL), frame,
                        lambda a, b: uniform_unit(b - a, dim, seed + a), MODEL, tag=tag)
    chunk = 50_000
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.cursor() as cur:
        for k, part in enumerate(parts):
            sub = frame.iloc[k * chunk:(k + 1) * chunk]
            rel = str(part.relative_to(settings.resolved_data_dir))
            with cur.copy("COPY _ledger_in (image_id, parquet_part) FROM STDIN") as copy:
                for i in sub["image_id"]:
                    copy.write_row((int(i), rel))
        cur.execute("""INSERT INTO image_embeddings (image_id, model_version, status, parquet_part)
                       SELECT image_id, %s, 'embedded', parquet_part FROM _ledger_in
                       ON CONFLICT (image_id, model_version) DO UPDATE SET status = 'embedded',
                         parquet_part = EXCLUDED.parquet_part, embedded_at = now()""", (MODEL,))
        cur.execute("TRUNCATE _ledger_in")


def _timed(fn, *args, **kw) -> tuple[object, float]:
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def run_size(admin: str, n: int, change: int, dim: int, per_event: int) -> dict:
    import psycopg

    from core.settings import load_settings
    from indexing import pipeline

    root = Path(tempfile.mkdtemp(prefix="imgsim-bench-index-"))
    conninfo = _db(admin)
    settings = load_settings(data_dir=root, index_exact_max_vectors=max(n * 2, 1))
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("CREATE UNLOGGED TABLE _ledger_in (image_id integer, parquet_part text)")
        t0 = time.perf_counter()
        base = _register(conninfo, n, per_event)
        _embed(conninfo, settings, base, dim, 1, "base")
        setup = time.perf_counter() - t0
        built, t_rebuild = _timed(pipeline.build, conninfo, settings, MODEL, mode="rebuild")
        _, t_verify = _timed(pipeline.verify, conninfo, settings, MODEL, built["version"])
        _, t_publish = _timed(pipeline.publish, conninfo, settings, MODEL, built["version"])

        # The change: `change` new images, 1% of it re-embedded, 1% deleted.
        fresh = _register(conninfo, change, per_event)
        _embed(conninfo, settings, fresh, dim, 10**7, "new")
        small = max(1, change // 100)
        _embed(conninfo, settings, base.iloc[:small], dim, 2 * 10**7, "re")
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("DELETE FROM images WHERE id = ANY(%s)", (base["image_id"].iloc[-small:].tolist(),))
        merged, t_merge = _timed(pipeline.build, conninfo, settings, MODEL, mode="merge")
        assert merged["mode"] == "merge", merged
        _, t_verify2 = _timed(pipeline.verify, conninfo, settings, MODEL, merged["version"])
        _, t_publish2 = _timed(pipeline.publish, conninfo, settings, MODEL, merged["version"])
        return {"n": n, "setup": setup, "rebuild": t_rebuild, "merge": t_merge, "verify": t_verify,
                "publish": t_publish, "verify_merged": t_verify2, "publish_merged": t_publish2,
                "changes": merged["changes"], "count": merged["count"],
                # of it, the duplicate relations step (synthetic parts carry no fingerprints: reads only)
                "relations": (built["relations"]["step_seconds"], merged["relations"]["step_seconds"])}
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{psycopg.conninfo.conninfo_to_dict(conninfo)["dbname"]}" '
                         "WITH (FORCE)")
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000", help="comma-separated index sizes (e.g. 100000,1000000)")
    ap.add_argument("--change", type=int, default=1000, help="new images merged in (default 1000)")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--per-event", type=int, default=2000)
    args = ap.parse_args()
    from core.settings import get_settings

    admin = get_settings().conninfo(dbname="postgres")
    print(f"index build bench: dim {args.dim}, merge of {args.change} new (+1% re-embedded, 1% deleted); "
          f"cpus {os.cpu_count()}")
    print(f"{'N':>9} {'rebuild s':>10} {'merge s':>9} {'merge/rebuild':>14} {'verify s':>9} {'publish s':>10} "
          f"{'verify(merged) s':>17} {'publish(merged) s':>18}")
    for n in (int(s) for s in args.sizes.split(",")):
        r = run_size(admin, n, args.change, args.dim, args.per_event)
        print(f"{r['n']:>9} {r['rebuild']:>10.2f} {r['merge']:>9.2f} {r['merge'] / r['rebuild']:>13.1%} "
              f"{r['verify']:>9.2f} {r['publish']:>10.2f} {r['verify_merged']:>17.2f} {r['publish_merged']:>18.2f}"
              f"   (changes {r['changes']}, setup {r['setup']:.0f} s; relations step in rebuild / merge "
              f"{r['relations'][0]:.2f} / {r['relations'][1]:.2f} s)", flush=True)
    print("goal: merge/rebuild <= 5%")


if __name__ == "__main__":
    main()
