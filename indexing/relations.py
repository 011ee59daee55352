"""Duplicate relations precomputed by the pipeline: each event's verified candidate pairs, stored in the version.

`GET /events/{code}/duplicates` and `/similar-shots` need every candidate pair of the event
verified: each image's `NEIGHBOURS` nearest neighbours (`duplicates.groups.verified_pairs`),
each pair decided by `duplicates.verify.relate`. That is ~25 ms of CPU per image, a minute for
a 2,000-photo event. The build pays it for the events that changed and stores the verdicts as
files of the version, listed in the manifest with their sha256 like every other file: verified
at load, re-hashed by re-checks, backed up and restored with the rest (docs/indexing.md).

`event_verdicts` is the one place that turns an event's ids, vectors and fingerprints into
verdicts: the build calls it, and so does the server for an event the version holds no
relations for (serving/relations.py), so both answer alike.

Files (names in indexing/store.py):
- `relations.parquet`: written by a rebuild (every event); a merge hard-links its parent's while
  its rules are the current ones (its checksum inherited, like `meta.parquet`).
- `relations-delta.parquet` (merge only): the events the merge recomputed (images added,
  re-embedded or removed) and the parent delta's events it keeps. An event listed here, or
  withdrawn here (it vanished, or its images could not all be found), replaces the base's entry.
Rows: `event_code, image_id_a < image_id_b, relation, score, reason`, grouped by event. The
Parquet footer key `imgsim.relations` holds the format, the rules (RULES_VERSION,
FINGERPRINT_VERSION, NEIGHBOURS, CANDIDATE_COSINE) and per event: image count, a hash of its
ids in the version's row order (the server checks it), a hash of ids and embedded_at (a rebuild
reuses an event by it), unverifiable ids, where its rows are and the seconds it cost.

Row order matters: `verified_pairs` verifies row i against row j (i < j), and ties among
neighbours follow rows, so an event is computed over its ids in the order the served version
holds them (base rows, then delta rows), exactly what the server's own computation sees.
Relations of other rules, and an event whose ids differ from those it was computed over, are
never used: the server then computes that event itself, as it did before these files existed.

A merge verifies a changed event's new pairs only: a verdict depends on the two fingerprints, the
order relate() saw them in and (a related one, its score) the cosine, so the parent's verdict of a
pair of unchanged images (same id and embedded_at) in the same order is lent to `verified_pairs`
(`EarlierEvent.known`), which verifies every candidate pair it lacks and drops pairs that are no
longer candidates: the answer is the one verifying the event whole would give, pair for pair.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.settings import Settings
from indexing.store.files import link_or_copy
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
    from duplicates.fingerprint import Fingerprint
    from duplicates.relation import Verdict

log = logging.getLogger(__name__)

RELATIONS_FORMAT = 1
FOOTER_KEY = "imgsim.relations"
ROW_GROUP_ROWS = 65_536  # an event of 2,000 photos is ~14,000 rows: one or two row groups to read
COLUMNS = ("event_code", "image_id_a", "image_id_b", "relation", "score", "reason")


class RelationsUnusable(ValueError):
    """A relations file, or one event of it, cannot be used; the message says why. Never fatal:
    the event is then computed from the fingerprints, as without the file."""


# -- what verdicts depend on ----------------------------------------------------------------------
@dataclass(frozen=True)
class Rules:
    """Everything besides the images that precomputed verdicts depend on: another value makes them stale."""

    rules_version: str
    fingerprint_version: str
    neighbours: int
    candidate_cosine: float

    @classmethod
    def current(cls) -> Rules:
        from duplicates import groups, verify
        from duplicates.fingerprint import FINGERPRINT_VERSION

        return cls(str(verify.RULES_VERSION), str(FINGERPRINT_VERSION), int(groups.NEIGHBOURS),
                   float(groups.CANDIDATE_COSINE))


@dataclass(frozen=True)
class EventEntry:
    """One event of a relations file: what it was computed over and where its rows are."""

    images: int
    ids_hash: str  # its image ids in the version's row order (the server recomputes and compares it)
    content_hash: str  # ... with each image's embedded_at (a rebuild reuses an unchanged event by it)
    unverifiable: tuple[int, ...]  # images without a usable fingerprint: never in a group
    first_row: int
    rows: int
    seconds: float  # what verifying the event took when it was computed

    def as_json(self) -> dict[str, Any]:
        """The footer's form (by hand: `asdict` deep-copies the id tuples, slow for big events)."""
        return {"images": self.images, "ids_hash": self.ids_hash, "content_hash": self.content_hash,
                "unverifiable": list(self.unverifiable), "first_row": self.first_row, "rows": self.rows,
                "seconds": self.seconds}


