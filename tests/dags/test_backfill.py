"""`airflow backfill create` (the real CLI) over image_embeddings: each run embeds its data interval's rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.dags.conftest import REPO, TEST_MODEL, ledger, photos, run_existing, sync_dags

pytestmark = pytest.mark.slow  # a backfill over several intervals through the Airflow CLI (a minute): make test-slow

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _complete_finished_backfills() -> None:
    """The scheduler's step that closes a backfill whose runs all finished (one backfill per DAG at a time)."""
    from airflow.models.backfill import Backfill
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from sqlalchemy import and_, exists, select

    with create_session() as session:
        unfinished = exists(select(DagRun.id).where(
            and_(DagRun.backfill_id == Backfill.id, DagRun.state.in_((DagRunState.RUNNING, DagRunState.QUEUED)))))
        for backfill in session.scalars(select(Backfill).where(Backfill.completed_at.is_(None), ~unfinished)):
            backfill.completed_at = datetime.now(UTC)


def _backfill(start: datetime, end: datetime, *extra: str) -> list[str]:
    """Create a backfill with the CLI; returns the ids of its queued runs, oldest first."""
    from airflow.models.backfill import Backfill
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    _complete_finished_backfills()
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run(
        [str(airflow), "backfill", "create", "--dag-id", "image_embeddings",
         "--from-date", start.isoformat(), "--to-date", end.isoformat(), *extra],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Failed to import plugin" not in proc.stdout + proc.stderr
    with create_session() as session:
        newest = session.scalar(select(Backfill.id).where(Backfill.dag_id == "image_embeddings")
                                .order_by(Backfill.id.desc()).limit(1))
        created = session.execute(
            select(DagRun.run_id, DagRun.run_type, DagRun.state)
            .where(DagRun.backfill_id == newest).order_by(DagRun.data_interval_start)
        ).all()
    # New runs, or earlier runs cleared for reprocessing: queued either way, of type backfill.
    assert created and all(str(getattr(r.run_type, "value", r.run_type)) == "backfill" for r in created)
    assert all(str(getattr(r.state, "value", r.state)) == "queued" for r in created), created
    return [r.run_id for r in created]


def test_backfill_embeds_each_interval_pending_then_all(dag_bag, image_rows, settings) -> None:  # type: ignore[no-untyped-def]
    from embeddings.runner import embed_batch

    dag = dag_bag.get_dag("image_embeddings")
    sync_dags(dag_bag)
    pics = photos(image_rows, 8)
    early = image_rows.add_files(pics[:3], event="A", created_at=T0 + timedelta(minutes=2))  # [10:00, 10:10)
    middle = image_rows.add_files(pics[3:6], event="B", created_at=T0 + timedelta(minutes=14))  # [10:10, 10:20)
    late = image_rows.add_files(pics[6:], event="C", created_at=T0 + timedelta(hours=2))  # outside the backfill
    # One row of the middle interval already has its embedding: a pending backfill leaves it alone.
    embed_batch(image_rows.conn.info.dsn, [middle[0]], model_name=TEST_MODEL, run_id="earlier")

    run_ids = _backfill(T0, T0 + timedelta(minutes=10), "--dag-run-conf", json.dumps({"model": TEST_MODEL}))
    assert len(run_ids) == 2  # logical dates 10:00 and 10:10, one 10-minute interval each
    for run_id in run_ids:
        dr = run_existing(dag, run_id)
        assert dr.state == "success", run_id
    rows = ledger(image_rows.conn)
    assert set(rows) == set(early + middle)  # nothing of the late rows
    assert all(rows[i][0] == "embedded" and rows[i][2] == 1 for i in early + middle)  # the old one not redone
    assert not set(late) & set(rows)

    # Re-embedding asked for: scope "all" redoes every row of the interval, and only those.
    (run_id,) = _backfill(T0 + timedelta(minutes=10), T0 + timedelta(minutes=10),
                          "--dag-run-conf", json.dumps({"model": TEST_MODEL, "scope": "all"}),
                          "--reprocess-behavior", "completed")
    assert run_existing(dag, run_id).state == "success"
    again = ledger(image_rows.conn)
    assert {i for i in again if again[i][2] == 2} == set(middle)
    assert all(again[i] == rows[i] for i in early)
