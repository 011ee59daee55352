"""The server's one write (register an image row, idempotently) and an image's pipeline status.

`/add_image` is safe to retry: a second request for the same (event_code,
file_path) returns the row the first one made. The EMS table has no unique
key there, and an existing database may already hold such duplicates, so no
unique index can enforce it; instead a transaction-scoped advisory lock on
the pair serialises concurrent registrations of the same file, and the
lookup (oldest row first) runs under that lock before any insert.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from serving.database import Database
from serving.served import ServedIndex

# Namespace of the two-key advisory locks (the migrator uses the one-bigint keyspace).
_LOCK_NAMESPACE = 0x1A6E

Status = Literal["queued", "embedded", "indexed", "failed"]

_ROW_COLUMNS = ("id, code, event_code, filename, file_path, file_size, mime_type, width, height, faiss_index, "
                "created_at")


@dataclass(frozen=True)
class ImageRow:
    """One `images` row as the EMS DDL allows it: code may be NULL, file_size may exceed 2**31."""

    id: int
    code: str | None
    event_code: str
    filename: str
    file_path: str
    file_size: int | None
    mime_type: str | None
    width: int | None
    height: int | None
    faiss_index: int | None
    created_at: datetime | None

    @classmethod
    def from_db(cls, row: tuple[Any, ...]) -> ImageRow:
        (id_, code, event, filename, path, size, mime, width, height, faiss_index, created) = row
        return cls(int(id_), None if code is None else str(code), str(event), filename, path,
                   None if size is None else int(size), mime, width, height, faiss_index, created)


@dataclass(frozen=True)
class Registration:
    row: ImageRow
    created: bool


@dataclass(frozen=True)
class PipelineStatus:
    """Where an image is: no ledger row yet (queued), embedded, in the served index, or failed (why)."""

    status: Status
    model_version: str | None
    index_version: int | None = None
    error: str | None = None
    attempts: int | None = None
    embedded_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FilenameConflict(ValueError):
    """The (event_code, file_path) is registered under another filename."""

    def __init__(self, existing: ImageRow) -> None:
        super().__init__(f"{existing.file_path!r} is already registered in event {existing.event_code} as image "
                         f"{existing.id} with filename {existing.filename!r}")
        self.existing = existing


async def register_image(db: Database, *, event_code: uuid.UUID, filename: str, file_path: str,
                         values: dict[str, Any]) -> Registration:
    """The existing row for (event_code, file_path), else a new one; one row even for concurrent requests."""
    async def run(conn: psycopg.AsyncConnection) -> Registration:
        async with conn.transaction():
            # One key per (event, path); a collision between two pairs only makes them wait in turn.
            await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s::text || ' ' || %s))",
                               (_LOCK_NAMESPACE, str(event_code), file_path))
            cur = await conn.execute(
                f"SELECT {_ROW_COLUMNS} FROM images WHERE event_code = %s AND md5(file_path) = md5(%s) "
                "AND file_path = %s ORDER BY id LIMIT 1",
                (event_code, file_path, file_path))
            found = await cur.fetchone()
            if found is not None:
                row = ImageRow.from_db(found)
                if row.filename != filename:
                    raise FilenameConflict(row)
                return Registration(row, created=False)
            cur = await conn.execute(
                "INSERT INTO images (event_code, filename, file_path, file_size, mime_type, width, height) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_ROW_COLUMNS}",
                (event_code, filename, file_path, values.get("file_size"), values.get("mime_type"),
                 values.get("width"), values.get("height")))
            inserted = await cur.fetchone()
            assert inserted is not None
            return Registration(ImageRow.from_db(inserted), created=True)

    # Waiting on the lock counts too: a stuck holder (or a hung server) must not hang the request.
    return await db.run(run, timeout=db.slow_timeout)


async def find_image(db: Database, id_or_code: int | uuid.UUID) -> ImageRow | None:
    """The row by id or by code (a NULL-code row is reachable by id only)."""
    where = "id = %s" if isinstance(id_or_code, int) else "code = %s"
    rows = await db.fetch(f"SELECT {_ROW_COLUMNS} FROM images WHERE {where}", (id_or_code,))
    return ImageRow.from_db(rows[0]) if rows else None


async def pipeline_status(db: Database, served: ServedIndex | None, model_version: str | None,
                          image_id: int) -> PipelineStatus:
    """`indexed` when the version this server answers from holds it (searchable now), else the ledger's word;
    the ledger's attempts and embedded_at in both cases."""
    indexed = served is not None and served.has(image_id)
    if indexed:
        model_version = served.model_version  # type: ignore[union-attr]
    if model_version is None:
        return PipelineStatus("queued", None)
    rows = await db.fetch("SELECT status, error, attempts, embedded_at FROM image_embeddings "
                          "WHERE image_id = %s AND model_version = %s", (image_id, model_version))
    status, error, attempts, embedded_at = rows[0] if rows else (None, None, None, None)
    if indexed:
        return PipelineStatus("indexed", model_version, index_version=served.version,  # type: ignore[union-attr]
                              attempts=attempts, embedded_at=embedded_at)
    if status is None:
        return PipelineStatus("queued", model_version)
    if status == "failed":
        return PipelineStatus("failed", model_version, error=error or "failed (no reason recorded)",
                              attempts=attempts, embedded_at=embedded_at)
    return PipelineStatus("embedded", model_version, attempts=attempts, embedded_at=embedded_at)
