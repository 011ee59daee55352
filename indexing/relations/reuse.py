"""What a new version's relations take from its parent's, so that only what changed is verified.

Unchanged events are copied (`unchanged_rows`: same ids, order and embedded_at, the content hash of
their entry). A changed event verifies its new pairs only: a verdict depends on the two fingerprints,
the order relate() saw them in and (a related one, its score) the cosine, so the parent's verdict of a
pair of unchanged images (same id and embedded_at) in the same order is lent to `verified_pairs`
(`EarlierEvent.known`, found by `ParentVerdicts`), which verifies every candidate pair it lacks and
drops pairs that are no longer candidates: the answer is the one verifying the event whole would give,
pair for pair. A merge reads of its parent only what changed: the footers, its delta relations, the
changed events' rows of its base relations and meta (`parent_events`, `base_members`) and the base
vectors of those events (`BaseVectors`, memory-mapped).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from indexing.relations.format import (
    EventEntry,
    RelationsUnusable,
    Rules,
    StoredRelations,
    content_hash,
    micros,
)
from indexing.store.integrity import IndexCorrupt, read_verified
from indexing.store.layout import (
    INDEX_FILE,
    META_DELTA_FILE,
    META_FILE,
    RELATIONS_DELTA_FILE,
    RELATIONS_FILE,
    REMOVED_FILE,
    VECTORS_FILE,
    Manifest,
)
from indexing.store.segments import flat_view

if TYPE_CHECKING:
    from duplicates.relation import Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EarlierEvent:
    """An event's verdicts as a version stored them, with the ids and embedded_at (row order) they were
    computed over (the caller checked them against the entry's content hash)."""

    ids: np.ndarray
    embedded_at_us: np.ndarray
    verdicts: Mapping[tuple[int, int], Verdict]  # (image id a, image id b), a < b

    def known(self, ids: np.ndarray, embedded_at_us: np.ndarray) -> dict[tuple[int, int], Verdict]:
        """The verdicts that still hold for the event's images now, keyed as `verified_pairs` takes them.

        A verdict depends on the two fingerprints, the order relate() saw them in, and (a related one)
        the cosine. An image with the same id and embedded_at has the same vector and fingerprint; the
        key is the earlier order (query first), so a pair whose rows swapped is simply not found, and
        `verified_pairs` checks the cosine. Pairs with an image added, re-embedded or gone are left out.
        """
        was = dict(zip(self.ids.tolist(), self.embedded_at_us.tolist(), strict=True))
        unchanged = {i for i, at in zip(ids.tolist(), embedded_at_us.tolist(), strict=True) if was.get(i) == at}
        row = {i: r for r, i in enumerate(self.ids.tolist())}
        return {((a, b) if row[a] < row[b] else (b, a)): v for (a, b), v in self.verdicts.items()
                if a in unchanged and b in unchanged}


def read_parent_relations(folder: Path, manifest: Manifest) -> StoredRelations | None:
    """A parent version's relations of the current rules (verified bytes), or None when it has none usable."""
    sources: dict[str, str | Path | bytes] = {}
    try:
        for fname in (RELATIONS_FILE, RELATIONS_DELTA_FILE):
            if manifest.has(fname):
                sources[fname] = read_verified(folder / fname, manifest)
    except IndexCorrupt as exc:
        log.warning("parent relations not reused: %s", exc)
        return None
    stored = StoredRelations.open(sources, Rules.current())
    for why in stored.ignored:
        log.info("parent relations not reused: %s", why)
    return stored if stored.files else None


def unchanged_rows(reuse: StoredRelations, code: str, content: str) -> tuple[EventEntry, Any] | None:
    """The parent's entry and rows of an event computed over exactly this content (ids, order, embedded_at),
    to keep as they are (`RelationsWriter.keep`); None when it must be verified."""
    found = reuse.lookup(code)
    if found is None or found[1].content_hash != content:
        return None
    source, entry = found
    try:
        return entry, source.rows(code, entry)
    except RelationsUnusable as exc:
        log.warning("%s", exc)
        return None


def parent_events(parent_dir: Path, manifest: Manifest, dropped: np.ndarray) -> set[str]:
    """Events the parent held the dropped ids in."""
    import pyarrow.parquet as pq

    if not len(dropped):
        return set()
    wanted = [int(i) for i in dropped]
    found: set[str] = set()
    for fname in (META_FILE, META_DELTA_FILE):
        if fname != META_FILE and not manifest.has(fname):
            continue
        t = pq.read_table(parent_dir / fname, columns=["image_id", "event_code"], filters=[("image_id", "in", wanted)])
        found.update(str(c) for c in t.column("event_code").unique().to_pylist())
    return found


def base_members(parent_dir: Path, codes: list[str]) -> pd.DataFrame:
    """Base rows of these events (removed ones too), in base order: image_id, event_code, embedded_at,
    parquet_part, row."""
    import pyarrow.parquet as pq

    t = pq.read_table(parent_dir / META_FILE, columns=["image_id", "event_code", "embedded_at", "parquet_part", "row"],
                      filters=[("event_code", "in", codes), ("segment", "=", 0)])
    return t.to_pandas().sort_values("row", kind="stable").reset_index(drop=True)


class ParentVerdicts:
    """The parent's verdicts of changed events with what they were computed over, so that a build verifies
    only the pairs it has no verdict for (`EarlierEvent.known`, `verified_pairs(known=...)`).

    Entries come from the parent's relations (`stored`: the delta's entry or withdrawal wins). A merge
    reads the base file in place, like the base meta (O(change)): the merged version hard-links that
    very file under the parent's checksum, so a damaged one fails the merged version's own verification
    and is never served. The ids and embedded_at come from the parent's meta (base rows minus its
    removed ids, then its delta rows); an entry is used only when its content hash is theirs.
    """

    def __init__(self, parent_dir: Path, manifest: Manifest, stored: StoredRelations, codes: list[str],
                 base_all: pd.DataFrame | None = None) -> None:
        import pyarrow.parquet as pq

        self.stored = stored
        base_all = base_members(parent_dir, codes) if base_all is None else base_all
        cols = ["image_id", "event_code", "embedded_at"]
        gone = np.load(parent_dir / REMOVED_FILE) if manifest.has(REMOVED_FILE) else np.empty(0, np.int64)
        parts = [base_all.loc[~np.isin(base_all["image_id"].to_numpy(np.int64), gone), cols]]
        if manifest.has(META_DELTA_FILE) and codes:
            t = pq.read_table(parent_dir / META_DELTA_FILE, columns=[*cols, "row"],
                              filters=[("event_code", "in", codes)])
            parts.append(t.to_pandas().sort_values("row", kind="stable")[cols])
        frame = pd.concat(parts, ignore_index=True)  # the parent's row order: base rows, then delta rows
        ids, at = frame["image_id"].to_numpy(np.int64), micros(frame["embedded_at"])
        self._rows = {str(code): (ids[pos], at[pos])
                      for code, pos in frame.groupby("event_code", sort=False).indices.items()}

    @classmethod
    def open(cls, parent_dir: Path, manifest: Manifest, stored: StoredRelations, codes: list[str],
             base_all: pd.DataFrame | None = None) -> ParentVerdicts | None:
        """None (the events are then verified whole) when the parent's meta cannot be read."""
        import pyarrow as pa

        if not stored.files:
            return None
        try:
            return cls(parent_dir, manifest, stored, codes, base_all)
        except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
            log.warning("parent %s: meta unreadable (%s): changed events verified whole", parent_dir.name, exc)
            return None

    def event(self, code: str) -> EarlierEvent | None:
        found = self.stored.lookup(code)
        if found is None or code not in self._rows:
            return None
        source, entry = found
        ids, at = self._rows[code]
        if content_hash(ids, at) != entry.content_hash:
            log.warning("event %s: the parent's relations are over other images than its meta holds: verified "
                        "whole", code)
            return None
        try:
            return EarlierEvent(ids, at, source.verdicts(code, entry))
        except RelationsUnusable as exc:
            log.warning("%s: verified whole", exc)
            return None


class BaseVectors:
    """Rows of the parent's base vectors, read from its files without loading them whole (memory-mapped)."""

    def __init__(self, parent_dir: Path, manifest: Manifest) -> None:
        self.parent_dir = parent_dir
        self.manifest = manifest
        self._view: np.ndarray | None = None
        self._index: Any = None

    def rows(self, rows: np.ndarray) -> np.ndarray:
        if self._view is None:
            if self.manifest.has(VECTORS_FILE):
                self._view = np.load(self.parent_dir / VECTORS_FILE, mmap_mode="r")
            else:
                import faiss

                path = str(self.parent_dir / INDEX_FILE)
                try:
                    self._index = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC)
                except RuntimeError:
                    self._index = faiss.read_index(path)
                view = flat_view(self._index)
                if view is None:
                    raise IndexCorrupt(f"{path}: no raw vectors to verify changed events with")
                self._view = view
        return np.array(self._view[np.asarray(rows, dtype=np.int64)], dtype=np.float32)

    def close(self) -> None:
        self._view = None
        self._index = None