@dataclass(frozen=True)
class EventVerdicts:
    """The verified candidate pairs of one event (the costly part of its groups)."""

    verdicts: dict[tuple[int, int], Verdict]  # (image id a, image id b), a < b
    unverifiable: frozenset[int]
    seconds: float
    reused: int = 0  # of `verdicts`, those taken from `known` (not verified again)


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


def ids_hash(ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes()).hexdigest()[:32]


def content_hash(ids: np.ndarray, embedded_at_us: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(embedded_at_us, dtype="<i8").tobytes())
    return digest.hexdigest()[:32]


def event_verdicts(ids: np.ndarray, vectors: np.ndarray, fingerprints: Mapping[int, Fingerprint | None],
                   known: Mapping[tuple[int, int], Verdict] | None = None) -> EventVerdicts:
    """The event's verified candidate pairs, from its ids and vectors in the version's row order.

    The one place for this rule (the build and the server's own computation both call it).
    Images without a fingerprint are unverifiable: `verified_pairs` skips their pairs, so with
    fewer than two fingerprints there is nothing to verify and the neighbour search is skipped.
    `known` (a merge: `EarlierEvent.known`) lends verdicts of unchanged pairs; the answer is the same.
    """
    from duplicates.groups import verified_pairs

    started = time.perf_counter()
    usable = {int(i): fp for i, fp in fingerprints.items() if fp is not None}
    by_rows = verified_pairs(ids, vectors, usable, known) if len(usable) >= 2 else {}
    verdicts: dict[tuple[int, int], Verdict] = {}
    reused = 0
    for (i, j), verdict in by_rows.items():
        a, b = int(ids[i]), int(ids[j])
        if known is not None and known.get((a, b)) is verdict:
            reused += 1
        verdicts[(a, b) if a < b else (b, a)] = verdict
    unverifiable = frozenset(int(i) for i in ids if int(i) not in usable)
    return EventVerdicts(verdicts, unverifiable, time.perf_counter() - started, reused)


# -- the file ---------------------------------------------------------------------------------------
def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([("event_code", pa.string()), ("image_id_a", pa.int64()), ("image_id_b", pa.int64()),
                      ("relation", pa.string()), ("score", pa.float64()), ("reason", pa.string())])


