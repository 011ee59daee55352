"""The DAGs' params (the trigger form in the Airflow UI) and their cross-field checks.

Each Param carries a JSON schema, so the UI form and `airflow dags trigger
--conf` reject a malformed value before a run starts. Rules that span two
fields (an event code when scope is `event`, start before end) are checked by
`resolve_plan_request`, which the plan task calls first: a bad combination
fails the run at once, without retries, with a message naming the field.
Fields of another scope are ignored (the UI form keeps every field filled).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Param

from image_pipeline.assets import MODEL_NAMES, base_model, default_model, model_choices

SCOPES = ("pending", "failed", "event", "range", "all")
INDEX_MODES = ("merge", "rebuild")
# indexing.choice.INDEX_TYPES (kept here so parsing never imports faiss; tests check they agree).
INDEX_TYPES = ("flat", "hnsw", "ivfpq")
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
DEFAULT_BATCH_SIZE = 256
MAX_BATCH_SIZE = 10_000


class ParamsError(ValueError):
    """A combination of params that cannot run; the message names the field to fix."""


def embedding_params() -> dict[str, Param]:
    """The `image_embeddings` trigger form."""
    return {
        "model": Param(
            default_model(),
            type="string",
            enum=model_choices(),
            title="Model",
            description="Embedding model (registry name). Scheduled runs use EMBEDDING_MODEL.",
        ),
        "scope": Param(
            "pending",
            type="string",
            enum=list(SCOPES),
            title="Scope",
            description="pending: rows without a ledger row for this model; failed: retry the rows that failed; "
            "event: every row of one event (re-embeds); range: every row with images.created_at in [start, end) "
            "(re-embeds); all: every row (re-embeds everything).",
            values_display={
                "pending": "pending: new rows only",
                "failed": "failed: retry rows that failed",
                "event": "event: re-embed one event",
                "range": "range: re-embed rows created in [start, end)",
                "all": "all: re-embed every row",
            },
        ),
        "event_code": Param(
            None,
            type=["null", "string"],
            pattern=UUID_PATTERN,
            title="Event code",
            description="UUID of the event (scope=event only).",
        ),
        "start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Range start",
            description="Inclusive lower bound on images.created_at, ISO 8601 (scope=range only).",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Range end",
            description="Exclusive upper bound on images.created_at, ISO 8601 (scope=range only).",
        ),
        "batch_size": Param(
            DEFAULT_BATCH_SIZE,
            type="integer",
            minimum=1,
            maximum=MAX_BATCH_SIZE,
            title="Batch size",
            description="Images per mapped embed task (one Parquet part each).",
        ),
        "limit": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Limit",
            description="At most this many images in this run (empty: no limit).",
        ),
    }


def index_params() -> dict[str, Param]:
    """The `image_index` trigger form (asset-triggered runs use the defaults)."""
    return {
        "model": Param(
            None,
            type=["null", "string"],
            enum=[None, *model_choices()],
            title="Model",
            description="Index this model. Empty: the models whose embeddings triggered the run, else EMBEDDING_MODEL.",
        ),
        "mode": Param(
            "merge",
            type="string",
            enum=list(INDEX_MODES),
            title="Mode",
            description="merge: add new vectors to the current version; rebuild: build from the whole dataset.",
        ),
        "index_type": Param(
            None,
            type=["null", "string"],
            enum=[None, *INDEX_TYPES],
            title="Index type",
            description="Override the automatic FAISS index type: flat (exact), hnsw or ivfpq (empty: automatic, "
            "by size and INDEX_MEMORY_BUDGET_MB).",
        ),
        "keep": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Versions kept",
            description="Published versions to keep after pruning (empty: INDEX_KEEP_VERSIONS).",
        ),
    }


@dataclass(frozen=True)
class PlanRequest:
    """What one image_embeddings run embeds, after the params and the run type are combined."""

    model: str
    scope: str
    event_code: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    limit: int | None = None
    # A backfill run narrows the selection to rows created in its data interval.
    interval: tuple[datetime, datetime] | None = None

    def describe(self) -> str:
        parts = [f"model={self.model}", f"scope={self.scope}"]
        if self.event_code:
            parts.append(f"event_code={self.event_code}")
        if self.start or self.end:
            parts.append(f"range=[{self.start}, {self.end})")
        if self.interval:
            parts.append(f"data interval=[{self.interval[0]}, {self.interval[1]})")
        parts.append(f"batch_size={self.batch_size}")
        if self.limit:
            parts.append(f"limit={self.limit}")
        return " ".join(parts)


def parse_timestamp(value: Any, field: str) -> datetime | None:
    """ISO 8601 text (or a datetime) -> an aware datetime; naive values are taken as UTC."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ParamsError(f"{field}: not an ISO 8601 date-time (got {value!r})") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def resolve_plan_request(
    params: dict[str, Any],
    *,
    run_type: str | None = None,
    data_interval_start: datetime | None = None,
    data_interval_end: datetime | None = None,
) -> PlanRequest:
    """Validate the params together and say what to embed; raises ParamsError naming the field.

    Backfill runs (`airflow backfill create`) narrow the selection to rows
    created inside their data interval: scope `pending` then embeds the rows of
    that interval still lacking an embedding, scope `all` re-embeds all of them.
    (`failed` retries the interval's failed rows, `event`/`range` keep only
    their rows created in the interval.) Scheduled and manual runs ignore the interval, so a row committed late is
    still picked up by the next `pending` run.
    """
    model = params.get("model") or default_model()
    if base_model(model) not in MODEL_NAMES:
        raise ParamsError(f"model: unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    scope = params.get("scope") or "pending"
    if scope not in SCOPES:
        raise ParamsError(f"scope: must be one of {', '.join(SCOPES)} (got {scope!r})")

    event_code = params.get("event_code") or None
    if scope == "event":
        if not event_code:
            raise ParamsError("event_code: required when scope is 'event'")
        try:
            event_code = str(uuid.UUID(str(event_code)))
        except ValueError:
            raise ParamsError(f"event_code: not a UUID (got {event_code!r})") from None
    else:
        event_code = None  # the form keeps every field; only the chosen scope's fields count

    start = end = None
    if scope == "range":
        start = parse_timestamp(params.get("start"), "start")
        end = parse_timestamp(params.get("end"), "end")
        if start is None or end is None:
            raise ParamsError("start/end: both are required when scope is 'range'")
        if start >= end:
            raise ParamsError(f"start/end: start ({start.isoformat()}) must be before end ({end.isoformat()})")

    batch_size = params.get("batch_size")
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ParamsError(f"batch_size: an integer from 1 to {MAX_BATCH_SIZE} (got {batch_size!r})")
    limit = params.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ParamsError(f"limit: a positive integer or empty (got {limit!r})")

    interval = None
    if run_type == "backfill":
        if data_interval_start is None or data_interval_end is None:
            raise ParamsError("backfill run without a data interval; the DAG's timetable must define one")
        interval = (data_interval_start, data_interval_end)
    return PlanRequest(model, scope, event_code, start, end, batch_size, limit, interval)


def rechunk(ids: list[int], batch_size: int, max_batches: int) -> list[list[int]]:
    """Cut ids into batches of batch_size, growing the batches when there would be more than max_batches.

    Airflow refuses to map a task over more than `core.max_map_length` items; a
    bigger batch keeps every selected row in this run instead of dropping some.
    """
    if not ids:
        return []
    size = max(batch_size, -(-len(ids) // max(1, max_batches)))
    return [ids[i : i + size] for i in range(0, len(ids), size)]
