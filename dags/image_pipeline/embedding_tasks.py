"""Bodies of the image_embeddings tasks, as plain functions of their inputs.

The DAG file wraps them in @task; keeping them here keeps the DAG file thin
and lets tests call the same code. `embeddings` (torch) is imported inside
the functions only.
"""

from __future__ import annotations

import logging
from typing import Any

from image_pipeline.params import ParamsError, PlanRequest

log = logging.getLogger(__name__)

# The Airflow connection to the image database (AIRFLOW_CONN_IMAGE_DB or the UI).
IMAGE_DB_CONN_ID = "image_db"


def image_db_conninfo(conn_id: str = IMAGE_DB_CONN_ID) -> str:
    """libpq string of the Airflow connection, through PostgresHook (core.db does the work)."""
    from core.db import airflow_conninfo

    return airflow_conninfo(conn_id)


def model_version_of(model: str) -> str:
    """The exact model version string the ledger and the Parquet dataset are keyed by (no model load)."""
    from embeddings.models import parse_name

    return parse_name(model).model_version


def plan(conninfo: str, request: PlanRequest, *, run_id: str, max_batches: int) -> list[list[int]]:
    """Claim this run's images (see embeddings.planning) and cut them into batches for the mapped embed tasks."""
    from embeddings.models import ModelUnavailable
    from embeddings.planning import plan as plan_run

    try:
        model_version = model_version_of(request.model)
    except ModelUnavailable as exc:
        raise ParamsError(f"model: {exc}") from None
    batches = plan_run(conninfo, model_version, request.selection, run_id=run_id,
                       images_per_part=request.images_per_part, max_parts=max_batches)
    log.info("planned %d images in %d batches for %s (%s)", sum(map(len, batches)), len(batches), model_version,
             request.describe())
    return batches


def _count(value: Any) -> int:
    if isinstance(value, int):
        return value
    return len(value) if value is not None else 0


def embed(conninfo: str, image_ids: list[int], *, model: str, run_id: str, batch_no: int) -> dict[str, Any]:
    """Embed the batch's images this run still holds; a retry renews the claims and rewrites the same part."""
    from embeddings.runner import embed_claimed

    result = embed_claimed(conninfo, [int(i) for i in image_ids], model_name=model, run_id=run_id, batch_no=batch_no)
    summary = {
        "model": model,
        "model_version": result["model_version"],
        "embedded": _count(result.get("embedded")),
        "failed": _count(result.get("failed")),
        "part": str(result["part"]) if result.get("part") else None,
        "lost": _count(result.get("lost")),
    }
    log.info("batch %d: %d embedded, %d failed, part %s", batch_no, summary["embedded"], summary["failed"],
             summary["part"])
    return summary


def summarise(results: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Totals over the batches that finished (a failed batch has no result and adds nothing)."""
    done = [r for r in results if r]
    versions = sorted({r["model_version"] for r in done})
    return {
        "model": done[0]["model"] if done else None,
        "model_version": versions[0] if len(versions) == 1 else (versions or None),
        "added": sum(r["embedded"] for r in done),
        "failed": sum(r["failed"] for r in done),
        "batches": len(done),
        "parts": [r["part"] for r in done if r["part"]],
    }
