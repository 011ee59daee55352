"""Duplicates within an event: verified copy groups, same-scene groups, and a check of one upload.

A duplicate is a copy (the same photograph) and nothing else: the decision is
`duplicates` (verification of fingerprints), the global cosine only proposes
candidates (DESIGN.md "What duplicate means", docs/duplicates.md).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from duplicates.groups import CANDIDATE_COSINE
from serving import relations
from serving import search as engine
from serving.deps import Served, State, parse_event_code
from serving.routes.common import NO_INDEX, UPLOAD, VALIDATION
from serving.schemas import MAX_TOP_K, DuplicateCheckResponse, DuplicatesResponse, SimilarShotsResponse
from serving.served import ServedIndex

router = APIRouter(prefix="/events", tags=["duplicates"])


async def _groups(event_code: str, state: Any, served: ServedIndex, kind: str) -> dict:
    event = parse_event_code(event_code)
    pairs = await run_in_threadpool(relations.event_pairs, served, state.settings, event)
    live = await state.db.live_ids(pairs.ids.tolist()) if state.db is not None and len(pairs.ids) else None
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
    return {"event_code": event, "groups": out, "images_checked": found.checked,
            "images_unverifiable": found.unverifiable, "index_version": served.version}


@router.get("/{event_code}/duplicates", response_model=DuplicatesResponse, responses={**VALIDATION, **NO_INDEX},
            summary="groups of copies of one photograph within an event (verified, never chained)")
async def event_duplicates(event_code: str, state: State, served: Served) -> dict:
    return await _groups(event_code, state, served, "copies")


@router.get("/{event_code}/similar-shots", response_model=SimilarShotsResponse,
            responses={**VALIDATION, **NO_INDEX},
            summary="groups of different shots of the same scene within an event (keep the best shot)")
async def similar_shots(event_code: str, state: State, served: Served) -> dict:
    return await _groups(event_code, state, served, "scenes")


@router.post("/{event_code}/duplicates/check", response_model=DuplicateCheckResponse,
             responses={**VALIDATION, **NO_INDEX, **UPLOAD},
             summary="is this uploaded photo already in the event? each match says copy, same_scene or related")
async def check_duplicate(
    event_code: str,
    state: State,
    served: Served,
    file: Annotated[UploadFile, File()],
    top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K)] = 10,
    min_score: Annotated[float | None, Form(ge=-1.0, le=1.0, allow_inf_nan=False,
                                            description="cosine below which a candidate is not listed; "
                                                        f"default {CANDIDATE_COSINE}")] = None,
) -> dict:
    event = parse_event_code(event_code)
    query = await relations.read_query(state, file)
    floor = CANDIDATE_COSINE if min_score is None else min_score
    result = await engine.search(served, state.db, query.vectors, top_k=max(top_k, relations.RERANK_DEPTH),
                                 event_code=event, min_score=floor)
    matches = (await run_in_threadpool(relations.verify_hits, served, state.settings, query, result.hits))[:top_k]
    return {"duplicate": any(m["relation"] == "copy" for m in matches), "matches": matches, "event_code": event,
            "index_version": served.version}
