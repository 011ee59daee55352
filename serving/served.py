"""One loaded index version as the routes use it: the LoadedIndex plus where it came from.

All metadata and lookups live in `indexing.search.loaded.LoadedIndex` (held once per
version); this adds only the route-shaped search (1-D results, -1 padding
dropped, unknown events answered empty) and the version's origin (`store` or
`backup`), for /stats and /versions.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from indexing.search.loaded import LoadedIndex


class ServedIndex:
    """A verified LoadedIndex being served; immutable after construction, shared by request threads."""

    def __init__(self, loaded: LoadedIndex, source: str = "store") -> None:
        self.loaded = loaded
        self.source = source  # "store" (DATA_DIR/indexes) or "backup" (BACKUP_DIR)
        self.version: int = int(loaded.version)
        self.model_version: str = loaded.model_version
        self.dim: int = loaded.dim
        self.count: int = loaded.count
        self.index_type: str = loaded.index_type
        self.loaded_at = time.time()

    def has(self, image_id: int) -> bool:
        return self.loaded.has(image_id)

    def id_for_code(self, code: str) -> int | None:
        return self.loaded.id_for_code(code)

    def describe(self, image_id: int) -> dict[str, Any]:
        """id, code, filename and event of one indexed image (None fields when it is not indexed)."""
        return self.loaded.describe(image_id)

    def describe_many(self, image_ids: list[int]) -> list[dict[str, Any]]:
        """`describe` of several images (a search's hits) in one lookup."""
        return self.loaded.describe_many(image_ids)

    def vector(self, image_id: int) -> np.ndarray | None:
        vec = self.loaded.vector(int(image_id))
        return None if vec is None else vec.reshape(-1)

    def search(self, query: np.ndarray, k: int, event_code: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) best first, over everything or exactly within one event; -1 padding removed."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if event_code is not None:
            scores, ids = self.loaded.search_event(q[0], event_code, k)
        else:
            scores, ids = self.loaded.search(q, k)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        keep = ids >= 0
        return scores[keep], ids[keep]

    def event_vectors(self, event_code: str) -> tuple[np.ndarray, np.ndarray]:
        return self.loaded.event_vectors(event_code)

    def size_bytes(self) -> int:
        """Bytes of the version's files (from the manifest)."""
        return int(sum(self.loaded.manifest.sizes.values()))
