"""When `image_embeddings` runs on its own: EMBEDDING_SCHEDULE, a cron in UTC (default every 10 minutes).

`none` leaves only manual runs and the CLI (no scheduled runs; backfills need a schedule). A cron
Airflow cannot read fails the DAG's import, shown in the UI with the reason.
"""

from __future__ import annotations

import os

from airflow.sdk import CronDataIntervalTimetable

DEFAULT = "*/10 * * * *"  # also core.settings.Settings.embedding_schedule's default


def embedding_timetable() -> CronDataIntervalTimetable | None:
    value = os.environ.get("EMBEDDING_SCHEDULE", DEFAULT).strip()
    if value.lower() in ("", "none"):
        return None
    timetable = CronDataIntervalTimetable(value, timezone="UTC")
    timetable.validate()  # AirflowTimetableInvalid naming the problem, at import
    return timetable
