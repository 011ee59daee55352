"""The search server under hostile uploads and a HUNG database (issue 13), each against its own healthy peer.

    .venv/bin/python bench/hostile.py [--vectors 20000] [--seconds 10] [--concurrency 8] [--uploads 10]
                                      [--side 10950] [--skip-memory] [--skip-hang]

Builds a corpus through the real pipeline (bench/serving_corpus.py), copies its
`events`/`images` rows into a PRIVATE PostgreSQL (core/localpg.py) and runs
`python -m serving` (uvicorn, 1 worker) on that database. Then:

- memory: `--uploads` clients at once POST /search/image with a near-limit
  16-bit PNG of `--side`² pixels (the issue's 228 KB probe), each retrying
  after Retry-After on 503 until answered. Resident memory is sampled every
  20 ms: peak vs the 2 GB bound, and after the burst vs the steady level
  before it.
- hung database: a closed-loop load of /search (event-filtered, so every
  request asks the database for deleted images) for `--seconds` healthy, then
  the same with the private server's postmaster and backends stopped by
  SIGSTOP (they accept connections and answer nothing). p99 ratio hung/healthy
  (goal <= 2), requests over 1 s (goal 0), 5xx (goal 0). Never the machine's
  shared PostgreSQL: other people use it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serve_latency import _post
from bench.serving_corpus import Corpus, build_corpus, rss_mb

GB = 1024.0  # MB


# --- a private database for the server, and hanging it --------------------------------------------------------
def private_copy(corpus: Corpus):  # type: ignore[no-untyped-def]
    """A private PostgreSQL holding the corpus's events and images (same ids): the one we may SIGSTOP."""
    from core.localpg import LocalPostgres
    from core.migrate import apply_migrations

    server = LocalPostgres(corpus.workdir / "hostile-pg").start()
    info = make_conninfo(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres")
    with psycopg.connect(info) as conn:
        apply_migrations(conn)
    with psycopg.connect(corpus.conninfo) as src, psycopg.connect(info) as dst:
        with src.cursor().copy("COPY events (code, name) TO STDOUT") as out, \
                dst.cursor().copy("COPY events (code, name) FROM STDIN") as into:
            for block in out:
                into.write(block)
        with src.cursor().copy("COPY images (id, code, event_code, filename, file_path) TO STDOUT") as out, \
                dst.cursor().copy("COPY images (id, code, event_code, filename, file_path) FROM STDIN") as into:
            for block in out:
                into.write(block)
        dst.execute("SELECT setval('images_id_seq', (SELECT max(id) FROM images))")
    return server


def postgres_pids(server) -> list[int]:  # type: ignore[no-untyped-def]
    postmaster = int((server.pgdata / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    pids.append(int(entry))
    return pids


def signal_all(server, sig: int) -> None:  # type: ignore[no-untyped-def]
    for pid in postgres_pids(server):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


# --- the server -------------------------------------------------------------------------------------------------
class Server:
    def __init__(self, corpus: Corpus, db_port: int, **env: str) -> None:
        from core.localpg import free_port

        self.port = free_port()
        full = {**os.environ, **corpus.env(), "API_PORT": str(self.port), "API_HOST": "127.0.0.1",
                "DB_HOST": "127.0.0.1", "DB_PORT": str(db_port), "DB_NAME": "postgres", "DB_USER": "postgres",
                "DB_PASS": "", **env}
        self.proc = subprocess.Popen([sys.executable, "-m", "serving", "--log-level", "error"],
                                     cwd=Path(__file__).resolve().parent.parent, env=full)
        import httpx

        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("server did not become ready")
            time.sleep(0.3)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> float:
        return rss_mb(self.proc.pid)["VmRSS"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


# --- memory under near-limit uploads ----------------------------------------------------------------------------
def near_limit_png(side: int) -> bytes:
    from PIL import Image

    pixels = np.zeros((side, side), dtype=np.uint16)
    pixels[: side // 2, : side // 3] = 40000
    pixels[side // 2:, side // 3:] = 9000
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def memory(corpus: Corpus, db_port: int, uploads: int, side: int) -> dict[str, float]:
    import httpx

    payload = near_limit_png(side)
    print(f"\nmemory: {uploads} concurrent uploads of a {side}² 16-bit PNG ({len(payload) / 1024:.0f} KB), "
          "clients retry after Retry-After on 503")
    srv = Server(corpus, db_port)
    try:
        small = io.BytesIO()
        from PIL import Image

        Image.new("RGB", (640, 480), (90, 120, 200)).save(small, "JPEG")
        for _ in range(3):  # the model loaded and a few requests served: the steady level
            httpx.post(f"{srv.url}/search/image", files={"file": ("s.jpg", small.getvalue())}, timeout=60)
        time.sleep(2)
        steady = srv.rss()
        peak = [steady]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError, KeyError):
                    peak.append(srv.rss())
                time.sleep(0.02)

        outcomes: list[tuple[int, int, float]] = []

        def client(_: int) -> None:
            refused = 0
            t0 = time.perf_counter()
            with httpx.Client(timeout=120) as c:
                while True:
                    r = c.post(f"{srv.url}/search/image", files={"file": ("big.png", payload, "image/png")})
                    if r.status_code != 503:
                        outcomes.append((r.status_code, refused, time.perf_counter() - t0))
                        return
                    refused += 1
                    time.sleep(float(r.headers.get("retry-after", "1")))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(uploads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        burst = time.perf_counter() - t0
        time.sleep(3)
        stop.set()
        sampler.join()
        after = srv.rss()
    finally:
        srv.stop()
    statuses = sorted({s for s, _, _ in outcomes})
    refusals = sum(r for _, r, _ in outcomes)
    top = max(peak)
    slowest = max(t for *_, t in outcomes)
    print(f"  answers: {[s for s, _, _ in outcomes].count(200)}/{uploads} 200 (statuses {statuses}), "
          f"{refusals} immediate 503s retried, burst {burst:.1f} s, slowest client {slowest:.1f} s")
    print(f"  resident: steady {steady:.0f} MB, peak {top:.0f} MB, 3 s after {after:.0f} MB")
    print(f"  goal: peak <= 2 GB -> {top / GB:.2f} GB ({top / (2 * GB):.2f}x the bound); "
          f"back to steady -> after/steady = {after / steady:.2f}x")
    return {"steady": steady, "peak": top, "after": after, "fivexx": sum(s >= 500 for s, _, _ in outcomes)}


# --- latency while the database hangs ---------------------------------------------------------------------------
async def _client(port: int, requests: list[bytes], deadline: float, lat: list[float], statuses: list[int],
                  skipped: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < deadline:
            req = requests[i % len(requests)]
            i += 1
            t0 = time.perf_counter()
            writer.write(req)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                low = line.lower()
                if low.startswith(b"content-length:"):
                    length = int(line[15:])
                elif low.startswith(b"x-deleted-filter:"):
                    skipped.append(1)
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            statuses.append(int(status.split()[1]) if len(status.split()) > 1 else 0)
    finally:
        writer.close()


def load(port: int, requests: list[bytes], seconds: float, concurrency: int) -> dict[str, float]:
    lat: list[float] = []
    statuses: list[int] = []
    skipped: list[int] = []

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_client(port, requests, start + seconds, lat, statuses, skipped)
                               for _ in range(concurrency)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    a = np.asarray(lat) * 1000
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max()),
            "rps": len(lat) / elapsed, "n": len(lat), "over_1s": int((a > 1000).sum()),
            "fivexx": sum(s >= 500 for s in statuses), "non200": sum(s != 200 for s in statuses),
            "skipped": len(skipped)}


def hung_database(corpus: Corpus, pg, seconds: float,  # type: ignore[no-untyped-def]
                  concurrency: int) -> dict[str, dict[str, float]]:
    print(f"\nhung database: closed-loop /search with an event filter, {concurrency} connections, {seconds:g} s each")
    srv = Server(corpus, pg.port)
    rng = np.random.default_rng(3)
    rows = rng.integers(0, len(corpus.ids), size=200)
    bodies = [_post("/search", json.dumps({"vector": corpus.vectors[r].tolist(), "top_k": 10, "filters": {
        "event_code": corpus.event_codes[corpus.event_of[r]]}}).encode()) for r in rows]
    out: dict[str, dict[str, float]] = {}
    try:
        load(srv.port, bodies, 2.0, concurrency)  # warm-up: pages faulted in, pool connections open
        out["healthy"] = load(srv.port, bodies, seconds, concurrency)
        signal_all(pg, signal.SIGSTOP)
        try:
            out["hung (SIGSTOP)"] = load(srv.port, bodies, seconds, concurrency)
            single = load(srv.port, bodies, 2.0, 1)  # a lone client meanwhile
        finally:
            signal_all(pg, signal.SIGCONT)
        out["hung, lone client"] = single
        time.sleep(2)  # the background probe closes the breaker
        out["resumed"] = load(srv.port, bodies, 3.0, concurrency)
    finally:
        srv.stop()
    print("                        p50 ms   p99 ms   max ms    req/s  requests  >1s  5xx  filter skipped")
    for k, r in out.items():
        print(f"  {k:<20} {r['p50']:8.2f} {r['p99']:8.2f} {r['max']:8.1f} {r['rps']:8.0f} {r['n']:9d} "
              f"{r['over_1s']:4d} {r['fivexx']:4d} {r['skipped']:9d}")
    h, s = out["healthy"], out["hung (SIGSTOP)"]
    print(f"  goal: hung p99 <= 2x healthy p99 -> {s['p99']:.2f} / {h['p99']:.2f} ms = {s['p99'] / h['p99']:.2f}x; "
          f"no request over 1 s -> {s['over_1s'] + out['hung, lone client']['over_1s']} "
          f"(max {max(s['max'], out['hung, lone client']['max']):.0f} ms); "
          f"5xx -> {sum(r['fivexx'] for r in out.values())}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=20_000)
    ap.add_argument("--per-event", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=10.0, help="per load phase of the hung-database run")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--uploads", type=int, default=10)
    ap.add_argument("--side", type=int, default=10_950, help="pixels per side of the 16-bit PNG (limit: 120 MP)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-hang", action="store_true")
    args = ap.parse_args(argv)

    print(f"corpus: {args.vectors} vectors, 1280-d (efficientnet-lite0), {args.per_event} per event")
    corpus = build_corpus(args.vectors, 1280, args.per_event)
    pg = private_copy(corpus)
    try:
        failures = 0
        if not args.skip_memory:
            m = memory(corpus, pg.port, args.uploads, args.side)
            failures += m["peak"] > 2 * GB or m["fivexx"] > 0
        if not args.skip_hang:
            h = hung_database(corpus, pg, args.seconds, args.concurrency)
            hung = h["hung (SIGSTOP)"]
            failures += hung["p99"] > 2 * h["healthy"]["p99"] or hung["over_1s"] > 0
            failures += sum(r["fivexx"] for r in h.values()) > 0
        return 1 if failures else 0
    finally:
        pg.stop()
        corpus.close()


if __name__ == "__main__":
    raise SystemExit(main())
