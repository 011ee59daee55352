"""POST /search (the seed's vector search) and POST /search/image (search by an uploaded photo)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serving import relations
from serving import search as engine
from serving.deps import EventCodeForm, Served, State
from serving.routes.common import BODY_LIMIT, DELETED_FILTER, NO_INDEX, UPLOAD, VALIDATION, deleted_filter_headers
from serving.schemas import MAX_TOP_K, SearchHit, SearchRequest, VerifiedHit

router = APIRouter(tags=["search"])


def hits_response(result: engine.SearchResult) -> JSONResponse:
    """The seed's list; `X-Deleted-Filter: skipped` says deleted images may be in it (see DELETED_FILTER)."""
    return JSONResponse(result.hits, headers=deleted_filter_headers(result.filtered, result.age))


@router.post("/search", response_model=list[SearchHit],
             responses={200: {"headers": DELETED_FILTER}, **VALIDATION, **BODY_LIMIT, **NO_INDEX},
             summary="top-k images most similar to a vector, optionally within one event")
async def search_vector(body: SearchRequest, state: State, served: Served) -> JSONResponse:
    query = engine.query_vector(body.vector, served.dim, served.model_version)
    event = str(body.filters.event_code) if body.filters and body.filters.event_code else None
    result = await engine.search(served, state.deleted, query, top_k=body.top_k, event_code=event,
                                 min_score=body.min_score)
    return hits_response(result)


@router.post("/search/image", response_model=list[VerifiedHit],
             responses={200: {"headers": DELETED_FILTER}, **VALIDATION, **NO_INDEX, **UPLOAD},
             summary="images most similar to an uploaded photo: verified copies first, then same-scene shots, "
                     "then by similarity (rotations included)")
async def search_image(
    state: State,
    served: Served,
    file: Annotated[UploadFile, File(description="a JPEG, PNG, WebP, TIFF... photo")],
    top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K)] = 10,
    event_code: EventCodeForm = None,
    min_score: Annotated[float | None, Form(ge=-1.0, le=1.0, allow_inf_nan=False)] = None,
) -> JSONResponse:
    event = str(uuid.UUID(event_code)) if event_code else None
    query = await relations.read_query(state, file)
    result = await engine.search(served, state.deleted, query.vectors, top_k=relations.search_depth(top_k),
                                 event_code=event, min_score=min_score)
    # A hard edit (thumbnail, JPEG q5, crop) may rank its original below other photos; verification lifts it.
    result.hits = (await run_in_threadpool(relations.verify_hits, served, state.settings, query, result.hits, top_k))
    return hits_response(result)
