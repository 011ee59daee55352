"""Building and merging versions from real Parquet parts and a real ledger."""

from __future__ import annotations

import numpy as np
import pytest

from indexing import pipeline
from indexing.search.loaded import load_version
from indexing.store.layout import IndexStore
from tests.indexing.conftest import MODEL, Corpus, unit_vectors


def brute_force(corpus: Corpus, query: np.ndarray, k: int, ids: list[int] | None = None) -> list[int]:
    pool = sorted(ids if ids is not None else corpus.vectors)
    scores = np.stack([corpus.vectors[i] for i in pool]) @ query
    return [pool[j] for j in np.argsort(-scores, kind="stable")[:k]]


def assert_matches_corpus(loaded, corpus: Corpus, *, exact_global: bool = True) -> None:
    """Same id set as the ledger, the very vectors of the Parquet, exact search equal to brute force."""
    assert set(loaded.ids.tolist()) == corpus.expected_ids() == set(corpus.vectors)
    for i in list(corpus.vectors)[::7]:
        np.testing.assert_allclose(loaded.vector(i), corpus.vectors[i], rtol=0, atol=1e-6)
    queries = unit_vectors(7, 5) if exact_global else np.stack([corpus.vectors[i] for i in list(corpus.vectors)[:5]])
    _, ids = loaded.search(queries, 5)
    for q, got in zip(queries, ids, strict=True):
        if exact_global:
            assert got.tolist() == brute_force(corpus, q, 5)
        else:  # approximate (IVF-PQ, toy-sized codebooks): itself first, and most of the true top-5
            truth = brute_force(corpus, q, 5)
            assert got[0] == truth[0] and len(set(got.tolist()) & set(truth)) >= 3
    for event in set(corpus.event_of.values()):
        members = [i for i, e in corpus.event_of.items() if e == event and i in corpus.vectors]
        assert sorted(loaded.event_ids(event).tolist()) == sorted(members)
        ev_ids, ev_vecs = loaded.event_vectors(event)
        for i, v in zip(ev_ids, ev_vecs, strict=True):
            np.testing.assert_allclose(v, corpus.vectors[int(i)], atol=1e-6)
        scores, got = loaded.search_event(queries[0], event, 4)
        assert got.tolist() == (brute_force(corpus, queries[0], 4, members) if members else [])
        assert np.all(np.diff(scores) <= 1e-7)


def test_rebuild_indexes_latest_live_embedded_rows_sorted_by_event(small_corpus, conninfo, settings, db):
    corpus = small_corpus
    ids = sorted(corpus.vectors)
    corpus.embed(ids[:5])  # re-embedded: the newer part wins
    corpus.fail(ids[5])  # ledger says failed: not indexed
    corpus.vectors.pop(ids[5])
    corpus.delete(ids[6:8])  # deleted images: not indexed
    orphan = corpus.images(corpus.event(), 3)  # registered but never embedded
    assert orphan

    result = pipeline.build(conninfo, settings, MODEL, mode="rebuild")
    assert result["mode"] == "rebuild" and result["index_type"] == "flat" and result["version"] == 1
    loaded = load_version(settings, MODEL, 1)
    assert loaded.count == result["count"] == len(corpus.vectors)
    assert_matches_corpus(loaded, corpus)
    events = loaded.meta["event_code"].tolist()
    assert events == sorted(events), "rebuild lays rows out grouped by event"
    row = db.execute("SELECT status, vector_count, index_type FROM index_versions WHERE version = 1").fetchone()
    assert row == ("built", len(corpus.vectors), "flat")