class RelationsWriter:
    """Streams events into one relations file (rows grouped by event), then writes the footer."""

    def __init__(self, path: Path, rules: Rules) -> None:
        self.path = path
        self.rules = rules
        self.events: dict[str, EventEntry] = {}
        self.withdrawn: set[str] = set()
        self._pending: list[Any] = []
        self._pending_rows = 0
        self._rows = 0
        self._writer: Any = None

    def add(self, code: str, ids: np.ndarray, embedded_at_us: np.ndarray, found: EventVerdicts) -> None:
        """A computed event (ids and embedded_at in the version's row order)."""
        import pyarrow as pa

        items = sorted(found.verdicts.items())
        table = pa.table({
            "event_code": pa.array([code] * len(items), pa.string()),
            "image_id_a": pa.array([a for (a, _), _ in items], pa.int64()),
            "image_id_b": pa.array([b for (_, b), _ in items], pa.int64()),
            "relation": pa.array([str(v.relation) for _, v in items], pa.string()),
            "score": pa.array([float(v.score) for _, v in items], pa.float64()),
            "reason": pa.array([v.reason for _, v in items], pa.string()),
        }, schema=_schema())
        entry = EventEntry(len(ids), ids_hash(ids), content_hash(ids, embedded_at_us),
                           tuple(sorted(found.unverifiable)), 0, 0, round(found.seconds, 3))
        self._append(code, entry, table)

    def keep(self, code: str, entry: EventEntry, rows: Any) -> None:
        """An event taken over unchanged from another relations file, with its rows as read there."""
        self._append(code, entry, rows)

    def withdraw(self, code: str) -> None:
        """An event whose earlier entry (in the base file) is stale and that this file does not hold."""
        if code not in self.events:
            self.withdrawn.add(code)

    def _append(self, code: str, entry: EventEntry, table: Any) -> None:
        if code in self.events:
            raise ValueError(f"event {code} added twice to {self.path.name}")
        self.withdrawn.discard(code)
        self.events[code] = replace(entry, first_row=self._rows, rows=len(table))
        if len(table):
            self._pending.append(table.select(list(COLUMNS)).cast(_schema()))
            self._pending_rows += len(table)
            self._rows += len(table)
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _open(self) -> Any:
        import pyarrow.parquet as pq

        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, _schema(), compression="zstd")
        return self._writer

    def _flush(self) -> None:
        import pyarrow as pa

        if self._pending:
            self._open().write_table(pa.concat_tables(self._pending), row_group_size=ROW_GROUP_ROWS)
        self._pending, self._pending_rows = [], 0

    @property
    def empty(self) -> bool:
        return not self.events and not self.withdrawn

    def close(self) -> None:
        self._flush()
        footer = {"format": RELATIONS_FORMAT, "rules": asdict(self.rules),
                  "events": {code: e.as_json() for code, e in self.events.items()},
                  "withdrawn": sorted(self.withdrawn)}
        writer = self._open()
        writer.add_key_value_metadata({FOOTER_KEY: json.dumps(footer, separators=(",", ":"))})
        writer.close()


