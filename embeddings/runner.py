"""Batch embedding: decode → model → Parquet part → ledger, for batches planned by embeddings.planning.

Decoding (file read, JPEG draft decode, resize, normalise) runs in a thread
pool while the model runs in the calling thread: PIL and torch both release
the GIL, so the two overlap. A file that cannot be decoded is a failure with a
short reason; the rest of the batch embeds. The decode thread also computes the
image's duplicate fingerprint (`duplicates.fingerprint`) from the same decoded
pixels and file bytes, so duplicate verification never re-reads the file; a
fingerprint that fails is left empty (the image is then "unverifiable", never
a copy) and does not fail the image.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.db import connect
from core.settings import Settings, get_settings
from embeddings import ledger, planning
from embeddings.dataset import dataset_dir, push_part
from embeddings.loading import ImageLoadError, load_image_info, read_file
from embeddings.models import Embedder, get_embedder, parse_name
from embeddings.onnx_export import publish_for
from embeddings.writer import build_table, part_name, write_part
from storage.images import ImageFiles
from storage.objects import StorageUnavailable

log = logging.getLogger(__name__)


# --- the decode/model pipeline ---------------------------------------------------------------------

@dataclass
class Decoded:
    """One item's outcome: a preprocessed array, the file's size and its duplicate fingerprint, or a reason."""

    key: Any
    array: np.ndarray | None = None
    width: int = 0
    height: int = 0
    reason: str | None = None
    fingerprint: bytes | None = None  # duplicates.fingerprint bytes; None when it could not be computed


@dataclass
class Chunk:
    """What one model batch produced: the items embedded (in order) with their vectors, and the failures."""

    items: list[Decoded] = field(default_factory=list)
    vectors: np.ndarray | None = None
    failures: list[Decoded] = field(default_factory=list)


# What a decode reads: a local file's path, or the file's bytes (storage.images.ImageFiles.read).
Source = Callable[[], Path | bytes]


def decode_one(embedder: Embedder, key: Any, source: Source) -> Decoded:
    """Resolve, load and preprocess one file; a bad file becomes a reason. Only an image store that does
    not answer raises (StorageUnavailable): that is no fault of the image, and the batch must be retried."""
    try:
        got = source()
        raw = got if isinstance(got, bytes) else read_file(got)
        info = load_image_info(raw, **embedder.load_kwargs())
        return Decoded(key, embedder.prepare(info.image), info.width, info.height,
                       fingerprint=fingerprint_bytes(info.image, raw, key))
    except ImageLoadError as exc:
        return Decoded(key, reason=exc.reason)
    except StorageUnavailable:
        raise
    except MemoryError:
        return Decoded(key, reason="too large")
    except Exception as exc:  # a decoder bug must not stop the batch; the ledger keeps the reason
        log.warning("unexpected error decoding %s: %s: %s", key, type(exc).__name__, exc)
        return Decoded(key, reason=f"unreadable: {type(exc).__name__}")


def fingerprint_bytes(image: Any, raw: bytes, key: Any = None) -> bytes | None:
    """The duplicate fingerprint of the decoded image, or None (logged) if it cannot be computed."""
    from duplicates.fingerprint import fingerprint

    try:
        return fingerprint(image, raw).to_bytes()
    except Exception as exc:  # verification then treats the image as unverifiable; the vector is still good
        log.warning("no duplicate fingerprint for %s: %s: %s", key, type(exc).__name__, exc)
        return None


def embed_stream(
    embedder: Embedder,
    items: Sequence[tuple[Any, Source]],
    *,
    batch_size: int,
    workers: int,
    read_ahead: int = 8,
) -> Iterator[Chunk]:
    """Decode `items` (key, path or bytes thunk) in `workers` threads and run the model on full batches as
    they fill.

    Up to two batches are decoded ahead of the model, which bounds memory and
    keeps the decoders busy while a forward pass runs. Their files are read by
    `read_ahead` threads of their own, in order, so a store's latency (an object
    GET) overlaps the decoding instead of stalling a decoder. A read or decode
    that raises (StorageUnavailable) ends the stream with that error; what is
    not yet started is cancelled, so an outage costs the few in flight, not the batch.
    """
    lookahead = max(2 * batch_size, workers)
    window = _ReadWindow(read_ahead + workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool, \
            ThreadPoolExecutor(max_workers=read_ahead, thread_name_prefix="read") as readers:
        queue: deque[Future[Decoded]] = deque()
        reads: deque[Future[Path | bytes]] = deque()
        it = enumerate(items)

        def fill() -> None:
            while len(queue) < lookahead:
                try:
                    n, (key, source) = next(it)
                except StopIteration:
                    return
                read = readers.submit(window.read, n, source)
                reads.append(read)
                queue.append(pool.submit(window.decode, embedder, key, read.result))
            while reads and reads[0].done():
                reads.popleft()

        try:
            fill()
            chunk = Chunk()
            while queue:
                done = queue.popleft().result()
                fill()
                if done.reason is not None:
                    chunk.failures.append(done)
                else:
                    chunk.items.append(done)
                if len(chunk.items) >= batch_size:
                    yield _run(embedder, chunk)
                    chunk = Chunk()
            if chunk.items or chunk.failures:
                yield _run(embedder, chunk)
        finally:
            window.close()  # an error or a consumer that stopped early: nothing more is read or decoded
            for pending in (*queue, *reads):
                pending.cancel()


class _ReadWindow:
    """Reads run at most `size` items ahead of the decodes finished: the raw files held in memory at once are
    bounded (a phone photo is megabytes; two batches of them is not what a worker should hold)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.decoded = 0
        self.closed = False
        self.cond = threading.Condition()

    def read(self, n: int, source: Source) -> Path | bytes:
        """Item n's file, once fewer than `size` read items wait to be decoded. Items start in order, so the
        oldest undecoded one is always inside the window: no read waits on a decode that waits on it."""
        with self.cond:
            self.cond.wait_for(lambda: self.closed or n < self.decoded + self.size)
            if self.closed:
                raise CancelledError
        return source()

    def decode(self, embedder: Embedder, key: Any, source: Source) -> Decoded:
        try:
            return decode_one(embedder, key, source)
        finally:
            with self.cond:
                self.decoded += 1
                self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def _run(embedder: Embedder, chunk: Chunk) -> Chunk:
    if chunk.items:
        batch = np.stack([d.array for d in chunk.items])  # type: ignore[misc]
        chunk.vectors = embedder.forward(batch)
        for d in chunk.items:
            d.array = None  # free the pixels early
    else:
        chunk.vectors = np.zeros((0, embedder.dim), dtype=np.float32)
    return chunk


