"""Small helpers shared by tests."""

from __future__ import annotations

from core.sample_data import generate_photos, sample_formats_dir, sample_photos

__all__ = ["TABLES", "generate_photos", "sample_formats_dir", "sample_photos"]

# Our tables and the seed's, children first (for TRUNCATE).
TABLES = ("image_embeddings", "embedding_runs", "index_versions", "index_current", "images", "events")


def airflow_environment(airflow_home, repo) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A private Airflow (SQLite metadata under `airflow_home`, the repo's DAGs and plugins) as the tests run it;
    set it in os.environ before Airflow is imported (it reads its config at import)."""
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(repo / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    }


def overwrite(path, data: bytes) -> None:  # type: ignore[no-untyped-def]
    """Damage a file the way a disk fault or a careless hand would, even though segments are read-only
    (root ignores the mode; other users must add the write bit first, as an operator's tool would)."""
    import os

    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.write(data)
        fh.truncate(len(data))


def flip_byte(path) -> None:  # type: ignore[no-untyped-def]
    """Same size, one byte changed: only a checksum can tell."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    overwrite(path, bytes(data))