class RelationsFile:
    """One relations file opened for reading: its rules, its events, one event's rows or verdicts.

    `source` is a path (the server passes its verified private copy) or the verified bytes.
    Reads are serialised (one Parquet reader per file); each event is one or two row groups.
    """

    def __init__(self, source: str | Path | bytes, name: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.name = name
        try:
            self._pf = pq.ParquetFile(io.BytesIO(source) if isinstance(source, bytes) else source)
            raw = (self._pf.metadata.metadata or {}).get(FOOTER_KEY.encode())
            if raw is None:
                raise RelationsUnusable(f"{name}: no {FOOTER_KEY} footer")
            footer = json.loads(raw)
            if footer.get("format") != RELATIONS_FORMAT:
                raise RelationsUnusable(f"{name}: relations format {footer.get('format')!r}, "
                                        f"this code reads {RELATIONS_FORMAT}")
            self.rules = Rules(**footer["rules"])
            self.events = {str(code): EventEntry(**{**e, "unverifiable": tuple(e["unverifiable"])})
                           for code, e in footer["events"].items()}
            self.withdrawn = frozenset(str(c) for c in footer.get("withdrawn", []))
        except RelationsUnusable:
            raise
        except (OSError, pa.ArrowException, ValueError, KeyError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise RelationsUnusable(f"{name}: unreadable ({first})") from None
        if tuple(self._pf.schema_arrow.names) != COLUMNS:
            raise RelationsUnusable(f"{name}: columns {self._pf.schema_arrow.names}, expected {list(COLUMNS)}")
        meta = self._pf.metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self._starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        for code, e in self.events.items():
            if e.first_row < 0 or e.rows < 0 or e.first_row + e.rows > self._starts[-1]:
                raise RelationsUnusable(f"{name}: rows of event {code} lie outside the file")
        self._lock = threading.Lock()

    def rows(self, code: str, entry: EventEntry) -> Any:
        """The event's rows (an Arrow table with COLUMNS)."""
        import pyarrow as pa

        if not entry.rows:
            return _schema().empty_table()
        lo, hi = entry.first_row, entry.first_row + entry.rows
        groups = [g for g in range(len(self._starts) - 1) if self._starts[g] < hi and self._starts[g + 1] > lo]
        try:
            with self._lock:
                table = self._pf.read_row_groups(groups)
        except (OSError, pa.ArrowException) as exc:
            raise RelationsUnusable(f"{self.name}: rows of event {code} unreadable ({exc})") from None
        table = table.slice(lo - int(self._starts[groups[0]]), entry.rows)
        if table.column("event_code").unique().to_pylist() != [code]:
            raise RelationsUnusable(f"{self.name}: rows of event {code} hold another event")
        return table

    def verdicts(self, code: str, entry: EventEntry) -> dict[tuple[int, int], Verdict]:
        from duplicates.relation import Relation, Verdict

        table = self.rows(code, entry)
        cols = [table.column(c).to_pylist() for c in COLUMNS[1:]]
        try:
            return {(int(a), int(b)): Verdict(Relation(rel), float(score), str(reason))
                    for a, b, rel, score, reason in zip(*cols, strict=True)}
        except ValueError as exc:  # an unknown relation name
            raise RelationsUnusable(f"{self.name}: event {code}: {exc}") from None


@dataclass
class StoredRelations:
    """A version's relations files of the current rules, base then delta: which file answers for an event."""

    files: list[RelationsFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # why a file listed in the manifest is not used

    @classmethod
    def open(cls, sources: Mapping[str, str | Path | bytes], rules: Rules) -> StoredRelations:
        """`sources`: file name -> path or verified bytes, for the version's relations files that exist."""
        out = cls()
        for fname in (RELATIONS_FILE, RELATIONS_DELTA_FILE):
            if fname not in sources:
                continue
            try:
                f = RelationsFile(sources[fname], fname)
            except RelationsUnusable as exc:
                out.ignored.append(str(exc))
                if fname == RELATIONS_FILE:
                    continue
                out.files = []  # the delta says which base entries are stale: without it, trust no base entry
                break
            if f.rules != rules:
                out.ignored.append(f"{fname}: computed under rules {f.rules}, not the current {rules}")
                if fname == RELATIONS_DELTA_FILE:
                    out.files = []
                continue
            out.files.append(f)
        return out

    def lookup(self, code: str) -> tuple[RelationsFile, EventEntry] | None:
        for f in reversed(self.files):  # the delta's entry (or withdrawal) wins over the base's
            if code in f.events:
                return f, f.events[code]
            if code in f.withdrawn:
                return None
        return None


def _micros(values: Any) -> np.ndarray:
    """Timestamps (any pandas/Arrow resolution, UTC) as int64 microseconds since the epoch."""
    stamps = pd.to_datetime(pd.Series(values), utc=True)
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")).to_numpy(np.int64)


# -- the build's step -------------------------------------------------------------------------------
@dataclass
class RelationsReport:
    """What one build did about relations; goes into the manifest (`relations`) and the build's result."""

    rules_version: str
    computed: int = 0  # events verified by this build
    kept: int = 0  # events taken over unchanged from the parent version
    skipped: int = 0  # events with an image whose stored row was not found: the server computes them
    images: int = 0  # images of the computed events
    pairs: int = 0  # pairs of the computed events
    reused: int = 0  # ... of them, verdicts of unchanged pairs taken from the parent (the rest were verified)
    seconds: float = 0.0  # time verifying the computed events (wall)
    cpu_seconds: float = 0.0  # ... CPU time of this process meanwhile (the same on an idle machine)
    step_seconds: float = 0.0  # the whole step: reads, verification, copies, writing
    slowest: dict[str, Any] | None = None  # {"images", "seconds"} of the costliest event
    base: str = "none"  # relations.parquet: "written", "linked" (the parent's) or "none"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3), "cpu_seconds": round(self.cpu_seconds, 3),
                "step_seconds": round(self.step_seconds, 3)}


@dataclass(frozen=True)
class EventRows:
    """One event of the version being built, in its row order."""

    ids: np.ndarray
    embedded_at_us: np.ndarray
    parts: list[str]
    vectors: Callable[[], np.ndarray]  # (n, dim) float32, read only when there is something to verify


class _Computer:
    """Computes events into a writer (fingerprints read as the server reads them)."""

    def __init__(self, settings: Settings, model_version: str, report: RelationsReport) -> None:
        from indexing.fingerprints import FingerprintReader

        self.reader = FingerprintReader(settings, model_version)
        self.report = report

    def compute(self, code: str, rows: EventRows, writer: RelationsWriter,
                earlier: EarlierEvent | None = None) -> None:
        """Verify the event into `writer`; with `earlier` (the parent's verdicts), only its new pairs."""
        fps, not_found = self.reader.read(dict(zip(rows.ids.tolist(), rows.parts, strict=True)))
        if not_found:  # a transient read problem must not become "unverifiable" in a version
            log.warning("event %s: no stored row for %d image(s) (e.g. %s): left to the server", code,
                        len(not_found), sorted(not_found)[:3])
            self.report.skipped += 1
            writer.withdraw(code)
            return
        usable = sum(fp is not None for fp in fps.values())
        vectors = rows.vectors() if usable >= 2 else np.empty((len(rows.ids), 0), np.float32)
        known = earlier.known(rows.ids, rows.embedded_at_us) if earlier is not None else None
        cpu = time.process_time()
        found = event_verdicts(rows.ids, vectors, fps, known)
        self.report.cpu_seconds += time.process_time() - cpu
        writer.add(code, rows.ids, rows.embedded_at_us, found)
        r = self.report
        r.computed += 1
        r.images += len(rows.ids)
        r.pairs += len(found.verdicts)
        r.reused += found.reused
        r.seconds += found.seconds
        if r.slowest is None or found.seconds > r.slowest["seconds"]:
            r.slowest = {"images": len(rows.ids), "seconds": round(found.seconds, 3)}
        if found.seconds >= 5:
            log.info("relations of event %s: %d images, %d pairs (%d verified, %d from the parent) in %.1f s", code,
                     len(rows.ids), len(found.verdicts), len(found.verdicts) - found.reused, found.reused,
                     found.seconds)


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


def for_rebuild(settings: Settings, model_version: str, frame: pd.DataFrame, vectors: np.ndarray, folder: Path,
                reuse: StoredRelations | None = None,
                parent: tuple[Path, Manifest] | None = None) -> RelationsReport:
    """`relations.parquet` for a rebuilt version: every event, in base order (`frame` is sorted by event).

    With `reuse` (the parent's relations), an event whose ids, order and embedded_at are exactly
    those it was computed over is copied, not verified again; with `parent` too (its folder and
    manifest: its meta says what its verdicts were computed over), another event the parent holds
    verifies only the pairs the parent has no verdict for.
    """
    rules = Rules.current()
    report = RelationsReport(rules.rules_version, base="written")
    writer = RelationsWriter(folder / RELATIONS_FILE, rules)
    computer = _Computer(settings, model_version, report)
    codes = frame["event_code"].astype(str).to_numpy()
    ids = frame["image_id"].to_numpy(np.int64)
    at = _micros(frame["embedded_at"])
    parts = frame["parquet_part"].astype(str).tolist()
    bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True]) if len(codes) else np.array([0])
    events = [(str(codes[lo]), lo, hi) for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]
    contents = {code: content_hash(ids[lo:hi], at[lo:hi]) for code, lo, hi in events}
    earlier = None
    if reuse is not None and parent is not None:
        changed = [code for code, _, _ in events
                   if (found := reuse.lookup(code)) is not None and found[1].content_hash != contents[code]]
        earlier = _ParentVerdicts.open(parent[0], parent[1], reuse, changed) if changed else None
    for code, lo, hi in events:
        if reuse is not None and _reused(reuse, code, contents[code], writer):
            report.kept += 1
            continue
        computer.compute(code, EventRows(ids[lo:hi], at[lo:hi], parts[lo:hi],
                                         lambda lo=lo, hi=hi: np.asarray(vectors[lo:hi], dtype=np.float32)), writer,
                         earlier.event(code) if earlier is not None else None)
    writer.close()
    return report


