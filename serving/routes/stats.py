"""GET /stats (the seed's counts plus version, model, swap and integrity state), GET /versions,
and POST /versions/check (re-hash the served version's files now)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from serving.database import DatabaseDown
from serving.deps import State, require_api_key
from serving.errors import redact
from serving.routes.common import AUTH, RESOURCE
from serving.schemas import IntegrityState, StatsResponse, VersionsResponse

router = APIRouter(tags=["stats"])


def _size_mb(served: Any) -> float:
    return round(served.size_bytes() / 2**20, 3)


def _public(state: Any, text: str | None) -> str | None:
    """A problem as anyone may read it: the server's folders named (`<DATA_DIR>/...`), no credentials."""
    return None if text is None else redact(text, state.settings)


def holder_state(state: Any) -> dict[str, Any]:
    """The holder's version state (served_from, current_problem, degraded, ...) with every problem redacted."""
    snap = state.holder.snapshot()
    for key in ("current_problem", "degraded", "storage_problem"):
        snap[key] = _public(state, snap[key])
    snap["integrity"] = {**snap["integrity"], "last_problem": _public(state, snap["integrity"]["last_problem"])}
    return snap


def _swap(state: Any) -> dict[str, Any]:
    s, cfg = state.holder.stats, state.settings
    return {"swaps": s.swaps, "failures": s.failures, "last_error": s.last_error and redact(s.last_error, cfg),
            "failed_versions": {str(k): redact(v, cfg) for k, v in s.failed_versions.items()},
            "last_swap_at": s.last_swap_at}


@router.get("/stats", response_model=StatsResponse, responses=RESOURCE,
            summary="index and database counts, served version, swap state")
async def stats(state: State) -> dict:
    served = state.holder.current
    model_version = served.model_version if served else state.holder.model_version
    total_db = embedded = failed = None
    try:
        slow = state.db.slow_timeout  # counts scan: the long deadline, not the search filter's
        total_db = int((await state.db.fetch("SELECT count(*) FROM images", timeout=slow))[0][0])
        if model_version:
            rows = await state.db.fetch(
                "SELECT status, count(*) FROM image_embeddings WHERE model_version = %s GROUP BY status",
                (model_version,), timeout=slow)
            counts = {str(r[0]): int(r[1]) for r in rows}
            embedded, failed = counts.get("embedded", 0), counts.get("failed", 0)
    except DatabaseDown:
        pass
    return {
        "total_vectors_faiss": served.count if served else 0,
        "total_images_db": total_db,
        "index_size_mb": _size_mb(served) if served else 0.0,
        "status": "ready" if served else redact(f"unavailable: {state.holder.reason}", state.settings),
        "index_version": served.version if served else None,
        "model": state.settings.embedding_model,
        "model_version": model_version,
        "index_type": served.index_type if served else None,
        "embedded": embedded,
        "failed": failed,
        "database": state.db.state,
        "deleted_filter": state.deleted.snapshot(),
        "swap": _swap(state),
        **holder_state(state),
    }


@router.get("/versions", response_model=VersionsResponse, responses=RESOURCE,
            summary="the CURRENT version and the kept backups")
async def versions(state: State) -> dict:
    served = state.holder.current
    store = state.holder.store()
    if store is None:
        return {"model_version": None, "current": None, "served": None, "versions": []}
    pointer = store.current()  # never raises: a damaged CURRENT is reported in current_problem
    current = pointer.version
    backup = state.holder.backup()
    backed_up = set(backup.versions()) if backup is not None else set()
    rows: dict[int, dict[str, Any]] = {}
    try:
        for v, status, published_at in await state.db.fetch(
            "SELECT version, status, published_at FROM index_versions WHERE model_version = %s",
            (store.model_version,), timeout=state.db.slow_timeout):
            rows[int(v)] = {"status": status, "published_at": published_at.isoformat() if published_at else None}
    except DatabaseDown:
        pass
    out = []
    on_disk = set(store.versions())
    for v in sorted(on_disk | backed_up | set(rows), reverse=True):
        info: dict[str, Any] = {"version": v, "current": v == current, "backup": v in backed_up,
                                "served": served is not None and served.version == v, **rows.get(v, {})}
        try:
            manifest = (store if v in on_disk or backup is None else backup).read_manifest(v)
            info.update(count=manifest.count, index_type=manifest.index_type, created_at=manifest.created_at)
        except Exception as exc:  # pruned or damaged: listed with why
            info["error"] = redact(str(exc), state.settings)
        if v in state.holder.stats.failed_versions:
            info["error"] = redact(state.holder.stats.failed_versions[v], state.settings)
        out.append(info)
    return {"model_version": store.model_version, "current": current,
            "served": served.version if served else None, "served_from": served.source if served else None,
            "current_problem": _public(state, pointer.problem), "degraded": _public(state, state.holder.degraded),
            "versions": out}


@router.post("/versions/check", response_model=IntegrityState, responses=AUTH,
             dependencies=[Depends(require_api_key)],
             summary="re-hash the served version's files now (also done every INDEX_RECHECK_SECONDS)")
async def check_versions(state: State) -> dict:
    integrity = await run_in_threadpool(state.holder.recheck)
    return {"checks": integrity.checks, "failures": integrity.failures, "last_check_at": integrity.last_check_at,
            "last_problem": _public(state, integrity.last_problem)}
