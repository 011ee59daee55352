"""image_index end to end with dag.test(): embeddings from a real image_embeddings run, then build, verify,
publish, prune into the versioned store that the search server loads."""

from __future__ import annotations

import numpy as np

from tests.dags.conftest import TEST_MODEL, asset_events, photos, run_dag, task_states

INDEX_ASSET = f"image-index/{TEST_MODEL}"


def _index_rows(conn, mv: str) -> dict[int, tuple[str, int, str]]:  # type: ignore[no-untyped-def]
    rows = conn.execute(
        "SELECT version, status, vector_count, index_type FROM index_versions WHERE model_version = %s", (mv,)
    ).fetchall()
    return {int(v): (s, int(n), t) for v, s, n, t in rows}


def test_build_publish_merge_and_noop(dag_bag, image_rows, settings) -> None:  # type: ignore[no-untyped-def]
    from embeddings.models import parse_name
    from indexing.search.loaded import load_version
    from indexing.store.layout import IndexStore

    embed_dag, index_dag = dag_bag.get_dag("image_embeddings"), dag_bag.get_dag("image_index")
    mv = parse_name(TEST_MODEL).model_version
    pics = photos(image_rows, 12)
    first = image_rows.add_files(pics[:9], event="A")
    run_dag(embed_dag, {"model": TEST_MODEL})

    dr = run_dag(index_dag, {"model": TEST_MODEL})
    assert set(task_states(dr)) >= {"targets", "index_model.build", "index_model.verify", "index_model.publish",
                                    "index_model.prune"}
    assert all(s == ["success"] for s in task_states(dr).values()), task_states(dr)
    loaded = load_version(settings, mv)  # what the search server does: CURRENT, manifest, checksums
    assert loaded.version == 1 and loaded.count == 9
    assert sorted(loaded.ids.tolist()) == sorted(first)
    # The build verified the event's duplicate relations into the version (the server reads, never computes).
    assert loaded.manifest.has("relations.parquet") and loaded.manifest.relations["computed"] == 1
    assert loaded.manifest.relations["skipped"] == 0
    scores, ids = loaded.search(np.asarray([loaded.vector(first[0])], dtype=np.float32), 1)
    assert int(ids[0][0]) == first[0] and scores[0][0] > 0.99
    assert _index_rows(image_rows.conn, mv)[1][:2] == ("published", 9)
    faiss_ids = dict(image_rows.conn.execute("SELECT id, faiss_index FROM images").fetchall())
    assert all(faiss_ids[i] == i for i in first)
    (event,) = asset_events(INDEX_ASSET, dr.run_id)
    assert (event["version"], event["count"], event["model_version"]) == (1, 9, mv)

    # Nothing new: the merge builds nothing, publishes nothing, emits nothing.
    noop = run_dag(index_dag, {"model": TEST_MODEL})
    states = task_states(noop)
    assert states["index_model.build"] == ["skipped"] and states["index_model.publish"] == ["skipped"]
    assert IndexStore(settings, mv).versions() == [1]
    assert asset_events(INDEX_ASSET, noop.run_id) == []

    # New rows: merged into v2; keep=1 prunes v1 (CURRENT is always kept).
    later = image_rows.add_files(pics[9:], event="B")
    run_dag(embed_dag, {"model": TEST_MODEL})
    merged = run_dag(index_dag, {"model": TEST_MODEL, "keep": 1})
    loaded = load_version(settings, mv)
    assert loaded.version == 2 and loaded.count == 12
    assert set(loaded.event_ids(image_rows.events["B"]).tolist()) == set(later)
    # Only the new event was verified; A's relations are v1's file, shared.
    rel = loaded.manifest.relations
    assert (rel["computed"], rel["kept"], rel["base"]) == (1, 1, "linked")
    assert loaded.manifest.has("relations-delta.parquet")
    assert IndexStore(settings, mv).versions() == [2]
    assert _index_rows(image_rows.conn, mv)[1][0] == "pruned"
    assert asset_events(INDEX_ASSET, merged.run_id)[0]["version"] == 2

    # The plugin's view agrees with the store.
    from image_similarity_view.status import collect_status

    (model,) = collect_status(image_rows.conn.info.dsn, settings).models
    assert (model.model_version, model.embedded, model.current_version) == (mv, 12, 2)


