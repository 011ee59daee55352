"""GET / : the seed's health check (503 with the reason while no index version is loaded)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serving.deps import State
from serving.errors import redact
from serving.routes.common import NO_INDEX
from serving.schemas import HealthResponse

router = APIRouter(tags=["health"])


@router.get("/", response_model=HealthResponse, responses=NO_INDEX, summary="ready when an index version is served")
async def health(state: State) -> JSONResponse:
    served = state.holder.current
    if served is None:
        reason = redact(state.holder.reason or "loading", state.settings)
        return JSONResponse(
            {"status": "unavailable", "reason": reason, "total_vectors": 0, "detail": reason, "message": reason},
            status_code=503, headers={"Retry-After": str(max(1, int(state.settings.swap_poll_seconds)))})
    return JSONResponse({"status": "ready", "total_vectors": served.count, "index_version": served.version,
                         "model_version": served.model_version, "index_type": served.index_type,
                         "degraded": state.holder.degraded and redact(state.holder.degraded, state.settings)})
