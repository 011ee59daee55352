"""The migrated schema: the seed's `images` exactly, our tables, idempotent migrations, EMS databases."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from core.migrate import SQL_DIR, apply_migrations, migration_files
from tests.ems_schema import EMS_EVENTS_DDL, ORIGINAL_IMAGES_DDL, THREE_GB, ems_mode, insert_odd_rows

SEED_IMAGES = {
    # column: (data_type, nullable, default-substring or None), as the original DDL makes them
    "id": ("integer", "NO", "nextval("),
    "code": ("uuid", "YES", "gen_random_uuid()"),
    "event_code": ("uuid", "NO", None),
    "filename": ("text", "NO", None),
    "file_path": ("text", "NO", None),
    "file_size": ("bigint", "YES", None),
    "mime_type": ("text", "YES", None),
    "width": ("integer", "YES", None),
    "height": ("integer", "YES", None),
    "faiss_index": ("integer", "YES", None),
    "created_at": ("timestamp without time zone", "YES", "now()"),
}
SEED_INDEXES = {"idx_images_event_code", "idx_images_faiss_index"}


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


def test_migration_holds_the_original_ddl_verbatim() -> None:
    """sql/002_images.sql starts with the original README's statements, character for character."""
    assert (SQL_DIR / "002_images.sql").read_text().find(ORIGINAL_IMAGES_DDL) > 0


def test_images_has_the_seed_indexes_and_no_unique_of_ours(db: psycopg.Connection) -> None:
    rows = db.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'images'").fetchall()
    names = {r[0] for r in rows}
    assert names >= SEED_INDEXES, names
    unique = {r[0] for r in rows if "UNIQUE" in r[1]}
    # Only the seed's own keys are unique: an EMS database holding duplicate paths still migrates.
    assert unique == {"images_pkey", "images_code_key"}, unique


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
            assert conn.execute(
                "SELECT count(*) FROM pg_indexes WHERE indexname = ANY(%s)", (list(SEED_INDEXES),)
            ).fetchone()[0] == len(SEED_INDEXES)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def ems_database(pg_database: str):  # type: ignore[no-untyped-def]
    """A fresh database made as an EMS makes it: its events, the original images DDL, odd rows, duplicates."""
    admin = psycopg.conninfo.make_conninfo(pg_database, dbname="postgres")
    name = f"imgsim_ems_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(psycopg.conninfo.make_conninfo(pg_database, dbname=name), autocommit=True) as conn:
            conn.execute(EMS_EVENTS_DDL)  # type: ignore[arg-type]
            conn.execute(ORIGINAL_IMAGES_DDL)  # type: ignore[arg-type]
            yield conn
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_ems_database_with_odd_rows_and_duplicates_migrates_unchanged(ems_database: psycopg.Connection) -> None:
    """Odd but legal rows and duplicate (event, path) rows survive migration; no column or row changes."""
    conn = ems_database
    event = str(conn.execute("INSERT INTO events (name, venue) VALUES ('e', 'hall') RETURNING code").fetchone()[0])
    odd = insert_odd_rows(conn, event)
    for _ in range(2):  # the same file registered twice: legal in the EMS schema
        conn.execute("INSERT INTO images (event_code, filename, file_path) VALUES (%s, 'dup.jpg', '/dup.jpg')",
                     (event,))
    before_cols = columns(conn, "images")
    before_rows = conn.execute("SELECT * FROM images ORDER BY id").fetchall()

    assert apply_migrations(conn) == [p.name for p in migration_files()]
    assert columns(conn, "images") == before_cols
    assert list(before_cols) == list(SEED_IMAGES)
    assert conn.execute("SELECT * FROM images ORDER BY id").fetchall() == before_rows
    by_why = {r.why: r for r in odd}
    assert by_why["NULL code"].code is None
    assert conn.execute("SELECT file_size FROM images WHERE id = %s",
                        (by_why["3 GB file_size"].id,)).fetchone()[0] == THREE_GB
    assert len(by_why["path of 500+ characters"].file_path) >= 500
    # Our tables work with those rows: a ledger row for the NULL-code image.
    conn.execute("INSERT INTO image_embeddings (image_id, model_version, status, error) "
                 "VALUES (%s, 'm', 'failed', 'x')", (by_why["NULL code"].id,))
    # A path no btree could hold raw still inserts (our lookup index keys an md5 of it).
    conn.execute("INSERT INTO images (event_code, filename, file_path) VALUES (%s, 'big', %s)",
                 (event, "/" + uuid.uuid4().hex * 300))


def test_ems_mode_made_this_runs_database(pg_database: str) -> None:
    """With TEST_DB_SCHEMA=ems the shared test database was made with the original DDL (EMS events too)."""
    if not ems_mode():
        pytest.skip("TEST_DB_SCHEMA is not 'ems' (make pytest runs that pass too)")
    with psycopg.connect(pg_database) as conn:
        cols = columns(conn, "events")
    assert "venue" in cols and "organizer_id" in cols
