"""BACKUP_DIR: verified full copies sharing no file with the store; restores; a damaged CURRENT never blocks."""

from __future__ import annotations

import stat

import pytest

from indexing import pipeline
from indexing.search.loaded import load_version
from indexing.store.integrity import IndexCorrupt
from indexing.store.layout import IndexStore, backup_store
from tests.helpers import flip_byte, overwrite
from tests.indexing.conftest import MODEL
from tests.indexing.test_cli import run


def _publish(conninfo, settings, **kw) -> int:  # type: ignore[no-untyped-def]
    v = pipeline.build(conninfo, settings, MODEL, **kw)["version"]
    pipeline.publish(conninfo, settings, MODEL, v)
    return v


def test_segments_are_read_only_and_backups_share_no_file(small_corpus, conninfo, settings):
    v1 = _publish(conninfo, settings)
    small_corpus.embed(small_corpus.images(small_corpus.event(), 3))
    v2 = _publish(conninfo, settings)  # a merge: its base is v1's, hard-linked
    store, backup = IndexStore(settings, MODEL), backup_store(settings, MODEL)
    for path in store.version_dir(v2).iterdir():
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path
    report = pipeline.backup(conninfo, settings, MODEL)  # publish made the copies: this run verifies them
    assert report.copied == [] and sorted(report.verified) == [v1, v2] and report.damaged == {} == report.skipped
    live = {p.stat().st_ino for p in store.root.rglob("*") if p.is_file()}
    assert not live & {p.stat().st_ino for p in backup.root.rglob("*") if p.is_file()}
    again = pipeline.backup(conninfo, settings, MODEL)
    assert again.copied == [] and sorted(again.verified) == [v1, v2]

    # A damaged backup copy is found by the next run, which copies it afresh from the intact store (v2's copy
    # of the shared base goes with it: the backup links one file for both, as the store does).
    flip_byte(backup.version_dir(v1) / "index.faiss")
    third = pipeline.backup(conninfo, settings, MODEL)
    assert third.copied == [v1, v2] and third.damaged == {}
    # A damaged store file is never backed up over a good copy; the CLI names it in one line.
    flip_byte(backup.version_dir(v2) / "delta.faiss")
    flip_byte(store.version_dir(v2) / "delta.faiss")
    result = run("backup")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "v000002/delta.faiss: checksum mismatch" in result.stderr and len(result.stderr.splitlines()) == 1


def test_rollback_restores_a_damaged_or_pruned_version_from_the_backup(small_corpus, conninfo, settings):
    v1 = _publish(conninfo, settings)
    small_corpus.embed(small_corpus.images(small_corpus.event(), 3))
    v2 = _publish(conninfo, settings, mode="rebuild")
    pipeline.backup(conninfo, settings, MODEL)
    store = IndexStore(settings, MODEL)
    overwrite(store.version_dir(v1) / "meta.parquet", b"damaged")
    assert pipeline.rollback(conninfo, settings, MODEL) == v1  # restored from the backup, then served
    assert load_version(settings, MODEL).version == v1
    assert pipeline.rollback(conninfo, settings, MODEL, to=v2) == v2
    assert pipeline.prune(settings, MODEL, keep=1, conninfo=conninfo) == [v1]
    assert store.versions() == [v2]
    assert pipeline.rollback(conninfo, settings, MODEL, to=v1) == v1  # pruned from the store, not the backup
    assert store.versions() == [v1, v2] and load_version(settings, MODEL).count == 60
    # Damaged in both places: refused with both reasons, CURRENT unchanged.
    flip_byte(store.version_dir(v2) / "index.faiss")
    flip_byte(backup_store(settings, MODEL).version_dir(v2) / "index.faiss")
    with pytest.raises(IndexCorrupt, match=r"v000002/index\.faiss: checksum mismatch.*backup copy is no better"):
        pipeline.rollback(conninfo, settings, MODEL, to=v2)
    assert store.current_version() == v1


