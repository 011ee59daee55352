"""The Parquet dataset of one model version: its place on disk, its schema, reading the latest rows.

`$DATA_DIR/embeddings/model_version=<mv>/part-<run>-<batch>.parquet` (docs/design.md).
Re-embedding writes new parts, so an image may appear in several; readers keep
the newest row per image_id (by embedded_at, then by part file mtime).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:
    from core.settings import Settings
    from storage.location import Location

COLUMNS = ("image_id", "image_code", "event_code", "vector", "model_version", "width", "height", "embedded_at")
# Extension columns (after docs/design.md's contract columns, which stay unchanged): the duplicate fingerprint of
# each image (`duplicates.fingerprint.Fingerprint.to_bytes()`) and its format version. Parts written before they existed
# lack them; readers see nulls there (the image is then unverifiable, never a copy).
FINGERPRINT_FIELDS = (pa.field("fingerprint", pa.binary()), pa.field("fingerprint_version", pa.string()))
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]")


def schema(dim: int) -> pa.Schema:
    """The contract schema (docs/design.md) for vectors of `dim` floats."""
    return pa.schema([
        ("image_id", pa.int64()),
        ("image_code", pa.string()),
        ("event_code", pa.string()),
        ("vector", pa.list_(pa.float32(), dim)),
        ("model_version", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("embedded_at", pa.timestamp("us", tz="UTC")),
    ])


def safe_model_version(model_version: str) -> str:
    """The model version as one safe path component (letters, digits, `._@+-`; anything else → `_`)."""
    safe = _UNSAFE.sub("_", model_version.strip())
    if not safe or set(safe) <= {"."}:
        raise ValueError(f"model version {model_version!r} cannot name a directory")
    return safe


def dataset_dir(settings: Settings, model_version: str) -> Path:
    """DATA_DIR/embeddings/model_version=<mv>/ (not created)."""
    return settings.embeddings_dir / f"model_version={safe_model_version(model_version)}"


def list_parts(settings: Settings, model_version: str) -> list[Path]:
    """Finished parts, oldest first (temp files start with a dot and are skipped)."""
    root = dataset_dir(settings, model_version)
    if not root.is_dir():
        return []
    parts = [p for p in root.glob("part-*.parquet") if p.is_file()]
    return sorted(parts, key=lambda p: (p.stat().st_mtime_ns, p.name))


def read_latest(settings: Settings, model_version: str, columns: list[str] | None = None) -> pa.Table:
    """The latest row per image_id across all parts, sorted by image_id; an empty table if none.

    `columns` selects output columns (image_id is always included).
    """
    wanted = list(columns) if columns else list(COLUMNS)
    if "image_id" not in wanted:
        wanted.insert(0, "image_id")
    read_cols = list(dict.fromkeys([*wanted, "embedded_at"]))
    tables = []
    for order, path in enumerate(list_parts(settings, model_version)):
        table = read_part(path, read_cols)
        tables.append(table.append_column("_part", pa.array(np.full(len(table), order, dtype=np.int64))))
    if not tables:
        return _empty(settings, model_version, wanted)
    table = pa.concat_tables(tables, promote_options="default")
    if len(table) == 0:
        return table.select(wanted)
    ids = table["image_id"].to_numpy()
    when = table["embedded_at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    part = table["_part"].to_numpy()
    # Sort by id, then newest first; the first row of each id wins.
    order = np.lexsort((-part, -when, ids))
    sorted_ids = ids[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return table.take(pa.array(order[first])).select(wanted)


def read_part(path: Path, columns: list[str]) -> pa.Table:
    """`columns` of one part; extension columns an older part lacks come back as nulls."""
    present = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[c for c in columns if c in present])
    for f in FINGERPRINT_FIELDS:
        if f.name in columns and f.name not in present:
            table = table.append_column(f, pa.nulls(len(table), f.type))
    return table.select(columns)


def _empty(settings: Settings, model_version: str, wanted: list[str]) -> pa.Table:
    from embeddings.models import MODELS, parse_name

    try:
        dim = MODELS[parse_name(model_version).model].dim
    except Exception:  # an unknown version has no rows anyway; any dim gives the right columns
        dim = 1
    full = schema(dim)
    for f in FINGERPRINT_FIELDS:
        full = full.append(f)
    return full.empty_table().select(wanted)


def read_vectors(table: pa.Table) -> np.ndarray:
    """The `vector` column as a C-contiguous float32 (n, dim) array, without a Python loop."""
    col = table["vector"].combine_chunks()
    dim = col.type.list_size
    return np.ascontiguousarray(col.values.to_numpy(zero_copy_only=False).reshape(-1, dim), dtype=np.float32)


def compact(settings: Settings, model_version: str, conninfo: str | None = None) -> dict[str, object]:
    """Merge all current parts into one (latest row per image), repoint the ledger, delete the old parts.

    Parts written while this runs are left alone (only the parts listed at the
    start are merged and removed). With `conninfo`, ledger rows that pointed at
    a merged part point at the new one, in one transaction, before any file is
    deleted; without it the ledger is not touched. With an object-store DATA_DIR the parts are
    mirrored first, the merged part is uploaded before the ledger moves, and the old objects go last.
    """
    from datetime import UTC, datetime

    from embeddings.writer import write_atomic

    if settings.remote_data:
        pull_parts(settings, model_version)
    parts = list_parts(settings, model_version)
    if len(parts) < 2:
        return {"merged": 0, "part": str(parts[0]) if parts else None, "rows": None}
    tables = [pq.read_table(p) for p in parts]
    merged_input = pa.concat_tables(tables, promote_options="default")  # parts older than the fingerprint columns
    ids = merged_input["image_id"].to_numpy()
    when = merged_input["embedded_at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    order_part = np.concatenate([np.full(len(t), i, dtype=np.int64) for i, t in enumerate(tables)])
    order = np.lexsort((-order_part, -when, ids))
    first = np.ones(len(order), dtype=bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    latest = merged_input.take(pa.array(order[first]))
    dest = dataset_dir(settings, model_version) / f"part-compact-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-00000.parquet"
    write_atomic(latest, dest)
    if settings.remote_data:
        dest = push_part(settings, dest)
    if conninfo:
        from core.db import connect

        data = settings.resolved_data_dir.resolve()

        def rel(p: Path) -> str:
            try:
                return str(p.resolve().relative_to(data))
            except ValueError:
                return str(p)

        with connect(conninfo=conninfo) as conn, conn.transaction():
            conn.execute(
                "UPDATE image_embeddings SET parquet_part = %s WHERE model_version = %s AND parquet_part = ANY(%s)",
                (rel(dest), model_version, [rel(p) for p in parts]),
            )
    for p in parts:
        if settings.remote_data:
            from storage import objects

            objects.delete(settings, settings.data_location, p.relative_to(settings.resolved_data_dir).as_posix())
        os.unlink(p)
    return {"merged": len(parts), "part": str(dest), "rows": len(latest)}


# --- an object-store DATA_DIR: this process keeps a mirror of the parts it writes or reads ---------------

def parts_location(settings: Settings, model_version: str) -> Location:
    """The object-store folder of a model version's parts (DATA_DIR/embeddings/model_version=<mv>)."""
    return settings.data_location.child(f"embeddings/model_version={safe_model_version(model_version)}")