# --- one batch ----------------------------------------------------------------------------------

def embed_batch(
    conninfo: str,
    image_ids: Sequence[int],
    *,
    model_name: str | None = None,
    run_id: str = "manual",
    batch_no: int = 0,
    settings: Settings | None = None,
    claimed_by: str | None = None,
) -> dict[str, Any]:
    """Embed these images into one Parquet part, then upsert their ledger rows in one transaction.

    claimed_by: the run whose claims cover these images; the ledger transaction then records (and
    releases) only the images that run still holds, so an image another run took over is never recorded twice.

    Returns {"embedded": n, "failed": m, "part": path or None, "model_version": mv,
    "missing_rows": k (ids with no images row), "failures": [(id, reason)], "seconds": s}.
    Idempotent: re-running the same batch replaces its part and updates the same ledger rows.
    An image store that does not answer raises StorageUnavailable before anything is written or recorded:
    an outage fails no image, and the task's retry embeds the batch.
    """
    settings = settings or get_settings()
    started = time.monotonic()
    embedder = get_embedder(model_name, settings)
    publish_for(embedder, settings)  # the ONNX file, for server-only hosts (DATA_DIR/models; once per process)
    mv = embedder.model_version
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    with connect(conninfo=conninfo) as conn:
        rows = conn.execute(
            "SELECT id, code::text, event_code::text, file_path FROM images WHERE id = ANY(%s) ORDER BY id", (ids,)
        ).fetchall()
    meta = {int(r[0]): (r[1], r[2], r[3]) for r in rows}
    files = ImageFiles(settings)  # IMAGE_ROOT: a folder or an object store, the same rules and reasons

    def source(file_path: str) -> Source:
        return lambda: files.read(file_path)

    items = [(i, source(meta[i][2])) for i in ids if i in meta]
    got = _collect(embedder, items, settings)
    got_ids, failures = got.keys, got.failures
    part: Path | None = None
    if got_ids:
        table = build_table(
            dim=embedder.dim, model_version=mv, image_ids=got_ids,
            image_codes=[meta[i][0] for i in got_ids], event_codes=[meta[i][1] for i in got_ids],
            vectors=got.vectors, widths=[w for w, _ in got.sizes], heights=[h for _, h in got.sizes],
            fingerprints=got.fingerprints,
        )
        part = write_part(table, dataset_dir(settings, mv), run_id, batch_no)
        if settings.remote_data:  # one PUT: the part is whole in the object store or absent
            part = push_part(settings, part)
    rel = _relative(part, settings) if part else None
    lost: list[int] = []
    with connect(conninfo=conninfo) as conn, conn.transaction():
        if claimed_by is not None:
            held = planning.settle(conn, mv, claimed_by, ids)
            lost = [i for i in ids if i not in held]
            got_ids = [i for i in got_ids if i in held]
            failures = [(i, reason) for i, reason in failures if i in held]
        ledger.record(conn, mv, embedded=got_ids, part=rel, failed=failures)
    if lost:
        log.warning("%s batch %d of run %s: %d images were taken over by another run before this one recorded "
                    "them; that run records them", mv, batch_no, run_id, len(lost))
    seconds = time.monotonic() - started
    missing = len(ids) - len(items)
    log.info("%s batch %d of run %s: %d embedded, %d failed%s in %.1f s (%.1f images/s)", mv, batch_no, run_id,
             len(got_ids), len(failures), f", {missing} ids without an images row" if missing else "", seconds,
             (len(got_ids) + len(failures)) / seconds if seconds else 0.0)
    return {"embedded": len(got_ids), "failed": len(failures), "part": str(part) if part else None,
            "model_version": mv, "missing_rows": missing, "failures": failures, "seconds": seconds, "lost": len(lost)}


