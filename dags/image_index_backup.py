"""
### image_index_backup

Daily: copies the published FAISS index versions of every model into `BACKUP_DIR`
(byte copies, never hard links, each hashed while copied and re-hashed once written),
re-verifies the copies already there and keeps the newest `INDEX_KEEP_VERSIONS`.

The live store shares merge bases between versions (hard links), so one damaged
file can damage several versions; these copies are what `python -m indexing
rollback` restores from and what the search server falls back to by itself.
A damaged backup copy, or a store version too damaged to copy, fails the run
with the file named in the log (no retries: the disk will not heal itself).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task


@dag(
    dag_id="image_index_backup",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "data-team", "retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["image-similarity"],
    doc_md=__doc__,
)
def image_index_backup() -> None:
    @task
    def backup() -> dict:
        from dataclasses import asdict

        from airflow.sdk.exceptions import AirflowFailException

        from core.settings import get_settings
        from image_pipeline.embedding_tasks import image_db_conninfo
        from indexing import pipeline

        settings = get_settings()
        conninfo = image_db_conninfo()
        reports = {mv: pipeline.backup(conninfo, settings, mv) for mv in pipeline.stored_model_versions(settings)}
        problems = [p for r in reports.values() for p in (*r.damaged.values(), *r.skipped.values())]
        if problems:
            raise AirflowFailException(f"{len(problems)} backup problem(s); first: {problems[0]}")
        return {mv: asdict(r) for mv, r in reports.items()}

    backup()


image_index_backup()
