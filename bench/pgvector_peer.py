"""Our search vs pgvector, the peer a user would pick instead (vectors in the same PostgreSQL).

    .venv/bin/python bench/pgvector_peer.py [--vectors 100000] [--dim 2048] [--per-event 2000]

The `pgserver` package ships PostgreSQL 16 with pgvector 0.6.2, which cannot
index more than 2,000 dimensions (no halfvec before 0.7): its user runs exact
search with a B-tree on event_code. We start that server privately (through
core.localpg with pgserver's binaries, so nothing is installed system-wide),
load the same vectors, and time top-10 within an event and over everything,
from a psycopg client, against our in-process route path on a version
published through the pipeline. The sides are interleaved query by query, in
rotating order, over several rounds (pgvector's own time swung 2x between
separate runs on the shared cores): the ratio is taken per round and its
median and range printed. Recall@10 of both is measured against numpy brute
force. Goal: ours >= 10x faster at equal or better recall.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_corpus import Corpus, build_corpus


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


SIDES = ("index", "route", "route+query", "pgvector")


@dataclass
class Case:
    label: str
    items: list[tuple[np.ndarray, int | None]]  # (query, event number or None for global)
    rounds: list[dict[str, list[float]]] = field(default_factory=list)  # per round: side -> seconds
    hits: dict[str, list[set[int]]] = field(default_factory=dict)  # side -> ids found, per item (last round)


def _median_ms(samples: list[float]) -> float:
    return float(np.median(samples)) * 1000


async def run_case(case: Case, served, db, per_search, conn, corpus: Corpus,  # type: ignore[no-untyped-def]
                   rounds: int, rng: np.random.Generator) -> None:
    """Every side answers every query once per round, interleaved: for each query in a shuffled order the
    sides run back to back in a rotating order, so load on the shared cores hits all sides alike. Our
    other two sides (index alone, route+query) answer other queries of the same round (other events),
    so the route never finds its event's vectors in the CPU cache from them."""
    from serving import search as engine

    n = len(case.items)
    texts = [_text(q) for q, _ in case.items]  # the client's side of each call, outside the timings
    lists = [q.tolist() for q, _ in case.items]
    codes = [corpus.event_codes[ev] if ev is not None else None for _, ev in case.items]
    found: dict[str, list[set[int]]] = {"route": [set()] * n, "pgvector": [set()] * n}

    async def ours(side: str, i: int) -> float:
        t = time.perf_counter()
        if side == "index":
            served.search(case.items[i][0], 10, codes[i])
        else:
            res = await engine.search(served, db if side == "route" else per_search,
                                      engine.query_vector(lists[i], served.dim, "b"), top_k=10, event_code=codes[i])
            if side == "route":
                found["route"][i] = {h["id"] for h in res.hits}
        return time.perf_counter() - t

    def theirs(i: int) -> float:
        t = time.perf_counter()
        if codes[i] is None:
            got = conn.execute("SELECT id FROM items ORDER BY embedding <#> %s::vector LIMIT 10",
                               (texts[i],)).fetchall()
        else:
            got = conn.execute("SELECT id FROM items WHERE event_code = %s "
                               "ORDER BY embedding <#> %s::vector LIMIT 10", (codes[i], texts[i])).fetchall()
        elapsed = time.perf_counter() - t
        found["pgvector"][i] = {r[0] for r in got}
        return elapsed

    async def one_round(step0: int) -> dict[str, list[float]]:
        times: dict[str, list[float]] = {side: [] for side in SIDES}
        order = rng.permutation(n)
        for step, i in enumerate(order.tolist()):
            query_of = {"pgvector": i, "route": i, "index": int(order[(step + n // 2) % n]),
                        "route+query": int(order[(step + n // 3) % n])}
            rot = (step0 + step) % len(SIDES)
            for side in SIDES[rot:] + SIDES[:rot]:
                if side == "pgvector":
                    times[side].append(theirs(i))
                else:
                    times[side].append(await ours(side, query_of[side]))
        return times

    for i in range(min(n, 20)):  # warm-up: pages, connections, plans
        theirs(i)
        await ours("route", i)
        await ours("route+query", i)
    for r in range(rounds):
        case.rounds.append(await one_round(r))
    case.hits = found


def memory_floor(served, corpus: Corpus, samples: int = 100) -> dict[str, float] | None:  # type: ignore[no-untyped-def]
    """What bounds the index within an event (p50 ms): reading one event's float16 rows after flushing the
    CPU caches (memory), the index's search of that event after the same flush (what the interleaved
    bench sees), and the same search again at once (its vectors in cache: the kernel's compute)."""
    loaded = served.loaded
    half = getattr(loaded._base, "half", None)
    if half is None:
        return None
    flush = np.ones(64 << 20, dtype=np.uint8)  # twice the L3 cache
    rng = np.random.default_rng(11)
    times: dict[str, list[float]] = {"read": [], "cold": [], "warm": []}
    size = 0.0
    for _ in range(samples):
        code = corpus.event_codes[int(rng.integers(0, len(corpus.event_codes)))]
        lo, hi = (int(x) for x in loaded._base_span[loaded._event_pos[code]])
        block = half.codes[lo:hi].view(np.uint64)
        size = block.nbytes / 2**20
        q = corpus.vectors[lo]
        flush[::64] += 1
        t = time.perf_counter()
        block.sum()
        times["read"].append(time.perf_counter() - t)
        flush[::64] += 1
        for label in ("cold", "warm"):
            t = time.perf_counter()
            served.search(q, 10, code)
            times[label].append(time.perf_counter() - t)
    return {**{k: _median_ms(v) for k, v in times.items()}, "mb": size}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048, choices=[2048, 1280])
    ap.add_argument("--per-event", type=int, default=2000)
    ap.add_argument("--event-queries", type=int, default=200)
    ap.add_argument("--global-queries", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds over every query (per case)")
    args = ap.parse_args(argv)

    from indexing.search.loaded import load_version
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
        cases = [Case("top-10 within an event", [(q, int(corpus.event_of[r])) for q, r in zip(queries, rows,
                                                                                                strict=True)]),
                 Case("top-10 global", [(q, None) for q in queries[: args.global_queries]])]

        async def run_all() -> None:
            database = Database(corpus.conninfo)
            await database.live_ids([int(corpus.ids[0])])  # connect outside the timings
            db = DeletedImages(corpus.conninfo, lambda: served, database)  # the set kept by NOTIFY (the route now)
            per_search = DeletedImages(None, lambda: served, database)  # no listener: a query per search (before)
            db.start()
            assert db.wait_fresh(), "the deleted-image listener did not start"
            with psycopg.connect(pg_info, autocommit=True) as conn:
                for case in cases:
                    await run_case(case, served, db, per_search, conn, corpus, args.rounds, rng)
            db.stop()
            await database.close()

        asyncio.run(run_all())
        print(f"\np50 ms over {args.rounds} interleaved rounds (every side answers every query once per round, in "
              "rotating order); [min-max of the per-round p50s]")
        print(f"{'':<24} {'index':>16} {'route':>16} {'route+query':>16} {'pgvector':>17}   "
              f"{'pgvector / route per round':<30} {'recall ours':>11} {'recall pgv':>10}")
        for case in cases:
            expected = [truth(corpus, q, ev) for q, ev in case.items]
            recall = {side: float(np.mean([len(a & b) / 10 for a, b in zip(case.hits[side], expected, strict=True)]))
                      for side in ("route", "pgvector")}
            per_round = {side: [_median_ms(r[side]) for r in case.rounds] for side in SIDES}
            pooled = {side: _median_ms([t for r in case.rounds for t in r[side]]) for side in SIDES}
            ratios = [p / o for p, o in zip(per_round["pgvector"], per_round["route"], strict=True)]
            cols = "  ".join(f"{pooled[s]:6.3f} [{min(per_round[s]):.2f}-{max(per_round[s]):.2f}]" for s in SIDES)
            print(f"{case.label:<24} {cols}   median {np.median(ratios):5.1f}x [{min(ratios):.1f}-{max(ratios):.1f}]"
                  f"{'':<9} {recall['route']:11.3f} {recall['pgvector']:10.3f}")
            print(f"SUMMARY {case.label}: route {pooled['route']:.3f} ms, index {pooled['index']:.3f} ms, "
                  f"pgvector {pooled['pgvector']:.3f} ms, ratio {np.median(ratios):.1f}x "
                  f"[{min(ratios):.1f}-{max(ratios):.1f}] over {args.rounds} rounds, index alone "
                  f"{pooled['pgvector'] / pooled['index']:.1f}x, recall ours {recall['route']:.3f} "
                  f"pgvector {recall['pgvector']:.3f}")
        floor = memory_floor(served, corpus)
        if floor:
            print(f"limit, p50 over 100 events: reading one event's float16 vectors ({floor['mb']:.1f} MB) after a "
                  f"cache flush {floor['read']:.3f} ms (memory); the index's search of it after the flush "
                  f"{floor['cold']:.3f} ms, at once again {floor['warm']:.3f} ms (vectors in cache: the kernel)")
        print("route: the search route's code path in-process, deleted images from the set kept by NOTIFY; "
              "route+query: the same with one deleted-image query per search (before); index: LoadedIndex alone; "
              "pgvector: psycopg to the private server (B-tree on event_code, exact scan)")
        print("goal: >= 10x faster at equal or better recall")
    finally:
        if server is not None:
            server.stop()
        corpus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