def test_every_command_works_with_a_damaged_current(small_corpus, conninfo, settings):
    v1 = _publish(conninfo, settings)
    small_corpus.embed(small_corpus.images(small_corpus.event(), 2))
    v2 = pipeline.build(conninfo, settings, MODEL)["version"]
    current = IndexStore(settings, MODEL).root / "CURRENT"
    current.write_bytes(b"\x00\xff\xfebinary")
    listing = run("versions")
    assert listing.returncode == 0 and "CURRENT is damaged" in listing.stdout and str(current) in listing.stdout
    assert run("--json", "versions").returncode == 0
    assert run("prune").returncode == 0
    assert run("publish", "v2").returncode == 0  # publishing also repairs CURRENT
    assert current.read_text().strip() == "v000002"
    current.write_text("garbage")
    built = run("build")
    assert built.returncode == 0 and "rebuild" in built.stdout and "CURRENT" in built.stdout, built.stdout
    assert run("rollback", "--to", "v1").returncode == 0
    current.write_text("garbage")
    repaired = run("rollback")  # back to what the operator chose last (v1), not the newest (v2)
    assert repaired.returncode == 0 and "now v000001" in repaired.stdout, repaired.stderr
    assert IndexStore(settings, MODEL).current_version() == v1 != v2


def test_a_published_version_has_a_verified_backup_at_once(small_corpus, conninfo, settings):
    """Publish copies the version into BACKUP_DIR, verified, before serving it (no backup run needed): a merged
    version's base, truncated in the store (its parent's too: one file), with garbage in CURRENT, is restored
    from there. It used to leave no version that verifies until the daily backup had run."""
    from indexing.verify import ensure_intact

    v1 = _publish(conninfo, settings)
    small_corpus.embed(small_corpus.images(small_corpus.event(), 3))
    v2 = _publish(conninfo, settings)  # a merge sharing v1's base
    store, backup = IndexStore(settings, MODEL), backup_store(settings, MODEL)
    assert backup.versions() == [v1, v2]
    for v in (v1, v2):
        backup.check_files(v, backup.read_manifest(v), checksums=True)
    base = "index.faiss"
    assert (backup.version_dir(v2) / base).stat().st_ino == (backup.version_dir(v1) / base).stat().st_ino
    live = {p.stat().st_ino for p in store.root.rglob("*") if p.is_file()}
    assert not live & {p.stat().st_ino for p in backup.root.rglob("*") if p.is_file()}

    overwrite(store.version_dir(v2) / base, b"truncated")
    (store.root / "CURRENT").write_bytes(b"\xff\xfegarbage")
    assert ensure_intact(settings, MODEL, v2) == "restored" and ensure_intact(settings, MODEL, v1) == "restored"
    assert load_version(settings, MODEL, v2).count == 63


def test_build_rebuilds_when_the_current_version_has_no_intact_copy(small_corpus, conninfo, settings):
    """Nothing new since CURRENT, but CURRENT is damaged: in the store only, it is restored from the backup and
    nothing is built; in the backup too, `build --publish` rebuilds (it said "nothing new" and exited 0)."""
    v1 = _publish(conninfo, settings)
    store, backup = IndexStore(settings, MODEL), backup_store(settings, MODEL)
    flip_byte(store.version_dir(v1) / "index.faiss")
    assert pipeline.build(conninfo, settings, MODEL)["version"] is None  # restored, still current
    store.check_files(v1, store.read_manifest(v1), checksums=True)

    flip_byte(store.version_dir(v1) / "index.faiss")
    flip_byte(backup.version_dir(v1) / "index.faiss")
    result = run("build", "--publish")
    assert result.returncode == 0, result.stderr
    assert "built v000002" in result.stdout and "rebuild" in result.stdout, result.stdout
    assert store.current_version() == v1 + 1 and load_version(settings, MODEL).count == 60
