"""image_embeddings end to end with dag.test(): real PostgreSQL, real photos, the efficientnet-lite0 model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.dags.conftest import TEST_MODEL, asset_events, ledger, photos, queued_for, run_dag, task_states

ASSET = f"image-embeddings/{TEST_MODEL}"


def _bad_rows(rows) -> dict[int, str]:  # type: ignore[no-untyped-def]
    """Rows that cannot embed: the shared corrupt JPEG (when present), a missing file, a path escaping the root."""
    from core.sample_data import sample_formats_dir

    bad = {}
    formats = sample_formats_dir()
    if formats is not None and formats.parent == rows.root:
        for path in sorted(formats.iterdir()):
            image_id = rows.add(f"formats/{path.name}", event="formats")
            if "corrupt" in path.name:
                bad[image_id] = path.name
    bad[rows.add("photos/no-such-photo.jpg", event="formats")] = "missing"
    bad[rows.add("../../../etc/passwd", event="formats")] = "outside"
    return bad


def test_embeds_pending_rows_then_does_nothing_new(dag_bag, image_rows, settings) -> None:  # type: ignore[no-untyped-def]
    from embeddings.dataset import read_latest
    from embeddings.models import parse_name

    dag = dag_bag.get_dag("image_embeddings")
    good = image_rows.add_files(photos(image_rows, 12), event="main")
    bad = _bad_rows(image_rows)
    total = len(image_rows.conn.execute("SELECT id FROM images").fetchall())

    dr = run_dag(dag, {"model": TEST_MODEL, "images_per_part": 8})

    states = task_states(dr)
    assert states["plan"] == ["success"]
    assert len(states["embed"]) == math.ceil(total / 8) and set(states["embed"]) == {"success"}
    assert states["emit_embeddings"] == ["success"] and states["check_batches"] == ["success"]

    rows = ledger(image_rows.conn)
    assert set(rows) == {r[0] for r in image_rows.conn.execute("SELECT id FROM images").fetchall()}
    for image_id in good:
        assert rows[image_id][0] == "embedded" and rows[image_id][3], rows[image_id]
    for image_id, what in bad.items():
        status, error, _, part = rows[image_id]
        assert status == "failed" and error and part is None, (what, rows[image_id])
    embedded = sorted(i for i, r in rows.items() if r[0] == "embedded")
    # Every readable file embedded: the good photos plus the odd-but-valid formats.
    assert len(embedded) == total - len(bad)

    mv = parse_name(TEST_MODEL).model_version
    table = read_latest(settings, mv)
    assert sorted(table.column("image_id").to_pylist()) == embedded
    vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    parts = sorted((settings.embeddings_dir).rglob("*.parquet"))
    # One part per batch that embedded something (a batch of only bad files writes none).
    assert len(parts) == len({rows[i][3] for i in embedded})
    assert math.ceil(len(good) / 8) <= len(parts) <= math.ceil(total / 8)

    (event,) = asset_events(ASSET, dr.run_id)
    assert event["added"] == len(embedded) and event["failed"] == len(bad)
    assert event["model_version"] == mv
    assert queued_for("image_index", ASSET)  # the scheduler would now start image_index

    # Nothing new: no batch, no part, no ledger change, no asset event (so no index build).
    again = run_dag(dag, {"model": TEST_MODEL, "images_per_part": 8})
    states = task_states(again)
    assert states["plan"] == ["success"]
    assert all(s == "skipped" for s in states["embed"]), states
    assert sorted(settings.embeddings_dir.rglob("*.parquet")) == parts
    assert ledger(image_rows.conn) == rows
    assert asset_events(ASSET, again.run_id) == []


def test_event_and_range_runs_touch_exactly_their_rows(dag_bag, image_rows, settings) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    dag = dag_bag.get_dag("image_embeddings")
    old = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    pics = photos(image_rows, 9)
    event_a = image_rows.add_files(pics[:3], event="A", created_at=old)
    event_b = image_rows.add_files(pics[3:6], event="B", created_at=old + timedelta(days=1))
    event_c = image_rows.add_files(pics[6:], event="C", created_at=old + timedelta(days=2))
    run_dag(dag, {"model": TEST_MODEL})
    before = ledger(image_rows.conn)
    assert len(before) == 9 and all(r[2] == 1 for r in before.values())

    run_dag(dag, {"model": TEST_MODEL, "scope": "event", "event_code": image_rows.events["B"]})
    after_event = ledger(image_rows.conn)
    assert {i for i in after_event if after_event[i][2] == 2} == set(event_b)
    assert all(after_event[i] == before[i] for i in event_a + event_c)

    # [day 0 noon + 1 h, day 2 noon): only event B's day... and nothing of A or C.
    start = (old + timedelta(hours=1)).isoformat()
    end = (old + timedelta(days=2)).isoformat()
    dr = run_dag(dag, {"model": TEST_MODEL, "scope": "range", "start": start, "end": end})
    after_range = ledger(image_rows.conn)
    assert {i for i in after_range if after_range[i][2] == 3} == set(event_b)
    assert all(after_range[i] == before[i] for i in event_a + event_c)
    (event,) = asset_events(ASSET, dr.run_id)
    assert event["added"] == 3


def test_bad_params_fail_fast_with_the_field_named(dag_bag, image_rows) -> None:  # type: ignore[no-untyped-def]
    from image_pipeline.params import ParamsError, resolve_plan_request

    dag = dag_bag.get_dag("image_embeddings")
    image_rows.add_files(photos(image_rows, 1))
    dr = run_dag(dag, {"model": TEST_MODEL, "scope": "event"}, expect="failed")
    states = task_states(dr)
    assert states["plan"] == ["failed"]
    assert ledger(image_rows.conn) == {}  # nothing touched
    # A misspelt conf key is refused (Airflow adds it to the params; it used to run as the default scope).
    dr = run_dag(dag, {"model": TEST_MODEL, "scpoe": "all"}, expect="failed")
    assert task_states(dr)["plan"] == ["failed"]
    assert ledger(image_rows.conn) == {}
    with pytest.raises(ParamsError, match=r"^unknown param 'scpoe' \(did you mean 'scope'\?\); this DAG takes model, "):
        resolve_plan_request({"scpoe": "all"})
    from image_pipeline.index_tasks import targets

    with pytest.raises(ValueError, match=r"^unknown params 'index-type' \(did you mean 'index_type'\?\), "
                       r"'mdoe' \(did you mean 'mode'\?\); this DAG takes model, mode, index_type, keep$"):
        targets({"mode": "merge", "mdoe": "rebuild", "index-type": "hnsw"}, {})

    for params, field in [
        ({"scope": "event"}, "event_code"),
        ({"scope": "event", "event_code": "not-a-uuid"}, "event_code"),
        ({"scope": "range", "start": "2026-01-02T00:00:00Z"}, "start/end"),
        ({"scope": "range", "start": "2026-01-02T00:00:00", "end": "2026-01-01T00:00:00"}, "start/end"),
        ({"model": "resnet-9000"}, "model"),
        ({"images_per_part": 0}, "images_per_part"),
    ]:
        try:
            resolve_plan_request(params)
        except ParamsError as exc:
            assert str(exc).startswith(field), (params, exc)
        else:
            raise AssertionError(f"{params} was accepted")
    # The form keeps every field: another scope's fields are ignored, not an error.
    request = resolve_plan_request({"scope": "pending", "event_code": "0b5e6c2e-0000-4000-8000-000000000000",
                                    "start": "2026-01-01T00:00:00Z"})
    sel = request.selection
    assert (sel.scope, sel.event_code, sel.start) == ("pending", None, None)
