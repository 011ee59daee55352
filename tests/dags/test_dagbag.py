"""The DAG files parse fast, without import errors, and declare what the pipeline relies on."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest

from tests.dags.conftest import DAGS_DIR

PARSE_SCRIPT = """
import json, sys, time
from airflow.dag_processing.dagbag import BundleDagBag
t0 = time.perf_counter()
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1], bundle_name="dags-folder")
seconds = time.perf_counter() - t0
# embeddings.planning (scopes, defaults; no heavy import) is the one package module parsing may load.
heavy = sorted(m for m in ("torch", "torchvision", "faiss", "pandas", "numpy", "timm", "psycopg", "indexing",
                           "embeddings.runner", "embeddings.models") if m in sys.modules)
print(json.dumps({"dags": sorted(bag.dag_ids), "errors": bag.import_errors, "seconds": seconds, "heavy": heavy}))
"""


def test_dagbag_parses_fast_without_heavy_imports(airflow_env: None) -> None:
    # A fresh interpreter, as the DAG processor has: nothing imported by other tests helps.
    # PYTHONPATH=<repo>, as on every Airflow component (docs/airflow.md).
    env = {**os.environ, "PYTHONPATH": str(DAGS_DIR.parent)}
    proc = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, str(DAGS_DIR)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert report["dags"] == ["image_embeddings", "image_index", "image_index_backup"]
    # Parsing must not pull in torch/faiss/pandas or our heavy packages: that is what keeps it fast.
    assert report["heavy"] == []
    assert report["seconds"] < 5.0, f"DagBag took {report['seconds']:.2f}s to parse"


def test_embeddings_dag_shape(dag_bag) -> None:  # type: ignore[no-untyped-def]
    dag = dag_bag.get_dag("image_embeddings")
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert set(dag.task_ids) == {"plan", "embed", "emit_embeddings", "check_batches"}
    embed = dag.get_task("embed")
    assert embed.retries >= 1 and embed.retry_exponential_backoff > 0
    assert dag.get_task("plan").downstream_task_ids == {"embed"}
    assert embed.downstream_task_ids == {"emit_embeddings", "check_batches"}
    assert {p for p in dag.params} == {"model", "scope", "event_code", "start", "end", "images_per_part", "limit"}
    assert [a.name for a in dag.get_task("emit_embeddings").outlets] == ["image-embeddings"]
    # A failed batch: the others' vectors are still announced, and the run still ends failed.
    assert dag.get_task("emit_embeddings").trigger_rule == "all_done_min_one_success"
    assert dag.get_task("check_batches").trigger_rule == "all_success"


def test_index_dag_is_scheduled_on_the_embeddings_assets(dag_bag) -> None:  # type: ignore[no-untyped-def]
    from image_pipeline.assets import EMBEDDINGS_ASSETS

    dag = dag_bag.get_dag("image_index")
    condition = dag.timetable.asset_condition
    # Any one model's new embeddings triggers a run (AssetAny, not AssetAll).
    assert type(condition).__name__ == "AssetAny"
    assert {a.name for a in condition.objects} == {a.name for a in EMBEDDINGS_ASSETS}
    order = ["index_model.build", "index_model.verify", "index_model.publish", "index_model.prune"]
    for up, down in itertools.pairwise(order):
        assert dag.get_task(up).downstream_task_ids == {down}
    assert set(dag.params) == {"model", "mode", "index_type", "keep"}


def test_the_embedding_schedule_is_a_setting(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from core.settings import Settings
    from image_pipeline.schedule import DEFAULT, embedding_timetable

    assert Settings.model_fields["embedding_schedule"].default == DEFAULT
    monkeypatch.delenv("EMBEDDING_SCHEDULE", raising=False)
    assert embedding_timetable().expression == DEFAULT  # type: ignore[union-attr]
    monkeypatch.setenv("EMBEDDING_SCHEDULE", "0 3 * * *")
    assert embedding_timetable().expression == "0 3 * * *"  # type: ignore[union-attr]
    monkeypatch.setenv("EMBEDDING_SCHEDULE", "none")
    assert embedding_timetable() is None
    monkeypatch.setenv("EMBEDDING_SCHEDULE", "every tuesday")
    with pytest.raises(Exception, match="columns"):
        embedding_timetable()


def test_the_form_default_model_is_the_settings_rule(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The model a scheduled run embeds with is the one `make serve` and `make demo` pick (core.settings)."""
    from core.settings import get_settings
    from image_pipeline.assets import default_model

    monkeypatch.delenv("EMBEDDING_MODEL", raising=False)
    monkeypatch.delenv("MODEL_WEIGHTS", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    assert default_model() == get_settings().embedding_model == "efficientnet-lite0"
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "resnet50_places365.pth.tar").write_bytes(b"checkpoint")
    get_settings.cache_clear()
    assert default_model() == "places365-resnet50"
    monkeypatch.setenv("EMBEDDING_MODEL", "efficientnet-lite0+plain")
    get_settings.cache_clear()
    assert default_model() == "efficientnet-lite0+plain"
    monkeypatch.setenv("EMBEDDING_MODEL", "no-such-model")
    get_settings.cache_clear()
    assert default_model() == "places365-resnet50"  # the plan task reports the unknown model
    get_settings.cache_clear()
