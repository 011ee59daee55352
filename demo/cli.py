"""`python -m demo [PHOTO_FOLDER]`: the main job end to end, then a live search server until Ctrl-C.

Steps (one progress line each): choose the model; reach PostgreSQL (the
configured one, else a private one under DATA_DIR/pg) and migrate it; register
the photos as images of a demo event under IMAGE_ROOT; migrate Airflow's
SQLite home; run the DAGs `image_embeddings` then `image_index` with `airflow
dags test`; start `python -m serving`; print example requests (curl) with the
answers they got. A second run reuses what the first one made.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from core.db import DatabaseUnavailable
from core.localpg import LocalPostgresError
from core.settings import OFFLINE_MODEL, PLACES365, Settings, SettingsError, get_settings
from demo.airflow_runner import AirflowRunError, AirflowRunner
from demo.database import DemoDatabase, open_database
from demo.examples import format_example, run_examples
from demo.photos import PhotoError, find_sources, prepare_extras, register
from demo.progress import Progress
from demo.server import SearchServer, ServerError, choose_port

STEPS = 8


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Run the image similarity pipeline end to end on sample photos (or PHOTO_FOLDER), "
        "then serve searches until Ctrl-C.",
    )
    parser.add_argument("folder", nargs="?", type=Path, metavar="PHOTO_FOLDER",
                        help="photos to register (default: the shared sample photos, else generated ones)")
    parser.add_argument("--port", type=int, help="search server port (default API_PORT; a free one if that is busy)")
    parser.add_argument("--no-serve", action="store_true",
                        help="stop the server after printing the example answers (exit 1 if one was wrong)")
    parser.add_argument("--limit", type=int, help="register at most this many photos")
    parser.add_argument("--model", choices=[PLACES365, OFFLINE_MODEL],
                        help="embedding model (default EMBEDDING_MODEL, else Places365 when its weights file is "
                        "present, else efficientnet-lite0: the rule `make serve` and the DAGs follow too)")
    parser.add_argument("--private-db", action="store_true",
                        help="always use a private PostgreSQL under DATA_DIR/pg, even if DB_HOST answers")
    return parser


def choose_model(settings: Settings, requested: str | None) -> tuple[str, str]:
    """The model to embed with, and why: --model, else the settings' one rule (core.settings), so that
    `make serve` afterwards serves the index this demo built."""
    if requested:
        return requested, "chosen with --model"
    return settings.embedding_model, ("set by EMBEDDING_MODEL" if settings.model_reason == "EMBEDDING_MODEL"
                                      else settings.model_reason)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@dataclass
class Started:
    """What the demo started and must stop on the way out (Ctrl-C, an error, or --no-serve)."""

    db: DemoDatabase | None = None
    server: SearchServer | None = None

    def stop(self, progress: Progress) -> None:
        if self.server is not None and self.server.running():
            progress.raw(f"stopping the search server on {self.server.url}")
            self.server.stop()
        if self.db is not None and self.db.server is not None:
            progress.raw(f"stopping the private PostgreSQL in {self.db.server.datadir}")
            self.db.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        print("error: --limit must be at least 1", file=sys.stderr)
        return 2
    if args.folder is not None and not args.folder.expanduser().is_dir():
        print(f"error: photo folder {args.folder} does not exist or is not a folder", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Ctrl-C stops the demo even when it was started with SIGINT ignored (a background job of a
    # non-interactive shell, e.g. CI): Python only raises KeyboardInterrupt where SIGINT was not ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    progress = Progress(STEPS)
    started = Started()
    try:
        return _run(args, progress, started)
    except KeyboardInterrupt:
        progress.raw("\ninterrupted: stopping what the demo started")
        return 130
    except (SettingsError, DatabaseUnavailable, LocalPostgresError, PhotoError, AirflowRunError, ServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        started.stop(progress)


def _run(args: argparse.Namespace, progress: Progress, started: Started) -> int:
    settings = get_settings()
    if not settings.image_location.is_local:  # the demo copies photos into IMAGE_ROOT as plain files
        raise SettingsError(f"IMAGE_ROOT {settings.image_location.url} is an object store; the demo needs a local "
                            "folder (set IMAGE_ROOT, or DATA_DIR when IMAGE_ROOT is unset, to a folder)")
    if settings.remote_data:  # the demo is the one-machine tour; docs/operations.md covers several hosts
        raise SettingsError(f"DATA_DIR {settings.data_location.url} is an object store; the demo runs on one "
                            "machine: set DATA_DIR to a folder")
    data_dir = settings.resolved_data_dir.resolve()
    image_root = settings.resolved_image_root
    work_dir = data_dir / "demo"

    progress.step("model")
    model, why = choose_model(settings, args.model)
    default_model = settings.embedding_model
    from embeddings.models import ModelUnavailable, parse_name

    try:
        model_version = parse_name(model).model_version
    except ModelUnavailable as exc:
        raise SettingsError(str(exc)) from None
    progress.detail(f"{model} ({model_version}): {why}")

    progress.step("database")
    notes: list[str] = []
    db = open_database(settings, data_dir, private=args.private_db, notes=notes)
    started.db = db
    for note in notes:
        progress.detail(note)
    migrated = f"applied {', '.join(db.applied)}" if db.applied else "schema up to date"
    progress.done(f"{db.origin}: {db.describe()}; {migrated}")

    # Every child process (Airflow, the server) sees the same settings as this one.
    child_env = {**db.env, "DATA_DIR": str(data_dir), "IMAGE_ROOT": str(image_root), "EMBEDDING_MODEL": model}
    os.environ.update(child_env)
    get_settings.cache_clear()

    progress.step("photos")
    source, skipped = find_sources(args.folder, args.limit, work_dir)
    planted = prepare_extras(source, work_dir)
    rows = register(db.conninfo, image_root, source, extra=planted.registered)
    new = sum(r.new for r in rows)
    progress.detail(f"{len(source.files)} photos from {source.label}, plus {len(planted.copies)} near-duplicate "
                    f"copies and shots of 2 scenes ({planted.scene_pair[0].parent})")
    if skipped:
        progress.detail(f"skipped {len(skipped)} unreadable file(s): {', '.join(p.name for p in skipped[:5])}")
    progress.done(f"event {source.event_code} ({source.event_name}): {len(rows)} images under "
                  f"{image_root / 'uploads' / 'demo'}, {new} new, {len(rows) - new} already registered")

    runner = AirflowRunner(data_dir / "airflow", db.conninfo, child_env)
    progress.step("airflow")
    seconds = runner.migrate()
    progress.detail(f"metadata: SQLite in {runner.home} (`airflow db migrate` {seconds:.1f}s)")

    def on_task(task: str, state: str) -> None:
        progress.detail(f"{task}: {state}")

    progress.step("image_embeddings (airflow dags test)")
    ids = [r.image_id for r in rows]
    before = _ledger_counts(db.conninfo, model_version, ids)
    conf: dict[str, object] = {"model": model, "scope": "pending"}
    if before.get("failed"):
        # Files that failed on an earlier run may be readable now: re-embed the demo event.
        conf = {"model": model, "scope": "event", "event_code": source.event_code}
    progress.detail(f"conf {json.dumps(conf)}")
    result = runner.dags_test("image_embeddings", conf, on_task)
    counts = _ledger_counts(db.conninfo, model_version, ids)
    progress.done(f"{counts.get('embedded', 0)} of {len(rows)} demo images embedded, {counts.get('failed', 0)} failed; "
                  f"log {result.log}")
    for filename, error in _failures(db.conninfo, model_version, ids)[:5]:
        progress.detail(f"failed: {filename}: {error}")

    progress.step("image_index (airflow dags test)")
    before, _, _ = _served_version(model_version)
    # The build itself decides whether anything is new (under the store lock): then it builds nothing.
    progress.detail(f"conf {json.dumps({'model': model, 'mode': 'merge'})}")
    result = runner.dags_test("image_index", {"model": model, "mode": "merge"}, on_task)
    version, count, index_type = _served_version(model_version)
    if version is None:
        raise AirflowRunError(f"image_index ran but no index version of {model_version} is published; "
                              f"see {result.log}")
    reused = " (nothing new: reused)" if version == before else ""
    progress.done(f"CURRENT is v{version}: {count} vectors ({index_type}){reused}; log {result.log}")

    progress.step("search server")
    port, note = choose_port(args.port, settings.api_port)
    if note:
        progress.detail(note)
    server = SearchServer(port, child_env, work_dir / "logs" / "server.log")
    started.server = server
    health = server.start()
    progress.done(f"{server.url} ready: index v{health.get('index_version')}, {health.get('total_vectors')} vectors, "
                  f"{health.get('model_version')}; log {server.log}")

    progress.step("example requests")
    by_name = {r.filename: r for r in rows}
    dup_of = planted.copies[0][1].name if planted.copies else None
    first = by_name.get(source.files[0].name)
    # Sample or generated photos hold no copies or scenes but the planted ones: every group is checked.
    examples = run_examples(server.url, event_code=source.event_code, planted=planted, strict=args.folder is None,
                            similar_id=first.image_id if first else None,
                            similar_name=first.filename if first else None, similar_expect=dup_of)
    for example in examples.examples:
        progress.raw()
        progress.raw(format_example(example))
    progress.raw()
    progress.raw(f"{'all answers as expected' if examples.ok else 'SOME ANSWERS WERE NOT AS EXPECTED'} "
                 f"({progress.elapsed():.0f}s in all)")

    if args.no_serve:
        return 0 if examples.ok else 1
    progress.raw()
    progress.raw(f"The search server is running at {server.url} (interactive API docs: {server.url}/docs).")
    if model != default_model:
        progress.raw(f"`make serve` alone serves {default_model}; `EMBEDDING_MODEL={model} make serve` serves this "
                     "demo's index.")
    progress.raw("Press Ctrl-C to stop it" + (" and the private PostgreSQL." if db.server else "."))
    try:
        code = server.wait()
    except KeyboardInterrupt:  # the way this step is meant to end: a clean stop, not an error (no make Error 130)
        progress.raw("\nCtrl-C: stopping the search server" + (" and the private PostgreSQL" if db.server else ""))
        return 0 if examples.ok else 1
    progress.raw(f"the search server exited with {code}; see {server.log}")
    return 1 if code else 0


def _ledger_counts(conninfo: str, model_version: str, image_ids: list[int]) -> dict[str, int]:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM image_embeddings WHERE model_version = %s AND image_id = ANY(%s) "
            "GROUP BY status", (model_version, image_ids)).fetchall()
    return {str(status): int(n) for status, n in rows}


def _failures(conninfo: str, model_version: str, image_ids: list[int]) -> list[tuple[str, str]]:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT i.filename, coalesce(e.error, '') FROM image_embeddings e JOIN images i ON i.id = e.image_id "
            "WHERE e.model_version = %s AND e.image_id = ANY(%s) AND e.status = 'failed' ORDER BY i.id",
            (model_version, image_ids)).fetchall()
    return [(str(f), str(err)) for f, err in rows]


def _served_version(model_version: str) -> tuple[int | None, int | None, str | None]:
    from indexing.store.layout import IndexStore

    store = IndexStore(get_settings(), model_version)
    version = store.current().version
    if version is None:
        return None, None, None
    manifest = store.read_manifest(version)
    return version, manifest.count, manifest.index_type
