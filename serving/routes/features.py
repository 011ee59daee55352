"""POST /extract_features: the seed's route, an uploaded image -> the served model's vector."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from fastapi.responses import JSONResponse

from serving.deps import State
from serving.routes.common import UPLOAD, VALIDATION
from serving.schemas import FeaturesResponse
from serving.uploads import embed_upload

router = APIRouter(tags=["features"])


@router.post("/extract_features", response_model=FeaturesResponse,
             responses={**VALIDATION, **UPLOAD},
             summary="the L2-normalised vector of an uploaded image (what the pipeline would index)")
async def extract_features(state: State, file: Annotated[UploadFile, File()]) -> JSONResponse:
    started = time.perf_counter()
    vecs = await embed_upload(state, file, with_rotations=False)
    embedder = state.embedder()
    return JSONResponse({"vector": [float(x) for x in vecs[0]], "processing_time": time.perf_counter() - started,
                         "model": embedder.name, "model_version": embedder.model_version, "dim": int(embedder.dim)})