def test_merge_handles_additions_deletions_and_reembeds_and_costs_only_the_change(
        small_corpus, conninfo, settings):
    corpus = small_corpus
    pipeline.build(conninfo, settings, MODEL, mode="rebuild")
    pipeline.publish(conninfo, settings, MODEL, 1)
    ids = sorted(corpus.vectors)

    new_event = corpus.event()
    corpus.embed(corpus.images(new_event, 6) + corpus.images(corpus.event_of[ids[0]], 2))  # additions
    corpus.embed(ids[10:13])  # re-embeds
    corpus.delete(ids[20:24])  # deletions
    result = pipeline.build(conninfo, settings, MODEL)
    assert result["mode"] == "merge", result
    assert result["changes"] == {"added": 8, "reembedded": 3, "deleted": 4, "missing_vectors": 0}
    store = IndexStore(settings, MODEL)
    v1, v2 = store.version_dir(1), store.version_dir(2)
    assert (v2 / "index.faiss").stat().st_ino == (v1 / "index.faiss").stat().st_ino, "base shared, not rewritten"
    manifest = store.read_manifest(2)
    assert manifest.delta_count == 11 and manifest.removed_count == 7 and manifest.parent_version == 1
    loaded = load_version(settings, MODEL, 2)
    assert_matches_corpus(loaded, corpus)
    for batch in (1, 9):  # the SIMD scan (few queries) and FAISS's batched path both skip removed ids
        _, got = loaded.search(np.stack([corpus.vectors[ids[0]]] * batch), 200)
        assert set(got[0][got[0] >= 0].tolist()) == set(corpus.vectors)
    pipeline.publish(conninfo, settings, MODEL, 2)

    # A second merge on top of a delta: re-embed a delta row, delete another, add more.
    delta_ids = [i for i in loaded.ids.tolist() if i > max(ids)]
    corpus.embed(delta_ids[:2])
    corpus.delete(delta_ids[2:3])
    corpus.embed(corpus.images(new_event, 3))
    result = pipeline.build(conninfo, settings, MODEL)
    assert result["mode"] == "merge"
    assert_matches_corpus(load_version(settings, MODEL, 3), corpus)
    # And a rebuild of the same state gives the same answers.
    rebuilt = pipeline.build(conninfo, settings, MODEL, mode="rebuild")
    assert_matches_corpus(load_version(settings, MODEL, rebuilt["version"]), corpus)


def test_hnsw_builds_always_rebuild(small_corpus, conninfo, settings):
    corpus = small_corpus
    first = pipeline.build(conninfo, settings, MODEL, mode="rebuild", index_type="hnsw")
    pipeline.publish(conninfo, settings, MODEL, first["version"])
    corpus.embed(corpus.images(corpus.event(), 4))
    second = pipeline.build(conninfo, settings, MODEL, index_type="hnsw")
    assert second["mode"] == "rebuild" and "HNSW" in second["rebuild_reason"]
    loaded = load_version(settings, MODEL, second["version"])
    assert loaded.index_type == "hnsw" and loaded.manifest.params["m"] == settings.index_hnsw_m
    assert set(loaded.ids.tolist()) == set(corpus.vectors)
    event = next(iter(corpus.event_of.values()))
    members = [i for i, e in corpus.event_of.items() if e == event]
    q = corpus.vectors[members[0]]
    assert loaded.search_event(q, event, 3)[1].tolist() == brute_force(corpus, q, 3, members)
    assert loaded.search(q, 1)[1][0, 0] == members[0]


def test_ivfpq_keeps_raw_vectors_for_exact_event_search_and_merges(corpus, conninfo, settings):
    ids = []
    for _ in range(3):
        ids += corpus.images(corpus.event(), 150)
    corpus.embed(ids)
    first = pipeline.build(conninfo, settings, MODEL, mode="rebuild", index_type="ivfpq")
    loaded = load_version(settings, MODEL, first["version"])
    assert loaded.index_type == "ivfpq" and {"nlist", "m", "nbits", "nprobe"} <= set(loaded.manifest.params)
    assert_matches_corpus(loaded, corpus, exact_global=False)  # vector() and per-event search stay exact
    pipeline.publish(conninfo, settings, MODEL, first["version"])
    corpus.embed(corpus.images(corpus.event(), 5))
    corpus.delete(ids[:3])
    second = pipeline.build(conninfo, settings, MODEL, index_type="ivfpq")
    assert second["mode"] == "merge" and second["index_type"] == "ivfpq"
    loaded = load_version(settings, MODEL, second["version"])
    assert set(loaded.ids.tolist()) == set(corpus.vectors)
    assert ids[0] not in loaded.search(corpus.vectors[ids[3]], 50)[1][0]


def test_merge_turns_into_rebuild_when_the_delta_outgrows_the_base(small_corpus, conninfo, settings, monkeypatch):
    from indexing.build import plan as build_mod

    monkeypatch.setattr(build_mod, "COMPACT_MIN", 5)
    pipeline.build(conninfo, settings, MODEL, mode="rebuild")
    pipeline.publish(conninfo, settings, MODEL, 1)
    small_corpus.embed(small_corpus.images(small_corpus.event(), 20))
    result = pipeline.build(conninfo, settings, MODEL)
    assert result["mode"] == "rebuild" and "compacting" in result["rebuild_reason"]
    assert_matches_corpus(load_version(settings, MODEL, result["version"]), small_corpus)


