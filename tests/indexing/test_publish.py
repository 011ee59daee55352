"""Verify, publish, retention, rollback, and readers that never see a half-written version."""

from __future__ import annotations

import json
import threading

import numpy as np
import psycopg
import pytest

from indexing import pipeline
from indexing.search.loaded import load_version
from indexing.store.integrity import IndexCorrupt
from indexing.store.layout import IndexStore, backup_store
from indexing.verify import VerificationFailed
from tests.helpers import flip_byte, overwrite
from tests.indexing.conftest import DIM, MODEL


def build_publish(conninfo, settings, **kw) -> int:
    v = pipeline.build(conninfo, settings, MODEL, **kw)["version"]
    pipeline.verify(conninfo, settings, MODEL, v)
    pipeline.publish(conninfo, settings, MODEL, v)
    return v


def status(db, v: int) -> tuple:
    return db.execute("SELECT status, error FROM index_versions WHERE model_version = %s AND version = %s",
                      (MODEL, v)).fetchone()


def test_publish_flips_current_sets_faiss_index_and_notifies(small_corpus, conninfo, settings, db):
    corpus = small_corpus
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute("LISTEN index_published")
        v1 = build_publish(conninfo, settings)
        notes = list(listener.notifies(timeout=5, stop_after=1))
    assert [json.loads(n.payload) for n in notes] == [{"model_version": MODEL, "version": v1}]
    store = IndexStore(settings, MODEL)
    assert store.current_version() == v1 and load_version(settings, MODEL).version == v1
    assert status(db, v1) == ("published", None)
    indexed = {r[0] for r in db.execute("SELECT id FROM images WHERE faiss_index = id").fetchall()}
    assert indexed == set(corpus.vectors)

    # Re-embedding one image keeps it indexed; a failed re-embed takes it out of the next version.
    ids = sorted(corpus.vectors)
    corpus.fail(ids[0])
    corpus.vectors.pop(ids[0])
    v2 = build_publish(conninfo, settings)
    row = db.execute("SELECT faiss_index FROM images WHERE id = %s", (ids[0],)).fetchone()
    assert row == (None,) and store.current_version() == v2
    assert db.execute("SELECT count(*) FROM images WHERE faiss_index = id").fetchone()[0] == len(corpus.vectors)


def test_corrupt_file_fails_verification_and_publishes_nothing(small_corpus, conninfo, settings, db):
    v1 = build_publish(conninfo, settings)
    small_corpus.embed(small_corpus.images(small_corpus.event(), 3))
    v2 = pipeline.build(conninfo, settings, MODEL, mode="rebuild")["version"]
    path = IndexStore(settings, MODEL).version_dir(v2) / "index.faiss"
    flip_byte(path)
    with pytest.raises(VerificationFailed, match=r"v000002/index\.faiss: checksum mismatch"):
        pipeline.verify(conninfo, settings, MODEL, v2)
    assert status(db, v2)[0] == "failed" and "checksum" in status(db, v2)[1]
    with pytest.raises(VerificationFailed, match="failed verification"):
        pipeline.publish(conninfo, settings, MODEL, v2)
    with pytest.raises(IndexCorrupt, match="checksum"):
        load_version(settings, MODEL, v2)
    assert IndexStore(settings, MODEL).current_version() == v1
    assert db.execute("SELECT count(*) FROM images WHERE faiss_index IS NOT NULL").fetchone()[0] == 60


def test_wrong_count_against_the_ledger_publishes_nothing(small_corpus, conninfo, settings, db):
    corpus = small_corpus
    # The ledger says embedded, but the part holding those vectors is gone.
    lost = corpus.embed(corpus.images(corpus.event(), 4))
    lost.unlink()
    v = pipeline.build(conninfo, settings, MODEL)["version"]
    with pytest.raises(VerificationFailed, match=r"wrong count: 60 vectors of live images, but the ledger has 64"):
        pipeline.publish(conninfo, settings, MODEL, v)  # publish verifies first
    assert status(db, v)[0] == "failed"
    assert IndexStore(settings, MODEL).current_version() is None
    assert db.execute("SELECT count(*) FROM images WHERE faiss_index IS NOT NULL").fetchone()[0] == 0


def test_wrong_dim_publishes_nothing(small_corpus, conninfo, settings, db):
    corpus = small_corpus
    v = pipeline.build(conninfo, settings, MODEL)["version"]
    for part in corpus.dataset.glob("part-*.parquet"):  # the dataset was re-made with another model head
        part.unlink()
    corpus.embed(sorted(corpus.vectors), dim=DIM * 2,
                 vectors=np.eye(DIM * 2, dtype=np.float32)[np.arange(len(corpus.vectors)) % (DIM * 2)])
    with pytest.raises(VerificationFailed, match=f"index dim {DIM} but the {MODEL} embeddings have dim {DIM * 2}"):
        pipeline.verify(conninfo, settings, MODEL, v)
    assert status(db, v)[0] == "failed"
    assert IndexStore(settings, MODEL).current_version() is None


