"""Search server latency and throughput, in-process and over HTTP, against the goals of issue 6.

    .venv/bin/python bench/serve_latency.py [--vectors 100000] [--dim 2048] [--per-event 2000]
                                            [--seconds 5] [--concurrency 8]

Builds a synthetic corpus through the real pipeline (bench/serving_corpus.py),
then measures, on the same vectors:
- in-process: the route code paths called directly (the deleted-image query
  to PostgreSQL included, and without it for the index alone);
- over HTTP: `python -m serving` (uvicorn) in a subprocess, driven by a small
  asyncio HTTP/1.1 keep-alive load generator on loopback;
- RSS of the server with the index and the model loaded, before and after load.
Printed next to each goal: event-filtered p50 <= 1 ms in-process, >= 1,000 req/s
for search-by-id within an event over HTTP, RSS <= 1,000 MB at 100K 2048-d.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_corpus import Corpus, build_corpus, percentiles, rss_mb


# --- in-process -----------------------------------------------------------------------------------
async def _timed(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await fn(i)
        out.append(time.perf_counter() - t0)
    return out


def _photo_bytes() -> bytes:
    from PIL import Image

    from core.sample_data import sample_photos

    try:
        path = sample_photos(1)[0]
        return path.read_bytes()
    except ValueError:
        buf = io.BytesIO()
        Image.effect_mandelbrot((500, 375), (-2, -1.2, 1, 1.2), 64).convert("RGB").save(buf, "JPEG")
        return buf.getvalue()


def in_process(corpus: Corpus, n: int) -> dict[str, tuple[float, float]]:
    from indexing.search.loaded import load_version
    from serving import search as engine
    from serving.database import Database
    from serving.deleted import DeletedImages
    from serving.served import ServedIndex
    from serving.state import ServerState
    from serving.uploads import _embed

    served = ServedIndex(load_version(corpus.settings, corpus.model_version))  # type: ignore[arg-type]
    rng = np.random.default_rng(1)
    picks = rng.integers(0, len(corpus.ids), size=n)
    results: dict[str, tuple[float, float]] = {}

    async def run() -> None:
        database = Database(corpus.conninfo)
        per_search = DeletedImages(None, lambda: served, database)  # no listener: a query per search (before)
        db = DeletedImages(corpus.conninfo, lambda: served, database)  # the set kept by NOTIFY (now)
        db.start()
        assert db.wait_fresh(), "the deleted-image listener did not start"
        for row in picks:  # fault in the pages the samples touch, so no scenario pays for the first reads
            served.search(corpus.vectors[int(row)], 10, corpus.event_codes[corpus.event_of[int(row)]])
        for label, use_db in (("by id, within event (+ DB query)", per_search),
                              ("by id, within event (+ NOTIFY set)", db), ("by id, within event (index only)", None)):
            async def by_id(i: int, use_db=use_db) -> None:  # type: ignore[no-untyped-def]
                row = int(picks[i])
                image_id = int(corpus.ids[row])
                vec = served.vector(image_id)
                await engine.search(served, use_db, vec, top_k=10, event_code=corpus.event_codes[corpus.event_of[row]],
                                    exclude=[image_id], check_too=[image_id])
            await _timed(by_id, 50)  # warm-up
            results[label] = percentiles(await _timed(by_id, n))

        async def vec_event(i: int) -> None:
            row = int(picks[i])
            q = engine.query_vector(corpus.vectors[row].tolist(), served.dim, "bench")
            await engine.search(served, db, q, top_k=10, event_code=corpus.event_codes[corpus.event_of[row]])
        results["/search vector, event filter"] = percentiles(await _timed(vec_event, n))

        async def vec_global(i: int) -> None:
            q = engine.query_vector(corpus.vectors[int(picks[i])].tolist(), served.dim, "bench")
            await engine.search(served, db, q, top_k=10)
        results["/search vector, global"] = percentiles(await _timed(vec_global, max(20, n // 50)))

        state = ServerState(corpus.settings)  # type: ignore[arg-type]
        photo = _photo_bytes()
        _embed(state, photo, True)  # warm the model

        async def by_image(i: int) -> None:
            q = _embed(state, photo, True)
            await engine.search(served, db, q, top_k=10, event_code=corpus.event_codes[0])
        results["search by image (4 rotations), event"] = percentiles(await _timed(by_image, 10))
        db.stop()
        await database.close()

    asyncio.run(run())
    return results


# --- over HTTP ------------------------------------------------------------------------------------
async def _client(port: int, requests: list[bytes], deadline: float, lat: list[float], errors: list[int]) -> None:
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
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            if not status.startswith(b"HTTP/1.1 200"):
                errors.append(int(status.split()[1]) if len(status.split()) > 1 else 0)
    finally:
        writer.close()


def load(port: int, requests: list[bytes], seconds: float, concurrency: int) -> dict[str, float]:
    lat: list[float] = []
    errors: list[int] = []

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_client(port, requests, start + seconds, lat, errors) for _ in range(concurrency)))
        return time.perf_counter() - start

    try:
        import uvloop

        elapsed = uvloop.run(main())
    except ImportError:
        elapsed = asyncio.run(main())
    p50, p99 = percentiles(lat)
    return {"p50": p50, "p99": p99, "rps": len(lat) / elapsed, "n": len(lat), "errors": len(errors)}


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


def _post(path: str, body: bytes, ctype: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)


def _multipart(photo: bytes, fields: dict[str, str]) -> tuple[bytes, str]:
    b = "benchboundary7MA4YWxkTrZu0gW"
    parts = [f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
                 f"Content-Type: image/jpeg\r\n\r\n".encode() + photo + b"\r\n")
    return b"".join(parts) + f"--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def over_http(corpus: Corpus, seconds: float, concurrency: int,
              workers: int = 1) -> tuple[dict[str, dict[str, float]], dict]:
    from core.localpg import free_port

    port = free_port()
    env = {**os.environ, **corpus.env(), "API_PORT": str(port), "API_HOST": "127.0.0.1"}
    if workers > 1:
        env["TORCH_THREADS"] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "serving", "--log-level", "warning", "--workers", str(workers)],
                            cwd=Path(__file__).resolve().parent.parent, env=env)
    import httpx

    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not become ready")
            time.sleep(0.5)
        mem = {"ready": rss_mb(proc.pid)}
        rng = np.random.default_rng(2)
        rows = rng.integers(0, len(corpus.ids), size=2000)
        by_id = [_get(f"/images/{corpus.ids[r]}/similar?top_k=10&event_code={corpus.event_codes[corpus.event_of[r]]}")
                 for r in rows]
        bodies_event = [_post("/search", json.dumps({
            "vector": corpus.vectors[r].tolist(), "top_k": 10,
            "filters": {"event_code": corpus.event_codes[corpus.event_of[r]]}}).encode()) for r in rows[:100]]
        bodies_global = [_post("/search", json.dumps({"vector": corpus.vectors[r].tolist(), "top_k": 10}).encode())
                         for r in rows[:20]]
        body, ctype = _multipart(_photo_bytes(), {"top_k": "10", "event_code": corpus.event_codes[0]})
        by_image = [_post("/search/image", body, ctype)]
        out = {}
        load(port, by_id, 2.0, concurrency)  # warm-up (every worker loaded, pages faulted in)
        out["by id, within event"] = load(port, by_id, seconds, concurrency)
        if workers > 1:
            return out, {}
        out["/search vector, event filter"] = load(port, bodies_event, seconds, concurrency)
        out["/search vector, global"] = load(port, bodies_global, seconds, 2)
        out["search by image (4 rotations)"] = load(port, by_image, seconds, 2)
        mem["after load"] = rss_mb(proc.pid)
        return out, mem
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=2048, choices=[2048, 1280])
    ap.add_argument("--per-event", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=5.0, help="per HTTP scenario")
    ap.add_argument("--concurrency", type=int, default=8, help="keep-alive connections of the load generator")
    ap.add_argument("--samples", type=int, default=1000, help="in-process samples per scenario")
    ap.add_argument("--skip-http", action="store_true")
    ap.add_argument("--workers", type=int, default=1, help="also measure search-by-id with this many workers (> 1)")
    ap.add_argument("--keep", action="store_true", help="keep the database and files")
    args = ap.parse_args(argv)

    print(f"corpus: {args.vectors} vectors, {args.dim}-d, {args.per_event} per event")
    corpus = build_corpus(args.vectors, args.dim, args.per_event)
    try:
        inproc = in_process(corpus, args.samples)
        print("\nin-process (route code paths, one caller)      p50 ms    p99 ms")
        for k, (p50, p99) in inproc.items():
            print(f"  {k:<44} {p50:8.3f}  {p99:8.3f}")
        before = inproc["by id, within event (+ DB query)"][0]
        p50 = inproc["by id, within event (+ NOTIFY set)"][0]
        idx = inproc["by id, within event (index only)"][0]
        print(f"  goal: event-filtered p50 <= 1 ms -> {p50:.3f} ms with the NOTIFY set ({1 / p50:.1f}x under; "
              f"{before / p50:.1f}x faster than a query per search), {idx:.3f} ms index only ({1 / idx:.1f}x under)")
        if args.skip_http:
            return 0
        http, mem = over_http(corpus, args.seconds, args.concurrency)
        print(f"\nover HTTP (uvicorn, 1 worker; load generator on loopback, {args.concurrency} connections)")
        print("                                         p50 ms    p99 ms     req/s   requests  errors")
        for k, r in http.items():
            print(f"  {k:<36} {r['p50']:8.2f}  {r['p99']:8.2f}  {r['rps']:8.0f}  {r['n']:9d}  {r['errors']:6d}")
        rps = http["by id, within event"]["rps"]
        print(f"  goal: >= 1,000 req/s search-by-id within an event -> {rps:.0f} req/s ({rps / 1000:.2f}x the goal)")
        if args.workers > 1:
            multi, _ = over_http(corpus, args.seconds, args.concurrency, workers=args.workers)
            r = multi["by id, within event"]
            print(f"  with --workers {args.workers}: by id, within event {r['p50']:.2f} ms p50, {r['p99']:.2f} ms p99, "
                  f"{r['rps']:.0f} req/s, {r['errors']} errors ({r['rps'] / 1000:.2f}x the goal)")
        print(f"\nRSS of the server ({args.vectors} x {args.dim}-d, model loaded), MB:")
        for when, m in mem.items():
            print(f"  {when:<11} VmRSS {m['VmRSS']:6.0f} = RssAnon {m['RssAnon']:6.0f} + RssFile {m['RssFile']:6.0f}")
        final = mem["after load"]["VmRSS"]
        print(f"  goal: RSS <= 1,000 MB -> {final:.0f} MB ({final / 1000:.2f}x the bound); RssAnon holds the "
              "float16 copy of the vectors searched, RssFile the libraries (the float32 copy is read by pread)")
    finally:
        corpus.close(keep=args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
