"""Duplicate relations as the server answers them: verified candidates, copy groups, same-scene groups.

The decision itself is the `duplicates` package (copy / same scene / related,
docs/design.md, What "duplicate" means); this module feeds it what the served
version holds and caches what is expensive, per served version:
- each event's verified pairs (the costly part of its groups): read from the version's
  precomputed relations (indexing/relations/: the pipeline verified them when it built the
  version), or, for an event the version holds none of the current rules for (an older
  version, a RULES_VERSION bump, images whose stored rows were not found), computed here
  once per (version, event) by the same `indexing.relations.compute.event_verdicts`, in the
  background: at most RELATIONS_CONCURRENCY events at once (38-70 ms of CPU a photo, over a
  minute for 2,000), a request waiting RELATIONS_WAIT_SECONDS for it, then 503 with
  Retry-After (`RelationsBusy`), as is a request for another event while every slot computes;
- fingerprints, read from the embeddings dataset (indexing/relations/fingerprints.py), never from image
  files: for that computation and for checking uploads.
The caches hang off the ServedIndex object (a weak key), so a hot-swap starts
fresh and the old version's cache goes with its last request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import UploadFile

from core.settings import Settings, or_one_per_core
from duplicates.fingerprint import Fingerprint
from duplicates.groups import Group, copy_groups, scene_groups
from duplicates.relation import Relation, Verdict
from duplicates.rerank import rerank
from duplicates.shortlist import WIDE
from indexing.relations.compute import event_verdicts
from indexing.relations.fingerprints import VersionFingerprints
from indexing.relations.format import RelationsUnusable, Rules, StoredRelations, ids_hash
from serving.metrics import ServerMetrics
from serving.served import ServedIndex
from serving.state import ServerState

# Candidates verified by cosine per query image (or top_k when larger): hard edits (a thumbnail, JPEG q5, a 40%
# crop) can put their original past rank 10 of the global embedding; further down, to duplicates.shortlist.WIDE,
# the candidates the query's keypoints vote for are verified, and they find it there. 10 against the 20 it was:
# copy recall identical on every hard edit (shared: 294 photos x 7 hard edits, generated: 120 x 7, events of
# 2,000, bench/duplicates.py --top-k 10 vs 20), 0 false duplicates either way, 10 fewer verifications a check.
RERANK_DEPTH = 10


def search_depth(top_k: int) -> int:
    """How many index hits an upload is searched for: what verify_hits verifies or votes on."""
    return max(top_k, RERANK_DEPTH, WIDE)
EVENTS_CACHED = 16  # events whose verified pairs a served version keeps
# CPU a photo costs when the server computes an event's relations (38-70 ms measured, bench/event_relations.py):
# what Retry-After is estimated from.
SECONDS_PER_PHOTO = 0.05

log = logging.getLogger("serving.relations")


@dataclass(frozen=True)
class EventPairs:
    """One event of one version, verified: its ids, vectors and the verdict of every candidate pair."""

    ids: np.ndarray
    vectors: np.ndarray
    verdicts: dict[tuple[int, int], Verdict]  # (image id a, image id b), a < b
    unverifiable: frozenset[int]  # images without a usable fingerprint: never in a group
    seconds: float
    source: str = "computed"  # "precomputed" (the version's relations files) or "computed" (here, now)


@dataclass
class VersionRelations:
    """What one served version caches for the duplicate routes."""

    fingerprints: VersionFingerprints
    events: OrderedDict[str, EventPairs] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    building: dict[str, threading.Lock] = field(default_factory=dict)
    stored: StoredRelations | None = None  # opened on first use
    stored_lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=lambda: {"precomputed": 0, "computed": 0})
    computing: dict[str, _Job] = field(default_factory=dict)


class RelationsBusy(Exception):
    """The event's relations are still being computed, or every computation slot is taken: 503 Retry-After."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Job:
    """One event's relations computed in the background; requests wait on `done` for a while."""

    photos: int
    started: float
    done: Future[EventPairs] = field(default_factory=Future)

    def retry_after(self) -> int:
        left = self.photos * SECONDS_PER_PHOTO - (time.perf_counter() - self.started)
        return int(min(60, max(1, math.ceil(left))))


_SLOTS: dict[int, threading.BoundedSemaphore] = {}


def _slots(n: int) -> threading.BoundedSemaphore:
    """The server's computation slots (RELATIONS_CONCURRENCY), shared by every version."""
    with _BY_VERSION_LOCK:
        return _SLOTS.setdefault(n, threading.BoundedSemaphore(n))


