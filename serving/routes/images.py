"""POST /add_image (register a row for the pipeline), GET /images/{id_or_code} (its status) and .../similar."""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import uuid
from dataclasses import asdict
from pathlib import PurePosixPath
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from serving import search as engine
from serving.database import DatabaseDown
from serving.deps import EventCodeQuery, IdOrCodePath, Served, State, parse_event_code, require_api_key, resolve_image
from serving.image_rows import FilenameConflict, find_image, pipeline_status, register_image
from serving.routes.common import AUTH, BODY_LIMIT, CONFLICT, DATABASE, DELETED_FILTER, NO_INDEX, NOT_FOUND, VALIDATION
from serving.routes.search import hits_response
from serving.schemas import MAX_TOP_K, AddImageRequest, AddImageResponse, ImageStatusResponse, SearchHit
from serving.state import ServerState
from storage.images import ImageFiles
from storage.objects import StorageUnavailable

log = logging.getLogger(__name__)
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


def _file_facts(files: ImageFiles, file_path: str) -> dict[str, Any]:
    """Size, MIME type and pixel size from the file header (cheap: no decode; for an object store a ranged
    read of the header's first blocks, never the whole object)."""
    facts: dict[str, Any] = {}
    try:
        facts["mime_type"] = mimetypes.guess_type(PurePosixPath(files.key(file_path)).name)[0]
        with files.open(file_path) as fh:
            facts["file_size"] = fh.seek(0, 2)
            fh.seek(0)
            try:
                from PIL import Image

                with Image.open(fh) as img:
                    facts["width"], facts["height"] = img.size
                    if img.format:
                        facts["mime_type"] = Image.MIME.get(img.format, facts["mime_type"])
            except Exception:  # not decodable here: the pipeline will record why
                pass
    except Exception:  # gone since the check, or the store stopped answering: the pipeline will tell
        pass
    return facts


@router.post("/add_image", response_model=AddImageResponse, dependencies=[Depends(require_api_key)],
             responses={**VALIDATION, **AUTH, **BODY_LIMIT, **DATABASE, **CONFLICT},
             summary="register an image row (idempotent per event_code + file_path); the pipeline embeds and "
                     "indexes its file")
async def add_image(body: AddImageRequest, state: State) -> JSONResponse:
    from embeddings.loading import INVALID_PATH, ImageLoadError

    files = ImageFiles(state.settings)  # IMAGE_ROOT: a folder or an object store, the same rules
    shown = repr(body.file_path[:200])  # the client's own text; never the server path it resolves to
    try:
        found = await run_in_threadpool(files.exists, body.file_path)  # a network call away
    except StorageUnavailable as exc:
        log.warning("add_image: image store unavailable: %s", exc)
        raise HTTPException(503, "the image store (IMAGE_ROOT) is not answering; nothing was registered, "
                                 "retry shortly", headers={"Retry-After": "1"}) from None
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
    facts = await run_in_threadpool(_file_facts, files, body.file_path)
    meta = body.metadata
    values = {
        "file_size": meta.file_size if meta and meta.file_size is not None else facts.get("file_size"),
        "mime_type": meta.mime_type if meta and meta.mime_type else facts.get("mime_type"),
        "width": meta.width if meta and meta.width else facts.get("width"),
        "height": meta.height if meta and meta.height else facts.get("height"),
    }
    try:
        reg = await register_image(state.db, event_code=body.event_code, filename=body.filename,
                                   file_path=body.file_path, values=values)
    except FilenameConflict as exc:
        raise HTTPException(409, f"{exc}; send the same filename to get that row back") from None
    except psycopg.errors.ForeignKeyViolation:
        raise HTTPException(422, f"event_code {body.event_code} is not an event (no row in events)") from None
    except psycopg.DataError as exc:
        raise HTTPException(422, f"the database refused a value: {str(exc).splitlines()[0]}") from None
    except DatabaseDown as exc:
        outcome = ("it may have been registered before the database stopped answering" if exc.sent
                   else "nothing was registered")
        raise HTTPException(503, f"database unavailable, {outcome}: {exc}", headers={"Retry-After": "1"}) from None
    row = reg.row
    status = "queued"
    if not reg.created:  # the row the first request made: say where the pipeline is with it
        with contextlib.suppress(DatabaseDown):
            status = (await pipeline_status(state.db, state.holder.current, _model_version(state), row.id)).status
    return JSONResponse({"id": row.id, "faiss_index": row.faiss_index, "message": "success", "status": status,
                         "code": row.code, "event_code": row.event_code, "created": reg.created,
                         "vector_ignored": body.vector is not None})


def _model_version(state: ServerState) -> str | None:
    """The served model's version: the holder's once known, else the configured name's (no model load)."""
    if state.holder.model_version is not None:
        return state.holder.model_version
    try:
        from embeddings.models import parse_name

        return parse_name(state.settings.embedding_model).model_version
    except Exception:
        return None


def _parse_id_or_code(text: str) -> int | uuid.UUID:
    text = text.strip()
    if text.isdigit() and len(text) <= 12:
        return int(text)
    try:
        return uuid.UUID(text)
    except ValueError:
        raise HTTPException(422, f"{text[:64]!r} is neither an image id (integer) nor an image code (UUID)") \
            from None


@router.get("/images/{id_or_code}", response_model=ImageStatusResponse,
            responses={**VALIDATION, **NOT_FOUND, **DATABASE},
            summary="an image row and its pipeline status: queued, embedded, indexed (with the index version) "
                    "or failed (with the reason)")
async def image_status(id_or_code: IdOrCodePath, state: State) -> JSONResponse:
    key = _parse_id_or_code(id_or_code)
    try:
        row = await find_image(state.db, key)
        if row is None:
            raise HTTPException(404, f"no image with {'id' if isinstance(key, int) else 'code'} {key}")
        status = await pipeline_status(state.db, state.holder.current, _model_version(state), row.id)
    except DatabaseDown as exc:
        raise HTTPException(503, f"database unavailable: {exc}", headers={"Retry-After": "1"}) from None
    created = row.created_at.isoformat() if row.created_at is not None else None
    body = ImageStatusResponse(**{**asdict(row), "created_at": created}, **status.as_dict())
    return JSONResponse(body.model_dump(mode="json"))


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
    result = await engine.search(served, state.deleted, vec, top_k=top_k, event_code=event, min_score=min_score,
                                 exclude=[image_id], check_too=[image_id])
    if image_id in result.removed:
        raise HTTPException(404, f"image {image_id} was deleted from the database")
    return hits_response(result)
