"""image_index_backup with dag.test(): published versions copied into BACKUP_DIR, verified, no shared files."""

from __future__ import annotations

from tests.dags.conftest import TEST_MODEL, photos, run_dag, task_states


def test_daily_backup_copies_published_versions(dag_bag, image_rows, settings) -> None:  # type: ignore[no-untyped-def]
    from embeddings.models import parse_name
    from indexing.store.integrity import sha256_file
    from indexing.store.layout import IndexStore, backup_store

    mv = parse_name(TEST_MODEL).model_version
    image_rows.add_files(photos(image_rows, 6), event="A")
    run_dag(dag_bag.get_dag("image_embeddings"), {"model": TEST_MODEL})
    run_dag(dag_bag.get_dag("image_index"), {"model": TEST_MODEL})
    dr = run_dag(dag_bag.get_dag("image_index_backup"), {})
    assert task_states(dr) == {"backup": ["success"]}
    store, backup = IndexStore(settings, mv), backup_store(settings, mv)
    assert backup.versions() == [1] and backup.root.is_relative_to(settings.resolved_backup_dir)
    manifest = backup.read_manifest(1)
    for fname, digest in manifest.sha256.items():
        copy, live = backup.version_dir(1) / fname, store.version_dir(1) / fname
        assert sha256_file(copy) == digest and copy.stat().st_ino != live.stat().st_ino
    again = run_dag(dag_bag.get_dag("image_index_backup"), {})  # re-verifies, copies nothing new
    assert task_states(again) == {"backup": ["success"]} and backup.versions() == [1]
