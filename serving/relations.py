"""Duplicate relations as the server answers them: verified candidates, copy groups, same-scene groups.

The decision itself is the `duplicates` package (copy / same scene / related,
DESIGN.md "What duplicate means"); this module feeds it what the served
version holds and caches what is expensive, per served version:
- fingerprints, read from the embeddings dataset (indexing/fingerprints.py), never from image files;
- each event's verified pairs (the costly part of its groups), computed once per (version, event).
The caches hang off the ServedIndex object (a weak key), so a hot-swap starts
fresh and the old version's cache goes with its last request.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import UploadFile

from core.settings import Settings
from duplicates.fingerprint import Fingerprint
from duplicates.groups import Group, copy_groups, scene_groups, verified_pairs
from duplicates.relation import Relation, Verdict
from duplicates.rerank import rerank
from indexing.fingerprints import VersionFingerprints
from serving.served import ServedIndex
from serving.state import ServerState

# Candidates verified per query image: hard edits (a thumbnail, JPEG q5, a 40% crop) put their original at
# rank 2..20 of the global embedding; verification then puts it first.
RERANK_DEPTH = 20
EVENTS_CACHED = 16  # events whose verified pairs a served version keeps


@dataclass(frozen=True)
class EventPairs:
    """One event of one version, verified: its ids, vectors and the verdict of every candidate pair."""

    ids: np.ndarray
    vectors: np.ndarray
    verdicts: dict[tuple[int, int], Verdict]  # (image id a, image id b), a < b
    unverifiable: frozenset[int]  # images without a usable fingerprint: never in a group
    seconds: float


@dataclass
class VersionRelations:
    """What one served version caches for the duplicate routes."""

    fingerprints: VersionFingerprints
    events: OrderedDict[str, EventPairs] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    building: dict[str, threading.Lock] = field(default_factory=dict)


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

def event_pairs(served: ServedIndex, settings: Settings, event: str) -> EventPairs:
    """The event's verified candidate pairs, computed once per (version, event); blocking (run in a thread)."""
    rel = relations_of(served, settings)
    key = event.lower()
    with rel.lock:
        if key in rel.events:
            rel.events.move_to_end(key)
            return rel.events[key]
        building = rel.building.setdefault(key, threading.Lock())
    with building:  # one computation per event; concurrent requests wait for it
        with rel.lock:
            if key in rel.events:
                return rel.events[key]
        started = time.perf_counter()
        ids, vecs = served.event_vectors(event)
        fps = rel.fingerprints.get(ids.tolist())
        known = {i: fp for i, fp in fps.items() if fp is not None}
        by_rows = verified_pairs(ids, vecs, known)
        verdicts = {_id_pair(ids, i, j): v for (i, j), v in by_rows.items()}
        pairs = EventPairs(ids, vecs, verdicts, frozenset(int(i) for i in ids if int(i) not in known),
                           time.perf_counter() - started)
        with rel.lock:
            rel.events[key] = pairs
            while len(rel.events) > EVENTS_CACHED:
                rel.events.popitem(last=False)
            rel.building.pop(key, None)
        return pairs


def _id_pair(ids: np.ndarray, i: int, j: int) -> tuple[int, int]:
    a, b = int(ids[i]), int(ids[j])
    return (a, b) if a < b else (b, a)


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


def verify_hits(served: ServedIndex, settings: Settings, query: Query, hits: list[dict[str, Any]]
                ) -> list[dict[str, Any]]:
    """The hits re-ranked by verification (copies first, then same scene, then related by cosine),
    each with `relation` and `verdict` {score, reason}; blocking."""
    if not hits:
        return []
    by_id = {h["id"]: h for h in hits}
    if query.fingerprint is None:
        ranked = [(h["id"], h["similarity_score"], Verdict(Relation.RELATED, max(0.0, h["similarity_score"]),
                                                           "upload has no fingerprint")) for h in hits]
    else:
        fps = relations_of(served, settings).fingerprints.get(by_id)
        ranked = rerank(query.fingerprint, [(h["id"], h["similarity_score"], fps.get(h["id"])) for h in hits])
    return [{**by_id[i], "relation": str(v.relation),
             "verdict": {"score": round(float(v.score), 4), "reason": v.reason}} for i, _, v in ranked]
