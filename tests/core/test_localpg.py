"""The private PostgreSQL used when no server is configured (fresh machines, `make demo`)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from core.localpg import LocalPostgres, find_bindir


@pytest.mark.skipif(find_bindir() is None, reason="no PostgreSQL binaries and no pgserver package")
def test_private_server_starts_migrates_and_restarts(pg_folder: Path) -> None:
    from core.migrate import apply_migrations

    server = LocalPostgres(pg_folder / "pg").start()
    try:
        info = psycopg.conninfo.make_conninfo(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres")
        with psycopg.connect(info) as conn:
            assert len(apply_migrations(conn)) >= 4
        server.stop()
        assert not server.running()
        # A second start reuses the cluster and its data, on the same port.
        again = LocalPostgres(pg_folder / "pg").start()
        assert again.port == server.port
        with psycopg.connect(info) as conn:
            assert apply_migrations(conn) == []
    finally:
        server.stop()
