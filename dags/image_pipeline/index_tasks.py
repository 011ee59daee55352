"""Bodies of the image_index tasks, as plain functions of their inputs.

`indexing` (faiss) and `embeddings` (torch) are imported inside the functions
only. Each step takes and returns small JSON dicts (model, model_version,
version, ...), never vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from image_pipeline.assets import MODEL_NAMES, base_model, default_model, model_of_asset_name

log = logging.getLogger(__name__)
# faiss first tries its AVX-512 build and, on a CPU (or wheel) without it, logs at INFO
# `Could not load library with AVX512 support due to: ModuleNotFoundError(...swigfaiss_avx512)`
# before loading the AVX2 build. That is the normal fallback, not a failure: keep it out of the task logs.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)


class NothingToIndex(Exception):
    """The build found nothing new to index; the downstream steps are skipped."""


def triggering_models(triggering_asset_events: Mapping[Any, Iterable[Any]] | None) -> dict[str, list[dict]]:
    """model name -> the extras of the embeddings events that triggered this run."""
    found: dict[str, list[dict]] = {}
    for asset, events in (triggering_asset_events or {}).items():
        model = model_of_asset_name(getattr(asset, "name", "") or "")
        if model is None:
            continue
        found.setdefault(model, []).extend(dict(getattr(e, "extra", None) or {}) for e in events)
    return found


def targets(params: Mapping[str, Any], triggered: dict[str, list[dict]]) -> list[dict[str, str]]:
    """Which model versions this run indexes: the param, else the triggering events, else EMBEDDING_MODEL.

    Raises ParamsError (a ValueError) for a conf key the form does not have.
    """
    from image_pipeline.embedding_tasks import model_version_of
    from image_pipeline.params import index_params, refuse_unknown

    refuse_unknown(params, index_params())

    if params.get("model"):
        models = [str(params["model"])]
    elif triggered:
        models = sorted(triggered)
    else:
        models = [default_model()]
    out: list[dict[str, str]] = []
    for model in models:
        if base_model(model) not in MODEL_NAMES:
            raise ValueError(f"model: unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")
        events = triggered.get(base_model(model), [])
        announced = sorted({e["model_version"] for e in events if isinstance(e.get("model_version"), str)})
        for model_version in announced or [model_version_of(model)]:
            out.append({"model": model, "model_version": model_version})
    log.info("indexing %s", ", ".join(t["model_version"] for t in out))
    return out


def build(conninfo: str, target: Mapping[str, str], *, mode: str, index_type: str | None, dag_run_id: str) -> dict:
    """Build (merge or rebuild) a new, unpublished version; raises NothingToIndex when a merge would add nothing."""
    from core.settings import get_settings
    from indexing import pipeline

    settings = get_settings()
    result = pipeline.build(
        conninfo, settings, target["model_version"], mode=mode, index_type=index_type or None,
        dag_run_id=dag_run_id,
    )
    if not result or result.get("version") is None:  # decided by the build, under the store lock
        raise NothingToIndex(f"{target['model_version']}: {result.get('reason') or 'nothing to index'}; nothing built")
    built = {**target, **{k: _jsonable(v) for k, v in result.items()}}
    log.info("built %s", built)
    return built


def verify(conninfo: str, built: Mapping[str, Any]) -> dict:
    """Check the built version (raises indexing.verify.VerificationFailed); returns it unchanged."""
    from core.settings import get_settings
    from indexing import pipeline

    pipeline.verify(conninfo, get_settings(), built["model_version"], int(built["version"]))
    return dict(built)


def publish(conninfo: str, verified: Mapping[str, Any], *, dag_run_id: str) -> dict:
    """Flip CURRENT to the verified version; returns the extra of the index Asset event."""
    from core.settings import get_settings
    from indexing import pipeline

    pipeline.publish(conninfo, get_settings(), verified["model_version"], int(verified["version"]))
    return {
        "model": verified["model"],
        "model_version": verified["model_version"],
        "version": int(verified["version"]),
        "count": verified.get("count"),
        "index_type": verified.get("index_type"),
        "dag_run_id": dag_run_id,
    }


def prune(conninfo: str, published: Mapping[str, Any], *, keep: int | None) -> list[int]:
    """Delete versions beyond the kept backups (never CURRENT)."""
    from core.settings import get_settings
    from indexing import pipeline

    removed = pipeline.prune(get_settings(), published["model_version"], keep=keep, conninfo=conninfo)
    log.info("pruned %s", removed)
    return [int(v) for v in removed]


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
