"""DATA_DIR on object storage: embed on two "hosts", build on a third, serve from two replicas.

Each role gets its own STORAGE_CACHE_DIR and shares nothing but the S3 server and PostgreSQL, so
anything that still needs a shared disk fails here. Real parts: rclone's S3 server, PostgreSQL,
EfficientNet-Lite0 on generated photos.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.sample_data import generate_photos
from tests.embeddings.helpers import add_event, add_files

MODEL = "efficientnet-lite0+plain"


def _role(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, bucket: str):  # type: ignore[no-untyped-def]
    """Settings of one host: the object-store DATA_DIR, its own cache folder."""
    from core.settings import get_settings

    monkeypatch.setenv("DATA_DIR", f"s3://{bucket}/imgsim")
    monkeypatch.setenv("STORAGE_CACHE_DIR", str(tmp_path / f"cache-{name}"))
    monkeypatch.setenv("EMBEDDING_MODEL", MODEL)
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def scene(db, s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_database: str):  # type: ignore[no-untyped-def]
    server, bucket, folder = s3
    images = tmp_path / "images"
    monkeypatch.setenv("IMAGE_ROOT", str(images))
    photos = generate_photos(tmp_path / "src", 14, seed=24)
    event = add_event(db)
    ids = add_files(db, event, images, photos[:10])
    return {"server": server, "bucket": bucket, "folder": folder, "event": event, "ids": ids, "images": images,
            "spare": photos[10:], "conninfo": pg_database}


def _object(folder: Path, prefix: str, version: int, fname: str) -> Path:
    """The bucket file holding `fname` of a version under `prefix` (the store's objects are named by sha256)."""
    manifest = next(folder.glob(f"{prefix}/*/v{version:06d}/manifest.json"))
    return manifest.parent.parent / "objects" / json.loads(manifest.read_text())["sha256"][fname]


def _embed(settings, conninfo: str, ids: list[int], run: str) -> dict:  # type: ignore[no-untyped-def]
    from embeddings.runner import embed_batch

    return embed_batch(conninfo, ids, model_name=MODEL, run_id=run, settings=settings)


def test_embed_build_publish_and_serve_share_no_disk(scene, db, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from indexing import pipeline
    from indexing.store.layout import IndexStore
    from serving.holder import IndexHolder

    conninfo, bucket, folder = scene["conninfo"], scene["bucket"], scene["folder"]
    ids = scene["ids"]
    # Two embedding workers, half the batch each.
    w1 = _role(monkeypatch, tmp_path, "worker1", bucket)
    r1 = _embed(w1, conninfo, ids[:5], "run-a")
    w2 = _role(monkeypatch, tmp_path, "worker2", bucket)
    r2 = _embed(w2, conninfo, ids[5:], "run-b")
    assert r1["embedded"] == 5 and r2["embedded"] == 5
    mv = r1["model_version"]
    parts = sorted(p.name for p in folder.rglob("part-*.parquet"))
    assert len(parts) == 2, parts
    assert not list((tmp_path / "cache-worker1").rglob("part-*.parquet")), "a worker keeps no part once uploaded"
    ledger = db.execute("SELECT DISTINCT parquet_part FROM image_embeddings").fetchall()
    assert {Path(r[0]).name for r in ledger} == set(parts)
    assert all(r[0].startswith("embeddings/") for r in ledger), "the ledger names the object under DATA_DIR"

    # The builder: a third cache, reads parts from the object store, uploads and publishes.
    b = _role(monkeypatch, tmp_path, "builder", bucket)
    built = pipeline.build(conninfo, b, mv, mode="rebuild")
    assert built["count"] == 10
    v1 = built["version"]
    pipeline.verify(conninfo, b, mv, v1)
    pipeline.publish(conninfo, b, mv, v1)
    store_dir = next(folder.glob("imgsim/indexes/*"))
    assert (store_dir / "CURRENT").read_text().strip() == f"v{v1:06d}"
    manifest = json.loads((store_dir / f"v{v1:06d}" / "manifest.json").read_text())
    assert set(manifest["sha256"].values()) <= {p.name for p in (store_dir / "objects").iterdir()}
    assert [p.name for p in (store_dir / f"v{v1:06d}").iterdir()] == ["manifest.json"]
    base = f"objects/{manifest['sha256']['index.faiss']}"
    assert db.execute("SELECT version, reason FROM index_current").fetchone() == (v1, "publish")
    assert db.execute("SELECT count(*) FROM images WHERE faiss_index IS NOT NULL").fetchone()[0] == 10

    # Two replicas, each with its own cache, serve v1.
    replicas = []
    for name in ("replica1", "replica2"):
        s = _role(monkeypatch, tmp_path, name, bucket)
        holder = IndexHolder(s, lambda mv=mv: mv)
        holder.refresh()
        assert holder.current is not None and holder.current.version == v1, holder.reason
        replicas.append((s, holder))

    # More photos, embedded by worker 2, merged by the builder (a fresh cache: nothing left from before).
    more = add_files(db, scene["event"], scene["images"], scene["spare"])
    w2 = _role(monkeypatch, tmp_path, "worker2", bucket)
    assert _embed(w2, conninfo, more, "run-c")["embedded"] == len(more)
    b2 = _role(monkeypatch, tmp_path, "builder2", bucket)
    from storage import objects

    moved: list[tuple[str, str]] = []
    for op in ("put_file", "get_file"):
        real = getattr(objects, op)
        monkeypatch.setattr(objects, op, lambda s, loc, rel, *a, _real=real, _op=op, **k: (
            moved.append((_op, rel)), _real(s, loc, rel, *a, **k))[1])
    merged = pipeline.build(conninfo, b2, mv, mode="merge")
    # A merge uploads what changed; the base it shares with v1 is v1's object.
    assert base not in [rel for op, rel in moved if op == "put_file"], moved
    v2 = merged["version"]
    assert v2 == v1 + 1 and merged["count"] == 14 and merged["mode"] == "merge", merged
    pipeline.publish(conninfo, b2, mv, v2)

    # A publish older than CURRENT is refused: two publishers never move it backwards.
    with pytest.raises(pipeline.PublishConflict):
        pipeline.publish(conninfo, b, mv, v1)
    assert (store_dir / "CURRENT").read_text().strip() == f"v{v2:06d}"

    # Both replicas swap without a restart, downloading only what changed; their caches drop the old version.
    for s, holder in replicas:
        moved.clear()
        assert holder.refresh() is True
        got = [rel for op, rel in moved if op == "get_file"]
        assert got and base not in got, got
        assert holder.current.version == v2 and holder.current.count == 14
        assert IndexStore(s, mv).versions() == [v2]

    # The object store stops: the replica keeps serving v2 from its cache and says so.
    s, holder = replicas[0]
    scene["server"].stop()
    try:
        holder.refresh()
        assert holder.current is not None and holder.current.version == v2
        assert holder.storage_problem and "object store unavailable" in (holder.degraded or "")
        assert "secret" not in (holder.degraded or "").lower()
    finally:
        scene["server"].start()
    from storage.filesystems import clear_cache

    clear_cache()
    holder.refresh()
    assert holder.storage_problem is None and holder.degraded is None


def test_a_damaged_cached_file_is_fetched_again(scene, db, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from indexing import pipeline
    from indexing.store import remote
    from indexing.store.layout import IndexStore
    from tests.helpers import flip_byte

    conninfo, bucket = scene["conninfo"], scene["bucket"]
    w = _role(monkeypatch, tmp_path, "worker", bucket)
    mv = _embed(w, conninfo, scene["ids"], "run-a")["model_version"]
    built = pipeline.build(conninfo, w, mv, mode="rebuild")
    pipeline.publish(conninfo, w, mv, built["version"])
    r = _role(monkeypatch, tmp_path, "replica", bucket)
    store = IndexStore(r, mv)
    assert remote.pull_version(store, built["version"]) is True
    remote.forget(store, built["version"])
    assert remote.pull_version(store, built["version"]) is False  # intact after a full re-hash: nothing to fetch
    index = store.version_dir(built["version"]) / "index.faiss"
    index.chmod(0o644)
    flip_byte(index)
    assert remote.pull_version(store, built["version"]) is False  # hashed once per process: sizes only
    remote.forget(store, built["version"])  # what a refused load or a failed re-check does
    assert remote.pull_version(store, built["version"]) is True  # damaged locally: downloaded again
    store.check_files(built["version"], store.read_manifest(built["version"]))
    assert remote.pull_version(store, built["version"]) is False  # intact: nothing to do


def test_a_version_damaged_in_the_store_is_never_served(scene, db, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from indexing import pipeline
    from serving.holder import IndexHolder
    from tests.helpers import flip_byte

    conninfo, bucket, folder = scene["conninfo"], scene["bucket"], scene["folder"]
    w = _role(monkeypatch, tmp_path, "worker", bucket)
    mv = _embed(w, conninfo, scene["ids"], "run-a")["model_version"]
    built = pipeline.build(conninfo, w, mv, mode="rebuild")
    pipeline.publish(conninfo, w, mv, built["version"])
    flip_byte(_object(folder, "imgsim/indexes", built["version"], "index.faiss"))
    holder = IndexHolder(_role(monkeypatch, tmp_path, "replica", bucket), lambda: mv)
    holder.refresh()  # the store's copy is refused; the backup's (made at publish) serves
    assert holder.current is not None and holder.current.source == "backup", holder.reason
    assert "checksum" in (holder.stats.last_error or ""), holder.stats.last_error
    flip_byte(_object(folder, "imgsim/index-backups", built["version"], "index.faiss"))
    holder = IndexHolder(_role(monkeypatch, tmp_path, "replica2", bucket), lambda: mv)
    holder.refresh()  # both copies damaged: nothing is served
    assert holder.current is None
    assert "checksum" in (holder.stats.last_error or ""), holder.stats.last_error


def test_compact_on_object_storage(scene, db, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from embeddings.dataset import compact
    from indexing import pipeline

    conninfo, bucket, folder = scene["conninfo"], scene["bucket"], scene["folder"]
    w = _role(monkeypatch, tmp_path, "worker", bucket)
    mv = _embed(w, conninfo, scene["ids"][:5], "run-a")["model_version"]
    _embed(w, conninfo, scene["ids"][5:], "run-b")
    assert len(list(folder.rglob("part-*.parquet"))) == 2
    c = _role(monkeypatch, tmp_path, "compactor", bucket)
    done = compact(c, mv, conninfo)
    assert done["merged"] == 2 and done["rows"] == 10
    left = list(folder.rglob("part-*.parquet"))
    assert [p.name for p in left] == [Path(str(done["part"])).name]
    assert {r[0] for r in db.execute("SELECT DISTINCT parquet_part FROM image_embeddings")} == {
        left[0].relative_to(folder / "imgsim").as_posix()}
    b = _role(monkeypatch, tmp_path, "builder", bucket)  # a fresh cache reads the compacted part only
    assert pipeline.build(conninfo, b, mv, mode="rebuild")["count"] == 10


def test_a_replica_fetches_a_damaged_cached_file_again(scene, db, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from indexing import pipeline
    from indexing.store.layout import IndexStore
    from serving.holder import IndexHolder
    from tests.helpers import flip_byte

    conninfo, bucket = scene["conninfo"], scene["bucket"]
    w = _role(monkeypatch, tmp_path, "worker", bucket)
    mv = _embed(w, conninfo, scene["ids"], "run-a")["model_version"]
    built = pipeline.build(conninfo, w, mv, mode="rebuild")
    pipeline.publish(conninfo, w, mv, built["version"])
    r = _role(monkeypatch, tmp_path, "replica", bucket)
    holder = IndexHolder(r, lambda: mv)
    holder.refresh()
    assert holder.current is not None
    store = IndexStore(r, mv)
    cached = store.version_dir(built["version"]) / "index.faiss"
    cached.chmod(0o644)
    flip_byte(cached)
    holder.refresh()  # a poll alone only compares sizes (it runs every few seconds) ...
    holder.recheck()  # ... the periodic re-hash finds the damage, and the cache is fetched again
    store.check_files(built["version"], store.read_manifest(built["version"]))
    assert holder.current is not None and holder.current.version == built["version"]
    assert holder.degraded is None, holder.degraded


def test_backup_versions_prune_and_rollback_on_object_storage(scene, db, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The operator's commands on an object-store DATA_DIR and BACKUP_DIR, each from a fresh cache (another host)."""
    from indexing import pipeline
    from indexing.store.layout import IndexStore, backup_store
    from tests.helpers import flip_byte

    conninfo, bucket, folder = scene["conninfo"], scene["bucket"], scene["folder"]
    monkeypatch.setenv("BACKUP_DIR", f"s3://{bucket}/backups")
    w = _role(monkeypatch, tmp_path, "worker", bucket)
    mv = _embed(w, conninfo, scene["ids"][:4], "run-a")["model_version"]
    versions = []
    for n, ids in enumerate((scene["ids"][4:7], scene["ids"][7:])):
        b = _role(monkeypatch, tmp_path, f"builder{n}", bucket)
        v = pipeline.build(conninfo, b, mv, mode="rebuild" if n == 0 else "merge")["version"]
        pipeline.publish(conninfo, b, mv, v)
        versions.append(v)
        _embed(w, conninfo, ids, f"run-{n}")
    b = _role(monkeypatch, tmp_path, "builder-last", bucket)
    v3 = pipeline.build(conninfo, b, mv)["version"]
    pipeline.publish(conninfo, b, mv, v3)
    versions.append(v3)

    # Each publish put a verified copy in the backup bucket before serving the version.
    backup_dirs = {p.name for p in (folder / "backups").glob("*/v*") if (p / "manifest.json").is_file()}
    assert backup_dirs == {f"v{v:06d}" for v in versions}
    ops = _role(monkeypatch, tmp_path, "operator", bucket)
    report = pipeline.backup(conninfo, ops, mv)
    assert report.copied == [] and sorted(report.verified) == versions and report.root.startswith("s3://")
    copies = backup_store(ops, mv)
    ops2 = _role(monkeypatch, tmp_path, "operator2", bucket)  # a second backup run from elsewhere: verifies only
    report2 = pipeline.backup(conninfo, ops2, mv)
    assert report2.copied == [] and sorted(report2.verified) == versions and not report2.damaged

    listed = pipeline.list_versions(ops2, mv, conninfo)
    assert [r["version"] for r in listed] == sorted(versions, reverse=True)
    assert [r["current"] for r in listed] == [True, False, False] and all(r["backup"] for r in listed)

    # Roll back to the first version after its store copy was damaged: restored from the backup bucket.
    first = _object(folder, "imgsim/indexes", versions[0], "index.faiss")
    flip_byte(first)
    ops3 = _role(monkeypatch, tmp_path, "operator3", bucket)
    assert pipeline.rollback(conninfo, ops3, mv, to=versions[0]) == versions[0]
    assert db.execute("SELECT version, reason FROM index_current").fetchone() == (versions[0], "rollback")
    assert (next(folder.glob("imgsim/indexes/*")) / "CURRENT").read_text().strip() == f"v{versions[0]:06d}"
    import hashlib

    assert hashlib.sha256(first.read_bytes()).hexdigest() == first.name  # the store's object repaired
    del copies

    # Prune keeps CURRENT and the newest one: the others leave the object store.
    pruned = pipeline.prune(ops3, mv, keep=1, conninfo=conninfo)
    assert sorted(pruned) == [versions[1]], pruned
    left = {p.name for p in next(folder.glob("imgsim/indexes/*")).glob("v*")}
    assert left == {f"v{versions[0]:06d}", f"v{versions[2]:06d}"}
    assert IndexStore(ops3, mv).remote is not None


def _two_published(scene, db, tmp_path, monkeypatch) -> tuple[str, int, int]:  # type: ignore[no-untyped-def]
    """v1 (a rebuild of 6 photos) and v2 (a merge of 4 more, sharing v1's base), both published; (mv, v1, v2)."""
    from indexing import pipeline

    conninfo, bucket = scene["conninfo"], scene["bucket"]
    w = _role(monkeypatch, tmp_path, "worker", bucket)
    mv = _embed(w, conninfo, scene["ids"][:6], "run-a")["model_version"]
    b = _role(monkeypatch, tmp_path, "builder", bucket)
    v1 = pipeline.build(conninfo, b, mv, mode="rebuild")["version"]
    pipeline.publish(conninfo, b, mv, v1)
    _embed(w, conninfo, scene["ids"][6:], "run-b")
    merged = pipeline.build(conninfo, b, mv, mode="merge")
    assert merged["mode"] == "merge", merged
    pipeline.publish(conninfo, b, mv, merged["version"])
    return mv, v1, merged["version"]


def _objects(root: Path) -> dict[str, int]:
    """The objects of a store in the bucket folder: {sha256: size}."""
    return {p.name: p.stat().st_size for p in (root / "objects").iterdir()}


def test_a_merge_stores_no_copy_of_its_base_and_prune_keeps_what_kept_versions_use(  # type: ignore[no-untyped-def]
        scene, db, tmp_path, monkeypatch) -> None:
    from indexing import pipeline
    from serving.holder import IndexHolder

    conninfo, bucket, folder = scene["conninfo"], scene["bucket"], scene["folder"]
    mv, v1, v2 = _two_published(scene, db, tmp_path, monkeypatch)
    store_dir, backup_dir = next(folder.glob("imgsim/indexes/*")), next(folder.glob("imgsim/index-backups/*"))
    m1, m2 = (json.loads((store_dir / f"v{v:06d}" / "manifest.json").read_text()) for v in (v1, v2))
    assert m2["sha256"]["index.faiss"] == m1["sha256"]["index.faiss"]
    sizes = {m["sha256"][f]: m["bytes"][f] for m in (m1, m2) for f in m["sha256"]}
    # The store and the backup each hold every content once: v2's base is v1's object, in both; the
    # backup's objects are its own copies (another file), never the store's.
    for root in (store_dir, backup_dir):
        assert _objects(root) == sizes
        assert sorted(p.name for p in root.glob("v*/*")) == ["manifest.json", "manifest.json"]
    base, base_copy = (_object(folder, prefix, v2, "index.faiss") for prefix in ("imgsim/indexes",
                                                                                  "imgsim/index-backups"))
    assert base.stat().st_ino != base_copy.stat().st_ino and base.read_bytes() == base_copy.read_bytes()

    # Pruning the parent keeps every object the child lists; a fresh replica serves the child. Never without the
    # database: its lock is what keeps another host's upload from losing the objects it has not listed yet.
    with pytest.raises(ValueError, match="needs the database"):
        pipeline.prune(_role(monkeypatch, tmp_path, "ops", bucket), mv, keep=1)
    assert pipeline.prune(_role(monkeypatch, tmp_path, "ops", bucket), mv, keep=1, conninfo=conninfo) == [v1]
    assert not (store_dir / f"v{v1:06d}").exists()
    assert _objects(store_dir) == {m2["sha256"][f]: m2["bytes"][f] for f in m2["sha256"]}
    holder = IndexHolder(_role(monkeypatch, tmp_path, "replica", bucket), lambda: mv)
    holder.refresh()
    assert holder.current is not None and (holder.current.version, holder.current.source) == (v2, "store")
    assert holder.current.count == 10
    # The same in the backup: v1's copy pruned, v2's still verifies from another host's empty cache.
    assert pipeline.backup(conninfo, _role(monkeypatch, tmp_path, "ops2", bucket), mv, keep=1).pruned == [v1]
    assert _objects(backup_dir) == _objects(store_dir)
    report = pipeline.backup(conninfo, _role(monkeypatch, tmp_path, "ops3", bucket), mv, keep=1)
    assert report.verified == [v2] and not report.damaged and not report.copied

    # A rebuild shares nothing: pruning v2 then removes every object only v2 listed.
    b = _role(monkeypatch, tmp_path, "builder2", bucket)
    v3 = pipeline.build(conninfo, b, mv, mode="rebuild")["version"]
    pipeline.publish(conninfo, b, mv, v3)
    assert pipeline.prune(b, mv, keep=1, conninfo=conninfo) == [v2]
    m3 = json.loads((store_dir / f"v{v3:06d}" / "manifest.json").read_text())
    assert set(_objects(store_dir)) == set(m3["sha256"].values())


def test_a_damaged_shared_base_is_caught_and_the_backup_serves(scene, db, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    from indexing import pipeline
    from serving.holder import IndexHolder
    from tests.helpers import flip_byte

    conninfo, bucket, folder = scene["conninfo"], scene["bucket"], scene["folder"]
    mv, v1, v2 = _two_published(scene, db, tmp_path, monkeypatch)
    base = _object(folder, "imgsim/indexes", v2, "index.faiss")
    assert base == _object(folder, "imgsim/indexes", v1, "index.faiss")  # one object, two versions
    flip_byte(base)

    # A replica with an empty cache: the store's copy fails its checksum, v2's backup copy serves.
    holder = IndexHolder(_role(monkeypatch, tmp_path, "replica", bucket), lambda: mv)
    holder.refresh()
    assert holder.current is not None, holder.reason
    assert (holder.current.version, holder.current.source) == (v2, "backup"), holder.degraded
    assert "checksum" in (holder.stats.last_error or ""), holder.stats.last_error

    # The operator's rollback restores the version from the backup and replaces the damaged object;
    # the replica then serves the store's copy again.
    assert pipeline.rollback(conninfo, _role(monkeypatch, tmp_path, "ops", bucket), mv, to=v2) == v2
    assert hashlib.sha256(base.read_bytes()).hexdigest() == base.name
    holder.refresh()
    assert (holder.current.version, holder.current.source) == (v2, "store"), holder.degraded


def test_a_version_uploaded_before_objects_were_shared_still_pulls(scene, db, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A store written by the earlier layout (every file under vNNNNNN/): its versions still download."""
    from indexing import pipeline
    from indexing.store import remote
    from indexing.store.layout import IndexStore
    from serving.holder import IndexHolder
    from storage import objects

    conninfo, bucket, folder = scene["conninfo"], scene["bucket"], scene["folder"]
    w = _role(monkeypatch, tmp_path, "worker", bucket)
    mv = _embed(w, conninfo, scene["ids"], "run-a")["model_version"]
    v = pipeline.build(conninfo, w, mv, mode="rebuild")["version"]
    pipeline.publish(conninfo, w, mv, v)
    store = IndexStore(w, mv)
    assert store.remote is not None
    manifest = store.read_manifest(v)
    for fname in manifest.files:  # as the earlier push_version left them
        objects.put_file(w, store.remote, f"v{v:06d}/{fname}", store.version_dir(v) / fname)
        objects.delete(w, store.remote, remote.object_key(manifest.sha256[fname]))
    assert not list(folder.glob("imgsim/indexes/*/objects/*"))
    holder = IndexHolder(_role(monkeypatch, tmp_path, "replica", bucket), lambda: mv)
    holder.refresh()
    assert holder.current is not None and (holder.current.version, holder.current.source) == (v, "store")


def test_a_damaged_cached_base_linked_into_the_next_version_is_fetched_again(  # type: ignore[no-untyped-def]
        scene, db, tmp_path, monkeypatch) -> None:
    """A replica links its cached base into the merged version by size (it hashed it when it pulled it); the
    load hashes what it serves, refuses the damage, and the next poll hashes the cache and downloads the base."""
    from indexing import pipeline
    from indexing.store.layout import IndexStore
    from serving.holder import IndexHolder
    from tests.helpers import flip_byte

    conninfo, bucket = scene["conninfo"], scene["bucket"]
    w = _role(monkeypatch, tmp_path, "worker", bucket)
    mv = _embed(w, conninfo, scene["ids"][:6], "run-a")["model_version"]
    b = _role(monkeypatch, tmp_path, "builder", bucket)
    v1 = pipeline.build(conninfo, b, mv, mode="rebuild")["version"]
    pipeline.publish(conninfo, b, mv, v1)
    r = _role(monkeypatch, tmp_path, "replica", bucket)
    holder = IndexHolder(r, lambda: mv)
    holder.refresh()
    assert holder.current is not None and holder.current.version == v1
    cached = IndexStore(r, mv).version_dir(v1) / "index.faiss"
    cached.chmod(0o644)
    flip_byte(cached)  # after the replica verified it: the served private copy is still good

    _embed(w, conninfo, scene["ids"][6:], "run-b")
    v2 = pipeline.build(conninfo, b, mv, mode="merge")["version"]
    pipeline.publish(conninfo, b, mv, v2)
    holder.refresh()  # v2 pulled with the damaged base linked; its load refuses it; v1 stays served
    assert holder.current.version == v1 and "checksum" in (holder.stats.last_error or ""), holder.stats.last_error
    holder.refresh()  # the cache is hashed again: the base is downloaded, v2 serves
    assert (holder.current.version, holder.current.source) == (v2, "store"), holder.degraded
    store = IndexStore(r, mv)
    store.check_files(v2, store.read_manifest(v2))
