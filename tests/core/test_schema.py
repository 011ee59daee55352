"""The migrated schema: the seed's `images` exactly, our tables, idempotent migrations."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from core.migrate import apply_migrations, migration_files

SEED_IMAGES = {
    # column: (data_type, nullable, default-substring or None)
    "id": ("integer", "NO", "nextval("),
    "code": ("uuid", "NO", "gen_random_uuid()"),
    "event_code": ("uuid", "NO", None),
    "filename": ("character varying", "NO", None),
    "file_path": ("character varying", "NO", None),
    "file_size": ("integer", "YES", None),
    "mime_type": ("character varying", "YES", None),
    "width": ("integer", "YES", None),
    "height": ("integer", "YES", None),
    "faiss_index": ("integer", "YES", None),
    "created_at": ("timestamp without time zone", "YES", "CURRENT_TIMESTAMP"),
}


def columns(conn: psycopg.Connection, table: str) -> dict[str, tuple[str, str, str | None]]:
    rows = conn.execute(
        "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_name = %s AND table_schema = 'public' ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_images_has_exactly_the_seed_columns(db: psycopg.Connection) -> None:
    cols = columns(db, "images")
    assert list(cols) == list(SEED_IMAGES)
    for name, (dtype, nullable, default) in SEED_IMAGES.items():
        got_type, got_null, got_default = cols[name]
        assert (got_type, got_null) == (dtype, nullable), name
        if default is not None:
            assert got_default is not None and default in got_default, (name, got_default)


def test_images_keys_and_cascade(db: psycopg.Connection) -> None:
    fk = db.execute(
        """SELECT ccu.table_name, ccu.column_name, rc.delete_rule
           FROM information_schema.referential_constraints rc
           JOIN information_schema.key_column_usage kcu ON kcu.constraint_name = rc.constraint_name
           JOIN information_schema.constraint_column_usage ccu ON ccu.constraint_name = rc.unique_constraint_name
           WHERE kcu.table_name = 'images' AND kcu.column_name = 'event_code'"""
    ).fetchall()
    assert fk == [("events", "code", "CASCADE")]
    # code is unique; deleting the event deletes its images and their ledger rows.
    event = db.execute("INSERT INTO events (name) VALUES ('e') RETURNING code").fetchone()[0]
    image = db.execute(
        "INSERT INTO images (event_code, filename, file_path) VALUES (%s, 'a.jpg', '/a.jpg') RETURNING id, code",
        (event,),
    ).fetchone()
    assert isinstance(image[1], uuid.UUID)
    db.execute(
        "INSERT INTO image_embeddings (image_id, model_version, status, parquet_part) "
        "VALUES (%s, 'm', 'embedded', 'p')",
        (image[0],),
    )
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO images (code, event_code, filename, file_path) VALUES (%s, %s, 'b', '/b')",
            (image[1], event),
        )
    db.execute("DELETE FROM events WHERE code = %s", (event,))
    assert db.execute("SELECT count(*) FROM images").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM image_embeddings").fetchone()[0] == 0


def test_ledger_is_one_row_per_image_and_model(db: psycopg.Connection) -> None:
    event = db.execute("INSERT INTO events (name) VALUES ('e') RETURNING code").fetchone()[0]
    image_id = db.execute(
        "INSERT INTO images (event_code, filename, file_path) VALUES (%s, 'a.jpg', '/a.jpg') RETURNING id", (event,)
    ).fetchone()[0]
    insert = "INSERT INTO image_embeddings (image_id, model_version, status, error) VALUES (%s, %s, 'failed', 'x')"
    db.execute(insert, (image_id, "m1"))
    db.execute(insert, (image_id, "m2"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert, (image_id, "m1"))
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO image_embeddings (image_id, model_version, status) VALUES (%s, 'm3', 'done')", (image_id,)
        )
    with pytest.raises(psycopg.errors.CheckViolation):  # embedded rows must name their Parquet part
        db.execute(
            "INSERT INTO image_embeddings (image_id, model_version, status) VALUES (%s, 'm4', 'embedded')",
            (image_id,),
        )


def test_index_versions_columns(db: psycopg.Connection) -> None:
    cols = columns(db, "index_versions")
    for name in ("version", "model_version", "index_type", "vector_count", "path", "checksum", "status",
                 "parent_version", "dag_run_id", "created_at", "published_at"):
        assert name in cols, name


def test_migrations_applied_twice_change_nothing(pg_database: str) -> None:
    def snapshot(conn: psycopg.Connection) -> list[tuple]:
        return conn.execute(
            "SELECT table_name, column_name, data_type, column_default FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY 1, 2"
        ).fetchall() + conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()

    with psycopg.connect(pg_database) as conn:
        before = snapshot(conn)
        assert apply_migrations(conn) == []
        assert snapshot(conn) == before
        # Each file is idempotent by itself too (an EMS database that already has events/images).
        for path in migration_files():
            with conn.transaction():
                conn.execute(path.read_text())  # type: ignore[arg-type]
        assert snapshot(conn) == before


def test_migrate_onto_existing_ems_tables(pg_database: str) -> None:
    """An EMS database with its own `events` keeps it; we only add what is missing."""
    admin = psycopg.conninfo.make_conninfo(pg_database, dbname="postgres")
    name = f"imgsim_ems_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(psycopg.conninfo.make_conninfo(pg_database, dbname=name)) as conn:
            conn.execute("CREATE TABLE events (code UUID PRIMARY KEY, title TEXT, venue TEXT)")
            conn.commit()
            applied = apply_migrations(conn)
            assert applied == [p.name for p in migration_files()]
            assert list(columns(conn, "events")) == ["code", "title", "venue"]
            assert list(columns(conn, "images")) == list(SEED_IMAGES)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