def _reused(reuse: StoredRelations, code: str, content: str, writer: RelationsWriter) -> bool:
    found = reuse.lookup(code)
    if found is None or found[1].content_hash != content:
        return False
    source, entry = found
    try:
        writer.keep(code, entry, source.rows(code, entry))
    except RelationsUnusable as exc:
        log.warning("%s", exc)
        return False
    return True


def for_merge(settings: Settings, model_version: str, *, parent_dir: Path, parent_manifest: Manifest,
              dropped: np.ndarray, removed: np.ndarray, added_events: list[str], delta_frame: pd.DataFrame,
              delta_vectors: np.ndarray, folder: Path) -> tuple[RelationsReport, dict[str, str]]:
    """The merged version's relations: the changed events computed, the others kept from the parent.

    Changed events: those of the rows added or re-embedded (`added_events`) and those the parent
    held `dropped` ids in (deleted or re-embedded). The parent's `relations.parquet` is
    hard-linked when its rules are current (returned with its inherited checksum), its delta's
    unchanged events are copied into the new `relations-delta.parquet` with the computed ones.
    A changed event verifies only the pairs the parent has no verdict for (`_ParentVerdicts`).
    Reads of the parent: the footers, its delta relations, the changed events' rows of its base
    relations and the meta rows of the changed events (an O(change) read, like the rest of a merge).
    """
    rules = Rules.current()
    report = RelationsReport(rules.rules_version)
    inherited: dict[str, str] = {}
    changed = set(map(str, added_events)) | _parent_events(parent_dir, parent_manifest, dropped)

    parent_delta: RelationsFile | None = None
    delta_usable = True
    if parent_manifest.has(RELATIONS_DELTA_FILE):
        try:
            parent_delta = RelationsFile(read_verified(parent_dir / RELATIONS_DELTA_FILE, parent_manifest),
                                         RELATIONS_DELTA_FILE)
            if parent_delta.rules != rules:
                parent_delta, delta_usable = None, False
        except (IndexCorrupt, RelationsUnusable) as exc:
            log.warning("parent relations delta not reused: %s", exc)
            parent_delta, delta_usable = None, False
    # The base is shared only while the parent's delta, which says which base entries are stale, is usable.
    base_footer = _footer(parent_dir / RELATIONS_FILE) if parent_manifest.has(RELATIONS_FILE) else None
    if delta_usable and base_footer is not None and _footer_rules(base_footer) == rules:
        link_or_copy(parent_dir / RELATIONS_FILE, folder / RELATIONS_FILE)
        inherited[RELATIONS_FILE] = parent_manifest.sha256[RELATIONS_FILE]
        report.base = "linked"
        overridden = changed | (set(parent_delta.events) | parent_delta.withdrawn if parent_delta else set())
        report.kept += len(set(base_footer.get("events", {})) - overridden)

    writer = RelationsWriter(folder / RELATIONS_DELTA_FILE, rules)
    if parent_delta is not None:
        for code, entry in parent_delta.events.items():
            if code in changed:
                continue
            try:
                writer.keep(code, entry, parent_delta.rows(code, entry))
                report.kept += 1
            except RelationsUnusable as exc:
                log.warning("%s: left to the server", exc)
                writer.withdraw(code)
        for code in parent_delta.withdrawn - changed:
            writer.withdraw(code)
    computer = _Computer(settings, model_version, report)
    if changed:
        base_all = _base_members(parent_dir, sorted(changed))
        base_rows = base_all[~np.isin(base_all["image_id"].to_numpy(np.int64), removed)].reset_index(drop=True)
        stored = StoredRelations()
        if report.base == "linked":  # read in place, like the base meta (_ParentVerdicts says why that is safe)
            try:
                stored.files.append(RelationsFile(parent_dir / RELATIONS_FILE, RELATIONS_FILE))
            except RelationsUnusable as exc:
                log.warning("%s: its events are verified whole", exc)
        if parent_delta is not None:
            stored.files.append(parent_delta)
        earlier = _ParentVerdicts.open(parent_dir, parent_manifest, stored, sorted(changed), base_all)
        base_of = {str(k): v for k, v in base_rows.groupby("event_code", sort=False).indices.items()}
        delta_of = {str(k): v for k, v in delta_frame.groupby("event_code", sort=False).indices.items()}
        index = _BaseVectors(parent_dir, parent_manifest)
        empty = np.empty(0, np.int64)
        try:
            for code in sorted(changed):
                rows = _merged_event(base_rows.iloc[base_of.get(code, empty)], delta_frame,
                                     np.sort(delta_of.get(code, empty)), delta_vectors, index)
                if rows is None:
                    writer.withdraw(code)  # no image left in this version
                    continue
                computer.compute(code, rows, writer, earlier.event(code) if earlier is not None else None)
        finally:
            index.close()
    if not writer.empty:
        writer.close()
    return report, inherited


