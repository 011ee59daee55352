"""Bodies of the image_embeddings tasks, as plain functions of their inputs.

The DAG file wraps them in @task; keeping them here keeps the DAG file thin
and lets tests call the same code. `embeddings` (torch) is imported inside
the functions only.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from image_pipeline.params import PlanRequest, rechunk

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


def _flatten(batches: list[list[int]]) -> list[int]:
    return [int(i) for batch in batches for i in batch]


def select_ids(conninfo: str, model_version: str, request: PlanRequest) -> list[int]:
    """The image ids this run embeds, in planning order (ids only; never image data)."""
    from embeddings.runner import plan_batches

    narrowed = request.interval is not None
    ids = _flatten(
        plan_batches(
            conninfo,
            model_version,
            request.scope,
            event_code=request.event_code,
            start=request.start,
            end=request.end,
            batch_size=request.batch_size,
            limit=None if narrowed else request.limit,
        )
    )
    if narrowed:
        start, end = request.interval  # type: ignore[misc]
        in_interval = plan_batches(conninfo, model_version, "range", start=start, end=end, batch_size=1024)
        inside = set(_flatten(in_interval))
        ids = [i for i in ids if i in inside]
        if request.limit:
            ids = ids[: request.limit]
    return ids


def plan(conninfo: str, request: PlanRequest, *, max_batches: int) -> list[list[int]]:
    """Batches of image ids for the mapped embed tasks."""
    model_version = model_version_of(request.model)
    ids = select_ids(conninfo, model_version, request)
    batches = rechunk(ids, request.batch_size, max_batches)
    log.info("planned %d images in %d batches for %s (%s)", len(ids), len(batches), model_version, request.describe())
    return batches


def safe_run_id(run_id: str) -> str:
    """A run id usable in a file name (Airflow's contain ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_") or "run"


def _count(value: Any) -> int:
    if isinstance(value, int):
        return value
    return len(value) if value is not None else 0


def embed(conninfo: str, image_ids: list[int], *, model: str, run_id: str, batch_no: int) -> dict[str, Any]:
    """Embed one batch; idempotent (a retry rewrites the same part and upserts the same ledger rows)."""
    from embeddings.runner import embed_batch

    result = embed_batch(
        conninfo, [int(i) for i in image_ids], model_name=model, run_id=safe_run_id(run_id), batch_no=batch_no
    )
    summary = {
        "model": model,
        "model_version": result["model_version"],
        "embedded": _count(result.get("embedded")),
        "failed": _count(result.get("failed")),
        "part": str(result["part"]) if result.get("part") else None,
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
