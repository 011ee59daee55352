"""POST /add_image (register a row for the pipeline) and GET /images/{id_or_code}/similar."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serving import search as engine
from serving.database import DatabaseDown
from serving.deps import EventCodeQuery, IdOrCodePath, Served, State, parse_event_code, require_api_key, resolve_image
from serving.routes.common import AUTH, BODY_LIMIT, DATABASE, DELETED_FILTER, NO_INDEX, NOT_FOUND, VALIDATION
from serving.routes.search import hits_response
from serving.schemas import MAX_TOP_K, AddImageRequest, AddImageResponse, SearchHit
from serving.state import ServerState

router = APIRouter(tags=["images"])


def _model_dim(state: ServerState) -> int | None:
    """The served model's dimension without loading it (the registry knows it)."""
    served = state.holder.current
    if served is not None:
        return served.dim
    try:
        from embeddings.models import MODELS, parse_name

        return MODELS[parse_name(state.settings.embedding_model).model].dim
    except Exception:
        return None


def _file_facts(path: Path) -> dict[str, Any]:
    """Size, MIME type and pixel size from the file header (cheap: no decode)."""
    facts: dict[str, Any] = {"mime_type": mimetypes.guess_type(path.name)[0]}
    try:
        facts["file_size"] = path.stat().st_size
    except OSError:  # gone since the check: the pipeline will record it missing
        return facts
    try:
        from PIL import Image

        with Image.open(path) as img:
            facts["width"], facts["height"] = img.size
            if img.format:
                facts["mime_type"] = Image.MIME.get(img.format, facts["mime_type"])
    except Exception:  # not decodable here: the pipeline will record why
        pass
    return facts


@router.post("/add_image", response_model=AddImageResponse, dependencies=[Depends(require_api_key)],
             responses={**VALIDATION, **AUTH, **BODY_LIMIT, **DATABASE},
             summary="register an image row; the pipeline embeds and indexes its file (status queued)")
async def add_image(body: AddImageRequest, state: State) -> JSONResponse:
    from embeddings.loading import INVALID_PATH, ImageLoadError, resolve_image_path

    root = state.settings.resolved_image_root
    shown = repr(body.file_path[:200])  # the client's own text; never the server path it resolves to
    try:
        path = resolve_image_path(root, body.file_path)
        found = path.is_file()
    except ImageLoadError as exc:
        why = f"{exc.reason}: {exc.detail}" if exc.reason == INVALID_PATH and exc.detail else exc.reason
        raise HTTPException(422, f"file_path {shown}: {why} (paths are relative to IMAGE_ROOT)") from None
    except OSError as exc:  # e.g. a permission denied on a folder on the way
        raise HTTPException(422, f"file_path {shown}: cannot be read ({exc.strerror or type(exc).__name__})") \
            from None
    if not found:
        raise HTTPException(422, f"file_path {shown}: no file there under IMAGE_ROOT")
    if body.vector is not None:
        dim = _model_dim(state)
        if dim is not None and len(body.vector) != dim:
            raise HTTPException(422, f"vector has {len(body.vector)} values; the served model expects {dim} "
                                     "(it is validated only: the pipeline embeds the file itself)")
    facts = await run_in_threadpool(_file_facts, path)
    meta = body.metadata
    values = {
        "file_size": meta.file_size if meta and meta.file_size is not None else facts.get("file_size"),
        "mime_type": meta.mime_type if meta and meta.mime_type else facts.get("mime_type"),
        "width": meta.width if meta and meta.width else facts.get("width"),
        "height": meta.height if meta and meta.height else facts.get("height"),
    }
    if values["file_size"] is not None and values["file_size"] > 2**31 - 1:
        values["file_size"] = None  # images.file_size is INTEGER
    try:
        rows = await state.db.fetch(
            "INSERT INTO images (event_code, filename, file_path, file_size, mime_type, width, height) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id, code, event_code",
            (body.event_code, body.filename, body.file_path, values["file_size"], values["mime_type"],
             values["width"], values["height"]),
            timeout=state.db.slow_timeout,
        )
    except psycopg.errors.ForeignKeyViolation:
        raise HTTPException(422, f"event_code {body.event_code} is not an event (no row in events)") from None
    except psycopg.DataError as exc:
        raise HTTPException(422, f"the database refused a value: {str(exc).splitlines()[0]}") from None
    except DatabaseDown as exc:
        outcome = ("it may have been registered before the database stopped answering" if exc.sent
                   else "nothing was registered")
        raise HTTPException(503, f"database unavailable, {outcome}: {exc}", headers={"Retry-After": "1"}) from None
    image_id, code, event_code = rows[0]
    return JSONResponse({"id": int(image_id), "faiss_index": None, "message": "success", "status": "queued",
                         "code": str(code), "event_code": str(event_code),
                         "vector_ignored": body.vector is not None})


@router.get("/images/{id_or_code}/similar", response_model=list[SearchHit],
            responses={200: {"headers": DELETED_FILTER}, **VALIDATION, **NOT_FOUND, **NO_INDEX},
            summary="images most similar to an indexed image (by id or code), the image itself excluded")
async def similar(
    id_or_code: IdOrCodePath,
    state: State,
    served: Served,
    top_k: Annotated[int, Query(ge=1, le=MAX_TOP_K)] = 10,
    event_code: EventCodeQuery = None,
    min_score: Annotated[float | None, Query(ge=-1.0, le=1.0, allow_inf_nan=False)] = None,
) -> JSONResponse:
    image_id = resolve_image(served, id_or_code)
    event = parse_event_code(event_code) if event_code else None
    vec = served.vector(image_id)
    if vec is None:
        raise HTTPException(404, f"image {image_id} has no vector in index version {served.version}")
    result = await engine.search(served, state.db, vec, top_k=top_k, event_code=event, min_score=min_score,
                                 exclude=[image_id], check_too=[image_id])
    if image_id in result.removed:
        raise HTTPException(404, f"image {image_id} was deleted from the database")
    return hits_response(result)
