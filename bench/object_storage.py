"""Object storage against local files, same run: embedding, publish-to-served, a replica's cold start.

Everything runs against a real S3 server (`rclone serve s3` over a temp folder, stack/objectstore.py,
rclone's directory cache as configured there) on 127.0.0.1 and private databases on the configured
PostgreSQL (a private server when none answers); all are removed at the end, Ctrl-C included:

1. embedding throughput: the same photos, the same model (EMBEDDING_MODEL efficientnet-lite0+plain,
   offline), one `embeddings.runner.embed_batch` each, with (a) IMAGE_ROOT and DATA_DIR local and
   (b) both on the S3 server (every photo read by one ranged GET, the part uploaded). Runs alternate
   a, b, a, b, ...; photos/s are medians; ratio b/a (goal >= 0.9). With --store-core (the default on
   2+ cores) the S3 server runs on a core of its own and the pipeline (model: 1 thread) on the others,
   in both runs: as if the store were another host, so the ratio is what object storage costs the
   pipeline, not the S3 server's CPU taken from the model; --no-store-core shares every core.
2. publish-to-served for two replicas: N synthetic unit vectors x 1280 (Parquet parts + ledger rows,
   `images` rows by generate_series), v1 built, published and served by two IndexHolders (each its
   own STORAGE_CACHE_DIR); then, --publishes times, --change new images, a merge, verify, publish
   (the last version has N vectors). The clock starts when publish() returns and stops when each
   holder serves the new version, both refreshing in a loop as the watcher does (every --poll s,
   SWAP_POLL_SECONDS by default, at a random phase). Also: the refresh that swapped (pull + verify +
   load, of it the load) and an idle poll (nothing new). Goal: <= 10 s from the build's end (the merge
   returned: verify + publish() + until served). Also the bytes the new version added to DATA_DIR (the
   store and its default BACKUP_DIR, each byte once), and with --phases where the merge's and publish()'s
   seconds go. Peer: the same with a local DATA_DIR, measured alternately (local first, then S3 first).
3. cold start: an empty cache -> serving (pull + verify + load) of the N-vector version, against
   the same holder on a local DATA_DIR (load only); alternating, medians; bytes downloaded.

Timings are ratios against the peer measured in the same run: the 2 cores are shared (the replicas,
the builder and the S3 server run on them together), so absolute seconds move with other load.
Usage:
  .venv/bin/python -m bench.object_storage [--vectors 100000] [--photos 294] [--rounds 2] [--poll 2]
      [--change 1000] [--publishes 2] [--skip-embedding] [--skip-publish] [--skip-cold] [--phases] [--keep]
      [--store-latency MS] [--read-ahead N]
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

EMBED_MODEL = "efficientnet-lite0+plain"
SYNTH_MODEL = "bench-objstore-synthetic@v1"  # the index's model version (synthetic vectors, not a model)
DIM = 1280
PART_ROWS = 50_000
PER_EVENT = 2_000
BUCKET = "bench"


def start_s3(root: Path, dir_cache_time: str | None):  # type: ignore[no-untyped-def]
    """The project's S3 server (`rclone serve s3` over `root`, stack/objectstore.py), as configured there
    (rclone's directory cache DIR_CACHE_SECONDS), or with `--dir-cache-time dir_cache_time`.

    With "0s" rclone re-reads the folder on every request: HEAD 0.3-0.8 s in a folder of 16 objects, a
    128 MB GET in 27 s instead of 1.2-1.6 s with "1s" or "5m" (measured on this machine); that measures
    rclone, not the pipeline.
    """
    import socket
    import subprocess

    from stack import objectstore

    server = objectstore.S3Server(root)
    if dir_cache_time is None:
        return server.start()
    root.mkdir(parents=True, exist_ok=True)
    env = server.env()
    with open(root.parent / f"rclone-{server.port}.log", "ab") as log:
        server.proc = subprocess.Popen(
            [objectstore.rclone_binary(), "serve", "s3", str(root), "--addr", f"127.0.0.1:{server.port}",
             "--auth-key", f"{env['AWS_ACCESS_KEY_ID']},{env['AWS_SECRET_ACCESS_KEY']}", "--config", os.devnull,
             "--log-level", "NOTICE", "--vfs-cache-mode", "off", "--dir-cache-time", dir_cache_time],
            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"rclone serve s3 exited with {server.proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("rclone serve s3 did not listen within 20 s")


def start_latency_proxy(server: Any, ms: float) -> str:
    """bench/latency_proxy.py in front of `server` (a child process, stopped with it); its endpoint."""
    import socket
    import subprocess

    from stack.objectstore import _free_port

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.latency_proxy", "--listen", str(port),
                             "--to", str(server.port), "--ms", str(ms)], cwd=Path(__file__).resolve().parent.parent)
    stop = server.stop

    def stop_both() -> None:
        proc.terminate()
        proc.wait(10)
        stop()

    server.stop = stop_both
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the latency proxy did not listen within 20 s")


# --- the run's resources: a work folder, the S3 server, databases; all removed by close() -------------

@dataclass
class Run:
    work: Path
    admin: str
    pg_server: Any
    s3: Any
    model_cache: Path
    poll: float
    databases: list[str] = field(default_factory=list)

    def database(self) -> str:
        """A fresh database with the migrations applied; dropped by close()."""
        from core.migrate import apply_migrations

        name = f"imgsim_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.databases.append(name)
        info = make_conninfo(self.admin, dbname=name)
        with psycopg.connect(info) as conn:
            apply_migrations(conn)
        return info

    model_threads: int = 0  # the model's threads (0: all cores); 1 when the S3 server has a core of its own
    endpoint: str | None = None  # the S3 endpoint the pipeline uses (a latency proxy in front of the server)
    read_ahead: int | None = None  # EMBED_READ_AHEAD (default: the setting's)

    def settings(self, kind: str, role: str, conninfo: str, *, data: str, images: str | None = None):  # type: ignore[no-untyped-def]
        """One host's settings: DATA_DIR (and IMAGE_ROOT) local folders or s3:// prefixes, its own cache."""
        from core.settings import load_settings

        db = conninfo_to_dict(conninfo)
        extra: dict[str, Any] = {}
        if kind == "s3":
            env = self.s3.env()
            extra = {"aws_endpoint_url": self.endpoint or env["AWS_ENDPOINT_URL"],
                     "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
                     "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
                     "aws_default_region": env["AWS_DEFAULT_REGION"]}
            data_dir = f"s3://{BUCKET}/{data}"
            image_root = f"s3://{BUCKET}/{images}" if images else None
        else:
            data_dir = str(self.work / "local" / data)
            image_root = str(self.work / "local" / images) if images else None
        return load_settings(
            db_host=db.get("host") or "127.0.0.1", db_port=int(db.get("port") or 5432), db_name=db["dbname"],
            db_user=db.get("user") or "postgres", db_pass=db.get("password") or "",
            data_dir=data_dir, image_root=image_root, storage_cache_dir=self.work / "caches" / f"{kind}-{role}",
            embedding_model=EMBED_MODEL, model_cache_dir=self.model_cache,
            model_weights=self.model_cache / "unused-places365.pth.tar",  # one embedder for both (its cache key)
            swap_poll_seconds=self.poll, torch_threads=self.model_threads, **extra,
            **({"embed_read_ahead": self.read_ahead} if self.read_ahead else {}))

    def close(self, keep: bool = False) -> None:
        from storage.filesystems import clear_cache

        clear_cache()
        if self.s3 is not None:
            self.s3.stop()
        for name in self.databases:
            try:
                with psycopg.connect(self.admin, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.Error as exc:
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)
        if self.pg_server is not None:
            self.pg_server.stop()
        if keep:
            print(f"kept {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _stored_bytes(path: Path) -> int:
    """Bytes a folder holds on disk, each file once however many hard links name it (a local store's shared
    base) -- for the S3 store, the S3 server's folder: what the bucket holds."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for p in path.rglob("*") if path.is_dir() else ():
        st = p.lstat()
        if p.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def _written() -> int:
    """Bytes this process has sent to storage (its page-cache writes: downloads, private copies), or 0."""
    try:
        with open("/proc/self/io") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("write_bytes:"))
    except (OSError, StopIteration, ValueError):
        return 0


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


# --- 1. embedding throughput ---------------------------------------------------------------------

def bench_embedding(run: Run, n_photos: int, rounds: int) -> dict[str, Any]:
    from core.sample_data import sample_photos
    from embeddings.runner import embed_batch
    from storage import objects
    from storage.images import ImageFiles

    photos = sample_photos(None, out_dir=run.work / "generated") or []
    if len(photos) < min(n_photos, 40):
        photos = sample_photos(n_photos, out_dir=run.work / "generated")
    source = "shared sample photos" if "generated_" not in photos[0].name else "generated photos"
    conninfo = run.database()
    local_s = run.settings("local", "embed", conninfo, data="embed-data", images="images")
    s3_s = run.settings("s3", "embed", conninfo, data="embed-data", images="images")
    image_dir = run.work / "local" / "images"
    rels = []
    for i in range(n_photos):  # more photos than the sample has: the same files again under new names
        rel = f"p/{i:05d}{photos[i % len(photos)].suffix.lower()}"
        (image_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photos[i % len(photos)], image_dir / rel)
        objects.put_file(s3_s, s3_s.image_location, rel, image_dir / rel)
        rels.append(rel)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        code = conn.execute("INSERT INTO events (name) VALUES ('bench') RETURNING code").fetchone()[0]  # type: ignore[index]
        with conn.cursor().copy("COPY images (event_code, filename, file_path) FROM STDIN") as copy:
            for rel in rels:
                copy.write_row((code, Path(rel).name, rel))
        ids = [r[0] for r in conn.execute("SELECT id FROM images ORDER BY id").fetchall()]
    total_bytes = sum((image_dir / r).stat().st_size for r in rels)
    settings = {"local": local_s, "s3": s3_s}

    def once(kind: str, tag: str, batch: list[int]) -> float:
        started = time.perf_counter()
        res = embed_batch(conninfo, batch, model_name=EMBED_MODEL, run_id=f"{kind}-{tag}", settings=settings[kind])
        elapsed = time.perf_counter() - started
        if res["failed"] or res["embedded"] != len(batch):
            raise RuntimeError(f"{kind}: {res['failed']} failed, e.g. {res['failures'][:3]}")
        return len(batch) / elapsed

    t0 = time.perf_counter()
    for kind in ("local", "s3"):  # warm-up: the ONNX export (first run only), the session, the S3 client
        once(kind, "warm", ids[: min(len(ids), 32)])
    warm = time.perf_counter() - t0
    rates: dict[str, list[float]] = {"local": [], "s3": []}
    for r in range(rounds):
        for kind in ("local", "s3"):
            rates[kind].append(once(kind, str(r), ids))
            print(f"  embed round {r + 1}/{rounds} {kind:5s}: {rates[kind][-1]:6.1f} photos/s", flush=True)
    # Where the S3 run's extra time goes: the reads alone (one thread: one GET per photo) and the
    # part's upload, against the local reads.
    reads: dict[str, float] = {}
    for kind in ("local", "s3"):
        files = ImageFiles(settings[kind])
        started = time.perf_counter()
        for rel in rels:
            files.read(rel)
        reads[kind] = (time.perf_counter() - started) / len(rels)
    part = next(p for p in (run.work / "local" / "embed-data").rglob("part-local-0-*.parquet"))
    started = time.perf_counter()
    objects.put_file(s3_s, s3_s.data_location, "probe/part.parquet", part)
    upload = time.perf_counter() - started
    return {"rates": rates, "n": len(ids), "source": source, "bytes": total_bytes, "warm": warm,
            "read_ms": {k: v * 1000 for k, v in reads.items()}, "upload_s": upload, "part_bytes": part.stat().st_size,
            "workers": local_s.embed_decode_workers, "batch": local_s.embed_batch_size}


# --- 2 and 3: a store with N vectors, two replicas, publish-to-served, cold start ----------------

class HolderLog(logging.Handler):
    """The holder's 'verified and loaded in X s' lines, by thread (the load part of a refresh)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.loads: dict[str, list[float]] = {}
        self._mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            print(f"  [{record.threadName}] {record.levelname}: {record.getMessage()[:300]}", file=sys.stderr)
            return
        if record.msg.startswith("serving index version") and record.args and len(record.args) >= 5:
            with self._mutex:
                self.loads.setdefault(record.threadName, []).append(float(record.args[4]))  # type: ignore[index]

    def take(self, thread: str) -> float | None:
        with self._mutex:
            got = self.loads.pop(thread, [])
        return got[-1] if got else None


@dataclass
class Scene:
    """One index store (local or on the S3 server): its database, builder and replicas."""

    kind: str
    conninfo: str
    builder: Any
    replicas: list[Any] = field(default_factory=list)  # IndexHolders
    version: int | None = None
    pending: list[tuple[int, str, str]] = field(default_factory=list)  # images not embedded yet
    timings: dict[str, float] = field(default_factory=dict)


def _register(conninfo: str, n: int) -> list[tuple[int, str, str]]:
    """n new images (generate_series) in events of PER_EVENT: (id, code, event_code), by id."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        n_events = max(1, -(-n // PER_EVENT))
        before = conn.execute("SELECT coalesce(max(id), 0) FROM images").fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO events (name) SELECT 'bench' FROM generate_series(1, %s)", (n_events,))
        conn.execute(
            """WITH ev AS (SELECT code, row_number() OVER (ORDER BY id DESC) - 1 AS k FROM events
                           ORDER BY id DESC LIMIT %(e)s)
               INSERT INTO images (event_code, filename, file_path, width, height)
               SELECT ev.code, 'b_' || g || '.jpg', '/uploads/b_' || g || '.jpg', 640, 480
               FROM generate_series(0, %(n)s - 1) g JOIN ev ON ev.k = g / %(per)s""",
            {"n": n, "e": n_events, "per": PER_EVENT})
        rows = conn.execute("SELECT id, code::text, event_code::text FROM images WHERE id > %s ORDER BY id",
                            (before,)).fetchall()
    return [(int(r[0]), r[1], r[2]) for r in rows]


def _embed_synthetic(scene: Scene, rows: list[tuple[int, str, str]], tag: str, seed: int) -> None:
    """Parquet parts of unit vectors for these images and their ledger rows, as an embed task writes them
    (for an object store: uploaded under DATA_DIR, the local copy kept in the builder's cache)."""
    from bench.index_data import uniform_unit
    from embeddings.dataset import dataset_dir
    from embeddings.writer import build_table, write_part
    from storage import objects

    s = scene.builder
    with psycopg.connect(scene.conninfo, autocommit=True) as conn:
        for b, start in enumerate(range(0, len(rows), PART_ROWS)):
            sub = rows[start:start + PART_ROWS]
            table = build_table(dim=DIM, model_version=SYNTH_MODEL, image_ids=[r[0] for r in sub],
                                image_codes=[r[1] for r in sub], event_codes=[r[2] for r in sub],
                                vectors=uniform_unit(len(sub), DIM, seed + b), widths=[640] * len(sub),
                                heights=[480] * len(sub))
            part = write_part(table, dataset_dir(s, SYNTH_MODEL), tag, b)
            rel = part.relative_to(s.resolved_data_dir).as_posix()
            if s.remote_data:
                objects.put_file(s, s.data_location, rel, part)
            conn.execute("""INSERT INTO image_embeddings (image_id, model_version, status, parquet_part)
                            SELECT id, %s, 'embedded', %s FROM images WHERE id BETWEEN %s AND %s""",
                         (SYNTH_MODEL, rel, sub[0][0], sub[-1][0]))


def setup_scene(run: Run, kind: str, n: int, change: int, log: HolderLog) -> Scene:
    from indexing import pipeline
    from serving.holder import IndexHolder

    t0 = time.perf_counter()
    conninfo = run.database()
    scene = Scene(kind, conninfo, run.settings(kind, "builder", conninfo, data=f"store-{kind}"))
    rows = _register(conninfo, n)
    first, scene.pending = rows[: n - change], rows[n - change:]
    _embed_synthetic(scene, first, "base", seed=1)
    t1 = time.perf_counter()
    built = pipeline.build(conninfo, scene.builder, SYNTH_MODEL, mode="rebuild")
    t2 = time.perf_counter()
    pipeline.verify(conninfo, scene.builder, SYNTH_MODEL, built["version"])
    t3 = time.perf_counter()
    pipeline.publish(conninfo, scene.builder, SYNTH_MODEL, built["version"])
    t4 = time.perf_counter()
    scene.version = built["version"]
    for i in (1, 2):
        holder = IndexHolder(run.settings(kind, f"replica{i}", conninfo, data=f"store-{kind}"),
                             lambda: SYNTH_MODEL)
        holder.refresh()
        if holder.current is None or holder.current.version != scene.version:
            raise RuntimeError(f"{kind} replica {i} does not serve v{scene.version}: {holder.reason}")
        scene.replicas.append(holder)
    log.loads.clear()
    scene.timings.update(setup=t1 - t0, rebuild=t2 - t1, verify1=t3 - t2, publish1=t4 - t3)
    print(f"  {kind:5s} store: {n - change:,} vectors written {t1 - t0:.1f} s, rebuild {t2 - t1:.1f} s, "
          f"verify {t3 - t2:.1f} s, publish {t4 - t3:.1f} s, two replicas serve v{scene.version} "
          f"({time.perf_counter() - t4:.1f} s)", flush=True)
    return scene


class Phases:
    """Where the builder's seconds go (merge's upload, publish): the store steps it calls, timed on the calling
    thread only (the replicas poll on their own threads meanwhile). Wraps them for the bench's run only."""

    STEPS = (("indexing.store.remote", "pull_version"), ("indexing.store.remote", "push_version"),
             ("indexing.pipeline", "copy_version"), ("indexing.pipeline", "_activate"),
             ("indexing.store.layout", "IndexStore.check_files"))

    def __init__(self) -> None:
        import importlib

        self.seconds: dict[str, float] = {}
        self.thread = threading.main_thread()
        for module_name, attr in self.STEPS:
            owner: Any = importlib.import_module(module_name)
            *path, name = attr.split(".")
            for part in path:
                owner = getattr(owner, part)
            setattr(owner, name, self._timed(name, getattr(owner, name)))

    def _timed(self, name: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not self.thread:
                return real(*args, **kwargs)
            started = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return wrapper

    def take(self) -> str:
        text = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1]))
        self.seconds.clear()
        return text or "-"


PHASES: Phases | None = None


def publish_to_served(run: Run, scene: Scene, change: int, log: HolderLog) -> dict[str, Any]:
    """Merge `change` new images into a new version, publish it while both replicas poll; the clock starts
    when publish() returns and stops when each replica serves the new version."""
    from indexing import pipeline
    from indexing.store.layout import IndexStore

    rows, scene.pending = scene.pending[:change], scene.pending[change:]
    if rows:
        _embed_synthetic(scene, rows, f"change{scene.version}", seed=1000 + (scene.version or 0))
    if PHASES is not None:
        PHASES.take()
    data_root = (run.work / "s3" / BUCKET if scene.kind == "s3" else run.work / "local") / f"store-{scene.kind}"
    stored_before = _stored_bytes(data_root)
    t0 = time.perf_counter()
    built = pipeline.build(scene.conninfo, scene.builder, SYNTH_MODEL, mode="merge")
    t1 = time.perf_counter()
    merge_phases = PHASES.take() if PHASES is not None else "-"
    new = built["version"]
    pipeline.verify(scene.conninfo, scene.builder, SYNTH_MODEL, new)
    t2 = time.perf_counter()
    store = IndexStore(scene.builder, SYNTH_MODEL)
    old_m, new_m = store.read_manifest(scene.version), store.read_manifest(new)  # type: ignore[arg-type]
    version_bytes = sum(new_m.sizes.values())
    inherited = sum(size for f, size in new_m.sizes.items() if old_m.sha256.get(f) == new_m.sha256[f])

    os.sync()  # the build's writes flushed now, not during the measured load of whichever kind comes next
    stop = threading.Event()
    state: dict[str, Any] = {"t_pub": None}
    results: dict[int, dict[str, Any]] = {}
    idle: list[float] = []

    phases = [random.Random(f"{scene.kind}{new}{i}").uniform(0, run.poll) for i in (1, 2)]

    def poller(i: int, holder: Any) -> None:  # the watcher's loop: refresh, then wait the poll interval
        stop.wait(phases[i - 1])  # a replica's polls are not in step with the publisher: a random phase
        while not stop.is_set():
            started = time.perf_counter()
            holder.refresh()
            ended = time.perf_counter()
            current = holder.current
            if current is not None and current.version == new:
                load = log.take(threading.current_thread().name)
                results[i] = {"served_at": ended, "refresh": ended - started, "load": load}
                return
            idle.append(ended - started)
            stop.wait(run.poll)

    threads = [threading.Thread(target=poller, args=(i, h), name=f"{scene.kind}-replica{i}", daemon=True)
               for i, h in enumerate(scene.replicas, 1)]
    for t in threads:
        t.start()
    try:
        if PHASES is not None:
            PHASES.take()
        pipeline.publish(scene.conninfo, scene.builder, SYNTH_MODEL, new)
        state["t_pub"] = time.perf_counter()
        if PHASES is not None:
            print(f"  {scene.kind:5s} v{new}: merge's steps: {merge_phases}; publish's steps: {PHASES.take()}",
                  flush=True)
        state["w_pub"] = _written()
        deadline = time.monotonic() + 600
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    t_pub = state["t_pub"]
    written = _written() - state["w_pub"]
    stored = _stored_bytes(data_root) - stored_before  # the new version in the store and in the backup
    if len(results) != len(scene.replicas):
        raise RuntimeError(f"{scene.kind}: only {len(results)} replicas serve v{new} after 10 minutes")
    # An idle poll now (nothing new), timed on its own: what every poll costs a replica while nothing changes.
    quiet = []
    for holder in scene.replicas:
        started = time.perf_counter()
        holder.refresh()
        quiet.append(time.perf_counter() - started)
    scene.version = new
    out = {"version": new, "count": built["count"], "merge": t1 - t0, "verify": t2 - t1, "publish": t_pub - t2,
           "bytes": version_bytes, "inherited": inherited, "stored": stored, "idle_poll": _median(quiet),
           "idle_during": _median(idle), "written": written, "replicas": []}
    for i in sorted(results):
        r = results[i]
        load = r["load"] if r["load"] is not None else float("nan")
        out["replicas"].append({"served": r["served_at"] - t_pub, "refresh": r["refresh"], "load": load,
                                "pull": r["refresh"] - load})
    return out


def cold_start(run: Run, scene: Scene, n: int, log: HolderLog) -> dict[str, float]:
    """A new replica with an empty cache: the first refresh() serves CURRENT (pulled, verified, loaded)."""
    from serving.holder import IndexHolder

    role = f"cold-{uuid.uuid4().hex[:6]}"
    settings = run.settings(scene.kind, role, scene.conninfo, data=f"store-{scene.kind}")
    cache = settings.resolved_storage_cache_dir
    shutil.rmtree(cache, ignore_errors=True)
    holder = IndexHolder(settings, lambda: SYNTH_MODEL)
    os.sync()
    started = time.perf_counter()
    holder.refresh()
    total = time.perf_counter() - started
    if holder.current is None or holder.current.version != scene.version or holder.current.count != n:
        raise RuntimeError(f"{scene.kind} cold start does not serve v{scene.version}: {holder.reason}")
    load = log.take(threading.current_thread().name)
    downloaded = _tree_bytes(cache)
    del holder
    gc.collect()
    shutil.rmtree(cache, ignore_errors=True)
    return {"total": total, "load": load if load is not None else float("nan"), "bytes": downloaded}


# --- printing ---------------------------------------------------------------------------------------

def _row(label: str, local: str, s3: str, ratio: str, goal: str = "") -> None:
    print(f"{label:44s} {local:>16s} {s3:>16s} {ratio:>8s}  {goal}")


def print_embedding(e: dict[str, Any]) -> None:
    a, b = _median(e["rates"]["local"]), _median(e["rates"]["s3"])
    ratio = b / a
    print(f"\n1. Embedding throughput, {e['n']} {e['source']} ({e['bytes'] / e['n'] / 1e3:.0f} kB each), "
          f"{EMBED_MODEL}, batch {e['batch']}, {e['workers']} decode threads; medians of "
          f"{len(e['rates']['local'])} alternating runs (a, b, a, b, ...); warm-up {e['warm']:.0f} s")
    _row("", "(a) local", "(b) S3", "b/a", "goal")
    _row("photos/s (embed_batch: read, decode, model, part)", f"{a:.1f}", f"{b:.1f}", f"{ratio:.2f}",
         f">= 0.9{'' if ratio >= 0.9 else ' MISSED'}")
    _row("  every run", " ".join(f"{x:.0f}" for x in e["rates"]["local"]),
         " ".join(f"{x:.0f}" for x in e["rates"]["s3"]), "")
    _row("  reading a photo alone (one thread)", f"{e['read_ms']['local']:.2f} ms", f"{e['read_ms']['s3']:.2f} ms",
         f"{e['read_ms']['s3'] / e['read_ms']['local']:.1f}x")
    _row("  the part's upload (S3 only)", "-", f"{e['upload_s']:.2f} s", "",
         f"({_mb(e['part_bytes'])}; per run)")


def print_publish(runs: list[dict[str, Any]], scenes: dict[str, Scene], poll: float, n: int) -> None:
    print(f"\n2. Publish-to-served, two replicas polling every {poll:g} s (as the watcher; SWAP_POLL_SECONDS), "
          f"{n:,} x {DIM} flat; {len(runs)} publish(es) of each, alternating")
    _row("", "local DATA_DIR", "S3 DATA_DIR", "S3/local", "goal")
    for key, label in (("rebuild", "v1 rebuild (S3: + upload + re-read)"), ("verify1", "v1 verify"),
                       ("publish1", "v1 publish()")):
        a, b = scenes["local"].timings[key], scenes["s3"].timings[key]
        _row(label, f"{a:.1f} s", f"{b:.1f} s", f"{b / a:.1f}x")
    for p, pair in enumerate(runs, 1):
        a, b = pair["local"], pair["s3"]
        tag = f"v{b['version']}" + (f" (publish {p})" if len(runs) > 1 else "")
        _row(f"{tag}: merge of the change", f"{a['merge']:.1f} s", f"{b['merge']:.1f} s",
             f"{b['merge'] / a['merge']:.1f}x")
        _row("  verify", f"{a['verify']:.1f} s", f"{b['verify']:.1f} s", f"{b['verify'] / a['verify']:.1f}x")
        _row("  publish()", f"{a['publish']:.1f} s", f"{b['publish']:.1f} s", f"{b['publish'] / a['publish']:.1f}x")
        for i in range(2):
            ra, rb = a["replicas"][i], b["replicas"][i]
            _row(f"  publish returned -> replica {i + 1} serves it", f"{ra['served']:.1f} s", f"{rb['served']:.1f} s",
                 f"{rb['served'] / ra['served']:.1f}x" if ra["served"] > 0 else "")
        for i in range(2):  # the goal: from the build's end (the merge returned): verify + publish() + served
            ea, eb = (x["verify"] + x["publish"] + x["replicas"][i]["served"] for x in (a, b))
            _row(f"  build's end -> replica {i + 1} serves it", f"{ea:.1f} s", f"{eb:.1f} s",
                 f"{eb / ea:.1f}x", f"<= 10 s{'' if eb <= 10 else ' MISSED'}")
        for i in range(2):
            ra, rb = a["replicas"][i], b["replicas"][i]
            _row(f"    replica {i + 1}: waiting for its next poll", f"{max(0.0, ra['served'] - ra['refresh']):.1f} s",
                 f"{max(0.0, rb['served'] - rb['refresh']):.1f} s", "")
            _row("    its swapping refresh: pull + verify + load", f"{ra['refresh']:.1f} s", f"{rb['refresh']:.1f} s",
                 f"{rb['refresh'] / ra['refresh']:.1f}x")
            _row("      of it pull (download, sha256, rename)", f"{ra['pull']:.1f} s", f"{rb['pull']:.1f} s", "")
            _row("      of it load (private copy, sha256, checks)", f"{ra['load']:.1f} s", f"{rb['load']:.1f} s", "")
        _row("  idle poll (nothing new), alone", f"{a['idle_poll'] * 1000:.0f} ms", f"{b['idle_poll']:.2f} s",
             f"{b['idle_poll'] / max(a['idle_poll'], 1e-6):.0f}x")
        _row("  idle poll while publishing", "-" if a["idle_during"] != a["idle_during"] else
             f"{a['idle_during'] * 1000:.0f} ms", "-" if b["idle_during"] != b["idle_during"] else
             f"{b['idle_during']:.2f} s", "")
        _row("  written to disk until both serve", _mb(a["written"]), _mb(b["written"]), "")
        _row("  the new version's files", _mb(a["bytes"]), _mb(b["bytes"]), "")
        _row("    of them unchanged from the served version", _mb(a["inherited"]), _mb(b["inherited"]), "",
             "(hard links: of the store locally, of the replica's cache on S3)")
        _row("  bytes added to DATA_DIR (store + backup)", _mb(a["stored"]), _mb(b["stored"]), "",
             "(each byte once: hard links locally, objects by sha256 on S3)")


def print_cold(c: dict[str, list[dict[str, float]]], n: int) -> None:
    ta = _median([x["total"] for x in c["local"]])
    tb = _median([x["total"] for x in c["s3"]])
    la = _median([x["load"] for x in c["local"]])
    lb = _median([x["load"] for x in c["s3"]])
    print(f"\n3. Cold start of a replica, {n:,} x {DIM}: empty cache -> serving; medians of {len(c['s3'])} "
          "alternating runs")
    _row("", "local DATA_DIR", "S3 DATA_DIR", "S3/local")
    _row("first refresh(): pull + verify + load", f"{ta:.1f} s", f"{tb:.1f} s", f"{tb / ta:.1f}x")
    _row("  of it load (private copies, sha256, checks)", f"{la:.1f} s", f"{lb:.1f} s", f"{lb / la:.1f}x")
    _row("  of it pull (download, sha256, fsync, rename)", "-", f"{tb - lb:.1f} s", "")
    _row("  every run", " ".join(f"{x['total']:.1f}" for x in c["local"]),
         " ".join(f"{x['total']:.1f}" for x in c["s3"]), "")
    b = c["s3"][-1]["bytes"]
    _row("bytes downloaded (the cache afterwards)", "0", _mb(b), "",
         f"({b / (tb - lb) / 1e6:.0f} MB/s pulled)" if tb > lb else "")


# --- main ---------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.object_storage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", type=int, default=100_000, help="N: vectors of the published version (1280-d)")
    ap.add_argument("--change", type=int, default=1_000, help="new images merged into each new version")
    ap.add_argument("--publishes", type=int, default=2,
                    help="publish-to-served measurements of each kind (the order alternates); the last has N vectors")
    ap.add_argument("--photos", type=int, default=294, help="photos per embedding run (the sample cycles)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs per embedding and cold-start figure")
    ap.add_argument("--poll", type=float, help="replicas' poll interval (default SWAP_POLL_SECONDS, 2)")
    ap.add_argument("--rclone-dir-cache", metavar="TIME",
                    help="rclone's --dir-cache-time (default stack/objectstore.py's; 0s is slow, see start_s3)")
    ap.add_argument("--model-cache", type=Path, help="folder for the ONNX export (default: in the temp folder)")
    ap.add_argument("--store-core", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2,
                    help="the S3 server on a core of its own, the pipeline on the others (default on 2+ cores)")
    ap.add_argument("--store-latency", type=float, default=0.0, metavar="MS",
                    help="add MS to each request to the S3 server (bench/latency_proxy.py on the server's core), "
                         "as an endpoint across a network; default 0 (loopback)")
    ap.add_argument("--read-ahead", type=int, help="EMBED_READ_AHEAD for the embedding runs (default the setting's)")
    ap.add_argument("--skip-embedding", action="store_true")
    ap.add_argument("--skip-publish", action="store_true", help="skip 2 (and 3, which needs its stores)")
    ap.add_argument("--skip-cold", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (databases are dropped anyway)")
    ap.add_argument("--phases", action="store_true",
                    help="print where the builder's merge and publish() seconds go (the store steps they call)")
    args = ap.parse_args()
    global PHASES
    if args.phases:
        PHASES = Phases()
    if args.change < 1 or args.publishes < 1 or args.vectors <= args.change * args.publishes:
        ap.error("--vectors must exceed --change x --publishes, both >= 1")

    from bench.serving_corpus import admin_conninfo
    from core.settings import get_settings
    from stack import objectstore

    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also when started in the background (SIGINT inherited ignored)
    poll = args.poll if args.poll is not None else get_settings().swap_poll_seconds
    work = Path(tempfile.mkdtemp(prefix="imgsim-bench-objstore-"))
    run: Run | None = None
    log = HolderLog()
    holder_log = logging.getLogger("serving.holder")
    holder_log.setLevel(logging.INFO)
    holder_log.addHandler(log)
    holder_log.propagate = False
    started = time.perf_counter()
    try:
        run = Run(work, "", None, None, args.model_cache or work / "models", poll)
        run.admin, run.pg_server = admin_conninfo(work)
        cores = sorted(os.sched_getaffinity(0))
        if args.store_core:  # rclone (and the threads it starts) inherit this thread's mask at its start
            os.sched_setaffinity(0, {cores[-1]})
        run.s3 = server = start_s3(work / "s3", args.rclone_dir_cache)
        run.read_ahead = args.read_ahead
        if args.store_latency:
            run.endpoint = start_latency_proxy(server, args.store_latency)
        if args.store_core:  # no thread of ours exists yet: every later one inherits the pipeline's cores
            os.sched_setaffinity(0, set(cores[:-1]))
            run.model_threads = 1
        server.bucket(BUCKET)
        run.model_cache.mkdir(parents=True, exist_ok=True)
        print(f"object storage bench: cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, "
              + (f"{args.store_latency:g} ms added to each request (bench/latency_proxy.py), " if args.store_latency
                 else "")
              + f"EMBED_READ_AHEAD {args.read_ahead or get_settings().embed_read_ahead}, "
              f"S3 = rclone serve s3 at {server.endpoint} (--dir-cache-time "
              f"{args.rclone_dir_cache or str(objectstore.DIR_CACHE_SECONDS) + 's'}), poll {poll:g} s, "
              + (f"S3 server on core {cores[-1]}, the pipeline on {cores[:-1]} (model threads 1)"
                 if args.store_core else "all cores shared"))
        emb = None
        if not args.skip_embedding:
            emb = bench_embedding(run, args.photos, args.rounds)
            print_embedding(emb)
        if not args.skip_publish:
            print(f"\nsetting up two stores of {args.vectors:,} x {DIM} (local, S3) ...", flush=True)
            scenes = {kind: setup_scene(run, kind, args.vectors, args.change * args.publishes, log)
                      for kind in ("local", "s3")}
            runs = []
            for p in range(args.publishes):
                pair = {}
                for kind in (("local", "s3") if p % 2 == 0 else ("s3", "local")):
                    pair[kind] = publish_to_served(run, scenes[kind], args.change, log)
                    r = pair[kind]["replicas"]
                    print(f"  {kind:5s} v{pair[kind]['version']}: publish {pair[kind]['publish']:.1f} s, served "
                          f"after {r[0]['served']:.1f} / {r[1]['served']:.1f} s", flush=True)
                runs.append(pair)
            n_served = runs[-1]["s3"]["count"] if runs else args.vectors
            for s in scenes.values():  # the replicas' memory, before the cold starts
                s.replicas.clear()
            gc.collect()
            print_publish(runs, scenes, poll, n_served)
            if not args.skip_cold:
                cold: dict[str, list[dict[str, float]]] = {"local": [], "s3": []}
                for _ in range(args.rounds):
                    for kind in ("local", "s3"):
                        cold[kind].append(cold_start(run, scenes[kind], n_served, log))
                print_cold(cold, n_served)
        print(f"\n(total {time.perf_counter() - started:.0f} s; load average now "
              f"{', '.join(f'{x:.1f}' for x in os.getloadavg())})")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        if run is not None:
            run.close(keep=args.keep)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