def test_build_without_embeddings_says_what_to_do(db, conninfo, settings):
    from indexing.build.sources import BuildError

    with pytest.raises(BuildError, match="python -m embeddings"):
        pipeline.build(conninfo, settings, MODEL)
    with pytest.raises(ValueError, match="mode"):
        pipeline.build(conninfo, settings, MODEL, mode="sideways")


def test_choice_follows_size_and_budget(settings):
    from indexing.build.choice import choose

    s = settings.model_copy(update={"index_exact_max_vectors": 1000, "index_memory_budget_mb": 64})
    assert choose(1000, 128, s)[0] == "flat"
    assert choose(1001, 128, s)[0] == "hnsw"
    kind, params = choose(1_000_000, 2048, s)
    assert kind == "ivfpq" and 2048 % params["m"] == 0 and params["m"] * 1_000_000 <= 64 * 2**20
    with pytest.raises(ValueError, match="unknown index type"):
        choose(10, 8, s, "lsh")


def test_odd_filenames_survive_and_an_empty_ledger_builds_an_empty_version(corpus, conninfo, settings, db):
    ids = corpus.images(corpus.event(), 3)
    corpus.embed(ids, ledger=False)  # parts exist, but nothing is in the ledger yet
    empty = pipeline.build(conninfo, settings, MODEL)
    loaded = load_version(settings, MODEL, empty["version"])
    assert loaded.count == 0 and loaded.search(corpus.vectors[ids[0]], 3)[1].tolist() == [[-1, -1, -1]]
    assert loaded.search_event(corpus.vectors[ids[0]], corpus.event_of[ids[0]], 3)[1].tolist() == []

    odd = 'a,"b"\n c;é.jpg'
    db.execute("UPDATE images SET filename = %s WHERE id = %s", (odd, ids[1]))
    corpus.embed(ids)
    loaded = load_version(settings, MODEL, pipeline.build(conninfo, settings, MODEL)["version"])
    assert loaded.row(ids[1])["filename"] == odd and loaded.count == 3


def test_merge_plan_is_decided_before_any_file_is_written(small_corpus, conninfo, settings):
    from indexing.build.plan import MergePlan, plan_merge, read_parent
    from indexing.build.sources import read_ledger

    corpus = small_corpus
    pipeline.build(conninfo, settings, MODEL, mode="rebuild")
    store = IndexStore(settings, MODEL)
    ids = sorted(corpus.vectors)
    corpus.embed(corpus.images(corpus.event(), 4))
    corpus.embed(ids[:2])
    corpus.delete(ids[-3:])
    before = sorted(p.name for p in store.root.iterdir())
    manifest, meta, removed = read_parent(store, 1)
    plan = plan_merge(settings, read_ledger(conninfo, MODEL), 16, 1, manifest, meta, removed, None)
    assert isinstance(plan, MergePlan) and sorted(p.name for p in store.root.iterdir()) == before
    assert plan.changes == {"added": 4, "reembedded": 2, "deleted": 3} and len(plan.todo) == 6
    assert sorted(plan.removed.tolist()) == sorted(ids[:2] + ids[-3:])
    assert plan_merge(settings, read_ledger(conninfo, MODEL), 32, 1, manifest, meta, removed, None) == \
        "dim changed (16 -> 32)"
    assert "requested" in plan_merge(settings, read_ledger(conninfo, MODEL), 16, 1, manifest, meta, removed, "hnsw")