def push_part(settings: Settings, local: Path) -> Path:
    """Upload a part written in the local mirror (one PUT: whole or absent), then drop the local copy.

    A part of the same name already there (a retried batch) is replaced only when this one holds
    all of its ids, as `embeddings.writer.write_part` decides locally; otherwise a unique name.
    Returns the part's path in the mirror (relative to DATA_DIR it names the object).
    """
    import uuid

    from storage import objects

    data = settings.resolved_data_dir
    rel = local.relative_to(data).as_posix()
    location = settings.data_location
    if objects.info(settings, location, rel) is not None:
        with objects.open_read(settings, location, rel) as fh:
            try:
                old_ids = set(pq.read_table(fh, columns=["image_id"])["image_id"].to_pylist())
            except Exception:  # an unreadable leftover: keep it, write beside it
                old_ids = {None}
        if not old_ids <= set(pq.read_table(local, columns=["image_id"])["image_id"].to_pylist()):
            renamed = local.with_name(f"{local.stem}-{uuid.uuid4().hex[:8]}.parquet")
            os.replace(local, renamed)
            local, rel = renamed, renamed.relative_to(data).as_posix()
    objects.put_file(settings, location, rel, local)
    local.unlink(missing_ok=True)
    return local


def pull_parts(settings: Settings, model_version: str, names: set[str] | None = None) -> int:
    """Mirror a model version's parts (all, or those `names`), mtime = the object's, extras removed when
    mirroring all. Returns how many were downloaded."""
    from storage import objects

    location = parts_location(settings, model_version)
    local_dir = dataset_dir(settings, model_version)
    remote = {o.name: o for o in objects.list_files(settings, location) if o.name.startswith("part-")}
    local_dir.mkdir(parents=True, exist_ok=True)
    fetched = 0
    for name, obj in remote.items():
        if names is not None and name not in names:
            continue
        dest = local_dir / name
        if dest.is_file() and dest.stat().st_size == obj.size and abs(dest.stat().st_mtime - obj.mtime) < 1e-3:
            continue  # the same object (size and time: a part replaced by a retried batch has a new time)
        objects.get_file(settings, location, name, dest, size=obj.size)
        os.utime(dest, (obj.mtime, obj.mtime))  # list_parts orders parts by mtime: the upload order
        fetched += 1
    if names is None:
        for path in local_dir.glob("part-*.parquet"):
            if path.name not in remote:
                path.unlink(missing_ok=True)
    return fetched
