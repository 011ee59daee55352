"""Apply the numbered SQL migrations in `sql/`, once each, in order.

Usage: `python -m core.migrate` (uses DB_* settings). Every file is written to
be idempotent as well, so applying onto an existing Event Management database
(with its own `events` and `images`) changes nothing of theirs.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import psycopg

from core.db import DatabaseUnavailable, connect
from core.settings import REPO_ROOT, SettingsError, get_settings

SQL_DIR = REPO_ROOT / "sql"
# Any constant works; it only serialises concurrent migrators (several workers starting).
_LOCK_KEY = 0x1A6E_5105


def migration_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """The migrations in apply order: `NNN_name.sql`, sorted by number."""
    files = sorted(p for p in sql_dir.glob("[0-9][0-9][0-9]_*.sql"))
    numbers = [p.name[:3] for p in files]
    if len(set(numbers)) != len(numbers):
        raise RuntimeError(f"two migrations share a number in {sql_dir}: {numbers}")
    return files


def apply_migrations(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations in one transaction each; returns the names applied."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name TEXT PRIMARY KEY,
                   sha256 TEXT NOT NULL,
                   applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
        )
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
        for path in migration_files(sql_dir):
            if path.name in done:
                continue
            text = path.read_text()
            conn.execute(text)  # type: ignore[arg-type]  # trusted file from the repo
            conn.execute(
                "INSERT INTO schema_migrations (name, sha256) VALUES (%s, %s)",
                (path.name, hashlib.sha256(text.encode()).hexdigest()),
            )
            applied.append(path.name)
    return applied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.migrate", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    try:
        settings = get_settings()
        with connect(settings) as conn:
            applied = apply_migrations(conn)
    except (DatabaseUnavailable, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'schema already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
