"""Airflow fixtures: the metadata DB (SQLite, migrated once), the `image_db` connection, DAG runs.

tests/conftest.py already points AIRFLOW_HOME at a temp dir and the DAGs and
plugins folders at the repo's. Here the image database's Airflow connection
(AIRFLOW_CONN_IMAGE_DB) is set from the test PostgreSQL, so the DAG tasks reach
it through PostgresHook exactly as in production.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from core.db import airflow_connection_json
from tests.selection import reads_samples

REPO = Path(__file__).resolve().parents[2]
DAGS_DIR = REPO / "dags"
TEST_MODEL = "efficientnet-lite0"

# The DAG files import their support package from the DAGs folder, as Airflow's parser does.
if str(DAGS_DIR) not in sys.path:
    sys.path.insert(0, str(DAGS_DIR))


@pytest.fixture(scope="session")
def airflow_env(pg_database: str) -> Iterator[None]:
    """Migrate the Airflow metadata DB once and expose the test database as connection `image_db`."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_IMAGE_DB", airflow_connection_json(pg_database))
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(airflow), "db", "migrate"], env=os.environ.copy(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    yield
    mp.undo()


@pytest.fixture(scope="session")
def dag_bag(airflow_env: None):  # type: ignore[no-untyped-def]
    """The repo's DAG files, parsed the way the DAG processor does (bundle path on sys.path)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    bag = BundleDagBag(dag_folder=DAGS_DIR, bundle_path=DAGS_DIR, bundle_name="dags-folder")
    assert not bag.import_errors, bag.import_errors
    return bag


@dataclass
class ImageRows:
    """Rows registered in `images` for a test, with the files they point at."""

    root: Path
    conn: psycopg.Connection
    events: dict[str, str] = field(default_factory=dict)

    def event(self, name: str) -> str:
        """The code of event `name`, created on first use."""
        if name not in self.events:
            code = str(uuid.uuid4())
            self.conn.execute("INSERT INTO events (code, name) VALUES (%s, %s)", (code, name))
            self.events[name] = code
        return self.events[name]

    def add(self, file_path: str, event: str = "main", created_at: datetime | None = None) -> int:
        """Register one file (path relative to IMAGE_ROOT, or anything the app could store); returns its id."""
        row = self.conn.execute(
            "INSERT INTO images (event_code, filename, file_path, created_at)"
            " VALUES (%s, %s, %s, COALESCE(%s, CURRENT_TIMESTAMP)) RETURNING id",
            (self.event(event), Path(file_path).name, file_path, created_at),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def add_files(self, paths: list[Path], event: str = "main", created_at: datetime | None = None) -> list[int]:
        return [self.add(str(p.relative_to(self.root)), event, created_at) for p in paths]


@pytest.fixture
@reads_samples
def image_rows(db: psycopg.Connection, settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImageRows:  # type: ignore[no-untyped-def]
    """An empty test database whose IMAGE_ROOT holds the sample data (read in place) or generated photos."""
    from core.sample_data import sample_data_dir
    from core.settings import get_settings

    data = sample_data_dir()
    root = data if data is not None and (data / "photos").is_dir() else tmp_path / "images"
    monkeypatch.setenv("IMAGE_ROOT", str(root))
    monkeypatch.setenv("EMBEDDING_MODEL", TEST_MODEL)
    get_settings.cache_clear()
    db.execute("SET TIME ZONE 'UTC'")
    return ImageRows(root=root, conn=db)


def photos(rows: ImageRows, count: int, *, offset: int = 0) -> list[Path]:
    """`count` sample photos under the rows' IMAGE_ROOT (real ones, else generated there)."""
    from core.sample_data import sample_photos

    found = sample_photos(offset + count, out_dir=rows.root)
    assert len(found) >= offset + count
    return found[offset : offset + count]


def run_dag(dag, conf: dict | None = None, *, expect: str = "success"):  # type: ignore[no-untyped-def]
    """One real DAG run through dag.test() (tasks run in this process); asserts its final state."""
    # Every param spelled out: in one process the DAG object's params would otherwise keep an earlier run's conf.
    full = {name: dag.params.get_param(name).value for name in dag.params} | (conf or {})
    dr = dag.test(run_conf=full, logical_date=datetime.now(UTC))
    states = {(ti.task_id, ti.map_index): ti.state for ti in dr.get_task_instances()}
    assert dr.state == expect, f"{dag.dag_id} run ended {dr.state}: {states}"
    return dr


def task_states(dr) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """task_id -> states of its (mapped) instances, for assertions."""
    out: dict[str, list[str]] = {}
    for ti in dr.get_task_instances():
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


def asset_events(asset_name: str, run_id: str | None = None) -> list[dict]:
    """Extras of the Airflow asset events of `asset_name` (optionally from one DAG run), oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == asset_name)
            .order_by(AssetEvent.id)
        )
        if run_id is not None:
            query = query.where(AssetEvent.source_run_id == run_id)
        return [dict(extra) for extra in session.scalars(query)]


def queued_for(dag_id: str, asset_name: str) -> bool:
    """Whether an asset event is queued to trigger `dag_id` (what the scheduler turns into a run)."""
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetDagRunQueue.target_dag_id)
            .join(AssetModel, AssetModel.id == AssetDagRunQueue.asset_id)
            .where(AssetModel.name == asset_name, AssetDagRunQueue.target_dag_id == dag_id)
        )
        return session.scalar(query) is not None


def ledger(conn: psycopg.Connection) -> dict[int, tuple[str, str | None, int, str | None]]:
    """image_id -> (status, error, attempts, parquet_part) for every ledger row."""
    rows = conn.execute(
        "SELECT image_id, status, error, attempts, parquet_part FROM image_embeddings ORDER BY image_id"
    ).fetchall()
    return {int(r[0]): (r[1], r[2], int(r[3]), r[4]) for r in rows}


def sync_dags(dag_bag) -> None:  # type: ignore[no-untyped-def]
    """Write the parsed DAGs to the metadata DB, as the DAG processor does (the CLI reads them from there)."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(dag_bag, "dags-folder", None)


def run_existing(dag, run_id: str):  # type: ignore[no-untyped-def]
    """Run the tasks of a DAG run someone else created (e.g. `airflow backfill create`) in this process.

    The scheduler's part of dag.test(), applied to an existing run: evaluate dependencies,
    run what is ready, repeat until the run finishes.
    """
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    with create_session() as session:
        dr = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
        assert dr is not None, run_id
        dr.dag = scheduler_dag
        dr.state = DagRunState.RUNNING
        session.commit()
        for _ in range(100):
            if dr.state != DagRunState.RUNNING:
                break
            session.expire_all()
            schedulable, _ = dr.update_state(session=session)
            for ti in schedulable:
                ti.try_number += 1
                ti.state = TaskInstanceState.SCHEDULED
            session.commit()
            for ti in [t for t in dr.get_task_instances(session=session) if t.state == TaskInstanceState.SCHEDULED]:
                _run_task(ti=ti, task=dag.task_dict[ti.task_id])
    with create_session() as session:
        return session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
