"""Writing one Parquet part atomically: a temp file in the same directory, then a rename.

A reader (the index builder) never sees a half-written part, and a retried
batch replaces its own earlier part instead of duplicating it.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embeddings.dataset import FINGERPRINT_FIELDS, schema

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def part_name(run_id: str, batch_no: int) -> str:
    run = _UNSAFE.sub("_", run_id).strip("_.") or "run"
    return f"part-{run}-{batch_no:05d}.parquet"


def build_table(
    *,
    dim: int,
    model_version: str,
    image_ids: Sequence[int],
    image_codes: Sequence[str],
    event_codes: Sequence[str],
    vectors: np.ndarray,
    widths: Sequence[int],
    heights: Sequence[int],
    embedded_at: datetime | None = None,
    fingerprints: Sequence[bytes | None] | None = None,
) -> pa.Table:
    """A table in the contract schema; vectors must be (n, dim) float32.

    With `fingerprints` (one per row, None where none could be computed) the
    table also carries the extension columns `fingerprint` and
    `fingerprint_version` (duplicate verification reads them, never the file).
    """
    n = len(image_ids)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (n, dim):
        raise ValueError(f"vectors have shape {vectors.shape}, expected ({n}, {dim})")
    when = embedded_at or datetime.now(UTC)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    table = pa.Table.from_arrays(
        [
            pa.array(image_ids, type=pa.int64()),
            pa.array([str(c) for c in image_codes], type=pa.string()),
            pa.array([str(c) for c in event_codes], type=pa.string()),
            pa.FixedSizeListArray.from_arrays(flat, dim),
            pa.array([model_version] * n, type=pa.string()),
            pa.array(widths, type=pa.int32()),
            pa.array(heights, type=pa.int32()),
            pa.array([when] * n, type=pa.timestamp("us", tz="UTC")),
        ],
        schema=schema(dim),
    )
    if fingerprints is None:
        return table
    if len(fingerprints) != n:
        raise ValueError(f"{len(fingerprints)} fingerprints for {n} rows")
    from duplicates.fingerprint import FINGERPRINT_VERSION

    for f, values in zip(FINGERPRINT_FIELDS, (
            list(fingerprints), [FINGERPRINT_VERSION if fp is not None else None for fp in fingerprints]), strict=True):
        table = table.append_column(f, pa.array(values, type=f.type))
    return table


def write_atomic(table: pa.Table, dest: Path) -> Path:
    """Write `table` to `dest` through a temp name in the same directory; fsync, then rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def write_part(table: pa.Table, directory: Path, run_id: str, batch_no: int) -> Path:
    """Place `table` as part-<run>-<batch>.parquet in `directory`.

    A retry of the same batch (the existing part's ids all re-embedded here)
    replaces it; any other clash gets a unique suffix, so no vector is lost.
    """
    dest = directory / part_name(run_id, batch_no)
    if dest.exists():
        try:
            old_ids = set(pq.read_table(dest, columns=["image_id"])["image_id"].to_pylist())
        except Exception:  # unreadable leftover: keep it for inspection, write beside it
            old_ids = {None}
        if not old_ids <= set(table["image_id"].to_pylist()):
            dest = dest.with_name(f"{dest.stem}-{uuid.uuid4().hex[:8]}.parquet")
    return write_atomic(table, dest)
