"""One loaded index version as the server uses it: search primitives plus fast id -> metadata lookups.

Everything here is built once when a version loads (off the request path) and
never mutated afterwards, so request threads read it without locks.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def _columns(meta: Any) -> dict[str, list[Any]]:
    """The sidecar as plain column lists, whether it is a pyarrow Table or a pandas DataFrame."""
    if hasattr(meta, "to_pydict"):
        return dict(meta.to_pydict())
    if hasattr(meta, "to_dict"):
        return {k: list(v) for k, v in meta.to_dict("list").items()}
    raise TypeError(f"unsupported meta type {type(meta).__name__}")


def _text(value: Any) -> str | None:
    """A sidecar cell as text; a missing one (None, pandas' NaN, "") is None: EMS rows may have no code."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return None
    return str(value)


class ServedIndex:
    """A LoadedIndex plus what the routes need: id -> (code, filename, event) and code -> id."""

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded
        self.version: int = int(loaded.version)
        self.model_version: str = str(loaded.model_version)
        self.dim: int = int(loaded.dim)
        self.count: int = int(loaded.count)
        self.index_type: str = str(loaded.index_type)
        self.manifest: dict[str, Any] = dict(loaded.manifest or {})
        self.loaded_at = time.time()
        cols = _columns(loaded.meta)
        ids = np.asarray(cols["image_id"], dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[order]
        codes = cols.get("image_code", [None] * len(ids))
        files = cols.get("filename", [None] * len(ids))
        events = cols.get("event_code", [None] * len(ids))
        self._codes = [_text(codes[i]) for i in order]
        self._files = [_text(files[i]) for i in order]
        self._events = [_text(events[i]) for i in order]
        self._by_code = {c.lower(): int(i) for c, i in zip(self._codes, self._sorted_ids, strict=True) if c}
        self.event_codes = {e.lower() for e in self._events if e}

    # -- lookups ---------------------------------------------------------------------------------
    def _pos(self, image_id: int) -> int | None:
        pos = int(np.searchsorted(self._sorted_ids, image_id))
        if pos < len(self._sorted_ids) and self._sorted_ids[pos] == image_id:
            return pos
        return None

    def has(self, image_id: int) -> bool:
        return self._pos(image_id) is not None

    def id_for_code(self, code: str) -> int | None:
        return self._by_code.get(code.lower())

    def describe(self, image_id: int) -> dict[str, Any]:
        """code, filename and event of one indexed image (None fields when the sidecar lacks it)."""
        pos = self._pos(image_id)
        if pos is None:
            return {"id": int(image_id), "code": None, "filename": None, "event_code": None}
        return {"id": int(image_id), "code": self._codes[pos], "filename": self._files[pos],
                "event_code": self._events[pos]}

    def event_of(self, image_id: int) -> str | None:
        pos = self._pos(image_id)
        return None if pos is None else self._events[pos]

    # -- search ----------------------------------------------------------------------------------
    def vector(self, image_id: int) -> np.ndarray | None:
        vec = self.loaded.vector(int(image_id))
        return None if vec is None else np.asarray(vec, dtype=np.float32).reshape(-1)

    def search(self, query: np.ndarray, k: int, event_code: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) best first, over everything or exactly within one event; -1 padding removed."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if event_code is not None:
            if event_code.lower() not in self.event_codes:
                return np.empty(0, np.float32), np.empty(0, np.int64)
            scores, ids = self.loaded.search_event(q[0], event_code, k)
        else:
            scores, ids = self.loaded.search(q, k)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        keep = ids >= 0
        return scores[keep], ids[keep]

    def event_vectors(self, event_code: str) -> tuple[np.ndarray, np.ndarray]:
        if event_code.lower() not in self.event_codes:
            return np.empty(0, np.int64), np.empty((0, self.dim), np.float32)
        ids, vecs = self.loaded.event_vectors(event_code)
        return np.asarray(ids, dtype=np.int64), np.asarray(vecs, dtype=np.float32)

    def self_check(self, samples: int = 3) -> None:
        """A few indexed vectors must find themselves at rank 1; raises ValueError otherwise."""
        if self.count == 0:
            return
        picks = np.unique(np.linspace(0, len(self._sorted_ids) - 1, num=min(samples, len(self._sorted_ids)))
                          .astype(np.int64))
        for pos in picks:
            image_id = int(self._sorted_ids[pos])
            vec = self.vector(image_id)
            if vec is None or vec.shape[0] != self.dim or not np.all(np.isfinite(vec)):
                raise ValueError(f"image {image_id} has no usable vector in the index")
            # Within its event when it has one: exact, and it reads only that event's rows (a global scan
            # of a big flat index would fault the whole file in before the first request).
            event = self._events[pos]
            scores, ids = self.search(vec, 5, event) if event else self.search(vec, 5)
            # Exact duplicates may tie; the image must be among the equal-best (top 5 for approximate types).
            exact = "flat" in self.index_type.lower()
            found = ids[scores >= scores[0] - 1e-4] if (exact and len(ids)) else ids
            if image_id not in found:
                raise ValueError(f"image {image_id} does not find itself at rank 1")
