"""
### image_index

Builds, verifies and publishes a new FAISS index version for a model.

* **Asset-triggered**: runs whenever `image_embeddings` announces new vectors
  (Asset `image-embeddings/<model>`), merging them into the current version.
* **Manual** (Trigger with config): `mode` merge | rebuild, an `index_type`
  override, another model, how many versions to keep.

`build` -> `verify` -> `publish` -> `prune`, once per triggering model.
`build` also verifies the duplicate relations of every event that changed
(new, re-embedded or deleted images; every event on a rebuild) into the
version, so the search server's duplicate routes read them instead of
computing them on the first request: about 25 ms of CPU per image of a
changed event (docs/duplicates.md).
A failed verification fails the run without retries and nothing is
published: the server keeps serving the current version. `publish` emits the
Asset `image-index/<model>` whose extra names the published version.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import reduce
from operator import or_

from airflow.sdk import dag, task, task_group

from image_pipeline.assets import EMBEDDINGS_ASSETS, INDEX_ALIAS, INDEX_ASSETS, base_model, index_asset
from image_pipeline.params import index_params

DEFAULT_ARGS = {
    "owner": "data-team",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


@dag(
    dag_id="image_index",
    schedule=reduce(or_, EMBEDDINGS_ASSETS),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=index_params(),
    tags=["image-similarity"],
    doc_md=__doc__,
)
def image_index() -> None:
    @task
    def targets(**context) -> list[dict]:
        """The model versions to index: the `model` param, else those whose embeddings triggered the run."""
        from airflow.sdk.exceptions import AirflowFailException

        from image_pipeline import index_tasks

        triggered = index_tasks.triggering_models(context.get("triggering_asset_events"))
        try:
            return index_tasks.targets(dict(context["params"]), triggered)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None

    @task_group
    def index_model(target: dict) -> None:
        @task
        def build(target: dict, **context) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from image_pipeline import index_tasks
            from image_pipeline.embedding_tasks import image_db_conninfo

            params = context["params"]
            try:
                return index_tasks.build(
                    image_db_conninfo(), target, mode=params["mode"], index_type=params.get("index_type"),
                    dag_run_id=context["run_id"],
                )
            except index_tasks.NothingToIndex as exc:
                raise AirflowSkipException(str(exc)) from None

        @task
        def verify(built: dict) -> dict:
            from airflow.sdk.exceptions import AirflowFailException

            from image_pipeline import index_tasks
            from image_pipeline.embedding_tasks import image_db_conninfo
            from indexing.verify import VerificationFailed

            try:
                return index_tasks.verify(image_db_conninfo(), built)
            except VerificationFailed as exc:
                # Deterministic: retrying would fail the same way. Nothing downstream runs.
                raise AirflowFailException(f"verification of v{built['version']} failed: {exc}") from None

        # The alias emits one model's event at run time; the inlets declare every image-index/<model>
        # asset, so Airflow knows them before the first event (else: "AssetModel ... not found").
        @task(outlets=[INDEX_ALIAS], inlets=list(INDEX_ASSETS))
        def publish(verified: dict, **context) -> dict:
            from image_pipeline import index_tasks
            from image_pipeline.embedding_tasks import image_db_conninfo

            extra = index_tasks.publish(image_db_conninfo(), verified, dag_run_id=context["run_id"])
            context["outlet_events"][INDEX_ALIAS].add(index_asset(base_model(extra["model"])), extra=extra)
            return extra

        @task
        def prune(published: dict, **context) -> list[int]:
            from image_pipeline import index_tasks
            from image_pipeline.embedding_tasks import image_db_conninfo

            return index_tasks.prune(image_db_conninfo(), published, keep=context["params"].get("keep"))

        prune(publish(verify(build(target))))

    index_model.expand(target=targets())


image_index()
