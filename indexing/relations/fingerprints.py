"""The duplicate fingerprints of one index version, read from the embeddings dataset, never from image files.

The embedding pipeline stores each image's `duplicates.fingerprint` bytes in
the same Parquet row as its vector (extension columns `fingerprint`,
`fingerprint_version`; see embeddings/dataset.py). A version's `meta.parquet`
already names, per image, the part its vector was read from (the latest row
there), so the fingerprint the server verifies with is the one of the very
pixels that vector was computed from, even after a later re-embedding: nothing
is copied into the version folder and a merge stays O(change). When that part
is gone (compaction merged it), the latest row in any part is used.

An image has no usable fingerprint when it was embedded before fingerprints
existed, when its fingerprint could not be computed, or when its stored
format is not one `duplicates.fingerprint` reads (READABLE_VERSIONS: the
current one, or `orb2`, which lacks colour and is judged in grey): it is then
*unverifiable* (None here), and the duplicate decision never calls it a copy. Re-embedding the
event (`python -m embeddings event <code>`) fills them in.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.settings import Settings
from indexing.parts import list_parts, resolve_part
from indexing.store.layout import META_DELTA_FILE, META_FILE, IndexStore

if TYPE_CHECKING:
    from duplicates.fingerprint import Fingerprint

log = logging.getLogger(__name__)

# Decoded fingerprints kept per served version (~40-50 KB each in memory): enough for the events in use.
CACHE_ENTRIES = 4096
_READ_COLUMNS = ["image_id", "embedded_at", "fingerprint", "fingerprint_version"]


class VersionFingerprints:
    """Fingerprints of the images of one index version, by image id; thread-safe, LRU-cached."""

    def __init__(self, settings: Settings, model_version: str, version: int, *,
                 cache_entries: int = CACHE_ENTRIES) -> None:
        self.settings = settings
        self.model_version = model_version
        self.version = version
        self._cache: OrderedDict[int, Fingerprint | None] = OrderedDict()
        self._cache_entries = cache_entries
        self._lock = threading.Lock()
        self._where: dict[int, str] | None = None  # image id -> the parquet_part its vector came from
        self._members: dict[str, list[int]] = {}  # parquet_part -> the ids whose vector came from it
        self._reader = FingerprintReader(settings, model_version)

    @property
    def reads(self) -> int:
        """Parquet part reads (for tests and /metrics-style curiosity)."""
        return self._reader.reads

    # -- where each image's row is ---------------------------------------------------------------------
    def _locations(self) -> dict[int, str]:
        if self._where is None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            folder = IndexStore(self.settings, self.model_version).version_dir(self.version)
            where: dict[int, str] = {}
            # A merged version (format 2) keeps its base's rows in meta.parquet and the merge's new and
            # re-embedded rows in meta-delta.parquet: read the delta last so its rows win.
            for path in (folder / META_FILE, folder / META_DELTA_FILE):
                if path.name == META_DELTA_FILE and not path.exists():
                    continue
                try:
                    meta = pq.read_table(path, columns=["image_id", "parquet_part"])
                except (OSError, KeyError, pa.ArrowException) as exc:  # no provenance: those images unverifiable
                    log.warning("version %s: no parquet_part in %s (%s): its images are unverifiable",
                                self.version, path.name, exc)
                    continue
                where.update((int(i), str(p or "")) for i, p in
                             zip(meta["image_id"].to_pylist(), meta["parquet_part"].to_pylist(), strict=True))
            members: dict[str, list[int]] = {}
            for i, part in where.items():
                members.setdefault(part, []).append(i)
            self._members = members
            self._where = where
        return self._where

    # -- public ----------------------------------------------------------------------------------------
    def get(self, image_ids: Iterable[int]) -> dict[int, Fingerprint | None]:
        """{id: fingerprint or None (unverifiable)} for the ids of this version (others are left out).

        A part read for a missing id fills the cache with every image of this version taken from that part:
        reading a part's fingerprint column is the cost (~25-60 ms for 256 rows of ~48 KB, zstd), decoding a
        row is not (~30 us). An upload check asks for its 200 nearest of an event, spread over all its parts:
        caching only those re-read every part at the next check (2,000 photos: ~290 ms a check)."""
        wanted = list(dict.fromkeys(int(i) for i in image_ids))
        out: dict[int, Fingerprint | None] = {}
        missing: list[int] = []
        with self._lock:
            for i in wanted:
                if i in self._cache:
                    self._cache.move_to_end(i)
                    out[i] = self._cache[i]
                else:
                    missing.append(i)
        if missing:
            loaded = self._load(missing)
            with self._lock:
                for i, fp in loaded.items():
                    self._cache[i] = fp
                    self._cache.move_to_end(i)
                for i in missing:  # what was asked for most recent: widening never evicts it
                    if i in loaded:
                        self._cache.move_to_end(i)
                while len(self._cache) > self._cache_entries:
                    self._cache.popitem(last=False)
            out.update((i, loaded[i]) for i in missing if i in loaded)
        return out

    def _load(self, ids: list[int]) -> dict[int, Fingerprint | None]:
        """Fingerprints of `ids` and, while the cache holds them all, of the other images of this version
        whose vector came from the parts those are in (a part whose name is unknown is not widened)."""
        where = self._locations()
        wanted = {i: where[i] for i in ids if i in where}
        widened = dict(wanted)
        for part in sorted({p for p in wanted.values() if p}):
            more = self._members.get(part, [])
            if len(widened) + len(more) > self._cache_entries:
                break
            widened.update((i, part) for i in more)
        found, _ = self._reader.read(widened)
        return found


class FingerprintReader:
    """Reads fingerprints of given images from the embeddings dataset, each from the part its vector came from.

    The one reader behind the server's per-version cache and the pipeline's precomputed relations
    (indexing/relations/compute.py), so both verify with the very same fingerprints.
    """

    def __init__(self, settings: Settings, model_version: str) -> None:
        self.settings = settings
        self.model_version = model_version
        self.reads = 0

    def read(self, where: Mapping[int, str]) -> tuple[dict[int, Fingerprint | None], set[int]]:
        """({id: fingerprint or None (unverifiable)}, ids whose row was found in no part at all).

        `where` maps image ids to the ledger's parquet_part of their vector ("" when unknown).
        """
        where = {int(i): str(p or "") for i, p in where.items()}
        by_part: dict[str, list[int]] = {}
        for i, part in where.items():
            by_part.setdefault(part, []).append(i)
        if self.settings.remote_data:  # this host's mirror of the parts these rows came from
            from embeddings.dataset import pull_parts

            pull_parts(self.settings, self.model_version, {Path(p).name for p in by_part if p})
        found: dict[int, tuple[int, Fingerprint | None]] = {}
        for part, members in by_part.items():
            path = resolve_part(self.settings, self.model_version, part)
            if path is not None:
                found.update(self._read(path, members))
        left = [i for i in where if i not in found]
        if left:  # the part was compacted away: the latest row in any part (parts in the readers' order)
            if self.settings.remote_data:
                from embeddings.dataset import pull_parts

                pull_parts(self.settings, self.model_version)
            rest: dict[int, tuple[int, Fingerprint | None]] = {}
            for path in list_parts(self.settings, self.model_version):
                for i, row in self._read(path, left).items():
                    if i not in rest or row[0] >= rest[i][0]:
                        rest[i] = row
            found.update(rest)
        return {i: found[i][1] if i in found else None for i in where}, {i for i in where if i not in found}

    def _read(self, path: Path, ids: list[int]) -> dict[int, tuple[int, Fingerprint | None]]:
        """{id: (embedded_at us, fingerprint or None)} of the latest row per id in one part; absent ids left out."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from duplicates.fingerprint import READABLE_VERSIONS, Fingerprint, FingerprintError

        if not ids:
            return {}
        try:
            names = set(pq.read_schema(path).names)
            has_fp = {"fingerprint", "fingerprint_version"} <= names
            cols = _READ_COLUMNS if has_fp else _READ_COLUMNS[:2]
            table = pq.read_table(path, columns=cols, filters=[("image_id", "in", ids)])
            self.reads += 1
        except (OSError, pa.ArrowException) as exc:
            log.warning("cannot read fingerprints from %s: %s", path, exc)
            return {}
        row_ids = table["image_id"].to_numpy()
        when = table["embedded_at"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(
            zero_copy_only=False)
        blobs = table["fingerprint"].to_pylist() if has_fp else [None] * len(table)
        versions = table["fingerprint_version"].to_pylist() if has_fp else [None] * len(table)
        out: dict[int, tuple[int, Fingerprint | None]] = {}
        for r in np.flatnonzero(np.isin(row_ids, ids)):
            image_id = int(row_ids[r])
            if image_id in out and out[image_id][0] > int(when[r]):
                continue
            blob, version = blobs[r], versions[r]
            fp = None
            if blob is not None and version in READABLE_VERSIONS:
                try:
                    fp = Fingerprint.from_bytes(blob)
                except FingerprintError as exc:
                    log.warning("image %s: stored fingerprint unusable (%s)", image_id, exc)
            out[image_id] = (int(when[r]), fp)
        return out
