"""The DAGs' params (the trigger form in the Airflow UI) and their cross-field checks.

Each Param carries a JSON schema, so the UI form and `airflow dags trigger
--conf` reject a malformed value before a run starts. Rules that span two
fields (an event code when scope is `event`, start before end) are checked by
`resolve_plan_request`, which the plan task calls first: a bad combination
fails the run at once, without retries, with a message naming the field.
Fields of another scope are ignored (the UI form keeps every field filled).
A key that is no field of the form (`{"scpoe": "all"}`: Airflow adds conf keys to
the params) fails the run too, naming the key and the field it resembles,
instead of running with the defaults.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow.sdk import Param

from embeddings.planning import (
    DEFAULT_IMAGES_PER_PART,
    MAX_IMAGES_PER_PART,
    SCOPES,
    Selection,
    SelectionError,
    parse_timestamp,
)
from image_pipeline.assets import MODEL_NAMES, base_model, default_model, model_choices

INDEX_MODES = ("merge", "rebuild")
# indexing.build.choice.INDEX_TYPES (kept here so parsing never imports faiss; tests check they agree).
INDEX_TYPES = ("flat", "hnsw", "ivfpq")
# name[@preprocess][+variant] of a registry model (the exact preprocessing/variant is checked by the plan task).
MODEL_SPEC_PATTERN = "^(" + "|".join(MODEL_NAMES) + r")(@[A-Za-z0-9_-]+)?(\+[A-Za-z0-9_-]+)?$"
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class ParamsError(ValueError):
    """A combination of params that cannot run; the message names the field to fix."""


def embedding_params() -> dict[str, Param]:
    """The `image_embeddings` trigger form."""
    return {
        "model": Param(
            default_model(),
            type="string",
            # A registry name or an exact model version (name@preprocess[+variant]): the plugin's
            # "re-embed failed" button names the model version its failures belong to.
            pattern=MODEL_SPEC_PATTERN,
            examples=model_choices(),
            title="Model",
            description="Embedding model: a registry name or an exact model version such as "
            "efficientnet-lite0@crop224. Scheduled runs use EMBEDDING_MODEL.",
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
        "images_per_part": Param(
            DEFAULT_IMAGES_PER_PART,
            type="integer",
            minimum=1,
            maximum=MAX_IMAGES_PER_PART,
            title="Images per part",
            description="Images per mapped embed task = per Parquet part (the unit a retry redoes). "
            "The model's forward-pass batch is EMBED_BATCH_SIZE.",
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


def refuse_unknown(params: Mapping[str, Any], form: Mapping[str, Param]) -> None:
    """Raise ParamsError naming every key of `params` that is no field of `form` (a misspelt conf key)."""
    unknown = sorted(set(params) - set(form))
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, list(form), n=1)
        hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ParamsError(f"unknown param{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
                      f"this DAG takes {', '.join(form)}")


@dataclass(frozen=True)
class PlanRequest:
    """What one image_embeddings run embeds, after the params and the run type are combined."""

    model: str
    selection: Selection
    images_per_part: int = DEFAULT_IMAGES_PER_PART

    def describe(self) -> str:
        return f"model={self.model} {self.selection.describe()} images_per_part={self.images_per_part}"


def resolve_plan_request(
    params: dict[str, Any],
    *,
    run_type: str | None = None,
    data_interval_start: datetime | None = None,
    data_interval_end: datetime | None = None,
) -> PlanRequest:
    """Turn the form into a PlanRequest; raises ParamsError naming the field (checks live in Selection).

    Backfill runs (`airflow backfill create`) narrow the selection to rows
    created inside their data interval: scope `pending` then embeds the rows of
    that interval still lacking an embedding, scope `all` re-embeds all of them.
    Scheduled and manual runs ignore the interval, so a row committed late is
    still picked up by the next `pending` run. Fields of another scope are
    ignored: the UI form keeps every field filled. Keys the form does not have are refused.
    """
    refuse_unknown(params, embedding_params())
    model = params.get("model") or default_model()
    if base_model(model) not in MODEL_NAMES:
        raise ParamsError(f"model: unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
    scope = params.get("scope") or "pending"
    images_per_part = params.get("images_per_part")
    images_per_part = DEFAULT_IMAGES_PER_PART if images_per_part is None else images_per_part
    if (isinstance(images_per_part, bool) or not isinstance(images_per_part, int)
            or not 1 <= images_per_part <= MAX_IMAGES_PER_PART):
        raise ParamsError(f"images_per_part: an integer from 1 to {MAX_IMAGES_PER_PART} (got {images_per_part!r})")
    interval = None
    if run_type == "backfill":
        if data_interval_start is None or data_interval_end is None:
            raise ParamsError("backfill run without a data interval; the DAG's timetable must define one")
        interval = (data_interval_start, data_interval_end)
    try:
        start = end = None
        if scope == "range":
            start, end = parse_timestamp(params.get("start"), "start"), parse_timestamp(params.get("end"), "end")
            if start is None or end is None:
                raise ParamsError("start/end: both are required when scope is 'range'")
        selection = Selection(
            scope,
            event_code=(params.get("event_code") or None) if scope == "event" else None,
            start=start,
            end=end,
            interval=interval,
            limit=params.get("limit"),
        )
    except SelectionError as exc:
        raise ParamsError(str(exc)) from None
    return PlanRequest(model, selection, images_per_part)
