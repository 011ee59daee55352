"""Registering image files as `images` rows for the runner tests."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import psycopg


def add_event(db: psycopg.Connection) -> str:
    code = str(uuid.uuid4())
    db.execute("INSERT INTO events (code, name) VALUES (%s, 'test')", (code,))
    return code


def register(db: psycopg.Connection, event: str, file_path: str, filename: str | None = None) -> int:
    row = db.execute(
        "INSERT INTO images (event_code, filename, file_path) VALUES (%s, %s, %s) RETURNING id",
        (event, filename or Path(file_path).name, file_path),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_files(db: psycopg.Connection, event: str, root: Path, files: list[Path], sub: str = "uploads") -> list[int]:
    """Copy `files` into root/sub (tests never write to the shared data) and register them."""
    (root / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for f in files:
        shutil.copyfile(f, root / sub / f.name)
        ids.append(register(db, event, f"/{sub}/{f.name}", f.name))
    return ids