_BY_VERSION: weakref.WeakKeyDictionary[ServedIndex, VersionRelations] = weakref.WeakKeyDictionary()
_BY_VERSION_LOCK = threading.Lock()


def relations_of(served: ServedIndex, settings: Settings) -> VersionRelations:
    with _BY_VERSION_LOCK:
        rel = _BY_VERSION.get(served)
        if rel is None:
            rel = VersionRelations(VersionFingerprints(settings, served.model_version, served.version))
            _BY_VERSION[served] = rel
        return rel


# --- events ------------------------------------------------------------------------------------------

def event_pairs(served: ServedIndex, settings: Settings, event: str, metrics: ServerMetrics | None = None
                ) -> EventPairs:
    """The event's verified candidate pairs, read or computed once per (version, event); blocking (run in a
    thread). `metrics` counts where they came from (imgsim_event_relations_total{source}).

    Raises RelationsBusy when they must be computed and that takes longer than RELATIONS_WAIT_SECONDS
    (the computation goes on; a retry gets its result), or when every slot is computing other events.
    """
    rel = relations_of(served, settings)
    key = event.lower()
    with rel.lock:
        if key in rel.events:
            rel.events.move_to_end(key)
            return rel.events[key]
        job = rel.computing.get(key)
        building = rel.building.setdefault(key, threading.Lock())
    if job is None:
        with building:  # one reader of the stored relations per event; concurrent requests wait for it
            with rel.lock:
                if key in rel.events:
                    return rel.events[key]
                job = rel.computing.get(key)
            if job is None:
                started = time.perf_counter()
                ids, vecs = served.event_vectors(event)
                pairs = _precomputed(served, rel, key, ids, vecs, started)
                if pairs is not None:
                    return _remember(rel, key, pairs, metrics)
                job = _start(served, settings, rel, key, ids, vecs, metrics, started)
    try:
        return job.done.result(timeout=settings.relations_wait_seconds)
    except TimeoutError:
        raise RelationsBusy(f"event {key}: its duplicate relations for index version {served.version} are being "
                            f"computed ({job.photos} photos, {time.perf_counter() - job.started:.0f} s so far); "
                            "retry", job.retry_after()) from None


def _start(served: ServedIndex, settings: Settings, rel: VersionRelations, key: str, ids: np.ndarray,
           vecs: np.ndarray, metrics: ServerMetrics | None, started: float) -> _Job:
    """Verify the event's candidate pairs in a thread of their own, if a slot is free (else RelationsBusy)."""
    slots = _slots(settings.relations_concurrency)
    if not slots.acquire(blocking=False):
        busy = [j.retry_after() for v in list(_BY_VERSION.values()) for j in list(v.computing.values())]
        raise RelationsBusy(f"event {key}: the server is computing other events' duplicate relations (at most "
                            f"{settings.relations_concurrency} at once, RELATIONS_CONCURRENCY); retry",
                            min(busy, default=1))
    job = _Job(len(ids), started)
    with rel.lock:
        rel.computing[key] = job

    def compute() -> None:
        try:
            found = event_verdicts(ids, vecs, rel.fingerprints.get(ids.tolist()))
            pairs = EventPairs(ids, vecs, found.verdicts, found.unverifiable, time.perf_counter() - started)
            job.done.set_result(_remember(rel, key, pairs, metrics))
        except BaseException as exc:  # the waiting requests see it (as before: it was raised in theirs)
            job.done.set_exception(exc)
        finally:
            with rel.lock:
                rel.computing.pop(key, None)
            slots.release()

    log.info("version %s, event %s: computing the duplicate relations of %d photos (the version holds none of "
             "the current rules for it)", served.version, key, len(ids))
    threading.Thread(target=compute, name=f"relations-{key[:8]}", daemon=True).start()
    return job


def _remember(rel: VersionRelations, key: str, pairs: EventPairs, metrics: ServerMetrics | None) -> EventPairs:
    with rel.lock:
        rel.events[key] = pairs
        while len(rel.events) > EVENTS_CACHED:
            rel.events.popitem(last=False)
        rel.building.pop(key, None)
        rel.counts[pairs.source] += 1
    if metrics is not None:
        metrics.event_relations.labels(pairs.source).inc()
        metrics.event_relations_seconds.labels(pairs.source).inc(pairs.seconds)
    return pairs


