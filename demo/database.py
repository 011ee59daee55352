"""The demo's PostgreSQL: the configured server when one answers, else a private one under DATA_DIR/pg.

Either way the database DB_NAME is created when missing and migrated, and the
demo hands its DB_* settings to every process it starts (Airflow, the search
server), so they all reach the same database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.db import DatabaseUnavailable, connect, describe
from core.localpg import LocalPostgres, port_answers
from core.migrate import apply_migrations
from core.settings import Settings


@dataclass
class DemoDatabase:
    """Where the demo's data lives, and the private server to stop at the end (None when configured)."""

    conninfo: str
    origin: str
    server: LocalPostgres | None = None
    applied: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """DB_* variables for child processes (the seed's names)."""
        params = conninfo_to_dict(self.conninfo)
        return {
            "DB_HOST": str(params.get("host", "127.0.0.1")),
            "DB_PORT": str(params.get("port", 5432)),
            "DB_NAME": str(params["dbname"]),
            "DB_USER": str(params.get("user", "postgres")),
            "DB_PASS": str(params.get("password", "")),
        }

    def describe(self) -> str:
        return describe(self.conninfo)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def ensure_database(conninfo: str) -> bool:
    """Create the conninfo's database when it does not exist (through the `postgres` database); True if created."""
    try:
        with psycopg.connect(conninfo):
            return False
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc) or "database" not in str(exc):
            raise
    dbname = conninfo_to_dict(conninfo)["dbname"]
    with psycopg.connect(make_conninfo(conninfo, dbname="postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(str(dbname))))
    return not exists


def open_database(settings: Settings, data_dir: Path, *, private: bool = False,
                  notes: list[str] | None = None) -> DemoDatabase:
    """Reach (or start) PostgreSQL, create DB_NAME if needed and apply the migrations.

    `private=True` skips the configured server. Anything worth telling the user
    (a configured server that refused us) is appended to `notes`.
    """
    notes = notes if notes is not None else []
    configured = settings.conninfo()
    if not private and port_answers(settings.db_host, settings.db_port):
        try:
            created = ensure_database(configured)
            db = DemoDatabase(configured, "configured PostgreSQL (DB_HOST/DB_PORT)")
            if created:
                notes.append(f"created database {settings.db_name}")
            return _migrate(db)
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            notes.append(f"the configured PostgreSQL at {describe(configured)} refused us ({first}); "
                         "using a private one instead")
    elif not private:
        notes.append(f"no PostgreSQL answers at {settings.db_host}:{settings.db_port}; starting a private one")
    server = LocalPostgres(data_dir / "pg").start()
    info = make_conninfo(host="127.0.0.1", port=server.port, user="postgres", dbname=settings.db_name,
                         connect_timeout=settings.db_connect_timeout, application_name="image-similarity-demo")
    try:
        if ensure_database(info):
            notes.append(f"created database {settings.db_name}")
        return _migrate(DemoDatabase(info, f"private PostgreSQL in {data_dir / 'pg'}", server=server))
    except BaseException:
        server.stop()
        raise


def _migrate(db: DemoDatabase) -> DemoDatabase:
    try:
        with connect(conninfo=db.conninfo) as conn:
            db.applied = apply_migrations(conn)
    except DatabaseUnavailable:
        db.stop()
        raise
    return db
