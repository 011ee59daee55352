"""Duplicates within an event: the groups already indexed, and a check of one upload against the event."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serving import search as engine
from serving.deps import EventCodePath, Served, State, parse_event_code
from serving.duplicates import duplicate_groups
from serving.routes.common import DELETED_FILTER, NO_INDEX, UPLOAD, VALIDATION, deleted_filter_headers
from serving.schemas import MAX_TOP_K, DuplicateCheckResponse, DuplicatesResponse
from serving.uploads import embed_upload

router = APIRouter(prefix="/events", tags=["duplicates"])

Threshold = Annotated[float | None, Query(ge=0.0, le=1.0, allow_inf_nan=False,
                                          description="cosine similarity; default DUPLICATE_THRESHOLD")]


@router.get("/{event_code}/duplicates", response_model=DuplicatesResponse,
            responses={200: {"headers": DELETED_FILTER}, **VALIDATION, **NO_INDEX},
            summary="groups of near-identical images within an event")
async def event_duplicates(event_code: EventCodePath, state: State, served: Served, threshold: Threshold = None
                           ) -> JSONResponse:
    event = parse_event_code(event_code)
    limit = state.settings.duplicate_threshold if threshold is None else threshold
    ids, vecs = served.event_vectors(event)
    verdict = await state.deleted.dead_among(served, ids.tolist())
    if verdict.dead:
        keep = np.fromiter((int(i) not in verdict.dead for i in ids), dtype=bool, count=len(ids))
        ids, vecs = ids[keep], vecs[keep]
    groups = await run_in_threadpool(duplicate_groups, ids, vecs, limit)
    out = []
    for members, best, weakest in groups:
        images = []
        for image_id in members:
            row = served.describe(image_id)
            images.append({"id": image_id, "code": row["code"], "filename": row["filename"]})
        out.append({"images": images, "score": round(best, 6), "min_score": round(weakest, 6)})
    body = {"event_code": event, "threshold": limit, "groups": out, "images_checked": len(ids),
            "index_version": served.version}
    return JSONResponse(body, headers=deleted_filter_headers(verdict.checked, verdict.age))


@router.post("/{event_code}/duplicates/check", response_model=DuplicateCheckResponse,
             responses={200: {"headers": DELETED_FILTER}, **VALIDATION, **NO_INDEX, **UPLOAD},
             summary="is this uploaded photo already in the event? (rotations included)")
async def check_duplicate(
    event_code: EventCodePath,
    state: State,
    served: Served,
    file: Annotated[UploadFile, File()],
    threshold: Annotated[float | None, Form(ge=0.0, le=1.0, allow_inf_nan=False)] = None,
    top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K)] = 10,
) -> JSONResponse:
    event = parse_event_code(event_code)
    limit = state.settings.duplicate_threshold if threshold is None else threshold
    queries = await embed_upload(state, file, with_rotations=True)
    result = await engine.search(served, state.deleted, queries, top_k=top_k, event_code=event, min_score=limit)
    body = {"duplicate": bool(result.hits), "matches": result.hits, "threshold": limit, "event_code": event}
    return JSONResponse(body, headers=deleted_filter_headers(result.filtered, result.age))
