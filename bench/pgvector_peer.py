"""Our search vs pgvector, the peer a user would pick instead (vectors in the same PostgreSQL).

    .venv/bin/python bench/pgvector_peer.py [--vectors 100000] [--dim 2048] [--per-event 2000]

The `pgserver` package ships PostgreSQL 16 with pgvector 0.6.2, which cannot
index more than 2,000 dimensions (no halfvec before 0.7): its user runs exact
search with a B-tree on event_code. We start that server privately (through
core.localpg with pgserver's binaries, so nothing is installed system-wide),
load the same vectors, and time top-10 within an event and over everything,
from a psycopg client, against our in-process route path on a version
published through the pipeline. Recall@10 of both is measured against numpy
brute force. Goal: ours >= 10x faster at equal or better recall.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_corpus import Corpus, build_corpus, percentiles


def start_pgvector(workdir: Path):  # type: ignore[no-untyped-def]
    import pgserver

    from core.localpg import LocalPostgres

    bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    server = LocalPostgres(workdir / "pgvector", bindir=bindir).start()
    info = make_conninfo(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres")
    with psycopg.connect(info, autocommit=True) as conn:
        # What a user tuning for this workload would set: the table fits in shared buffers.
        conn.execute("ALTER SYSTEM SET shared_buffers = '1536MB'")
        conn.execute("ALTER SYSTEM SET work_mem = '64MB'")
    server.stop()
    server.start()
    return server, info


COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
COPY_TRAILER = b"\xff\xff"


def binary_rows(ids: np.ndarray, events: list[str], vectors: np.ndarray) -> bytes:
    """COPY (FORMAT binary) tuples for (id int, event_code uuid, embedding vector(dim)), built with numpy."""
    n, dim = vectors.shape
    row = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("id", ">i4"), ("l2", ">i4"), ("uuid", "S16"), ("l3", ">i4"),
                    ("dim", ">i2"), ("unused", ">i2"), ("vec", ">f4", (dim,))])
    rows = np.zeros(n, dtype=row)
    rows["nf"], rows["l1"], rows["id"], rows["l2"] = 3, 4, ids, 16
    rows["uuid"] = [uuid.UUID(e).bytes for e in events]
    rows["l3"], rows["dim"] = 4 + 4 * dim, dim
    rows["vec"] = vectors
    return rows.tobytes()


def load_pgvector(info: str, corpus: Corpus) -> None:
    dim = corpus.vectors.shape[1]
    events = [corpus.event_codes[e] for e in corpus.event_of]
    with psycopg.connect(info, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute(f"CREATE TABLE items (id integer PRIMARY KEY, event_code uuid NOT NULL, "
                     f"embedding vector({dim}) NOT NULL)")
        step = 10_000
        with conn.cursor().copy("COPY items (id, event_code, embedding) FROM STDIN (FORMAT binary)") as copy:
            copy.write(COPY_HEADER)
            for start in range(0, len(corpus.ids), step):
                copy.write(binary_rows(corpus.ids[start:start + step], events[start:start + step],
                                       corpus.vectors[start:start + step]))
            copy.write(COPY_TRAILER)
        conn.execute("CREATE INDEX items_event ON items (event_code)")
        conn.execute("VACUUM ANALYZE items")
        conn.execute("SELECT count(*) FROM items WHERE embedding IS NOT NULL")  # warm the buffers


def _text(vec: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vec.tolist()) + "]"


def truth(corpus: Corpus, q: np.ndarray, event: int | None, k: int = 10) -> set[int]:
    if event is None:
        scores, ids = corpus.vectors @ q, corpus.ids
    else:
        sel = corpus.event_of == event
        scores, ids = corpus.vectors[sel] @ q, corpus.ids[sel]
    return {int(i) for i in ids[np.argsort(-scores)[:k]]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048, choices=[2048, 1280])
    ap.add_argument("--per-event", type=int, default=2000)
    ap.add_argument("--event-queries", type=int, default=200)
    ap.add_argument("--global-queries", type=int, default=20)
    args = ap.parse_args(argv)

    from indexing.loaded import load_version
    from serving import search as engine
    from serving.database import Database
    from serving.deleted import DeletedImages
    from serving.served import ServedIndex

    print(f"corpus: {args.vectors} vectors, {args.dim}-d, {args.per_event} per event")
    corpus = build_corpus(args.vectors, args.dim, args.per_event)
    server = None
    try:
        t0 = time.perf_counter()
        server, pg_info = start_pgvector(corpus.workdir)
        load_pgvector(pg_info, corpus)
        print(f"  pgvector 0.6.2 on PostgreSQL 16 (pgserver) loaded ({time.perf_counter() - t0:.1f} s)")
        served = ServedIndex(load_version(corpus.settings, corpus.model_version))  # type: ignore[arg-type]
        rng = np.random.default_rng(5)
        rows = rng.integers(0, len(corpus.ids), size=args.event_queries)
        # Queries are near an image (a new photo of the scene), not the image itself.
        queries = corpus.vectors[rows] + 0.3 * rng.normal(size=(len(rows), corpus.vectors.shape[1])).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        cases = {"top-10 within an event": [(q, int(corpus.event_of[r])) for q, r in zip(queries, rows, strict=True)],
                 "top-10 global": [(q, None) for q in queries[: args.global_queries]]}
        results = {}
        db_holder: dict[str, Database] = {}
        with psycopg.connect(pg_info, autocommit=True) as conn:
            for label, items in cases.items():
                expected = [truth(corpus, q, ev) for q, ev in items]  # ground truth, outside every timing
                ours_idx, ours_route, ours_query, theirs, ours_hits, their_hits = [], [], [], [], [], []

                async def run(items=items, ours_idx=ours_idx, ours_route=ours_route,  # type: ignore[no-untyped-def]
                              ours_query=ours_query, ours_hits=ours_hits) -> None:
                    database = db_holder.setdefault("db", Database(corpus.conninfo))
                    await database.live_ids([int(corpus.ids[0])])  # connect outside the timings
                    per_search = DeletedImages(None, lambda: served, database)  # no listener: the old query
                    db = DeletedImages(corpus.conninfo, lambda: served, database)  # the set kept by NOTIFY
                    db.start()
                    assert db.wait_fresh(), "the deleted-image listener did not start"
                    for q, ev in items:
                        code = corpus.event_codes[ev] if ev is not None else None
                        t = time.perf_counter()
                        await engine.search(served, per_search, engine.query_vector(q.tolist(), served.dim, "b"),
                                            top_k=10, event_code=code)
                        ours_query.append(time.perf_counter() - t)
                    for q, ev in items:
                        code = corpus.event_codes[ev] if ev is not None else None
                        t = time.perf_counter()
                        served.search(q, 10, code)
                        ours_idx.append(time.perf_counter() - t)
                    for q, ev in items:
                        code = corpus.event_codes[ev] if ev is not None else None
                        t = time.perf_counter()
                        res = await engine.search(served, db, engine.query_vector(q.tolist(), served.dim, "b"),
                                                  top_k=10, event_code=code)
                        ours_route.append(time.perf_counter() - t)
                        ours_hits.append({h["id"] for h in res.hits})
                    db.stop()
                    await database.close()

                asyncio.run(run())
                db_holder.clear()
                for q, ev in items:
                    vec = _text(q)
                    t = time.perf_counter()
                    if ev is None:
                        got = conn.execute("SELECT id FROM items ORDER BY embedding <#> %s::vector LIMIT 10",
                                           (vec,)).fetchall()
                    else:
                        got = conn.execute("SELECT id FROM items WHERE event_code = %s "
                                           "ORDER BY embedding <#> %s::vector LIMIT 10",
                                           (corpus.event_codes[ev], vec)).fetchall()
                    theirs.append(time.perf_counter() - t)
                    their_hits.append({r[0] for r in got})
                recall_ours = np.mean([len(a & b) / 10 for a, b in zip(ours_hits, expected, strict=True)])
                recall_theirs = np.mean([len(a & b) / 10 for a, b in zip(their_hits, expected, strict=True)])
                results[label] = (percentiles(ours_idx)[0], percentiles(ours_query)[0], percentiles(ours_route)[0],
                                  percentiles(theirs)[0], float(recall_ours), float(recall_theirs))
        print(f"\n{'':<24} {'ours idx':>9} {'route+query':>12} {'ours route':>11} {'pgvector':>9}  {'ratio':>6}  "
              f"{'(was)':>6}  {'recall ours':>11} {'recall pgv':>10}")
        for label, (idx, query, route, pgv, r_ours, r_pgv) in results.items():
            print(f"{label:<24} {idx:9.3f} {query:12.3f} {route:11.3f} {pgv:9.2f}  {pgv / route:5.1f}x  "
                  f"{pgv / query:5.1f}x  {r_ours:11.3f} {r_pgv:10.3f}")
        print("p50 ms. ours route: deleted images from the set kept by NOTIFY (no query per search); route+query: "
              "the same route with one deleted-image query per search (before). ratio = pgvector / ours route, "
              "(was) = pgvector / route+query")
        print("goal: >= 10x faster at equal or better recall")
    finally:
        if server is not None:
            server.stop()
        corpus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
