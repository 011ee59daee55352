"""What a build reads: the ledger of live embedded images (PostgreSQL) and the Parquet vectors.

The Parquet dataset follows docs/design.md: `DATA_DIR/embeddings/model_version=<mv>/part-*.parquet`
with `image_id`, `vector fixed_size_list<float32>[dim]`, `embedded_at`, ... Parts are
streamed one at a time (light columns first, vectors only of the winning rows), so a
build never holds the whole dataset in memory next to the index.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.db import connect


class BuildError(RuntimeError):
    """The inputs of a build are unusable (no dataset, mixed dims, ...); the message says what to do."""


@dataclass
class Ledger:
    """Live embedded images of one model, as of `snapshot` (the database clock).

    A full ledger (`since` None) holds every live embedded row. A partial one (a merge's) holds
    only rows (re-)embedded at or after `since` plus `live_ids`, the ids of every live embedded
    image (one int column: how deletions since the parent are found without the O(N) text rows).
    `watermark` is what the next merge passes as `since`: no row invisible to this read can have
    embedded_at before it (see `_WATERMARK_SQL`).
    """

    rows: pd.DataFrame  # image_id, image_code, event_code, filename, embedded_at, parquet_part
    snapshot: datetime
    watermark: datetime | None = None
    since: datetime | None = None
    live_ids: np.ndarray | None = None  # sorted int64, only for a partial ledger

    @property
    def partial(self) -> bool:
        return self.since is not None


# An EMS row may have a NULL code: coalesced, or `||` would make the whole line NULL and string_agg
# would drop the image from every index without a word.
# CSV lines are built and concatenated server-side, ~20,000 rows per result row: the per-row cost
# of a client-side COPY loop (about 3 us/row in Python) would dominate a merge at a million images.
_LEDGER_SQL = """
    SELECT string_agg(line, E'\\n' ORDER BY image_id) FROM (
        SELECT e.image_id,
               e.image_id || ',' || coalesce(i.code::text, '') || ',' || i.event_code || ',' || {q}(i.filename) || ','
               || (extract(epoch FROM e.embedded_at) * 1000000)::bigint || ',' || {q}(coalesce(e.parquet_part, ''))
               AS line
        FROM image_embeddings e JOIN images i ON i.id = e.image_id
        WHERE e.model_version = %s AND e.status = 'embedded' {since}
    ) s GROUP BY image_id / 20000 ORDER BY image_id / 20000
"""
_LEDGER_COLUMNS = ["image_id", "image_code", "event_code", "filename", "embedded_at", "parquet_part"]


def _csv_quote_sql(expr: str) -> str:
    return f"('\"' || replace({expr}, '\"', '\"\"') || '\"')"


# embedded_at is `now()` of the writing transaction, which may commit after this read: the
# watermark is the start of the oldest transaction still open in this database (or now), so a
# row this read cannot see has embedded_at >= watermark and the next merge's window includes it.
_WATERMARK_SQL = """
    SELECT now(), least(now(), (SELECT min(xact_start) FROM pg_stat_activity
                                WHERE datname = current_database() AND pid <> pg_backend_pid()
                                  AND xact_start IS NOT NULL))
"""


def read_ledger(conninfo: str, model_version: str, since: datetime | None = None) -> Ledger:
    """The ledger's embedded rows for live images (deleted images are gone by ON DELETE CASCADE);
    with `since`, only rows embedded at or after it (an indexed range) plus the live ids."""
    query = _LEDGER_SQL.replace("{q}(i.filename)", _csv_quote_sql("i.filename")).replace(
        "{q}(coalesce(e.parquet_part, ''))", _csv_quote_sql("coalesce(e.parquet_part, '')"))
    query = query.replace("{since}", "AND e.embedded_at >= %s" if since is not None else "")
    live_ids = None
    with connect(conninfo=conninfo) as conn:
        snapshot, watermark = conn.execute(_WATERMARK_SQL).fetchone()  # type: ignore[misc]
        params = (model_version,) if since is None else (model_version, since)
        chunks = [r[0] for r in conn.execute(query, params).fetchall()]
        if since is not None:
            got = conn.execute("""SELECT array_agg(image_id ORDER BY image_id) FROM image_embeddings
                                  WHERE model_version = %s AND status = 'embedded'""",
                               (model_version,)).fetchone()[0]  # type: ignore[index]
            live_ids = np.asarray(got or [], dtype=np.int64)
    text = "\n".join(c for c in chunks if c)
    if not text:
        empty = pd.DataFrame({c: pd.Series(dtype="int64" if c == "image_id" else str) for c in _LEDGER_COLUMNS})
        empty["embedded_at"] = pd.to_datetime(pd.Series([], dtype="int64"), unit="us", utc=True)
        return Ledger(empty, snapshot, watermark, since, live_ids)
    frame = pd.read_csv(
        io.StringIO(text), header=None, names=_LEDGER_COLUMNS,
        dtype={"image_id": "int64", "image_code": str, "event_code": str, "filename": str, "embedded_at": "int64",
               "parquet_part": str},
        keep_default_na=False,
    )
    frame["embedded_at"] = pd.to_datetime(frame["embedded_at"], unit="us", utc=True)
    return Ledger(frame, snapshot, watermark, since, live_ids)


def part_dim(path: Path) -> int:
    """The vector length a part declares in its schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        field = pq.read_schema(path).field("vector")
    except (KeyError, OSError, pa.ArrowInvalid) as exc:
        raise BuildError(f"{path.name}: not a readable embeddings part ({exc})") from None
    if not pa.types.is_fixed_size_list(field.type):
        raise BuildError(f"{path.name}: column 'vector' is {field.type}, expected fixed_size_list<float32>[dim]")
    return int(field.type.list_size)


def dataset_dim(parts: Iterable[Path]) -> int | None:
    """The one vector dim shared by all parts (None without parts); BuildError when they disagree."""
    dims: dict[int, Path] = {}
    for p in parts:
        dims.setdefault(part_dim(p), p)
    if len(dims) > 1:
        desc = ", ".join(f"{d} ({p.name})" for d, p in dims.items())
        raise BuildError(f"parts of one model version have different dims: {desc}")
    return next(iter(dims), None)


def _vectors_of(table: object, dim: int) -> np.ndarray:
    col = table.column("vector").combine_chunks()  # type: ignore[attr-defined]
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(-1, dim)


def locate_latest(parts: list[Path], wanted: np.ndarray) -> pd.DataFrame:
    """For each wanted image_id, the part and row holding its latest vector (max embedded_at, then
    the later part). Reads only the light columns. Columns: image_id, part_no, part_row."""
    import pyarrow.parquet as pq

    frames = []
    wanted_set = pd.Index(np.asarray(wanted, dtype=np.int64))
    for part_no, path in enumerate(parts):
        try:
            t = pq.read_table(path, columns=["image_id", "embedded_at"])
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise BuildError(f"{path}: unreadable Parquet part ({exc})") from None
        ids = t.column("image_id").to_numpy().astype(np.int64)
        keep = wanted_set.get_indexer(ids) >= 0
        if not keep.any():
            continue
        at = pd.to_datetime(t.column("embedded_at").to_pandas(), utc=True).to_numpy()
        rows = np.flatnonzero(keep)
        frames.append(pd.DataFrame({"image_id": ids[rows], "embedded_at": at[rows], "part_no": part_no,
                                    "part_row": rows}))
    if not frames:
        return pd.DataFrame({"image_id": np.empty(0, np.int64), "part_no": np.empty(0, np.int64),
                             "part_row": np.empty(0, np.int64)})
    all_rows = pd.concat(frames, ignore_index=True)
    all_rows = all_rows.sort_values(["image_id", "embedded_at", "part_no", "part_row"], kind="stable")
    latest = all_rows.drop_duplicates("image_id", keep="last")
    return latest[["image_id", "part_no", "part_row"]].reset_index(drop=True)


def scatter_vectors(
    parts: list[Path], located: pd.DataFrame, target_rows: np.ndarray, dim: int,
    write: Callable[[np.ndarray, np.ndarray], None],
) -> None:
    """Read the vectors `located` points at, one part at a time, and hand them to
    `write(target_rows, vectors)`; target_rows[i] is where located row i goes."""
    import pyarrow.parquet as pq

    if located.empty:
        return
    part_no = located["part_no"].to_numpy().astype(np.int64)
    part_row = located["part_row"].to_numpy().astype(np.int64)
    for p in np.unique(part_no):
        sel = np.flatnonzero(part_no == p)
        path = parts[int(p)]
        if part_dim(path) != dim:
            raise BuildError(f"{path.name}: vectors have dim {part_dim(path)}, expected {dim}")
        table = pq.read_table(path, columns=["vector"])
        vectors = _vectors_of(table.take(part_row[sel]), dim)
        write(target_rows[sel], vectors)
        del table, vectors
