"""Every figure of performance round 2 (issue 16) side by side with its peer or bound, in one run.

Drives the existing benchmarks as subprocesses (each keeps its own output, saved
beside the table) and reads their summary lines:
  bench/serve_latency.py  server RSS (100K x 2048 + model, after every event was searched),
                          req/s and latency over HTTP
  bench/pgvector_peer.py  top-10 within an event through the route and the index alone vs pgvector
  bench/index_search.py   global top-10 with the chosen ANN index vs exact search (recall@10)
  bench/index_build.py    merge of 1,000 into N vs the full rebuild
and prints them against the issue's goals and the original service's claims
(1-5 ms at 10K+ vectors, 100+ req/s, ~2 GB at 100K). The machine is shared: ratios
within one run are what count. Usage:
  .venv/bin/python bench/round2.py [--quick] [--only serve,pgvector,search,build] [--log-dir DIR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FULL = {"vectors": 100_000, "merge_into": 1_000_000, "seconds": 5}
QUICK = {"vectors": 20_000, "merge_into": 100_000, "seconds": 2}
NUM = r"([0-9][0-9,]*\.?[0-9]*)"


@dataclass
class Figure:
    name: str
    ours: str
    peer: str
    goal: str
    met: bool | None  # None: not measured (the script failed or printed no such line)


def _f(text: str) -> float:
    return float(text.replace(",", ""))


def run(script: str, args: list[str], log_dir: Path, reuse: bool = False) -> str:
    """Run a bench script, echo and save its output; with `reuse`, read the output a previous run saved."""
    log = log_dir / f"{Path(script).stem}.log"
    if reuse:
        return log.read_text() if log.is_file() else ""
    print(f"\n$ .venv/bin/python {script} {' '.join(args)}   (output: {log})", flush=True)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / script), *args], cwd=REPO, capture_output=True, text=True)
    out = proc.stdout + ("\n" + proc.stderr if proc.returncode else "")
    log.write_text(out)
    print(proc.stdout.rstrip())
    if proc.returncode:
        print(f"  ! exit code {proc.returncode}; last lines:\n" + "\n".join(proc.stderr.splitlines()[-8:]))
    print(f"  ({time.perf_counter() - t:.0f} s)", flush=True)
    return out


def serve_figures(out: str, n: int) -> list[Figure]:
    figs = []
    after = re.search(rf"after load\s+VmRSS\s+{NUM}", out)
    ready = re.search(rf"ready\s+VmRSS\s+{NUM}", out)
    if after:
        rss = _f(after.group(1))
        figs.append(Figure(f"server RSS, {n:,} x 2048 + model, after every event was searched",
                           f"{rss:,.0f} MB" + (f" ({_f(ready.group(1)):,.0f} MB when ready)" if ready else ""),
                           "original ~2,048 MB at 100K", "<= 1,000 MB", rss <= 1000))
    else:
        figs.append(Figure("server RSS", "n/a", "original ~2 GB at 100K", "<= 1,000 MB", None))
    by_id = re.search(rf"by id, within event\s+{NUM}\s+{NUM}\s+{NUM}", out)
    if by_id:
        p50, rps = _f(by_id.group(1)), _f(by_id.group(3))
        figs.append(Figure("req/s, search-by-id within an event, HTTP, 1 worker", f"{rps:,.0f} req/s",
                           "original claims 100+ req/s", f">= 100 req/s ({rps / 100:.1f}x)", rps >= 100))
        figs.append(Figure(f"latency over HTTP, by id within an event, {n:,} vectors", f"p50 {p50:.2f} ms",
                           "original claims 1-5 ms at 10K+", "<= 5 ms", p50 <= 5))
    glob = re.search(rf"/search vector, global\s+{NUM}\s+{NUM}\s+{NUM}", out)
    if glob:
        p50 = _f(glob.group(1))
        figs.append(Figure(f"latency over HTTP, /search global top-10, {n:,} vectors", f"p50 {p50:.2f} ms",
                           "original claims 1-5 ms at 10K+", "<= 5 ms", p50 <= 5))
    return figs


def pgvector_figures(out: str) -> list[Figure]:
    m = re.search(rf"SUMMARY top-10 within an event: route {NUM} ms, index {NUM} ms, pgvector {NUM} ms, "
                  rf"ratio {NUM}x \[{NUM}-{NUM}\] over {NUM} rounds, index alone {NUM}x, "
                  rf"recall ours {NUM} pgvector {NUM}", out)
    if not m:
        return [Figure("top-10 within an event, route vs pgvector", "n/a", "pgvector", ">= 10x", None)]
    route, idx, pgv, ratio, lo, hi, rounds, idx_ratio, r_ours, r_pgv = (_f(m.group(i)) for i in range(1, 11))
    return [Figure("top-10 within an event through the route vs pgvector (same vectors, interleaved)",
                   f"{route:.3f} ms (index alone {idx:.3f} ms), recall {r_ours:.3f}",
                   f"pgvector {pgv:.2f} ms, recall {r_pgv:.3f}",
                   f">= 10x -> {ratio:.1f}x, per round {lo:.1f}-{hi:.1f}x over {rounds:.0f} (index alone "
                   f"{idx_ratio:.0f}x)", ratio >= 10 and lo >= 10 and r_ours >= r_pgv)]


def search_figures(out: str, n: int) -> list[Figure]:
    ex = re.search(rf"exact\s+flat\s+build\s+{NUM} s\s+top-10 p50\s+{NUM} ms", out)
    ann = re.search(rf"ann\s+(\w+)\s+build\s+{NUM} s\s+top-10 p50\s+{NUM} ms\s+p99\s+{NUM} ms\s+"
                    rf"recall@10 {NUM}.*?\((.*)\)", out)
    if not (ex and ann):
        return [Figure("global top-10, ANN", "n/a", "exact search", "recall@10 >= 0.98 at p50 <= 2 ms", None)]
    exact_p50 = _f(ex.group(2))
    kind, p50, recall, params = ann.group(1), _f(ann.group(3)), _f(ann.group(5)), ann.group(6)
    return [Figure(f"global top-10 with {kind} ({params}), {n:,} real-jittered embeddings",
                   f"p50 {p50:.2f} ms at recall@10 {recall:.3f}",
                   f"exact p50 {exact_p50:.2f} ms ({exact_p50 / p50:.0f}x slower); original 1-5 ms at 10K+",
                   "recall@10 >= 0.98 at p50 <= 2 ms", recall >= 0.98 and p50 <= 2.0)]


def build_figures(out: str, n: int) -> list[Figure]:
    m = re.search(rf"^\s*{n}\s+{NUM}\s+{NUM}\s+{NUM}%", out, re.MULTILINE)
    if not m:
        return [Figure(f"merge 1,000 into {n:,} vs full rebuild", "n/a", "the rebuild", "<= 5%", None)]
    rebuild, merge = _f(m.group(1)), _f(m.group(2))
    return [Figure(f"merge 1,000 into {n:,} vs full rebuild", f"{merge:.1f} s", f"rebuild {rebuild:.1f} s",
                   f"<= 5% -> {100 * merge / rebuild:.1f}%", merge / rebuild <= 0.05)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"{QUICK['vectors']:,} vectors, merge into "
                                                        f"{QUICK['merge_into']:,} (minutes, not an hour)")
    ap.add_argument("--only", default="serve,pgvector,search,build", help="which benchmarks to run")
    ap.add_argument("--log-dir", type=Path, help="where each benchmark's full output is saved")
    ap.add_argument("--from-logs", action="store_true", help="print the table from the outputs saved in --log-dir")
    args = ap.parse_args(argv)
    size = QUICK if args.quick else FULL
    only = {s.strip() for s in args.only.split(",")}
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="imgsim-round2-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    n, big = size["vectors"], size["merge_into"]
    figures: list[Figure] = []
    if "serve" in only:
        out = run("bench/serve_latency.py", ["--vectors", str(n), "--dim", "2048", "--seconds",
                                             str(size["seconds"])], log_dir, args.from_logs)
        figures += serve_figures(out, n)
    if "pgvector" in only:
        figures += pgvector_figures(run("bench/pgvector_peer.py", ["--vectors", str(n), "--dim", "2048"], log_dir,
                                            args.from_logs))
    if "search" in only:
        figures += search_figures(run("bench/index_search.py", ["--sizes", str(n), "--ann", "hnsw"], log_dir,
                                          args.from_logs), n)
    if "build" in only:
        figures += build_figures(run("bench/index_build.py", ["--sizes", str(big), "--change", "1000"], log_dir,
                                         args.from_logs), big)

    width = max(len(f.name) for f in figures) if figures else 10
    print(f"\nround 2 ({'quick' if args.quick else 'full'} sizes; full outputs in {log_dir})")
    print(f"{'figure':<{width}}  {'ours':<44}  {'peer / bound (same run)':<52}  goal")
    for f in figures:
        mark = {True: "met", False: "MISSED", None: "not measured"}[f.met]
        print(f"{f.name:<{width}}  {f.ours:<44}  {f.peer:<52}  {f.goal}: {mark}")
    return 0 if all(f.met is not None for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
