"""Uploaded images: read, decode safely, embed (with the 4 rotations for query images).

Decoding is the embeddings package's `load_image` (EXIF-rotated RGB, first
frame, decompression-bomb limit), so a query image goes through exactly the
preprocessing the indexed images did. Its failures become 4xx answers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from serving.state import ModelNotReady, ServerState

# ImageLoadError.reason -> HTTP status. Anything unknown is the client's file too: 422.
_STATUS_BY_REASON = {
    "not an image": 415,
    "unsupported": 415,
    "too large": 413,
    "decompression bomb": 413,
}


async def read_upload(file: UploadFile) -> bytes:
    data = await file.read()
    if not data:
        raise HTTPException(422, "the uploaded file is empty")
    return data


def decode(data: bytes, load_kwargs: dict[str, Any] | None = None) -> Any:
    """A PIL image or an HTTPException naming why the bytes are not a usable image."""
    from embeddings.loading import ImageLoadError, load_image

    try:
        return load_image(data, **(load_kwargs or {}))
    except ImageLoadError as exc:
        reason = str(getattr(exc, "reason", "") or "unreadable")
        status = next((code for key, code in _STATUS_BY_REASON.items() if key in reason.lower()), 422)
        if status == 413:
            message = f"image too large to decode ({reason}): a decompression-bomb guard refuses it"
        elif status == 415:
            message = f"the upload is not an image we can read ({reason})"
        else:
            message = f"the image cannot be decoded ({reason})"
        raise HTTPException(status, message) from None


def rotations(image: Any) -> list[Any]:
    """The image and its 90/180/270-degree rotations: a phone photo saved sideways still matches."""
    from PIL import Image

    return [image, image.transpose(Image.Transpose.ROTATE_90), image.transpose(Image.Transpose.ROTATE_180),
            image.transpose(Image.Transpose.ROTATE_270)]


def decode_for_model(state: ServerState, data: bytes) -> Any:
    """The upload decoded exactly as the pipeline decodes files for the served model."""
    embedder = state.embedder()
    return decode(data, embedder.load_kwargs() if hasattr(embedder, "load_kwargs") else None)


def _embed(state: ServerState, data: bytes, with_rotations: bool) -> np.ndarray:
    return embed_image(state, decode_for_model(state, data), with_rotations)


def embed_image(state: ServerState, image: Any, with_rotations: bool) -> np.ndarray:
    """(r, dim) query vectors of a decoded image (r = 4 with rotations, else 1)."""
    embedder = state.embedder()
    if with_rotations and hasattr(embedder, "embed_rotations"):
        with state.infer_lock:
            vecs = embedder.embed_rotations([image])
        return np.ascontiguousarray(vecs, dtype=np.float32).reshape(-1, embedder.dim)
    return state.embed(rotations(image) if with_rotations else [image])


async def embed_upload(state: ServerState, file: UploadFile, *, with_rotations: bool) -> np.ndarray:
    """(r, dim) query vectors for an uploaded file (r = 4 with rotations, else 1), off the event loop."""
    data = await read_upload(file)
    try:
        return await run_in_threadpool(_embed, state, data, with_rotations)
    except ModelNotReady as exc:
        raise HTTPException(503, f"the embedding model is not available: {exc}") from None
