"""Duplicates within an event: verified copy groups, same-scene groups, and a check of one upload.

A duplicate is a copy (the same photograph) and nothing else: the decision is
`duplicates` (verification of fingerprints), the global cosine only proposes
candidates (docs/design.md, What "duplicate" means; docs/duplicates.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from duplicates.groups import CANDIDATE_COSINE
from serving import relations
from serving import search as engine
from serving.deps import KnownEvent, Served, State
from serving.routes.common import DELETED_FILTER, UNKNOWN_EVENT, UPLOAD, VALIDATION, deleted_filter_headers
from serving.schemas import MAX_TOP_K, DuplicateCheckResponse, DuplicatesResponse, SimilarShotsResponse
from serving.served import ServedIndex

router = APIRouter(prefix="/events", tags=["duplicates"])


async def _groups(event: str, state: Any, served: ServedIndex, kind: str) -> JSONResponse:
    try:
        pairs = await run_in_threadpool(relations.event_pairs, served, state.settings, event, state.metrics)
    except relations.RelationsBusy as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    verdict = await state.deleted.dead_among(served, pairs.ids.tolist())
    live = {int(i) for i in pairs.ids.tolist()} - verdict.dead if verdict.dead else None
    found = relations.event_groups(pairs, live, kind)
    copies: dict[int, list[int]] = {}
    if kind == "scenes":  # which copies each same-scene member stands for
        for g in relations.event_groups(pairs, live, "copies").groups:
            copies[g.members[0]] = g.members[1:]
    out = []
    for g in found.groups:
        images = []
        for image_id in g.members:
            row = served.describe(image_id)
            item: dict[str, Any] = {"id": image_id, "code": row["code"], "filename": row["filename"]}
            if kind == "scenes":
                item["copies"] = copies.get(image_id, [])
            images.append(item)
        out.append({"images": images, "score": round(float(g.score), 6)})
    body = {"event_code": event, "groups": out, "images_checked": found.checked,
            "images_unverifiable": found.unverifiable, "index_version": served.version}
    return JSONResponse(body, headers=deleted_filter_headers(verdict.checked, verdict.age))


@router.get("/{event_code}/duplicates", response_model=DuplicatesResponse,
            responses={200: {"headers": DELETED_FILTER}, **VALIDATION, **UNKNOWN_EVENT},
            summary="groups of copies of one photograph within an event (verified, never chained)")
async def event_duplicates(event_code: KnownEvent, state: State, served: Served) -> JSONResponse:
    return await _groups(event_code, state, served, "copies")


@router.get("/{event_code}/similar-shots", response_model=SimilarShotsResponse,
            responses={200: {"headers": DELETED_FILTER}, **VALIDATION, **UNKNOWN_EVENT},
            summary="groups of different shots of the same scene within an event (keep the best shot)")
async def similar_shots(event_code: KnownEvent, state: State, served: Served) -> JSONResponse:
    return await _groups(event_code, state, served, "scenes")


@router.post("/{event_code}/duplicates/check", response_model=DuplicateCheckResponse,
             responses={200: {"headers": DELETED_FILTER}, **VALIDATION, **UPLOAD, **UNKNOWN_EVENT},
             summary="is this uploaded photo already in the event? each match says copy, same_scene or related")
async def check_duplicate(
    event_code: KnownEvent,
    state: State,
    served: Served,
    file: Annotated[UploadFile, File()],
    top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K)] = 10,
    min_score: Annotated[float | None, Form(ge=-1.0, le=1.0, allow_inf_nan=False,
                                            description="cosine below which a candidate is not listed; "
                                                        f"default {CANDIDATE_COSINE}")] = None,
) -> JSONResponse:
    event = event_code
    query = await relations.read_query(state, file)
    floor = CANDIDATE_COSINE if min_score is None else min_score
    result = await engine.search(served, state.deleted, query.vectors, top_k=relations.search_depth(top_k),
                                 event_code=event, min_score=floor)
    matches = (await run_in_threadpool(relations.verify_hits, served, state.settings, query, result.hits, top_k))
    body = {"duplicate": any(m["relation"] == "copy" for m in matches), "matches": matches, "event_code": event,
            "index_version": served.version}
    return JSONResponse(body, headers=deleted_filter_headers(result.filtered, result.age))