def test_merge_reads_hashes_and_rewrites_only_the_change(small_corpus, conninfo, settings, monkeypatch):
    """A merge costs the change: the ledger rows it reads, the files it hashes and the meta it writes."""
    import pyarrow.parquet as pq

    from indexing.build import builder as build
    from indexing.build import sources
    from indexing.store.layout import META_DELTA_FILE, RELATIONS_DELTA_FILE, RELATIONS_FILE

    corpus = small_corpus
    v1 = pipeline.build(conninfo, settings, MODEL, mode="rebuild")["version"]
    pipeline.publish(conninfo, settings, MODEL, v1)
    store = IndexStore(settings, MODEL)
    ids = sorted(corpus.vectors)
    fresh = corpus.images(corpus.event(), 4)
    corpus.embed(fresh)
    corpus.embed(ids[:2])  # re-embedded
    corpus.delete(ids[-3:])

    ledger_rows: list[int] = []
    real_read = sources.read_ledger

    def counting_read(*args, **kw):
        ledger = real_read(*args, **kw)
        ledger_rows.append(len(ledger.rows))
        return ledger

    hashed: list[str] = []
    real_hash = build.sha256_file

    def recording_hash(path, *a, **kw):
        hashed.append(path.name)
        return real_hash(path, *a, **kw)

    monkeypatch.setattr(sources, "read_ledger", counting_read)
    monkeypatch.setattr(build, "sha256_file", recording_hash)
    v2 = pipeline.build(conninfo, settings, MODEL, mode="merge")["version"]
    m2 = store.read_manifest(v2)
    assert m2.mode == "merge", m2.rebuild_reason
    assert m2.changes["added"] == 4 and m2.changes["reembedded"] == 2
    # Only the rows embedded since v1's watermark came from the ledger (not all 61 live ones).
    assert ledger_rows == [6]
    # The parent's base and base meta are the very same inodes, never hashed again, checksums carried over.
    m1 = store.read_manifest(v1)
    for fname in ("index.faiss", "meta.parquet", RELATIONS_FILE):
        assert (store.version_dir(v2) / fname).stat().st_ino == (store.version_dir(v1) / fname).stat().st_ino
        assert m2.sha256[fname] == m1.sha256[fname] and fname not in hashed
    # What it writes: the delta, its meta, the removed ids and the relations of the events that changed.
    assert sorted(hashed) == sorted(["delta.faiss", META_DELTA_FILE, "removed.npy", RELATIONS_DELTA_FILE])
    # The new meta holds the change only; the loaded version still has every live row, verified.
    delta_meta = pq.read_table(store.version_dir(v2) / META_DELTA_FILE).column("image_id").to_pylist()
    assert sorted(delta_meta) == sorted(fresh + ids[:2])
    loaded = load_version(settings, MODEL, v2)
    try:
        assert_matches_corpus(loaded, corpus)
        assert loaded.count == m2.count == 60 + 4 - 3
    finally:
        loaded.close()
    # A merge on that merge: the old delta rows are kept from v2's delta meta, the base still shared.
    pipeline.publish(conninfo, settings, MODEL, v2)
    more = corpus.images(corpus.event(), 2)
    corpus.embed(more)
    ledger_rows.clear()
    v3 = pipeline.build(conninfo, settings, MODEL, mode="merge")["version"]
    assert ledger_rows == [2]
    base_meta = "meta.parquet"
    assert (store.version_dir(v3) / base_meta).stat().st_ino == (store.version_dir(v1) / base_meta).stat().st_ino
    loaded = load_version(settings, MODEL, v3)
    try:
        assert_matches_corpus(loaded, corpus)
    finally:
        loaded.close()


def test_a_ledger_row_committed_after_the_merge_read_is_merged_next_time(small_corpus, conninfo, settings):
    """embedded_at is the writer's transaction start: a row committed after a merge read it must
    still be in the next merge's window (the watermark), and a row no window covers forces a rebuild."""
    import psycopg

    corpus = small_corpus
    pipeline.publish(conninfo, settings, MODEL, pipeline.build(conninfo, settings, MODEL, mode="rebuild")["version"])
    late = corpus.images(corpus.event(), 1)
    part = corpus.embed(late, ledger=False)
    rel = str(part.relative_to(settings.resolved_data_dir))
    with psycopg.connect(conninfo) as writer:  # an embedding run, still open while the merge reads
        writer.execute("""INSERT INTO image_embeddings (image_id, model_version, status, parquet_part)
                          VALUES (%s, %s, 'embedded', %s)""", (late[0], MODEL, rel))
        corpus.embed(corpus.images(corpus.event(), 2))
        v2 = pipeline.build(conninfo, settings, MODEL, mode="merge")
        assert v2["mode"] == "merge" and v2["changes"]["added"] == 2
        pipeline.publish(conninfo, settings, MODEL, v2["version"])
        writer.commit()
    v3 = pipeline.build(conninfo, settings, MODEL, mode="merge")
    assert v3["mode"] == "merge" and v3["changes"]["added"] == 1, v3
    pipeline.publish(conninfo, settings, MODEL, v3["version"])
    loaded = load_version(settings, MODEL, v3["version"])
    try:
        assert_matches_corpus(loaded, corpus)
    finally:
        loaded.close()
    # A row stamped before the watermark that no version holds (a clock gone wrong): rebuild, never lose it.
    lost = corpus.images(corpus.event(), 1)
    corpus.embed(lost)
    corpus.db.execute("UPDATE image_embeddings SET embedded_at = now() - interval '1 day' WHERE image_id = %s",
                      (lost[0],))
    v4 = pipeline.build(conninfo, settings, MODEL, mode="merge")
    assert v4["mode"] == "rebuild" and "neither in the parent" in v4["rebuild_reason"]
    loaded = load_version(settings, MODEL, v4["version"])
    try:
        assert_matches_corpus(loaded, corpus)
    finally:
        loaded.close()


