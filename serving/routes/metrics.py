"""GET /metrics: Prometheus text (requests, latency histograms, index version, swaps and failures)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import State
from serving.routes.common import RESOURCE

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}}}, **RESOURCE})
async def metrics(state: State) -> Response:
    m = state.metrics
    m.observe_holder(state.holder)
    m.db_up.set(1 if state.db.last_error is None else 0)
    m.filter_skipped.set(state.db.skipped_filters)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
