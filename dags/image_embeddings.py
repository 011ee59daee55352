"""
### image_embeddings

Embeds photos registered in the image database's `images` table into the
Parquet dataset of the chosen model, and records each row in the
`image_embeddings` ledger (`embedded`, or `failed` with the reason).

* **Scheduled** every 10 minutes (EMBEDDING_SCHEDULE, a cron in UTC; `none`:
  manual only; no catchup, one run at a time): embeds the rows that have no
  ledger row yet for the model (`scope=pending`).
* **Manual** (Trigger with config): re-embed one event, a created_at range or
  everything, with another model or batch size; see the form.
* **Backfill** (`airflow backfill create --dag-id image_embeddings --from-date
  ... --to-date ...`): each run embeds the rows created inside its data
  interval that still lack an embedding, or all of them with
  `--dag-run-conf '{"scope": "all"}'`.

`plan` claims the run's images (so concurrent runs never embed the same
image) and lists their ids only; `embed` runs once per batch (mapped, so batches
spread over workers, each retried on its own); `emit_embeddings` publishes
the Asset `image-embeddings/<model>` with how many rows were added, which
triggers `image_index`. `check_batches` fails the run when a batch failed,
after the other batches' results are kept and announced.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import TriggerRule, dag, task

from image_pipeline.assets import EMBEDDINGS_ALIAS, base_model, embeddings_asset
from image_pipeline.params import embedding_params
from image_pipeline.schedule import embedding_timetable

DEFAULT_ARGS = {
    "owner": "data-team",
    "retries": 3,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


@dag(
    dag_id="image_embeddings",
    schedule=embedding_timetable(),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=embedding_params(),
    tags=["image-similarity"],
    doc_md=__doc__,
)
def image_embeddings() -> None:
    @task
    def plan(**context) -> list[list[int]]:
        """Validate the params and list the image ids to embed, in batches."""
        from airflow.sdk import conf
        from airflow.sdk.exceptions import AirflowFailException

        from image_pipeline import embedding_tasks
        from image_pipeline.params import ParamsError, resolve_plan_request

        dag_run = context["dag_run"]
        try:
            request = resolve_plan_request(
                dict(context["params"]),
                run_type=str(getattr(dag_run.run_type, "value", dag_run.run_type)),
                data_interval_start=context.get("data_interval_start"),
                data_interval_end=context.get("data_interval_end"),
            )
            conninfo = embedding_tasks.image_db_conninfo()
            return embedding_tasks.plan(
                conninfo, request, run_id=context["run_id"], max_batches=conf.getint("core", "max_map_length")
            )
        except ParamsError as exc:
            raise AirflowFailException(f"invalid params: {exc}") from None

    @task
    def embed(image_ids: list[int], **context) -> dict:
        """Embed one batch (decode, model, L2-normalise) into one Parquet part plus ledger rows."""
        from image_pipeline import embedding_tasks

        return embedding_tasks.embed(
            embedding_tasks.image_db_conninfo(),
            image_ids,
            model=context["params"]["model"],
            run_id=context["run_id"],
            batch_no=max(0, int(context["ti"].map_index)),
        )

    @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS, outlets=[EMBEDDINGS_ALIAS])
    def emit_embeddings(results: list[dict], **context) -> dict:
        """Announce the model's new vectors (the Asset triggers image_index); nothing added, no event."""
        from image_pipeline.embedding_tasks import summarise

        # Index by len(): iterating the lazy XCom sequence probes one past its end and logs an error.
        summary = summarise([results[i] for i in range(len(results))])
        if summary["added"] > 0 and summary["model"]:
            summary["run_id"] = context["run_id"]
            asset = embeddings_asset(base_model(summary["model"]))
            context["outlet_events"][EMBEDDINGS_ALIAS].add(asset, extra=summary)
        return summary

    @task
    def check_batches() -> None:
        """Runs only when every batch succeeded; a failed batch makes this run fail visibly."""

    results = embed.expand(image_ids=plan())
    emit_embeddings(results)
    results >> check_batches()


image_embeddings()
