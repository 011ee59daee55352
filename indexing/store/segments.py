"""The raw vectors inside a FAISS segment of a version, read in place.

A flat segment (`delta.faiss` always, `index.faiss` of an exact version) and an HNSW one keep
their float32 vectors in a flat storage: the build copies a parent's delta rows from it, the
relations read the base's rows of changed events from it, and the search side scans it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def flat_view(index: Any) -> np.ndarray | None:
    """A zero-copy (n, d) float32 view of the raw vectors of a flat or HNSW-flat index (IDMap unwrapped)."""
    import faiss

    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else faiss.downcast_index(index)
    if hasattr(inner, "storage"):  # HNSW keeps its vectors in a flat storage index
        inner = faiss.downcast_index(inner.storage)
    if not isinstance(inner, faiss.IndexFlat):
        return None
    n, d = inner.ntotal, inner.d
    if n == 0:
        return np.empty((0, d), dtype=np.float32)
    view = faiss.rev_swig_ptr(inner.get_xb(), n * d).reshape(n, d)
    view.flags.writeable = False
    return view