def test_a_failing_relations_step_never_stops_a_version(small_corpus, conninfo, settings, monkeypatch):
    """Precomputed duplicate relations are an optimisation: when computing them fails, the version is built
    without them (the server computes each event itself), says why, and verifies; a shared base is unlinked."""
    from indexing.relations import compute as relations
    from indexing.store.layout import RELATIONS_DELTA_FILE, RELATIONS_FILE

    corpus = small_corpus
    store = IndexStore(settings, MODEL)
    v1 = pipeline.build(conninfo, settings, MODEL, mode="rebuild")["version"]
    assert store.read_manifest(v1).has(RELATIONS_FILE)
    pipeline.publish(conninfo, settings, MODEL, v1)

    def broken(self, code, rows, writer, earlier=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk full while reading fingerprints")

    monkeypatch.setattr(relations._Computer, "compute", broken)
    corpus.embed(corpus.images(corpus.event(), 3))
    merged = pipeline.build(conninfo, settings, MODEL, mode="merge")  # the parent's base was linked first
    manifest = store.read_manifest(merged["version"])
    assert manifest.mode == "merge" and "disk full" in manifest.relations["error"]
    assert not manifest.has(RELATIONS_FILE) and not manifest.has(RELATIONS_DELTA_FILE)
    assert not (store.version_dir(merged["version"]) / RELATIONS_FILE).exists()
    pipeline.verify(conninfo, settings, MODEL, merged["version"])
    rebuilt = pipeline.build(conninfo, settings, MODEL, mode="rebuild")
    m = store.read_manifest(rebuilt["version"])
    assert "disk full" in m.relations["error"] and m.index_type == "flat" and not m.has("vectors.npy")  # staged: gone
    assert_matches_corpus(load_version(settings, MODEL, rebuilt["version"]), corpus)


def test_lookups_by_code_and_descriptions_match_the_rows(corpus, conninfo, settings, db):
    ids = corpus.images(corpus.event(), 12) + corpus.images(corpus.event(), 5)
    db.execute("UPDATE images SET code = NULL WHERE id = %s", (ids[3],))  # EMS rows may have no code
    corpus.embed(ids)
    pipeline.build(conninfo, settings, MODEL, mode="rebuild")
    loaded = load_version(settings, MODEL, 1)
    rows = {r[0]: r[1:] for r in db.execute(
        "SELECT id, code::text, filename, event_code::text FROM images WHERE id = ANY(%s)", (ids,)).fetchall()}
    for image_id, (code, filename, event) in rows.items():
        assert loaded.describe(image_id) == {"id": image_id, "code": code, "filename": filename,
                                             "event_code": event}
        if code is not None:
            assert loaded.id_for_code(code) == loaded.id_for_code(code.upper()) == image_id
    assert loaded.describe(ids[3])["code"] is None
    for unknown in ("", "00000000-0000-0000-0000-000000000000", "not a code", "x" * 80):
        assert loaded.id_for_code(unknown) is None
    assert loaded.describe(10**9) == {"id": 10**9, "code": None, "filename": None, "event_code": None}
    asked = [ids[5], 10**9, ids[3], ids[0], ids[5]]
    assert loaded.describe_many(asked) == [loaded.describe(i) for i in asked]


def test_merges_keep_the_index_type_the_parent_was_asked_for(small_corpus, conninfo, settings):
    """HNSW asked for once stays HNSW through the next merges (which must rebuild it: HNSW cannot merge); they
    used to fall back to the automatic choice (flat at this size). An explicit type changes it; automatic stays."""
    from indexing import pipeline
    from indexing.store.layout import IndexStore

    store = IndexStore(settings, MODEL)

    def build(**kw) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
        small_corpus.embed(small_corpus.images(small_corpus.event(), 2))
        version = pipeline.build(conninfo, settings, MODEL, **kw)["version"]
        pipeline.publish(conninfo, settings, MODEL, version)  # the next merge's parent
        m = store.read_manifest(version)
        return m.index_type, m.requested_index_type

    assert build(mode="rebuild", index_type="hnsw") == ("hnsw", "hnsw")
    assert build() == ("hnsw", "hnsw")  # a merge: rebuilt, still HNSW
    assert build(index_type="flat") == ("flat", "flat")
    assert build() == ("flat", "flat")
    assert build(mode="rebuild") == ("flat", None)  # a rebuild asking nothing: automatic again