def test_rebuild_with_index_type_override(dag_bag, image_rows, settings) -> None:  # type: ignore[no-untyped-def]
    from embeddings.models import parse_name
    from indexing.search.loaded import load_version

    mv = parse_name(TEST_MODEL).model_version
    image_rows.add_files(photos(image_rows, 6))
    run_dag(dag_bag.get_dag("image_embeddings"), {"model": TEST_MODEL})
    run_dag(dag_bag.get_dag("image_index"), {"model": TEST_MODEL, "mode": "rebuild", "index_type": "hnsw"})
    loaded = load_version(settings, mv)
    assert (loaded.version, loaded.index_type, loaded.count) == (1, "hnsw", 6)


def test_failed_verification_never_publishes(dag_bag, image_rows, settings) -> None:  # type: ignore[no-untyped-def]
    """A Parquet part lost after the ledger recorded it: the build lacks those vectors, verify refuses it."""
    from embeddings.models import parse_name
    from indexing.store.layout import IndexStore

    mv = parse_name(TEST_MODEL).model_version
    index_dag = dag_bag.get_dag("image_index")
    image_rows.add_files(photos(image_rows, 4), event="A")
    run_dag(dag_bag.get_dag("image_embeddings"), {"model": TEST_MODEL, "images_per_part": 2})
    run_dag(index_dag, {"model": TEST_MODEL})
    assert IndexStore(settings, mv).current_version() == 1

    parts = sorted(settings.embeddings_dir.rglob("*.parquet"))
    assert len(parts) == 2
    parts[0].unlink()
    dr = run_dag(index_dag, {"model": TEST_MODEL, "mode": "rebuild"}, expect="failed")
    states = task_states(dr)
    assert states["index_model.verify"] == ["failed"]
    assert states["index_model.publish"] == ["upstream_failed"] and states["index_model.prune"] == ["upstream_failed"]
    assert IndexStore(settings, mv).current_version() == 1  # still serving v1
    rows = _index_rows(image_rows.conn, mv)
    assert rows[1][0] == "published" and all(r[0] == "failed" for v, r in rows.items() if v > 1), rows
    assert asset_events(INDEX_ASSET, dr.run_id) == []


def test_registries_match_the_packages() -> None:
    """The DAGs keep the model and index-type lists to parse without torch/faiss; they must match."""
    from embeddings.models import MODELS
    from image_pipeline.assets import MODEL_NAMES
    from image_pipeline.params import INDEX_TYPES
    from indexing.build.choice import INDEX_TYPES as PACKAGE_INDEX_TYPES

    assert set(MODEL_NAMES) == set(MODELS)
    assert tuple(INDEX_TYPES) == tuple(PACKAGE_INDEX_TYPES)


def test_asset_triggered_run_indexes_the_announced_model(dag_bag, image_rows, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The run the scheduler creates from the embeddings Asset event: no params, the event's extra decides."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.dagrun import DagRun
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    from embeddings.models import parse_name
    from indexing.search.loaded import load_version
    from tests.dags.conftest import run_existing

    image_rows.add_files(photos(image_rows, 5))
    embedded = run_dag(dag_bag.get_dag("image_embeddings"), {"model": TEST_MODEL})
    index_dag = dag_bag.get_dag("image_index")
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(index_dag))
    with create_session() as session:
        events = list(session.scalars(
            select(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == f"image-embeddings/{TEST_MODEL}", AssetEvent.source_run_id == embedded.run_id)
        ))
        assert len(events) == 1
        now = events[0].timestamp
        # What SchedulerJobRunner does for an asset-triggered DAG.
        dr = scheduler_dag.create_dagrun(
            run_id=DagRun.generate_run_id(run_type=DagRunType.ASSET_TRIGGERED, logical_date=None, run_after=now),
            logical_date=None, data_interval=None, run_after=now, run_type=DagRunType.ASSET_TRIGGERED,
            triggered_by=DagRunTriggeredByType.ASSET, state=DagRunState.QUEUED, session=session,
        )
        dr.consumed_asset_events.extend(events)
        run_id = dr.run_id
    # Were the events ignored, the run would fall back to EMBEDDING_MODEL, which has no embeddings here.
    monkeypatch.setenv("EMBEDDING_MODEL", "places365-resnet50")
    finished = run_existing(index_dag, run_id)
    assert finished.state == "success"
    loaded = load_version(settings, parse_name(TEST_MODEL).model_version)
    assert (loaded.version, loaded.count) == (1, 5)
    (event,) = asset_events(INDEX_ASSET, run_id)
    assert event["version"] == 1