def _footer(path: Path) -> dict[str, Any] | None:
    """A relations file's footer (only the footer is read), None when unreadable: then it is not shared."""
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_metadata(path).metadata or {}).get(FOOTER_KEY.encode())
        footer = json.loads(raw) if raw else None
        return footer if isinstance(footer, dict) and footer.get("format") == RELATIONS_FORMAT else None
    except Exception as exc:  # pyarrow raises several types for a damaged file
        log.warning("%s: footer unreadable (%s): not shared", path, exc)
        return None


def _footer_rules(footer: dict[str, Any]) -> Rules | None:
    try:
        return Rules(**footer["rules"])
    except (KeyError, TypeError):
        return None


def _parent_events(parent_dir: Path, manifest: Manifest, dropped: np.ndarray) -> set[str]:
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


def _base_members(parent_dir: Path, codes: list[str]) -> pd.DataFrame:
    """Base rows of these events (removed ones too), in base order: image_id, event_code, embedded_at,
    parquet_part, row."""
    import pyarrow.parquet as pq

    t = pq.read_table(parent_dir / META_FILE, columns=["image_id", "event_code", "embedded_at", "parquet_part", "row"],
                      filters=[("event_code", "in", codes), ("segment", "=", 0)])
    return t.to_pandas().sort_values("row", kind="stable").reset_index(drop=True)


