"""Computing an event's verified candidate pairs, and the relations files of a version being built.

`event_verdicts` is the one place that turns an event's ids, vectors and fingerprints into
verdicts: the build calls it, and so does the server for an event the version holds no
relations for (serving/relations.py), so both answer alike.

Row order matters: `verified_pairs` verifies row i against row j (i < j), and ties among
neighbours follow rows, so an event is computed over its ids in the order the served version
holds them (base rows, then delta rows), exactly what the server's own computation sees.

The build's step: `for_rebuild` writes `relations.parquet` (every event), `for_merge` the merged
version's relations (the changed events computed, the others kept from the parent, reuse.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.settings import Settings, or_one_per_core
from indexing.relations.fingerprints import FingerprintReader
from indexing.relations.format import (
    EventEntry,
    EventVerdicts,
    RelationsFile,
    RelationsUnusable,
    RelationsWriter,
    Rules,
    StoredRelations,
    content_hash,
    footer_rules,
    micros,
    read_footer,
)
from indexing.relations.reuse import (
    BaseVectors,
    EarlierEvent,
    ParentVerdicts,
    base_members,
    parent_events,
    unchanged_rows,
)
from indexing.store.files import link_or_copy
from indexing.store.integrity import IndexCorrupt, read_verified
from indexing.store.layout import RELATIONS_DELTA_FILE, RELATIONS_FILE, Manifest

if TYPE_CHECKING:
    from duplicates.fingerprint import Fingerprint
    from duplicates.groups import Pair
    from duplicates.relation import Verdict

log = logging.getLogger(__name__)


def event_verdicts(ids: np.ndarray, vectors: np.ndarray, fingerprints: Mapping[int, Fingerprint | None],
                   known: Mapping[tuple[int, int], Verdict] | None = None, *, threads: int = 1,
                   relate_all: Callable[[list[Pair]], list[Verdict]] | None = None) -> EventVerdicts:
    """The event's verified candidate pairs, from its ids and vectors in the version's row order.

    The one place for this rule (the build and the server's own computation both call it).
    Images without a fingerprint are unverifiable: `verified_pairs` skips their pairs, so with
    fewer than two fingerprints there is nothing to verify and the neighbour search is skipped.
    `known` (a merge: `EarlierEvent.known`) lends verdicts of unchanged pairs; the answer is the same.
    `threads` and `relate_all` (the build's processes, `_Computer`) change where the work runs, not the answer.
    """
    from duplicates.groups import verified_pairs

    started = time.perf_counter()
    usable = {int(i): fp for i, fp in fingerprints.items() if fp is not None}
    by_rows = (verified_pairs(ids, vectors, usable, known, threads=threads, relate_all=relate_all)
               if len(usable) >= 2 else {})
    verdicts: dict[tuple[int, int], Verdict] = {}
    reused = 0
    for (i, j), verdict in by_rows.items():
        a, b = int(ids[i]), int(ids[j])
        if known is not None and known.get((a, b)) is verdict:
            reused += 1
        verdicts[(a, b) if a < b else (b, a)] = verdict
    unverifiable = frozenset(int(i) for i in ids if int(i) not in usable)
    return EventVerdicts(verdicts, unverifiable, time.perf_counter() - started, reused)


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
    cpu_seconds: float = 0.0  # ... their CPU time (in the processes that verified them)
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


# Fewer images than this in a window are verified in the build's process: starting the pool (spawned workers
# importing NumPy, OpenCV and FAISS, ~2 s) would cost more than it saves (verification: ~30-70 ms per image).
POOL_MIN_IMAGES = 200


def _verify_event(args: tuple[Any, ...]) -> tuple[EventVerdicts, float]:
    """`event_verdicts(*args)` and the CPU seconds it took, in whichever process runs it (a pool's worker)."""
    cpu = time.process_time()
    found = event_verdicts(*args)
    return found, time.process_time() - cpu


def _relate_chunk(args: tuple[dict[int, Fingerprint], list[tuple[int, int, float]]]) -> tuple[list[Verdict], float]:
    """relate() over a share of one event's pairs (fingerprints by position in the event) and its CPU seconds."""
    from duplicates.verify import relate

    fps, pairs = args
    cpu = time.process_time()
    verdicts = [relate(fps[a], fps[b], cos) for a, b, cos in pairs]
    return verdicts, time.process_time() - cpu


@dataclass(frozen=True)
class _Queued:
    """An event waiting to be written: verified (`args`) or kept from the parent (`kept`: its entry and rows)."""

    code: str
    rows: EventRows | None = None
    args: tuple[Any, ...] | None = None  # event_verdicts' arguments after the ids: vectors, fingerprints, known
    kept: tuple[EventEntry, Any] | None = None

    def job(self) -> tuple[Any, ...]:
        """event_verdicts' arguments."""
        assert self.rows is not None and self.args is not None
        return (self.rows.ids, *self.args)


class _Computer:
    """Computes events into a writer (fingerprints read as the server reads them).

    Events are queued and verified a window at a time on RELATIONS_PROCESSES processes (verification is
    NumPy and OpenCV on thumbnails under the GIL: threads gave 1.01x), then written in queue order, so the
    file is the one a single process writes. The pool is billiard's (Celery's multiprocessing), which a task
    in a Celery prefork worker may start where the standard library's refuses ("daemonic processes are not
    allowed to have children", apache/airflow#14896), with spawned workers (this process may hold FAISS's
    OpenMP threads, which a fork would copy mid-state). A pool that cannot start or fails leaves the rest to
    this process, with a warning: the same verdicts, one core. Call `close()` when done.
    """

    def __init__(self, settings: Settings, model_version: str, report: RelationsReport) -> None:
        self.reader = FingerprintReader(settings, model_version)
        self.report = report
        self.processes = or_one_per_core(settings.relations_processes)
        self.queued: list[_Queued] = []
        self.pool: Any = None

    def compute(self, code: str, rows: EventRows, writer: RelationsWriter,
                earlier: EarlierEvent | None = None) -> None:
        """Queue the event's verification into `writer`; with `earlier` (the parent's verdicts), only its new
        pairs. Written by `drain()` (called here when the window is full)."""
        fps, not_found = self.reader.read(dict(zip(rows.ids.tolist(), rows.parts, strict=True)))
        if not_found:  # a transient read problem must not become "unverifiable" in a version
            log.warning("event %s: no stored row for %d image(s) (e.g. %s): left to the server", code,
                        len(not_found), sorted(not_found)[:3])
            self.report.skipped += 1
            self.drain(writer)
            writer.withdraw(code)
            return
        usable = sum(fp is not None for fp in fps.values())
        vectors = rows.vectors() if usable >= 2 else np.empty((len(rows.ids), 0), np.float32)
        known = earlier.known(rows.ids, rows.embedded_at_us) if earlier is not None else None
        self.queued.append(_Queued(code, rows, (vectors, fps, known)))
        if sum(q.args is not None for q in self.queued) >= (2 * self.processes if self.processes > 1 else 1):
            self.drain(writer)

    def keep(self, code: str, entry: EventEntry, rows: Any, writer: RelationsWriter) -> None:
        """Write an event kept from the parent, after the events queued before it."""
        if self.queued:
            self.queued.append(_Queued(code, kept=(entry, rows)))
        else:
            writer.keep(code, entry, rows)

    def drain(self, writer: RelationsWriter) -> None:
        """Verify the queued events and write them, in the order they were queued."""
        queued, self.queued = self.queued, []
        results = iter(self._run([q.job() for q in queued if q.args is not None]))
        for item in queued:
            if item.kept is not None:
                writer.keep(item.code, *item.kept)
            else:
                assert item.rows is not None
                self._record(item.code, item.rows, *next(results), writer)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None

    def _run(self, jobs: list[tuple[Any, ...]]) -> list[tuple[EventVerdicts, float]]:
        """Each job's verdicts and CPU seconds: an event of POOL_MIN_IMAGES or more alone, its pairs shared
        among the processes (its keypoint votes on as many threads here); smaller ones a whole event each."""
        out: list[tuple[EventVerdicts, float] | None] = [None] * len(jobs)
        small = [k for k, job in enumerate(jobs) if len(job[0]) < POOL_MIN_IMAGES]
        for k, job in enumerate(jobs):
            if len(job[0]) >= POOL_MIN_IMAGES:
                out[k] = self._split(job)
        batch = [jobs[k] for k in small]
        if len(batch) > 1 and sum(len(job[0]) for job in batch) >= POOL_MIN_IMAGES and self._pool() is not None:
            try:
                done = list(self.pool.map(_verify_event, batch, chunksize=1))
            except Exception as exc:  # any failure of the pool: this process verifies the rest
                self._failed(exc)
                done = [_verify_event(job) for job in batch]
        else:
            done = [_verify_event(job) for job in batch]
        for k, result in zip(small, done, strict=True):
            out[k] = result
        return [r for r in out if r is not None]

    def _split(self, job: tuple[Any, ...]) -> tuple[EventVerdicts, float]:
        """One large event: its candidates here (keypoint votes on `processes` threads), its pairs verified on
        the pool, a share each (every n-th pair: costs even out), the verdicts put back in order."""
        from duplicates.verify import relate

        workers_cpu = [0.0]

        def relate_all(pairs: list[Pair]) -> list[Verdict]:
            if len(pairs) > 1 and self._pool() is not None:
                slot: dict[int, int] = {}  # a fingerprint object -> its number in this event, sent once a share
                table: dict[int, Fingerprint] = {}

                def number(fp: Fingerprint) -> int:
                    k = slot.setdefault(id(fp), len(slot))
                    table[k] = fp
                    return k

                numbered = [(number(query), number(candidate), cos) for query, candidate, cos in pairs]
                n = self.processes
                shares = [numbered[w::n] for w in range(n)]
                try:
                    done = self.pool.map(_relate_chunk, [({k: table[k] for p in share for k in p[:2]}, share)
                                                         for share in shares], chunksize=1)
                except Exception as exc:  # any failure of the pool: this process verifies the rest
                    self._failed(exc)
                else:
                    verdicts: list[Verdict] = [None] * len(pairs)  # type: ignore[list-item]
                    for w, (part, cpu) in enumerate(done):
                        verdicts[w::n] = part
                        workers_cpu[0] += cpu
                    return verdicts
            return [relate(*pair) for pair in pairs]

        ids, vectors, fps, known = job
        cpu = time.process_time()
        found = event_verdicts(ids, vectors, fps, known, threads=self.processes, relate_all=relate_all)
        return found, time.process_time() - cpu + workers_cpu[0]

    def _pool(self) -> Any:
        """The pool (started on first use), or None when this build verifies in its own process."""
        if self.processes > 1 and self.pool is None:
            try:
                import billiard

                log.info("relations: verifying events on %d processes", self.processes)
                self.pool = billiard.get_context("spawn").Pool(self.processes)
            except Exception as exc:  # no processes to be had: this process verifies
                self._failed(exc)
        return self.pool

    def _failed(self, exc: BaseException) -> None:
        log.warning("relations: the pool of %d processes failed (%s: %s); verifying in this process",
                    self.processes, type(exc).__name__, exc)
        if self.pool is not None:
            self.pool.terminate()
            self.pool = None
        self.processes = 1

    def _record(self, code: str, rows: EventRows, found: EventVerdicts, cpu: float, writer: RelationsWriter) -> None:
        writer.add(code, rows.ids, rows.embedded_at_us, found)
        r = self.report
        r.cpu_seconds += cpu
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
    at = micros(frame["embedded_at"])
    parts = frame["parquet_part"].astype(str).tolist()
    bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True]) if len(codes) else np.array([0])
    events = [(str(codes[lo]), lo, hi) for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]
    contents = {code: content_hash(ids[lo:hi], at[lo:hi]) for code, lo, hi in events}
    earlier = None
    if reuse is not None and parent is not None:
        changed = [code for code, _, _ in events
                   if (found := reuse.lookup(code)) is not None and found[1].content_hash != contents[code]]
        earlier = ParentVerdicts.open(parent[0], parent[1], reuse, changed) if changed else None
    try:
        for code, lo, hi in events:
            if reuse is not None and (kept := unchanged_rows(reuse, code, contents[code])) is not None:
                computer.keep(code, *kept, writer)
                report.kept += 1
                continue
            computer.compute(code, EventRows(ids[lo:hi], at[lo:hi], parts[lo:hi],
                                             lambda lo=lo, hi=hi: np.asarray(vectors[lo:hi], dtype=np.float32)),
                             writer, earlier.event(code) if earlier is not None else None)
        computer.drain(writer)
    finally:
        computer.close()
    writer.close()
    return report


def for_merge(settings: Settings, model_version: str, *, parent_dir: Path, parent_manifest: Manifest,
              dropped: np.ndarray, removed: np.ndarray, added_events: list[str], delta_frame: pd.DataFrame,
              delta_vectors: np.ndarray, folder: Path) -> tuple[RelationsReport, dict[str, str]]:
    """The merged version's relations: the changed events computed, the others kept from the parent.

    Changed events: those of the rows added or re-embedded (`added_events`) and those the parent
    held `dropped` ids in (deleted or re-embedded). The parent's `relations.parquet` is
    hard-linked when its rules are current (returned with its inherited checksum), its delta's
    unchanged events are copied into the new `relations-delta.parquet` with the computed ones.
    A changed event verifies only the pairs the parent has no verdict for (`ParentVerdicts`).
    Reads of the parent: the footers, its delta relations, the changed events' rows of its base
    relations and the meta rows of the changed events (an O(change) read, like the rest of a merge).
    """
    rules = Rules.current()
    report = RelationsReport(rules.rules_version)
    inherited: dict[str, str] = {}
    changed = set(map(str, added_events)) | parent_events(parent_dir, parent_manifest, dropped)

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
    base_footer = read_footer(parent_dir / RELATIONS_FILE) if parent_manifest.has(RELATIONS_FILE) else None
    if delta_usable and base_footer is not None and footer_rules(base_footer) == rules:
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
        base_all = base_members(parent_dir, sorted(changed))
        base_rows = base_all[~np.isin(base_all["image_id"].to_numpy(np.int64), removed)].reset_index(drop=True)
        stored = StoredRelations()
        if report.base == "linked":  # read in place, like the base meta (ParentVerdicts says why that is safe)
            try:
                stored.files.append(RelationsFile(parent_dir / RELATIONS_FILE, RELATIONS_FILE))
            except RelationsUnusable as exc:
                log.warning("%s: its events are verified whole", exc)
        if parent_delta is not None:
            stored.files.append(parent_delta)
        earlier = ParentVerdicts.open(parent_dir, parent_manifest, stored, sorted(changed), base_all)
        base_of = {str(k): v for k, v in base_rows.groupby("event_code", sort=False).indices.items()}
        delta_of = {str(k): v for k, v in delta_frame.groupby("event_code", sort=False).indices.items()}
        index = BaseVectors(parent_dir, parent_manifest)
        empty = np.empty(0, np.int64)
        try:
            for code in sorted(changed):
                rows = _merged_event(base_rows.iloc[base_of.get(code, empty)], delta_frame,
                                     np.sort(delta_of.get(code, empty)), delta_vectors, index)
                if rows is None:
                    computer.drain(writer)
                    writer.withdraw(code)  # no image left in this version
                    continue
                computer.compute(code, rows, writer, earlier.event(code) if earlier is not None else None)
            computer.drain(writer)
        finally:
            computer.close()
            index.close()
    if not writer.empty:
        writer.close()
    return report, inherited


def _merged_event(b: pd.DataFrame, delta_frame: pd.DataFrame, d_pos: np.ndarray, delta_vectors: np.ndarray,
                  base: BaseVectors) -> EventRows | None:
    """One changed event of the merged version: its base rows `b` (base order), then its delta rows
    (positions `d_pos` in the delta, ascending)."""
    if not len(b) and not len(d_pos):
        return None
    d = delta_frame.iloc[d_pos]
    ids = np.concatenate([b["image_id"].to_numpy(np.int64), d["image_id"].to_numpy(np.int64)])
    at = np.concatenate([micros(b["embedded_at"]), micros(d["embedded_at"])])
    parts = [str(p) for p in b["parquet_part"].tolist()] + [str(p) for p in d["parquet_part"].tolist()]
    b_rows = b["row"].to_numpy(np.int64)

    def vectors() -> np.ndarray:
        return np.ascontiguousarray(np.concatenate([base.rows(b_rows), np.asarray(delta_vectors[d_pos], np.float32)]))

    return EventRows(ids, at, parts, vectors)
