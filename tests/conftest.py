"""Test harness: a fresh PostgreSQL database per run, a private Airflow home, sample images.

The database is created on the server the environment names (DB_HOST, DB_PORT,
DB_USER, DB_PASS; default 127.0.0.1:5432 postgres). If no server answers, a
private PostgreSQL is started in a temp dir for the run. The test database is
migrated once (with TEST_DB_SCHEMA=ems, created with the original
service's DDL first: tests/ems_schema.py) and dropped at the end; its settings are exported to os.environ
so subprocesses (uvicorn, node, airflow) reach the same database.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers import TABLES, airflow_environment

pytest_plugins = ["tests.selection"]  # the `samples` and `db` marks: which tests CI's second passes run again

_RUN_DIR = Path(tempfile.mkdtemp(prefix="imgsim-tests-"))
_STATE: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    # Airflow reads its config at import: point it at a private home before any test imports it.
    airflow_home = _RUN_DIR / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parent.parent
    os.environ.update(
        {
            **airflow_environment(airflow_home, repo),
            "DATA_DIR": str(_RUN_DIR / "data"),
            # The ONNX exports of the models, made once per run (tests give each DATA_DIR its own folder).
            "MODEL_CACHE_DIR": str(_RUN_DIR / "model-cache"),
        }
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    dbname = _STATE.get("dbname")
    admin = _STATE.get("admin_conninfo")
    if dbname and admin:
        try:
            with psycopg.connect(str(admin), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        except psycopg.Error:
            pass
    server = _STATE.get("local_server")
    if server is not None:
        server.stop()  # type: ignore[attr-defined]
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


def _admin_conninfo() -> str:
    """Reach the configured server, or start a private one; returns a conninfo to the postgres DB."""
    from core.localpg import configured_or_private

    info, server = configured_or_private(_RUN_DIR)
    if server is not None:
        _STATE["local_server"] = server
    return info


@pytest.fixture
def pg_folder() -> Iterator[Path]:
    """A folder for a private PostgreSQL, outside pytest's temp root: a concurrent pytest session resets that
    root to 0700, and as root the server runs as the unprivileged postgres user, who must traverse every parent."""
    folder = Path(tempfile.mkdtemp(prefix="imgsim-test-pg-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_database() -> str:
    """Create and migrate this run's database; export DB_* so everything uses it. Returns its conninfo."""
    from core.settings import get_settings
    from tests.ems_schema import prepare_test_database

    admin = _admin_conninfo()
    dbname = f"imgsim_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{dbname}"')
    _STATE.update(dbname=dbname, admin_conninfo=admin)
    os.environ["DB_NAME"] = dbname
    params = psycopg.conninfo.conninfo_to_dict(admin)
    os.environ.update(DB_HOST=str(params["host"]), DB_PORT=str(params.get("port", 5432)),
                      DB_USER=str(params.get("user", "postgres")))
    get_settings.cache_clear()
    info = psycopg.conninfo.make_conninfo(admin, dbname=dbname)
    with psycopg.connect(info) as conn:
        prepare_test_database(conn)  # TEST_DB_SCHEMA=ems: made with the original EMS DDL first
    return info


@pytest.fixture
def db(pg_database: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to an emptied test database (every table truncated)."""
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        yield conn


@pytest.fixture
def settings(pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Settings for one test: the test database, a fresh DATA_DIR and IMAGE_ROOT under tmp_path."""
    from core.settings import get_settings

    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMAGE_ROOT", str(tmp_path / "images"))
    (tmp_path / "images").mkdir()
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[object]:
    """A real S3-protocol server for the run (stack/objectstore.py); its credentials are in its `env()`."""
    from stack.objectstore import S3Server

    server = S3Server(_RUN_DIR / "s3").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The S3 server's endpoint and keys in the environment, a fresh bucket for this test, a private cache.

    Returns (server, bucket name, bucket folder); settings built after this reach the server.
    """
    from core.settings import get_settings
    from storage.filesystems import clear_cache

    if s3_server.proc is None:  # a test that stopped it for an outage
        s3_server.start()
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STORAGE_CACHE_DIR", str(tmp_path / "cache"))
    bucket = f"b{uuid.uuid4().hex[:10]}"
    folder = s3_server.bucket(bucket)
    clear_cache()
    get_settings.cache_clear()
    yield s3_server, bucket, folder
    clear_cache()
    get_settings.cache_clear()