class _ParentVerdicts:
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
        base_all = _base_members(parent_dir, codes) if base_all is None else base_all
        cols = ["image_id", "event_code", "embedded_at"]
        gone = np.load(parent_dir / REMOVED_FILE) if manifest.has(REMOVED_FILE) else np.empty(0, np.int64)
        parts = [base_all.loc[~np.isin(base_all["image_id"].to_numpy(np.int64), gone), cols]]
        if manifest.has(META_DELTA_FILE) and codes:
            t = pq.read_table(parent_dir / META_DELTA_FILE, columns=[*cols, "row"],
                              filters=[("event_code", "in", codes)])
            parts.append(t.to_pandas().sort_values("row", kind="stable")[cols])
        frame = pd.concat(parts, ignore_index=True)  # the parent's row order: base rows, then delta rows
        ids, at = frame["image_id"].to_numpy(np.int64), _micros(frame["embedded_at"])
        self._rows = {str(code): (ids[pos], at[pos])
                      for code, pos in frame.groupby("event_code", sort=False).indices.items()}

    @classmethod
    def open(cls, parent_dir: Path, manifest: Manifest, stored: StoredRelations, codes: list[str],
             base_all: pd.DataFrame | None = None) -> _ParentVerdicts | None:
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


class _BaseVectors:
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


def _merged_event(b: pd.DataFrame, delta_frame: pd.DataFrame, d_pos: np.ndarray, delta_vectors: np.ndarray,
                  base: _BaseVectors) -> EventRows | None:
    """One changed event of the merged version: its base rows `b` (base order), then its delta rows
    (positions `d_pos` in the delta, ascending)."""
    if not len(b) and not len(d_pos):
        return None
    d = delta_frame.iloc[d_pos]
    ids = np.concatenate([b["image_id"].to_numpy(np.int64), d["image_id"].to_numpy(np.int64)])
    at = np.concatenate([_micros(b["embedded_at"]), _micros(d["embedded_at"])])
    parts = [str(p) for p in b["parquet_part"].tolist()] + [str(p) for p in d["parquet_part"].tolist()]
    b_rows = b["row"].to_numpy(np.int64)

    def vectors() -> np.ndarray:
        return np.ascontiguousarray(np.concatenate([base.rows(b_rows), np.asarray(delta_vectors[d_pos], np.float32)]))

    return EventRows(ids, at, parts, vectors)
