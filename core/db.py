"""Database connections with errors a user can act on.

Everything talks to PostgreSQL through `connect()`. Inside Airflow the
connection string comes from the Airflow connection (PostgresHook); elsewhere
from the settings. Either way the same psycopg 3 code runs.
"""

from __future__ import annotations

import psycopg
from psycopg.conninfo import conninfo_to_dict

from core.settings import Settings, get_settings


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or refused us; the message names the setting to fix."""


def describe(conninfo: str) -> str:
    """host:port/dbname as user, without the password, for messages."""
    params = conninfo_to_dict(conninfo)
    return (
        f"{params.get('user', '?')}@{params.get('host', '?')}:{params.get('port', '5432')}"
        f"/{params.get('dbname', '?')}"
    )


def explain(exc: Exception, conninfo: str) -> str:
    """Turn a psycopg connection error into one line that says which setting to fix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = describe(conninfo)
    low = text.lower()
    if "does not exist" in low and "database" in low:
        hint = "create it or set DB_NAME (then run `python -m core.migrate`)"
    elif "password" in low or "authentication" in low:
        hint = "check DB_USER and DB_PASS"
    elif "role" in low and "does not exist" in low:
        hint = "check DB_USER"
    else:
        hint = "is PostgreSQL running? check DB_HOST and DB_PORT"
    return f"cannot connect to PostgreSQL at {where}: {text} — {hint}"


def connect(
    settings: Settings | None = None,
    *,
    conninfo: str | None = None,
    autocommit: bool = False,
) -> psycopg.Connection:
    """Open a psycopg 3 connection, raising DatabaseUnavailable with a clear message."""
    info = conninfo or (settings or get_settings()).conninfo()
    try:
        return psycopg.connect(info, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(explain(exc, info)) from None


def airflow_conninfo(conn_id: str = "image_db") -> str:
    """Connection string of an Airflow connection, resolved through PostgresHook.

    Imported lazily so nothing outside Airflow needs the provider.
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    uri = PostgresHook(postgres_conn_id=conn_id).get_uri()
    # SQLAlchemy-style schemes are not libpq's.
    for prefix in ("postgresql+psycopg2://", "postgresql+psycopg://", "postgres://"):
        if uri.startswith(prefix):
            uri = "postgresql://" + uri[len(prefix):]
    return uri


def airflow_connection_json(conninfo: str) -> str:
    """AIRFLOW_CONN_<ID> in Airflow's JSON form for a libpq conninfo (any password works, no URL quoting).

    The inverse of `airflow_conninfo`: the demo and the tests hand the image database to Airflow with it.
    """
    import json

    params = conninfo_to_dict(conninfo)
    conn: dict[str, object] = {
        "conn_type": "postgres",
        "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port") or 5432),
        "login": params.get("user", "postgres"),
        "schema": params["dbname"],
    }
    if params.get("password"):
        conn["password"] = params["password"]
    return json.dumps(conn)