@dataclass
class Collected:
    """Everything one decode+model run produced, in item order (failures aside)."""

    keys: list[Any]
    vectors: np.ndarray
    sizes: list[tuple[int, int]]
    fingerprints: list[bytes | None]
    failures: list[tuple[Any, str]]


def _collect(embedder: Embedder, items: list[tuple[Any, Source]], settings: Settings) -> Collected:
    """Run the decode+model stream over `items` and gather keys, vectors, sizes, fingerprints and failures."""
    keys: list[Any] = []
    vectors: list[np.ndarray] = []
    sizes: list[tuple[int, int]] = []
    fingerprints: list[bytes | None] = []
    failures: list[tuple[Any, str]] = []
    for chunk in embed_stream(embedder, items, batch_size=settings.embed_batch_size,
                              workers=settings.embed_decode_workers, read_ahead=settings.embed_read_ahead):
        keys += [d.key for d in chunk.items]
        sizes += [(d.width, d.height) for d in chunk.items]
        fingerprints += [d.fingerprint for d in chunk.items]
        vectors.append(chunk.vectors)  # type: ignore[arg-type]
        failures += [(d.key, d.reason or "failed") for d in chunk.failures]
    matrix = np.concatenate(vectors) if vectors else np.zeros((0, embedder.dim), dtype=np.float32)
    return Collected(keys, matrix, sizes, fingerprints, failures)


def _relative(part: Path, settings: Settings) -> str:
    """The ledger stores parts relative to DATA_DIR, so the data directory can move."""
    try:
        return str(part.resolve().relative_to(settings.resolved_data_dir.resolve()))
    except ValueError:
        return str(part)


# --- a claimed batch (the DAG's embed task, the CLI) ------------------------------------------------

