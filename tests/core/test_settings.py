"""Settings: the seed's names, and clear one-line errors for bad or unreachable databases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.db import DatabaseUnavailable, connect
from core.localpg import free_port
from core.settings import REPO_ROOT, SettingsError, load_settings


def test_seed_names_are_read_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"DB_HOST": "db.example", "DB_NAME": "ems", "DB_USER": "u", "DB_PASS": "p w'd",
                       "DB_PORT": "6543", "API_PORT": "9000"}.items():
        monkeypatch.setenv(key, value)
    s = load_settings()
    assert (s.db_host, s.db_name, s.db_user, s.db_pass, s.db_port, s.api_port) == (
        "db.example", "ems", "u", "p w'd", 6543, 9000)
    assert "password='p w\\'d'" in s.conninfo()


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PORT", "not-a-port")
    with pytest.raises(SettingsError, match="DB_PORT"):
        load_settings()


def test_unreachable_database_says_which_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PORT", str(free_port()))
    with pytest.raises(DatabaseUnavailable) as info:
        connect(load_settings(db_connect_timeout=2))
    msg = str(info.value)
    assert "DB_HOST" in msg and "DB_PORT" in msg and "\n" not in msg


def test_missing_database_says_db_name(pg_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_NAME", "no_such_database_here")
    with pytest.raises(DatabaseUnavailable, match="DB_NAME"):
        connect(load_settings())


def test_migrate_command_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "DB_HOST": "127.0.0.1", "DB_PORT": str(free_port()), "DB_CONNECT_TIMEOUT": "2"}
    res = subprocess.run([sys.executable, "-m", "core.migrate"], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("error: cannot connect to PostgreSQL") and "DB_PORT" in res.stderr


def test_migrate_command_applies_then_reports_up_to_date(pg_database: str) -> None:
    res = subprocess.run([sys.executable, "-m", "core.migrate"], cwd=REPO_ROOT, env=dict(os.environ),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "schema already up to date" in res.stdout


@pytest.mark.parametrize("value,says", [
    ("s4://bucket/imgsim", "no installed filesystem handles s4://"),
    ("gs://bucket/imgsim", "gs:// needs gcsfs"),
    ("s3://", "needs a bucket"),
    ("s3://key:secret@bucket/x", "credentials do not go in the URL"),
])
def test_a_folder_url_no_filesystem_handles_is_refused_at_start(value: str, says: str) -> None:
    """Before, DATA_DIR=s3://data/imgsim became a relative folder `s3:` and embedding 'succeeded' into it."""
    with pytest.raises(SettingsError) as info:
        load_settings(data_dir=value)
    assert "DATA_DIR" in str(info.value) and says in str(info.value) and "\n" not in str(info.value)
    assert "secret" not in str(info.value)


def test_object_store_urls_are_locations_and_paths_stay_local(tmp_path: Path) -> None:
    s = load_settings(data_dir="s3://data/imgsim", backup_dir="s3://backups/x", storage_cache_dir=tmp_path)
    assert s.remote_data and s.data_location.url == "s3://data/imgsim"
    assert s.image_location.url == "s3://data/imgsim/images" and s.backup_location.url == "s3://backups/x"
    assert s.resolved_data_dir.is_relative_to(tmp_path)  # the local work happens in this process's cache
    assert s.resolved_backup_dir.is_relative_to(tmp_path) and s.resolved_backup_dir != s.resolved_data_dir
    local = load_settings(data_dir=str(tmp_path / "d"))
    assert not local.remote_data and local.resolved_data_dir == tmp_path / "d"


@pytest.mark.parametrize("command", [["embeddings", "pending"], ["indexing", "versions"], ["core.migrate"],
                                     ["serving"]])
def test_every_command_stops_at_start_on_a_bad_folder_url(command: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": "s4://data/imgsim", "PYTHONPATH": str(REPO_ROOT)}
    res = subprocess.run([sys.executable, "-m", *command], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode != 0 and len(errors) == 1, res.stderr
    assert "DATA_DIR" in errors[0] and "s4://" in errors[0], errors
    assert not any(tmp_path.iterdir()), list(tmp_path.iterdir())  # nothing written anywhere


def test_one_model_default_for_every_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset EMBEDDING_MODEL: Places365 where its weights are, else efficientnet-lite0; the DAGs
    (tests/dags/test_dagbag.py), the demo and the server read this one rule, so `make serve` serves what
    `make demo` built."""
    from core.settings import get_settings

    monkeypatch.delenv("EMBEDDING_MODEL", raising=False)
    monkeypatch.delenv("MODEL_WEIGHTS", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    settings = load_settings()
    assert settings.embedding_model == "efficientnet-lite0" and "make weights" in settings.model_reason
    weights = tmp_path / "weights" / "resnet50_places365.pth.tar"
    weights.parent.mkdir()
    weights.write_bytes(b"checkpoint")
    get_settings.cache_clear()
    assert load_settings().embedding_model == "places365-resnet50"
    monkeypatch.setenv("EMBEDDING_MODEL", " efficientnet-lite0@crop224 ")
    get_settings.cache_clear()
    settings = load_settings()
    assert (settings.embedding_model, settings.model_reason) == ("efficientnet-lite0@crop224", "EMBEDDING_MODEL")
    get_settings.cache_clear()
