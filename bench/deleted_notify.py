"""How fast a deletion reaches the server's set of deleted images, against the per-search query it replaces.

    .venv/bin/python bench/deleted_notify.py [--vectors 20000] [--deletes 200]

A published version (bench/serving_corpus.py) is followed by serving.deleted.DeletedImages
exactly as the server runs it (its own listener thread and connection). Each DELETE is
committed from another connection; the latency is from the commit's return to the id
being in the server's set (polled every 50 us). The peer is what every search paid
before: one `id = ANY(...)` query over 15 candidates through the Database pool. Also
printed: the anti-join that builds the set when a version is served (off the request path).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_corpus import build_corpus, percentiles


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=20_000)
    ap.add_argument("--deletes", type=int, default=200)
    args = ap.parse_args(argv)

    from indexing.search.loaded import load_version
    from serving.database import Database
    from serving.deleted import ANTI_JOIN, DeletedImages
    from serving.served import ServedIndex

    corpus = build_corpus(args.vectors, 1280, 2000)
    try:
        served = ServedIndex(load_version(corpus.settings, corpus.model_version))  # type: ignore[arg-type]
        with psycopg.connect(corpus.conninfo, autocommit=True) as conn:
            t = time.perf_counter()
            conn.execute(ANTI_JOIN, (served.loaded.ids.tolist(),)).fetchall()
            anti_join = time.perf_counter() - t
        deleted = DeletedImages(corpus.conninfo, lambda: served, None)
        deleted.start()
        assert deleted.wait_fresh(), "the listener did not start"
        victims = np.random.default_rng(3).choice(corpus.ids, size=args.deletes, replace=False).tolist()
        lags = []
        with psycopg.connect(corpus.conninfo, autocommit=True) as conn:
            for v in victims:
                conn.execute("DELETE FROM images WHERE id = %s", (int(v),))
                t = time.perf_counter()
                while int(v) not in deleted.known(served.version)[0]:  # type: ignore[index]
                    if time.perf_counter() - t > 5:
                        raise SystemExit(f"deletion of {v} not seen within 5 s")
                    time.sleep(0.00005)
                lags.append(time.perf_counter() - t)
        deleted.stop()
        live = [int(i) for i in corpus.ids[:15] if int(i) not in set(victims)]

        async def per_search() -> list[float]:
            db = Database(corpus.conninfo)
            await db.live_ids(live)
            out = []
            for _ in range(args.deletes):
                t = time.perf_counter()
                await db.live_ids(live)
                out.append(time.perf_counter() - t)
            await db.close()
            return out

        query = asyncio.run(per_search())
        lp50, lp99 = percentiles(lags)
        qp50, qp99 = percentiles(query)
        print(f"\n{args.vectors} indexed ids, {args.deletes} deletions one by one       p50 ms   p99 ms   max ms")
        print(f"  commit -> in the server's set (NOTIFY)              {lp50:7.3f}  {lp99:7.3f}  "
              f"{max(lags) * 1000:7.3f}")
        print(f"  the per-search query it replaces (15 ids)           {qp50:7.3f}  {qp99:7.3f}")
        print(f"  the anti-join building the set for a version: {anti_join * 1000:.0f} ms (off the request path)")
        print("  exactness window = the first line; searches no longer pay the second")
    finally:
        corpus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
