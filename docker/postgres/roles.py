"""The image database's two login roles and their grants: least privilege for the pipeline and the server.

Run by the compose `migrate` service right after the migrations (`python -m core.migrate`), as DB_USER,
the role that owns the tables (the bundled postgres: its superuser). Every `docker compose up` runs it
again: the roles, their passwords (from the secrets) and their grants are set to what this file says,
whatever they were before.

- DB_PIPELINE_USER (default imgsim_pipeline), password pipeline_db_password: the Airflow tasks (the
  connection image_db) and the commands run in airflow-cli. Reads events and images, writes only
  images.faiss_index (publish), and reads and writes the pipeline's own tables (the embedding ledger,
  claims and runs, the index versions and CURRENT). TEMPORARY for the publish's temporary table.
- DB_SERVER_USER (default imgsim_server), password server_db_password: the search server. Reads
  events, images, the ledger (an image's pipeline status) and the index versions (/stats); inserts
  into images the columns POST /add_image writes (the sequence of images.id with them), nothing else:
  no UPDATE, no DELETE, nothing on the pipeline's tables but SELECT.
- LISTEN (images_deleted, index_published), NOTIFY and advisory locks need no grant.
- Neither may create, alter or drop anything; the migrations stay DB_USER's (the owner).

Environment (all set by docker-compose.yaml; the passwords by docker/secrets-env from the secrets):
DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASS (the owner, as core.settings reads them), DB_PIPELINE_USER,
DB_PIPELINE_PASS, DB_SERVER_USER, DB_SERVER_PASS; DB_MANAGE_ROLES=false leaves roles and grants to the
database's administrator (an Event Management database whose owner may not create roles: run this
file once as a role that may, or apply the grants of docs/operations.md by hand).
Passwords are sent as SCRAM verifiers computed here, so no statement or server log holds one.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import psycopg
from psycopg import sql

DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
# The columns POST /add_image writes (serving/image_rows.py register_image); id, code and created_at
# take their defaults.
SERVER_INSERT_COLUMNS = ("event_code", "filename", "file_path", "file_size", "mime_type", "width", "height")


@dataclass(frozen=True)
class Grant:
    table: str
    privileges: tuple[str, ...]  # table-wide
    columns: dict[str, tuple[str, ...]] | None = None  # privilege -> the only columns it covers
    sequences: bool = False  # USAGE on the sequences of the table's serial/identity columns


PIPELINE = (
    Grant("events", ("SELECT",)),
    Grant("images", ("SELECT",), columns={"UPDATE": ("faiss_index",)}),
    *(Grant(table, DML, sequences=True) for table in (
        "image_embeddings", "embedding_claims", "embedding_runs", "index_versions", "index_current")),
)
SERVER = (
    Grant("events", ("SELECT",)),
    Grant("images", ("SELECT",), columns={"INSERT": SERVER_INSERT_COLUMNS}, sequences=True),
    Grant("image_embeddings", ("SELECT",)),
    Grant("index_versions", ("SELECT",)),
)
# Every table of the migrations (sql/) is in PIPELINE; the migrations' own bookkeeping is nobody's.
OWNER_ONLY = ("schema_migrations",)
# The environment this script reads besides core.settings' DB_* (tests/test_compose.py checks compose sets them).
VARIABLES = ("DB_PIPELINE_USER", "DB_PIPELINE_PASS", "DB_SERVER_USER", "DB_SERVER_PASS", "DB_MANAGE_ROLES")


class RolesError(RuntimeError):
    """A role cannot be set up as asked; the message says what to do."""


@dataclass(frozen=True)
class Role:
    name: str
    password: str
    grants: tuple[Grant, ...]
    temporary: bool  # TEMPORARY on the database (CREATE TEMP TABLE)


def _schema(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE c.oid = to_regclass('images')").fetchone()
    if row is None:
        raise RolesError("no table images: run the migrations first (python -m core.migrate)")
    return str(row[0])


def _sequences(conn: psycopg.Connection, table: str) -> list[str]:
    rows = conn.execute("SELECT pg_get_serial_sequence(%s, attname) FROM pg_attribute WHERE attrelid = %s::regclass "
                        "AND attnum > 0 AND NOT attisdropped", (table, table)).fetchall()
    return sorted({str(r[0]) for r in rows if r[0]})


def _set_login(conn: psycopg.Connection, role: Role) -> None:
    exists = conn.execute("SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls "
                          "FROM pg_roles WHERE rolname = %s", (role.name,)).fetchone()
    if exists is None:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role.name)))
    elif exists[0]:
        raise RolesError(f"role {role.name} has SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS; "
                         "it must be a plain login role (drop it or ALTER ROLE it to NO...)")
    verifier = conn.pgconn.encrypt_password(role.password.encode(), role.name.encode()).decode()
    conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role.name), sql.Literal(verifier)))


def _grant(conn: psycopg.Connection, role: Role, schema: str, dbname: str) -> None:
    who = sql.Identifier(role.name)
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), who))
    if role.temporary:
        conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(dbname), who))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), who))
    # From scratch every time: whatever was granted before (by hand, or by an older version) goes.
    # (A table-level REVOKE takes the column grants with it.) Tables the owner does not own are skipped
    # by PostgreSQL with a warning.
    conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(sql.Identifier(schema), who))
    conn.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(sql.Identifier(schema), who))
    for grant in role.grants:
        table = sql.Identifier(schema, grant.table)
        if grant.privileges:
            conn.execute(sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                sql.SQL(", ").join(sql.SQL(p) for p in grant.privileges), table, who))
        for privilege, columns in (grant.columns or {}).items():
            conn.execute(sql.SQL("GRANT {} ({}) ON TABLE {} TO {}").format(
                sql.SQL(privilege), sql.SQL(", ").join(sql.Identifier(c) for c in columns), table, who))
        if grant.sequences:
            for sequence in _sequences(conn, f"{schema}.{grant.table}"):
                conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE {} TO {}").format(sql.SQL(sequence), who))


def apply(conn: psycopg.Connection, roles: list[Role]) -> None:
    """Create or update the roles and set their grants, in one transaction."""
    names = [r.name for r in roles]
    if len(set(names)) != len(names):
        raise RolesError(f"the pipeline and the server need two different roles (got {names})")
    owner = conn.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    if owner in names:
        raise RolesError(f"{owner} runs the migrations and owns the tables; the pipeline and the server need "
                         "roles of their own (DB_PIPELINE_USER, DB_SERVER_USER)")
    with conn.transaction():
        schema = _schema(conn)
        dbname = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        wanted = sorted({g.table for r in roles for g in r.grants})
        missing = [t for t in wanted
                   if conn.execute("SELECT to_regclass(%s)", (f"{schema}.{t}",)).fetchone()[0] is None]  # type: ignore[index]
        if missing:
            raise RolesError(f"tables missing: {', '.join(missing)} (run the migrations first: python -m core.migrate)")
        for role in roles:
            _set_login(conn, role)
            _grant(conn, role, schema, str(dbname))


def roles_from_env(environ: dict[str, str]) -> list[Role]:
    out = []
    for prefix, default, grants, temporary in (("DB_PIPELINE", "imgsim_pipeline", PIPELINE, True),
                                               ("DB_SERVER", "imgsim_server", SERVER, False)):
        name = environ.get(f"{prefix}_USER") or default
        password = environ.get(f"{prefix}_PASS", "")
        if not password:
            raise RolesError(f"{prefix}_PASS is not set (compose: {prefix}_PASS_FILE, read by docker/secrets-env)")
        out.append(Role(name, password, grants, temporary))
    return out


def main() -> int:
    if os.environ.get("DB_MANAGE_ROLES", "true").strip().lower() in ("0", "false", "no", "off"):
        print("roles: DB_MANAGE_ROLES=false: roles and grants are left to the database's administrator")
        return 0
    from core.db import DatabaseUnavailable, connect
    from core.settings import SettingsError, get_settings

    try:
        roles = roles_from_env(dict(os.environ))
        with connect(get_settings()) as conn:
            apply(conn, roles)
    except (RolesError, DatabaseUnavailable, SettingsError) as exc:
        print(f"roles: {exc}", file=sys.stderr)
        return 2
    except psycopg.errors.InsufficientPrivilege as exc:
        first = str(exc).strip().splitlines()[0]
        print(f"roles: {first} — DB_USER must own the tables and may create roles (CREATEROLE); otherwise set "
              "DB_MANAGE_ROLES=false and apply the grants of docs/operations.md as the administrator", file=sys.stderr)
        return 2
    print("roles: " + "; ".join(f"{r.name} ({'pipeline' if r.temporary else 'search server'})" for r in roles)
          + ": login, password and grants set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
