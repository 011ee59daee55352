"""The relations file: its rows, its footer, the rules it was computed under; writing and reading it.

Files (names in indexing/store/layout.py):
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

Relations of other rules, and an event whose ids differ from those it was computed over, are
never used: the server then computes that event itself, as it did before these files existed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from indexing.store.layout import RELATIONS_DELTA_FILE, RELATIONS_FILE

if TYPE_CHECKING:
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


def ids_hash(ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes()).hexdigest()[:32]


def content_hash(ids: np.ndarray, embedded_at_us: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(embedded_at_us, dtype="<i8").tobytes())
    return digest.hexdigest()[:32]


def micros(values: Any) -> np.ndarray:
    """Timestamps (any pandas/Arrow resolution, UTC) as int64 microseconds since the epoch."""
    stamps = pd.to_datetime(pd.Series(values), utc=True)
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, "us")).to_numpy(np.int64)


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


def read_footer(path: Path) -> dict[str, Any] | None:
    """A relations file's footer (only the footer is read), None when unreadable: then it is not shared."""
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_metadata(path).metadata or {}).get(FOOTER_KEY.encode())
        footer = json.loads(raw) if raw else None
        return footer if isinstance(footer, dict) and footer.get("format") == RELATIONS_FORMAT else None
    except Exception as exc:  # pyarrow raises several types for a damaged file
        log.warning("%s: footer unreadable (%s): not shared", path, exc)
        return None


def footer_rules(footer: dict[str, Any]) -> Rules | None:
    try:
        return Rules(**footer["rules"])
    except (KeyError, TypeError):
        return None
