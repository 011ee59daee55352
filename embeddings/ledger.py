"""The image_embeddings ledger: one row per (image_id, model_version), upserted in one transaction.

Written only after the Parquet part is in place, so an `embedded` row always
points at a part that holds the vector. Re-running a batch updates the same
rows (attempts + 1); it never adds rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg

MAX_ERROR_CHARS = 200

_UPSERT = """
INSERT INTO image_embeddings AS e (image_id, model_version, status, error, attempts, parquet_part, embedded_at)
VALUES (%s, %s, %s, %s, 1, %s, now())
ON CONFLICT (image_id, model_version) DO UPDATE SET
    status = EXCLUDED.status,
    error = EXCLUDED.error,
    attempts = e.attempts + 1,
    -- a failed re-embed keeps the part of the last good vector (still in the dataset)
    parquet_part = COALESCE(EXCLUDED.parquet_part, e.parquet_part),
    embedded_at = now()
"""


def record(
    conn: psycopg.Connection,
    model_version: str,
    *,
    embedded: Sequence[int],
    part: str | None,
    failed: Iterable[tuple[int, str]] = (),
) -> None:
    """Upsert `embedded` ids (pointing at `part`) and `failed` (id, reason) pairs in one transaction."""
    rows = [(int(i), model_version, "embedded", None, part) for i in embedded]
    if rows and not part:
        raise ValueError("embedded rows need the Parquet part that holds their vectors")
    rows += [(int(i), model_version, "failed", (reason or "failed")[:MAX_ERROR_CHARS], None) for i, reason in failed]
    if not rows:
        return
    rows.sort(key=lambda r: r[0])  # a fixed lock order: concurrent batches never deadlock
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_UPSERT, rows)
