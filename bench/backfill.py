"""A large backfill through the DAGs (issue 28): photos/s end to end, each task's share, and whether both cores
were busy.

What: --photos generated photos (core.sample_data.generate_photos, two planted edited copies per event,
duplicates.edits) spread over --events events, registered as `images` rows in a fresh PostgreSQL database, their
files under a temporary IMAGE_ROOT, a temporary DATA_DIR; then the real DAGs, run as the tests run them
(`dag.test()`, tasks in this process, one after another, on a private Airflow home with SQLite metadata set up as
tests/conftest.py and tests/dags/conftest.py do it):
  image_embeddings  conf {"model": --model, "scope": "pending"} (a first run / backfill: every row lacks a
                    vector): plan -> embed (mapped, one task per part of images_per_part ids) -> emit, check
  image_index       conf {"mode": "rebuild"}: targets -> build (the FAISS index and every event's duplicate
                    relations) -> verify -> publish -> prune
then a search server (bench/event_relations.py's _Server) answers GET /events/{code}/duplicates for one event from
the published version (its planted copies grouped with their originals).

How it is measured:
  photos/s            N / (wall of the image_embeddings dag.test() + wall of the image_index dag.test()); the
                      ONNX export (done before the clock, in a subprocess, as `python -m embeddings export`) and
                      the server check are not in it
  per task            the task instances of the two dag runs (metadata DB): start/end of each, grouped by task id
                      (mapped ones summed: count, min/median/max); share = its wall / the DAG run's wall; the rest of
                      a run's wall is dag.test()'s own loop (scheduling, XCom, DAG sync)
  CPU / (wall x cores) this process's CPU (every thread, plus any child process: os.times()) sampled every 0.2 s,
                      over each DAG run and over each task's intervals; beside it the whole machine's busy cores
                      (/proc/stat), so another job on the shared cores shows
  pipeline figures    the embedding runner's own log line per part ("... in X s (Y images/s)", logger
                      embeddings.runner) and the index build's manifest (build_seconds, relations: seconds,
                      cpu_seconds, events, pairs, the slowest event)
  task sizes          images_per_part (the DAG param; the plan grows it when parts would exceed
                      core.max_map_length), the parts planned = mapped embed tasks, EMBED_BATCH_SIZE,
                      EMBED_DECODE_WORKERS, TORCH_THREADS (model threads), mapped index_model groups

  .venv/bin/python -m bench.backfill [--photos 10000] [--events 10] [--keep] [--model efficientnet-lite0]
      [--images-per-part N]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.provenance import code_state  # noqa: E402 (after the path is set)

PLANTED_EDITS = ("jpeg_q30", "text_bar")  # one copy each of an event's first two photos
CORES = os.cpu_count() or 1


_CONSOLE = sys.stderr  # progress lines; Airflow's own console output goes to a log file (quiet())


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=_CONSOLE, flush=True)


@contextlib.contextmanager
def quiet(path: Path):  # type: ignore[no-untyped-def]
    """Send file descriptors 1 and 2 (Airflow's and the tasks' log lines, the server's) to `path` meanwhile."""
    global _CONSOLE
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    _CONSOLE = os.fdopen(os.dup(2), "w")
    with open(path, "ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            _CONSOLE.close()
            _CONSOLE = sys.stderr


def airflow_environment(workdir: Path, model: str, model_cache: Path) -> None:
    """What tests/conftest.py's pytest_configure exports, in this bench's own folder (before Airflow is imported)."""
    airflow_home = workdir / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    (workdir / "images").mkdir(parents=True, exist_ok=True)
    from tests.helpers import airflow_environment

    os.environ.update(
        {
            **airflow_environment(airflow_home, REPO),
            "DATA_DIR": str(workdir / "data"),
            "IMAGE_ROOT": str(workdir / "images"),
            "MODEL_CACHE_DIR": str(model_cache),
            "EMBEDDING_MODEL": model,
        }
    )


# --- the photos and their rows ----------------------------------------------------------------------------------

def _event_photos(args: tuple[Path, int, int]) -> list[Path]:
    """One event's files: generated photos (seed per event), then the planted copies of its first ones."""
    from core.sample_data import generate_photos
    from duplicates.edits import EDITS, encode
    from embeddings.loading import load_image

    folder, count, seed = args
    planted = [e for e in PLANTED_EDITS if e in EDITS][: max(0, count // 2)]
    paths = generate_photos(folder, count - len(planted), seed=seed)
    for k, edit in enumerate(planted):
        copy = folder / f"copy_{k}_{edit}_of_{paths[k].name}"
        copy.write_bytes(encode(EDITS[edit](load_image(paths[k].read_bytes(), draft_side=None))))
        paths.append(copy)
    return paths


def make_event_photos(root: Path, photos: int, events: int) -> list[list[Path]]:
    """--photos files over --events events (sizes differ by at most one), made on every core (not timed)."""
    sizes = [photos // events + (1 if e < photos % events else 0) for e in range(events)]
    jobs = [(root / f"event_{e:03d}", n, 100 + e) for e, n in enumerate(sizes)]
    with ProcessPoolExecutor(max_workers=min(CORES, events)) as pool:
        return list(pool.map(_event_photos, jobs))


def register(conninfo: str, root: Path, files: list[list[Path]]) -> dict[str, Any]:
    """One events row per event, one images row per file (file_path relative to IMAGE_ROOT)."""
    import psycopg

    codes: list[str] = []
    planted: dict[str, list[tuple[int, int]]] = {}  # event code -> (original id, copy id)
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.cursor() as cur:
        for e, paths in enumerate(files):
            code = str(uuid.uuid4())
            cur.execute("INSERT INTO events (code, name) VALUES (%s, %s)", (code, f"backfill bench event {e}"))
            codes.append(code)
            ids: dict[str, int] = {}
            for p in paths:
                cur.execute("INSERT INTO images (code, event_code, filename, file_path, file_size, mime_type)"
                            " VALUES (%s, %s, %s, %s, %s, 'image/jpeg') RETURNING id",
                            (str(uuid.uuid4()), code, p.name, str(p.relative_to(root)), p.stat().st_size))
                ids[p.name] = int(cur.fetchone()[0])  # type: ignore[index]
            planted[code] = [(ids[name.split("_of_", 1)[1]], i) for name, i in ids.items() if name.startswith("copy_")]
    return {"codes": codes, "planted": planted}


# --- measuring ----------------------------------------------------------------------------------------------------

def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every CPU since boot (/proc/stat); (0, 0) where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


class CpuSampler:
    """This process's CPU seconds (threads and children) and the machine's busy jiffies, every `every` s."""

    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        self.rows: list[tuple[float, float, float, float]] = []  # (unix time, process CPU s, busy, total)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="bench-cpu-sampler")

    def _sample(self) -> None:
        t = os.times()
        busy, total = _machine_busy()
        self.rows.append((time.time(), t.user + t.system + t.children_user + t.children_system, busy, total))

    def _run(self) -> None:
        while not self.stop_event.is_set():
            self._sample()
            self.stop_event.wait(self.every)

    def start(self) -> CpuSampler:
        self._sample()
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(5)
        self._sample()

    def cpu(self, start: float, end: float) -> float:
        """Process CPU seconds between two unix times (interpolated between samples)."""
        a = np.array(self.rows)
        return float(np.interp(end, a[:, 0], a[:, 1]) - np.interp(start, a[:, 0], a[:, 1]))

    def machine_cores(self, start: float, end: float) -> float:
        """Busy cores of the whole machine (every process) on average between two unix times."""
        a = np.array(self.rows)
        busy = np.interp(end, a[:, 0], a[:, 2]) - np.interp(start, a[:, 0], a[:, 2])
        total = np.interp(end, a[:, 0], a[:, 3]) - np.interp(start, a[:, 0], a[:, 3])
        return float(CORES * busy / total) if total > 0 else float("nan")


class RunnerLog(logging.Handler):
    """The embedding runner's per-part log lines ("... batch N of run R: E embedded, F failed in S s (X images/s)")."""

    LINE = re.compile(r"batch (\d+) of run (\S+): (\d+) embedded, (\d+) failed.* in ([\d.]+) s \(([\d.]+) images/s\)")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.parts: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = self.LINE.search(record.getMessage())
        if found:
            self.parts.append({"batch": int(found[1]), "embedded": int(found[3]), "failed": int(found[4]),
                               "seconds": float(found[5]), "rate": float(found[6])})


def export_model(model: str) -> float:
    """The model's ONNX file into MODEL_CACHE_DIR (and DATA_DIR/models), before the clock; returns its wall s."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "embeddings", "--model", model, "export"], cwd=REPO,
                          env=os.environ.copy(), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"python -m embeddings export failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - started


def migrate_airflow() -> float:
    """`airflow db migrate` on the bench's SQLite metadata DB (as tests/dags/conftest.py's airflow_env)."""
    started = time.perf_counter()
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(airflow), "db", "migrate"], env=os.environ.copy(), capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - started


def timed_run(dag: Any, conf: dict[str, Any], sampler: CpuSampler) -> dict[str, Any]:
    """One dag.test() (tests/dags/conftest.py's run_dag: every param spelled out, the run must succeed), its wall,
    its CPU and its task instances (from the metadata DB) with the CPU of each one's interval."""
    from tests.dags.conftest import run_dag

    log(f"{dag.dag_id}: dag.test() with conf {conf}")
    start_unix, wall = time.time(), time.perf_counter()
    dr = run_dag(dag, conf)
    wall = time.perf_counter() - wall
    end_unix = time.time()
    tis = []
    for ti in dr.get_task_instances():
        if ti.start_date is None or ti.end_date is None:
            continue
        s, e = ti.start_date.timestamp(), ti.end_date.timestamp()
        tis.append({"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state), "seconds": e - s,
                    "cpu": sampler.cpu(s, e), "machine_s": sampler.machine_cores(s, e) * (e - s), "start": s})
    log(f"{dag.dag_id}: {dr.state} in {wall:.1f} s")
    return {"dag_id": dag.dag_id, "run_id": dr.run_id, "wall": wall, "cpu": sampler.cpu(start_unix, end_unix),
            "machine": sampler.machine_cores(start_unix, end_unix), "tis": tis}


# --- the report ---------------------------------------------------------------------------------------------------

def task_table(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Task instances grouped by task id (mapped ones summed), in the order they first started."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ti in sorted(run["tis"], key=lambda t: t["start"]):
        groups[ti["task_id"]].append(ti)
    rows = []
    for task_id, tis in groups.items():
        secs = [t["seconds"] for t in tis]
        total = sum(secs)
        cpu, machine = sum(t["cpu"] for t in tis), sum(t["machine_s"] for t in tis)
        rows.append({"task_id": task_id, "count": len(tis), "seconds": total, "share": total / run["wall"],
                     "util": cpu / max(total * CORES, 1e-9), "ours": cpu / max(total, 1e-9),
                     "others": max(0.0, machine - cpu) / max(total, 1e-9),
                     "min": min(secs), "median": statistics.median(secs), "max": max(secs)})
    return rows


def print_run(run: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    wall = run["wall"]
    others = max(0.0, run["machine"] - run["cpu"] / wall)
    print(f"\n{run['dag_id']}: {wall:.1f} s wall, this process's CPU {run['cpu']:.1f} s = CPU / (wall x cores) "
          f"{run['cpu'] / (wall * CORES):.2f}; other processes meanwhile: {others:.2f} of {CORES} cores")
    print(f"  {'task':<26}{'tasks':>6}{'wall s':>9}{'share':>7}{'CPU/(wall x cores)':>20}{'others, cores':>15}"
          f"{'min / median / max s':>24}")
    for r in rows:
        spread = f"{r['min']:.2f} / {r['median']:.2f} / {r['max']:.2f}" if r["count"] > 1 else ""
        print(f"  {r['task_id']:<26}{r['count']:>6}{r['seconds']:>9.1f}{100 * r['share']:>6.0f}%{r['util']:>20.2f}"
              f"{r['others']:>15.2f}{spread:>24}")
    rest = wall - sum(r["seconds"] for r in rows)
    print(f"  {'(dag.test loop, no task)':<26}{'':>6}{rest:>9.1f}{100 * rest / wall:>6.0f}%")


def core_notes(runs: list[tuple[dict[str, Any], list[dict[str, Any]]]], parts: int, used: int, n: int,
               relations: dict[str, Any]) -> list[str]:
    """Where a core was idle, or busy with another process rather than with the pipeline."""
    notes = []
    if parts == 1 and CORES > 1:
        notes.append(f"one mapped embed task embeds all {n} photos (images_per_part {used} >= {n}): under an "
                     f"executor with {CORES} slots the other slot has nothing to do; only the model's and the "
                     "decoders' threads can use the second core")
    for run, rows in runs:
        for r in rows:
            if r["share"] < 0.1 or r["ours"] >= 0.75 * CORES:
                continue
            name = f"{run['dag_id']}.{r['task_id']} ({100 * r['share']:.0f}% of its run)"
            idle = CORES - r["ours"] - r["others"]
            if idle < 0.3:
                notes.append(f"{name}: this process {r['ours']:.2f} cores, other processes {r['others']:.2f}: the "
                             f"cores were shared, not idle (alone it might use more)")
            else:
                notes.append(f"{name}: this process {r['ours']:.2f} cores, other processes {r['others']:.2f}: about "
                             f"{idle:.1f} core(s) idle")
    if relations.get("seconds"):
        cores = relations["cpu_seconds"] / relations["seconds"]
        if cores <= 1.05 and CORES > 1:
            notes.append(f"the relations (index build) ran at {cores:.2f} cores (CPU {relations['cpu_seconds']:.1f} s "
                         f"over {relations['seconds']:.1f} s wall): the events are verified one after another on "
                         f"one thread, so {CORES - 1} of the {CORES} cores get no relations work (and nothing else "
                         "runs beside the build under one executor slot)")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10_000, help="photos in the backfill (default 10000)")
    parser.add_argument("--events", type=int, default=10, help="events they are spread over (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (and the database) afterwards")
    parser.add_argument("--model", default="efficientnet-lite0",
                        help="EMBEDDING_MODEL and the runs' model (default efficientnet-lite0, as the DAG tests)")
    parser.add_argument("--images-per-part", type=int, default=None,
                        help="the image_embeddings param images_per_part (default: the DAG's own default)")
    parser.add_argument("--model-cache", type=Path, default=None,
                        help="MODEL_CACHE_DIR for the ONNX export (default: a fresh one in the temp folder)")
    args = parser.parse_args(argv)
    if args.events < 1 or args.photos < 2 * args.events:
        parser.error("--photos must be at least 2 per event")

    workdir = Path(tempfile.mkdtemp(prefix="imgsim-bench-backfill-"))
    airflow_environment(workdir, args.model, (args.model_cache or workdir / "model-cache").resolve())

    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from bench.event_relations import _Server
    from bench.serving_corpus import admin_conninfo
    from core.db import airflow_connection_json
    from core.migrate import apply_migrations
    from core.settings import get_settings

    code = code_state()  # the tree is shared: the commit measured
    admin, private_pg = admin_conninfo(workdir)
    dbname = f"imgsim_bench_backfill_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    info = make_conninfo(admin, dbname=dbname)
    server = None
    sampler = None
    console = workdir / "airflow-console.log"
    try:
        with psycopg.connect(info) as conn:
            apply_migrations(conn)
        p = conninfo_to_dict(info)
        os.environ.update(DB_HOST=str(p["host"]), DB_PORT=str(p.get("port") or 5432), DB_NAME=dbname,
                          DB_USER=str(p.get("user", "postgres")), AIRFLOW_CONN_IMAGE_DB=airflow_connection_json(info))
        get_settings.cache_clear()
        settings = get_settings()
        root = Path(settings.image_root)

        started = time.perf_counter()
        files = make_event_photos(root, args.photos, args.events)
        rows = register(info, root, files)
        n = sum(map(len, files))
        planted = sum(map(len, rows["planted"].values()))
        made_s = time.perf_counter() - started
        log(f"{n} photos in {args.events} events ({planted} planted copies) made and registered in {made_s:.0f} s")
        export_s = export_model(args.model)
        log(f"ONNX export of {args.model}: {export_s:.0f} s")
        migrate_s = migrate_airflow()
        log(f"airflow db migrate: {migrate_s:.0f} s; Airflow's console output: {console}")

        with quiet(console):
            dags_dir = REPO / "dags"
            if str(dags_dir) not in sys.path:  # the DAG files import image_pipeline from their folder
                sys.path.insert(0, str(dags_dir))
            from airflow.dag_processing.dagbag import BundleDagBag
            from airflow.sdk import conf as airflow_conf

            from embeddings.models import parse_name
            from embeddings.planning import DEFAULT_IMAGES_PER_PART
            from indexing.store.layout import IndexStore

            bag = BundleDagBag(dag_folder=dags_dir, bundle_path=dags_dir, bundle_name="dags-folder")
            if bag.import_errors:
                raise SystemExit(f"DAG import errors: {bag.import_errors}")
            embed_dag, index_dag = bag.get_dag("image_embeddings"), bag.get_dag("image_index")
            mv = parse_name(args.model).model_version
            embed_conf: dict[str, Any] = {"model": args.model, "scope": "pending"}
            if args.images_per_part is not None:
                embed_conf["images_per_part"] = args.images_per_part
            ipp = args.images_per_part or int(embed_dag.params.get_param("images_per_part").value)
            max_map = airflow_conf.getint("core", "max_map_length")

            runner_log = RunnerLog()
            runner_logger = logging.getLogger("embeddings.runner")
            runner_logger.addHandler(runner_log)
            runner_logger.setLevel(logging.INFO)
            load0 = os.getloadavg()
            sampler = CpuSampler().start()
            emb = timed_run(embed_dag, embed_conf, sampler)
            idx = timed_run(index_dag, {"mode": "rebuild", "model": args.model}, sampler)
            sampler.stop()
            load1 = os.getloadavg()
            runner_logger.removeHandler(runner_log)

            store = IndexStore(get_settings(), mv)
            version = store.current_version()
            manifest = store.read_manifest(int(version)) if version is not None else None
            with psycopg.connect(info) as conn:
                status = dict(conn.execute("SELECT status, count(*) FROM image_embeddings WHERE model_version = %s "
                                           "GROUP BY status", (mv,)).fetchall())

            code0 = rows["codes"][0]
            log(f"server: GET /events/{code0}/duplicates")
            server = _Server(get_settings())
            body, get_wall, _ = server.timed_get(f"/events/{code0}/duplicates")
            server.stop()
            server = None
        groups = [{int(im["id"]) for im in g["images"]} for g in body.get("groups", [])]
        found = sum(any({a, b} <= g for g in groups) for a, b in rows["planted"][code0])

        # --- report ---
        total = emb["wall"] + idx["wall"]
        emb_rows, idx_rows = task_table(emb), task_table(idx)
        parts = next((r["count"] for r in emb_rows if r["task_id"] == "embed"), 0)
        targets = next((r["count"] for r in idx_rows if r["task_id"] == "index_model.build"), 0)
        used = max(ipp, -(-n // max_map)) if n else ipp
        rel = (manifest.relations if manifest is not None else None) or {}
        print(f"\nbackfill of {n} photos ({args.events} events, {planted} of them planted edited copies), model {mv}, "
              f"through dag.test(); {CORES} cores, load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the "
              f"end; code: {code}")
        print(f"photos/s end to end: {n / total:.1f} = {n} / ({emb['wall']:.1f} s image_embeddings + "
              f"{idx['wall']:.1f} s image_index)")
        print(f"  not in it: making and registering the photos {made_s:.0f} s, the ONNX export {export_s:.0f} s, "
              f"airflow db migrate {migrate_s:.0f} s")
        print(f"ledger: {status}; published v{version} ({manifest.count if manifest else '?'} vectors, "
              f"{manifest.index_type if manifest else '?'})")

        origin = "--images-per-part" if args.images_per_part else "the DAG param's default"
        print(f"\ntask sizes: images_per_part {ipp} ({origin}; embeddings.planning.DEFAULT_IMAGES_PER_PART "
              f"{DEFAULT_IMAGES_PER_PART}), core.max_map_length {max_map} -> parts of up to {used} images -> {parts} "
              f"mapped embed tasks")
        print(f"  inside each: EMBED_BATCH_SIZE {settings.embed_batch_size} (forward batch), EMBED_DECODE_WORKERS "
              f"{settings.embed_decode_workers} decode threads, TORCH_THREADS {settings.torch_threads} model threads "
              f"(0 = every core: {CORES})")
        print(f"  image_index: index_model mapped over {targets} target(s) (one per model version): one build task "
              f"makes the index and verifies all {args.events} events' relations")
        print("  dag.test() runs the tasks in this process one after another: mapped embed tasks never overlap here "
              f"(an executor with {CORES} slots could run {CORES} at once)")

        print_run(emb, emb_rows)
        print("  (plan, the process's first task, includes the in-process task runner's one-off start-up)")
        print_run(idx, idx_rows)

        print("\nthe pipeline's own figures")
        if runner_log.parts:
            rates = [q["rate"] for q in runner_log.parts]
            done = sum(q["embedded"] + q["failed"] for q in runner_log.parts)
            secs = sum(q["seconds"] for q in runner_log.parts)
            print(f"  embedding runner (its log line per part): {len(rates)} parts, {done} images in {secs:.1f} s = "
                  f"{done / secs:.1f} images/s; per part min / median / max {min(rates):.1f} / "
                  f"{statistics.median(rates):.1f} / {max(rates):.1f} images/s")
            embed_cpu = sum(t["cpu"] for t in emb["tis"] if t["task_id"] == "embed")
            print(f"  embed tasks' CPU: {1000 * embed_cpu / n:.1f} ms per photo")
        else:
            print("  embedding runner: no log line captured (logger embeddings.runner)")
        if manifest is not None:
            slowest = rel.get("slowest") or {}
            rel_ms = 1000 * (rel.get("cpu_seconds") or 0) / max(rel.get("images") or 1, 1)
            print(f"  index build (manifest of v{version}): build_seconds {manifest.build_seconds}; of it the "
                  f"relations {rel.get('seconds')} s wall, {rel.get('cpu_seconds')} s CPU, step "
                  f"{rel.get('step_seconds')} s: {rel.get('computed')} events, {rel.get('images')} images, "
                  f"{rel.get('pairs')} pairs; slowest event {slowest.get('images')} images in "
                  f"{slowest.get('seconds')} s; {rel_ms:.1f} ms of relations CPU per photo")
        print(f"\nserver: GET /events/{code0}/duplicates in {get_wall:.3f} s from index version "
              f"{body.get('index_version')} (published: v{version}): {len(groups)} copy groups, "
              f"{body.get('images_checked')} images checked; the event's planted copies grouped with their original: "
              f"{found}/{len(rows['planted'][code0])}")

        notes = core_notes([(emb, emb_rows), (idx, idx_rows)], parts, used, n, rel)
        print("\ncores: " + ("both busy with the pipeline wherever a task took over 10% of its run" if not notes
                             else "\n  " + "\n  ".join(notes)))
        if args.keep:
            print(f"\nkept: {workdir} (database {dbname})")
        sys.stdout.flush()
        ok = body.get("index_version") == version and status.get("embedded") == n and found == len(
            rows["planted"][code0])
        return 0 if ok else 1
    except BaseException:
        if console.exists():
            tail = console.read_text(errors="replace")[-4000:]
            print(f"--- the end of Airflow's console output ({console}) ---\n{tail}", file=sys.stderr)
        raise
    finally:
        if sampler is not None and not sampler.stop_event.is_set():
            sampler.stop()
        if server is not None:
            server.stop()
        if not args.keep or private_pg is not None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if private_pg is not None:
            private_pg.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