def _stored(served: ServedIndex, rel: VersionRelations) -> StoredRelations:
    """The served version's relations files of the current rules, opened once from their verified private copies."""
    with rel.stored_lock:
        if rel.stored is None:
            copies = getattr(served.loaded, "sidecars", {})
            rel.stored = StoredRelations.open({name: copy.path for name, copy in copies.items()}, Rules.current())
            for why in rel.stored.ignored:
                log.warning("version %s: precomputed relations not used: %s", served.version, why)
        return rel.stored


def _precomputed(served: ServedIndex, rel: VersionRelations, event: str, ids: np.ndarray, vecs: np.ndarray,
                 started: float) -> EventPairs | None:
    """The event's pairs from the version's relations, or None: not there, stale, or not over these very ids."""
    found = _stored(served, rel).lookup(event)
    if found is None:
        return None
    source, entry = found
    if entry.images != len(ids) or entry.ids_hash != ids_hash(ids):
        log.warning("version %s, event %s: precomputed relations are over other images (%d, %d served): "
                    "computing them", served.version, event, entry.images, len(ids))
        return None
    try:
        verdicts = source.verdicts(event, entry)
    except RelationsUnusable as exc:
        log.warning("version %s: %s: computing the event", served.version, exc)
        return None
    return EventPairs(ids, vecs, verdicts, frozenset(entry.unverifiable), time.perf_counter() - started,
                      "precomputed")


@dataclass(frozen=True)
class EventGroups:
    groups: list[Group]
    checked: int  # live images of the event in this version
    unverifiable: int  # of those, images without a usable fingerprint


def event_groups(pairs: EventPairs, live: set[int] | None, kind: str) -> EventGroups:
    """Copy groups (`kind` "copies") or same-scene groups ("scenes") among the live images of the event."""
    keep = np.ones(len(pairs.ids), dtype=bool) if live is None else np.isin(pairs.ids, list(live))
    ids, vecs = pairs.ids[keep], pairs.vectors[keep]
    row = {int(x): r for r, x in enumerate(ids)}
    verdicts = {(row[a], row[b]) if row[a] < row[b] else (row[b], row[a]): v
                for (a, b), v in pairs.verdicts.items() if a in row and b in row}
    make = copy_groups if kind == "copies" else scene_groups
    groups = make(ids.tolist(), vecs, {}, verdicts=verdicts)
    return EventGroups(groups, len(ids), sum(1 for i in ids.tolist() if i in pairs.unverifiable))


# --- one uploaded image --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    """An uploaded image as the checks need it: its rotation vectors and its fingerprint."""

    vectors: np.ndarray
    fingerprint: Fingerprint | None


def _query(state: ServerState, data: bytes) -> Query:
    from duplicates.fingerprint import fingerprint
    from serving.uploads import decode_for_model, embed_image

    image = decode_for_model(state, data)
    vectors = embed_image(state, image, True)
    try:
        fp: Fingerprint | None = fingerprint(image, data)
    except Exception:  # an image verification cannot describe is still searchable, only never a copy
        fp = None
    return Query(vectors, fp)


async def read_query(state: ServerState, file: UploadFile) -> Query:
    """Decode once, embed (4 rotations) and fingerprint an upload, in an upload slot, off the event loop."""
    from serving.uploads import process_upload

    return await process_upload(state, file, _query)


def verify_hits(served: ServedIndex, settings: Settings, query: Query, hits: list[dict[str, Any]],
                top_k: int) -> list[dict[str, Any]]:
    """The hits (best cosine first, `search_depth(top_k)` of them) re-ranked by verification: copies first,
    then same scene, then related by cosine, each with `relation` and `verdict` {score, reason}; at most
    top_k. The first max(top_k, RERANK_DEPTH) are verified, and those of the rest the keypoints vote for;
    blocking."""
    if not hits:
        return []
    depth = max(top_k, RERANK_DEPTH)
    by_id = {h["id"]: h for h in hits}
    if query.fingerprint is None:
        ranked = [(h["id"], h["similarity_score"], Verdict(Relation.RELATED, max(0.0, h["similarity_score"]),
                                                           "upload has no fingerprint")) for h in hits[:depth]]
    else:
        fps = relations_of(served, settings).fingerprints.get(by_id)
        ranked = rerank(query.fingerprint, [(h["id"], h["similarity_score"], fps.get(h["id"])) for h in hits],
                        depth, threads=or_one_per_core(settings.check_threads))
    return [{**by_id[i], "relation": str(v.relation),
             "verdict": {"score": round(float(v.score), 4), "reason": v.reason}} for i, _, v in ranked[:top_k]]
