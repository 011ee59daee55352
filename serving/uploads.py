"""Uploaded images: read, decode safely, embed (with the 4 rotations for query images), within bounds.

Decoding is the embeddings package's `load_image` (EXIF-rotated RGB, first
frame, decompression-bomb limit, a memory budget in bytes), so a query image
goes through exactly the preprocessing the indexed images did. Its failures
become 4xx answers.

At most UPLOAD_CONCURRENCY uploads are decoded and embedded at once; one more
is answered 503 with Retry-After at once instead of waiting in a queue that
grows (and holds its body in memory) while the server is saturated. When the
last running decode ends, freed heap pages go back to the OS (malloc_trim),
so resident memory returns to its steady level after a burst.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from fastapi import HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from serving.state import ModelNotReady, ServerState

log = logging.getLogger("serving.uploads")
T = TypeVar("T")

# ImageLoadError.reason -> HTTP status. Anything unknown is the client's file too: 422.
_STATUS_BY_REASON = {
    "not an image": 415,
    "unsupported": 415,
    "too large": 413,
    "decompression bomb": 413,
}
RETRY_AFTER_SECONDS = 1


class _Libc:
    """glibc's malloc tuning, when there is one (musl, macOS: no-ops)."""

    M_MMAP_THRESHOLD = -3

    def __init__(self) -> None:
        self.lib: Any = None
        try:
            name = ctypes.util.find_library("c")
            lib = ctypes.CDLL(name) if name else None
            if lib is not None and hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt"):
                self.lib = lib
        except OSError:
            self.lib = None

    def fixed_mmap_threshold(self, size: int) -> None:
        """Blocks >= size come from mmap and go back to the OS on free. glibc's default threshold grows
        up to 32 MB after big frees, so decode buffers would land in the heap and stay resident."""
        if self.lib is not None:
            self.lib.mallopt(self.M_MMAP_THRESHOLD, size)

    def trim(self) -> None:
        if self.lib is not None:
            self.lib.malloc_trim(0)


_LIBC = _Libc()


class UploadSlots:
    """A fixed number of decode+embed slots; no waiting line. Thread-safe (released from worker threads)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._busy = 0
        self._lock = threading.Lock()
        self.rejected = 0

    @property
    def busy(self) -> int:
        return self._busy

    def acquire(self) -> None:
        with self._lock:
            if self._busy >= self.size:
                self.rejected += 1
                raise HTTPException(
                    503, f"busy: {self.size} uploaded images are being decoded and embedded; retry shortly",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            self._busy += 1

    def release(self) -> None:
        with self._lock:
            self._busy -= 1
            idle = self._busy == 0
        if idle:
            _LIBC.trim()  # the burst is over: hand freed decode buffers back to the OS


def slots(state: ServerState) -> UploadSlots:
    """The server's upload slots (made on first use, sized by UPLOAD_CONCURRENCY)."""
    existing = state.__dict__.get("upload_slots")
    if existing is None:
        _LIBC.fixed_mmap_threshold(4 * 2**20)
        existing = state.__dict__.setdefault("upload_slots", UploadSlots(state.settings.upload_concurrency))
    return existing  # type: ignore[no-any-return]


async def read_upload(file: UploadFile) -> bytes:
    data = await file.read()
    if not data:
        raise HTTPException(422, "the uploaded file is empty")
    return data


def decode(data: bytes, load_kwargs: dict[str, Any] | None = None, max_decode_bytes: int | None = None) -> Any:
    """A PIL image or an HTTPException naming why the bytes are not a usable image."""
    from embeddings.loading import ImageLoadError, load_image

    kwargs = dict(load_kwargs or {})
    if max_decode_bytes is not None:
        kwargs["max_decode_bytes"] = max_decode_bytes
    try:
        return load_image(data, **kwargs)
    except ImageLoadError as exc:
        reason = str(getattr(exc, "reason", "") or "unreadable")
        status = next((code for key, code in _STATUS_BY_REASON.items() if key in reason.lower()), 422)
        if status == 413:
            detail = f": {exc.detail}" if exc.detail else ""
            message = f"image too large to decode ({reason}{detail}): a decompression-bomb guard refuses it"
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
    budget = int(state.settings.upload_decode_mb * 2**20)
    return decode(data, embedder.load_kwargs() if hasattr(embedder, "load_kwargs") else None, budget)


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


async def process_upload(state: ServerState, file: UploadFile, work: Callable[[ServerState, bytes], T]) -> T:
    """`work(state, body)` for an uploaded file in one of the upload slots, off the event loop.

    503 + Retry-After at once when every upload slot is taken (the body is never read into memory then).
    """
    gate = slots(state)
    gate.acquire()
    try:
        data = await read_upload(file)
        return await run_in_threadpool(work, state, data)
    except ModelNotReady as exc:
        raise HTTPException(503, f"the embedding model is not available: {exc}") from None
    finally:
        gate.release()


async def embed_upload(state: ServerState, file: UploadFile, *, with_rotations: bool) -> np.ndarray:
    """(r, dim) query vectors for an uploaded file (r = 4 with rotations, else 1)."""
    return await process_upload(state, file, lambda st, data: _embed(st, data, with_rotations))