def embed_claimed(
    conninfo: str,
    image_ids: Sequence[int],
    *,
    model_name: str | None = None,
    run_id: str,
    batch_no: int = 0,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Embed the images of a planned batch that `run_id` still holds, then release them.

    Ids another run took over are left to it (`lost`); ids an earlier try of this very batch
    already recorded are not embedded again (`recovered`, counted as embedded). The claims
    are released only after the ledger commit, so no plan ever sees them unclaimed and pending.
    """
    settings = settings or get_settings()
    mv = parse_name(model_name or settings.embedding_model).model_version
    with planning.owner(conninfo, run_id):
        taken = planning.take(conninfo, mv, run_id, list(image_ids), part_name(run_id, batch_no))
        if taken.todo:
            result = embed_batch(conninfo, taken.todo, model_name=model_name, run_id=run_id, batch_no=batch_no,
                                 settings=settings, claimed_by=run_id)
        else:
            result = {"embedded": 0, "failed": 0, "part": None, "model_version": mv, "missing_rows": 0,
                      "failures": [], "seconds": 0.0, "lost": 0}
        if taken.done:
            planning.release(conninfo, mv, run_id, taken.done)
    if taken.lost:
        log.warning("%s batch %d of run %s: %d images are claimed by another run, which embeds them", mv,
                    batch_no, run_id, len(taken.lost))
    return {**result, "embedded": result["embedded"] + len(taken.done), "recovered": len(taken.done),
            "lost": len(taken.lost) + result["lost"]}


def run_scope(
    selection: planning.Selection,
    *,
    settings: Settings | None = None,
    model_name: str | None = None,
    run_id: str | None = None,
    images_per_part: int = planning.DEFAULT_IMAGES_PER_PART,
) -> dict[str, Any]:
    """Plan `selection` (claiming its images) and embed every part, logging progress; totals as a dict."""
    settings = settings or get_settings()
    conninfo = settings.conninfo()
    mv = parse_name(model_name or settings.embedding_model).model_version
    run_id = run_id or datetime.now(UTC).strftime("manual-%Y%m%dT%H%M%S")
    with planning.owner(conninfo, run_id, one_process=True):  # the whole run: its claims die with it
        return _run_parts(conninfo, selection, mv, run_id, settings, model_name, images_per_part)


def _run_parts(conninfo: str, selection: planning.Selection, mv: str, run_id: str, settings: Settings,
               model_name: str | None, images_per_part: int) -> dict[str, Any]:
    batches = planning.plan(conninfo, mv, selection, run_id=run_id, images_per_part=images_per_part)
    total = sum(len(b) for b in batches)
    log.info("%s: %d images in %d parts (%s, run %s)", mv, total, len(batches), selection.describe(), run_id)
    started = time.monotonic()
    totals: dict[str, Any] = {"model_version": mv, "embedded": 0, "failed": 0, "parts": [], "batches": len(batches),
                              "planned": total, "run_id": run_id, "failures": []}
    for n, ids in enumerate(batches):
        res = embed_claimed(conninfo, ids, model_name=model_name, run_id=run_id, batch_no=n, settings=settings)
        totals["embedded"] += res["embedded"]
        totals["failed"] += res["failed"]
        totals["failures"] += res["failures"]
        if res["part"]:
            totals["parts"].append(res["part"])
        done = totals["embedded"] + totals["failed"]
        elapsed = time.monotonic() - started
        log.info("progress %d/%d images (%.0f%%), %d failed, %.1f images/s overall", done, total,
                 100.0 * done / total if total else 100.0, totals["failed"], done / elapsed if elapsed else 0.0)
    totals["seconds"] = time.monotonic() - started
    return totals


def embed_files(
    paths: Sequence[Path],
    out: Path,
    *,
    settings: Settings | None = None,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Embed local files (no database) into one Parquet file at `out`.

    Columns: path, vector, model_version, width, height, embedded_at. Failures
    are returned (path, reason) and not written.
    """
    import pyarrow as pa

    from embeddings.writer import write_atomic

    settings = settings or get_settings()
    embedder = get_embedder(model_name, settings)
    items = [(str(p), (lambda p=p: Path(p))) for p in paths]
    got = _collect(embedder, items, settings)
    names, matrix, sizes, failures = got.keys, got.vectors, got.sizes, got.failures
    n = len(names)
    table = pa.table({
        "path": pa.array(names, type=pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=pa.float32()), embedder.dim),
        "model_version": pa.array([embedder.model_version] * n, type=pa.string()),
        "width": pa.array([w for w, _ in sizes], type=pa.int32()),
        "height": pa.array([h for _, h in sizes], type=pa.int32()),
        "embedded_at": pa.array([datetime.now(UTC)] * n, type=pa.timestamp("us", tz="UTC")),
    })
    write_atomic(table, Path(out))
    return {"embedded": n, "failed": len(failures), "failures": failures, "out": str(out),
            "model_version": embedder.model_version}
