"""An Event Management System database as teams bring it: the original service's DDL, verbatim.

`TEST_DB_SCHEMA=ems` makes every test database start like this (an EMS-shaped
`events` with columns of its own, `images` from the original README) before our
migrations run, so the suite's database part runs against it too (`make pytest`
runs that pass after the default one). `insert_odd_rows` adds rows the original
DDL allows and a stricter schema would refuse: a NULL code, a 3 GB file size,
paths of 500+ characters.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

# The original service's README, "Database Setup", character for character.
ORIGINAL_IMAGES_DDL = """\
CREATE TABLE IF NOT EXISTS images (
  id SERIAL PRIMARY KEY,
  code UUID DEFAULT gen_random_uuid() UNIQUE,
  event_code UUID NOT NULL REFERENCES events(code) ON DELETE CASCADE,
  filename TEXT NOT NULL,
  file_path TEXT NOT NULL,
  file_size BIGINT,
  mime_type TEXT,
  width INTEGER,
  height INTEGER,
  faiss_index INTEGER,
  created_at TIMESTAMP DEFAULT NOW()
);

CREATE INDEX IF NOT EXISTS idx_images_event_code ON images(event_code);
CREATE INDEX IF NOT EXISTS idx_images_faiss_index ON images(faiss_index);
"""

# The EMS owns `events`; its shape is not ours. The tests insert `name` only, so the rest has defaults.
EMS_EVENTS_DDL = """\
CREATE TABLE IF NOT EXISTS events (
  id BIGSERIAL PRIMARY KEY,
  code UUID NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  name TEXT NOT NULL,
  description TEXT,
  venue TEXT,
  starts_at TIMESTAMPTZ DEFAULT now(),
  organizer_id INTEGER,
  created_at TIMESTAMP DEFAULT NOW()
);
"""

THREE_GB = 3 * 2**30


def ems_mode() -> bool:
    """True when the run should use EMS-made databases (`TEST_DB_SCHEMA=ems`)."""
    value = os.environ.get("TEST_DB_SCHEMA", "").strip().lower()
    if value not in ("", "ours", "ems"):
        raise RuntimeError(f"TEST_DB_SCHEMA={value!r}: use 'ems' (original DDL first) or leave it unset")
    return value == "ems"


def create_ems_schema(conn: psycopg.Connection) -> None:
    """What an EMS database has before our migrations: its `events` and the original `images`."""
    with conn.transaction():
        conn.execute(EMS_EVENTS_DDL)  # type: ignore[arg-type]
        conn.execute(ORIGINAL_IMAGES_DDL)  # type: ignore[arg-type]


def prepare_test_database(conn: psycopg.Connection) -> None:
    """Migrate a fresh test database; in EMS mode, made with the original DDL first."""
    from core.migrate import apply_migrations

    if ems_mode():
        create_ems_schema(conn)
    apply_migrations(conn)


@dataclass(frozen=True)
class OddRow:
    id: int
    code: str | None
    file_path: str
    file_size: int | None
    why: str


def long_relative_path(prefix: str, total: int = 520) -> str:
    """A `/...` path of about `total` characters in short-enough segments (NAME_MAX is 255 bytes)."""
    parts: list[str] = [prefix.strip("/")]
    while len("/" + "/".join(parts)) < total - 12:
        parts.append(f"d{len(parts):02d}_" + "x" * 60)
    return "/" + "/".join(parts)


def insert_odd_rows(conn: psycopg.Connection, event_code: str, image_root: Path | None = None,
                    photo: Path | None = None) -> list[OddRow]:
    """Rows the original DDL allows: a NULL code, a 3 GB file_size, a 500+-character path.

    With `image_root` and `photo`, each row's file exists there (a copy of `photo`),
    so the pipeline can embed them; otherwise they are rows whose files are missing.
    """
    tag = uuid.uuid4().hex[:6]
    specs = [
        (None, f"/uploads/null_code_{tag}.jpg", 12345, "NULL code"),
        ("default", f"/uploads/huge_{tag}.jpg", THREE_GB, "3 GB file_size"),
        ("default", long_relative_path(f"uploads/long_{tag}") + f"/{'p' * 200}.jpg", None, "path of 500+ characters"),
    ]
    rows: list[OddRow] = []
    for code, path, size, why in specs:
        if image_root is not None and photo is not None:
            dest = image_root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(photo.read_bytes())
        if code is None:
            sql = ("INSERT INTO images (code, event_code, filename, file_path, file_size, mime_type) "
                   "VALUES (NULL, %s, %s, %s, %s, 'image/jpeg') RETURNING id, code")
        else:
            sql = ("INSERT INTO images (event_code, filename, file_path, file_size, mime_type) "
                   "VALUES (%s, %s, %s, %s, 'image/jpeg') RETURNING id, code")
        row = conn.execute(sql, (event_code, Path(path).name, path, size)).fetchone()  # type: ignore[arg-type]
        assert row is not None
        rows.append(OddRow(int(row[0]), None if row[1] is None else str(row[1]), path, size, why))
    return rows