def test_retention_keeps_the_newest_and_never_current(small_corpus, conninfo, settings, db):
    corpus = small_corpus
    versions = []
    for _ in range(4):
        corpus.embed(corpus.images(corpus.event(), 2))
        versions.append(build_publish(conninfo, settings))
    assert versions == [1, 2, 3, 4]
    assert pipeline.rollback(conninfo, settings, MODEL, to=1) == 1
    assert pipeline.prune(settings, MODEL, keep=2, conninfo=conninfo) == [2]
    store = IndexStore(settings, MODEL)
    assert store.versions() == [1, 3, 4] and store.current_version() == 1
    assert status(db, 2)[0] == "pruned"
    assert load_version(settings, MODEL).version == 1  # the merge base shared by hard links survives pruning
    assert pipeline.prune(settings, MODEL, keep=1) == [3]
    assert store.versions() == [1, 4]
    with pytest.raises(ValueError, match="at least 1"):
        pipeline.prune(settings, MODEL, keep=0)


def test_failed_builds_do_not_take_a_backups_place(small_corpus, conninfo, settings, db):
    corpus = small_corpus
    v1 = build_publish(conninfo, settings)
    corpus.embed(corpus.images(corpus.event(), 2))
    v2 = build_publish(conninfo, settings)
    failed = []
    for _ in range(2):  # two newer builds that fail verification (a damaged file)
        corpus.embed(corpus.images(corpus.event(), 1))
        v = pipeline.build(conninfo, settings, MODEL, mode="rebuild")["version"]
        store = IndexStore(settings, MODEL)
        overwrite(store.version_dir(v) / "meta.parquet", b"damaged")
        with pytest.raises(VerificationFailed):
            pipeline.verify(conninfo, settings, MODEL, v)
        failed.append(v)
    corpus.embed(corpus.images(corpus.event(), 1))
    in_flight = pipeline.build(conninfo, settings, MODEL)["version"]  # built, on its way to publish
    assert sorted(pipeline.prune(settings, MODEL, keep=2, conninfo=conninfo)) == failed
    assert IndexStore(settings, MODEL).versions() == [v1, v2, in_flight]


def test_rollback_goes_to_the_previous_published_version_after_checking_it(small_corpus, conninfo, settings, db):
    corpus = small_corpus
    v1 = build_publish(conninfo, settings)
    corpus.embed(corpus.images(corpus.event(), 2))
    v2 = build_publish(conninfo, settings)
    corpus.embed(corpus.images(corpus.event(), 2))
    v3 = pipeline.build(conninfo, settings, MODEL)["version"]  # built, never published
    store = IndexStore(settings, MODEL)
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute("LISTEN index_published")
        assert pipeline.rollback(conninfo, settings, MODEL) == v1
        assert json.loads(next(listener.notifies(timeout=5, stop_after=1)).payload)["version"] == v1
    assert store.current_version() == v1
    assert db.execute("SELECT count(*) FROM images WHERE faiss_index IS NOT NULL").fetchone()[0] == 60
    with pytest.raises(pipeline.RollbackError, match="no earlier published version"):
        pipeline.rollback(conninfo, settings, MODEL)
    assert pipeline.rollback(conninfo, settings, MODEL, to=v2) == v2
    # A target damaged in the store and in its backup copy (made when it was published) is refused; CURRENT stays.
    for copy in (store, backup_store(settings, MODEL)):
        meta = copy.version_dir(v1) / "meta.parquet"
        overwrite(meta, meta.read_bytes()[:-10])
    with pytest.raises(IndexCorrupt, match=r"meta\.parquet"):
        pipeline.rollback(conninfo, settings, MODEL, to=v1)
    assert store.current_version() == v2
    with pytest.raises(pipeline.RollbackError, match="not on disk"):
        pipeline.rollback(conninfo, settings, MODEL, to=v3 + 5)


def test_readers_never_see_a_half_written_version(small_corpus, conninfo, settings):
    corpus = small_corpus
    store = IndexStore(settings, MODEL)
    build_publish(conninfo, settings)
    # A build in progress (temp folder, partial files) is invisible; a damaged CURRENT target is refused.
    tmp = store.root / ".tmp-build-crashed"
    tmp.mkdir()
    (tmp / "index.faiss").write_bytes(b"partial")
    assert store.versions() == [1]
    broken = store.version_dir(7)
    broken.mkdir()
    (broken / "index.faiss").write_bytes(b"half")
    with pytest.raises(IndexCorrupt, match=r"v000007/manifest\.json: missing"):
        load_version(settings, MODEL, 7)
    broken.rename(store.root / ".gone")

    # Concurrent readers while versions are built and published: every load is complete and consistent.
    errors: list[str] = []
    seen: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                loaded = load_version(settings, MODEL)
                assert loaded.count == loaded.manifest.count == len(loaded.ids)
                assert loaded.search(loaded.vector(int(loaded.ids[0])), 1)[1][0, 0] == loaded.ids[0]
                seen.add(loaded.version)
            except Exception as exc:  # collected and asserted empty below
                errors.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(4):
            corpus.embed(corpus.images(corpus.event(), 3))
            build_publish(conninfo, settings, mode="rebuild" if i % 2 else "merge")
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert len(seen) >= 2 and max(seen) <= 5


def test_cannot_publish_or_load_missing_versions(db, conninfo, settings):
    with pytest.raises(IndexCorrupt, match="no published index"):
        load_version(settings, MODEL)
    with pytest.raises(VerificationFailed, match="does not exist"):
        pipeline.publish(conninfo, settings, MODEL, 3)
    store = IndexStore(settings, MODEL)
    store.root.mkdir(parents=True)
    (store.root / "CURRENT").write_text("garbage")
    with pytest.raises(IndexCorrupt, match="does not name a version"):
        load_version(settings, MODEL)
