"""The int8 model (embeddings/quantize.py): made from the real efficientnet-lite0 export by onnxruntime's static
quantisation, vectors close to fp32's but a model version of their own, run by the pipeline and published."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.sample_data import generate_photos
from core.settings import load_settings
from embeddings import onnx_export, quantize
from embeddings.loading import load_image
from embeddings.models import ModelUnavailable, clear_cache, get_embedder, parse_name
from embeddings.weights import sha256_file
from tests.embeddings.helpers import add_event, add_files

INT8 = "efficientnet-lite0+int8"  # the default (plain) version's int8; rot4's uses the same quantised file
# Measured (bench/int8.py, +plain): int8 vectors at cosine >= 0.994 (median 0.998) to fp32's on 200 generated
# photos, >= 0.979 (median 0.9975) on the 294 shared ones; 24 generated photos here: min 0.996. Bounds with margin.
MIN_COSINE, MIN_MEDIAN = 0.985, 0.995


@pytest.fixture(autouse=True)
def _fresh() -> None:
    onnx_export._PUBLISHED.clear()
    clear_cache()
    yield
    onnx_export._PUBLISHED.clear()
    clear_cache()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return [load_image(p) for p in generate_photos(tmp_path_factory.mktemp("int8-photos"), 24, seed=2828)]


def test_model_versions_name_int8_and_parse_back() -> None:
    assert parse_name("efficientnet-lite0+int8").model_version == "efficientnet-lite0@crop224+int8"
    assert parse_name("efficientnet-lite0+rot4+int8").model_version == "efficientnet-lite0@crop224+rot4+int8"
    assert parse_name(INT8).model_version == "efficientnet-lite0@crop224+int8"
    assert parse_name("efficientnet-lite0@pad224+int8").model_version == "efficientnet-lite0@pad224+int8"
    for mv in ("efficientnet-lite0@crop224+int8", "efficientnet-lite0@crop224+rot4+int8"):
        assert parse_name(mv).model_version == mv and parse_name(mv).quant == "int8"
    assert parse_name("efficientnet-lite0").quant is None
    for bad in ("efficientnet-lite0+int8+rot4", "efficientnet-lite0+int8+int8", "efficientnet-lite0+int4"):
        with pytest.raises(ModelUnavailable, match="unknown model variant"):
            parse_name(bad)
    with pytest.raises(ModelUnavailable, match="no \\+int8 model"):
        parse_name("places365-resnet50+int8")


def test_int8_vectors_from_the_real_export(lite0, images) -> None:  # type: ignore[no-untyped-def]
    """Quantised from the run's fp32 export (MODEL_CACHE_DIR), cached beside it under its own tag."""
    settings = load_settings()
    int8 = get_embedder(INT8, settings)
    assert int8.model_version == "efficientnet-lite0@crop224+int8" != lite0.model_version
    assert int8.backend.runtime == "onnx"
    fp32 = onnx_export.ensure("efficientnet-lite0", settings)
    art = quantize.artifact("efficientnet-lite0", settings)
    assert int8.backend.path == art.path != fp32.path and art.path.parent == fp32.path.parent
    assert art.path.name.startswith("efficientnet-lite0+int8-")
    side = json.loads(art.sidecar.read_text())
    assert side["tag"] == art.tag and side["onnx_sha256"] == sha256_file(art.path)
    assert side["fp32_onnx_sha256"] == json.loads(fp32.sidecar.read_text())["onnx_sha256"]
    assert art.tag["weights_sha256"] == fp32.tag["weights_sha256"] and art.tag["model"] == "efficientnet-lite0+int8"
    assert art.path.stat().st_size < fp32.path.stat().st_size / 2  # int8 weights

    a, b = int8.embed_images(images), lite0.embed_images(images)
    assert a.shape == (len(images), 1280) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(axis=1)
    assert float(cos.min()) >= MIN_COSINE and float(np.median(cos)) >= MIN_MEDIAN, (cos.min(), np.median(cos))
    assert float(cos.max()) < 0.99999  # really another model: not fp32's vectors
    rot = int8.embed_rotations(images[:3])
    assert rot.shape == (3, 4, 1280) and np.allclose(rot[:, 0], a[:3], atol=1e-5)
    # The torch runtime setting changes nothing: the int8 model only exists for ONNX Runtime.
    clear_cache()
    assert get_embedder(INT8, load_settings(embedding_runtime="torch")).backend.path == art.path


def test_a_quantisation_too_far_from_fp32_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(model_cache_dir=tmp_path / "cache")
    fp32 = onnx_export.ensure("efficientnet-lite0", load_settings())  # the run's export, not made again
    art = quantize.artifact("efficientnet-lite0", settings)
    monkeypatch.setattr(quantize, "MIN_COSINE", 1.01)
    with pytest.raises(quantize.QuantizeError, match="too far from fp32"):
        quantize.quantize(art, fp32)
    assert not art.path.exists() and not art.sidecar.exists()
    assert list((tmp_path / "cache").iterdir()) == []  # no temp file left behind


def test_pipeline_run_writes_int8_rows_and_publishes_the_file(db, settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """EMBEDDING_MODEL=...+int8: the batch's Parquet rows and ledger carry the int8 model version, and the
    pipeline publishes the int8 file (its own pointer) that a host without torch or onnx then runs."""
    from core.settings import get_settings
    from embeddings.dataset import dataset_dir, read_vectors
    from embeddings.runner import embed_batch

    monkeypatch.setenv("EMBEDDING_MODEL", INT8)
    get_settings.cache_clear()
    settings = get_settings()
    event = add_event(db)
    ids = add_files(db, event, settings.resolved_image_root, generate_photos(tmp_path / "gen", 4, seed=2829))
    res = embed_batch(settings.conninfo(), ids, run_id="int8", settings=settings)
    mv = "efficientnet-lite0@crop224+int8"
    assert res["embedded"] == 4 and res["failed"] == 0 and res["model_version"] == mv
    assert Path(res["part"]).parent == dataset_dir(settings, mv)
    table = pq.read_table(res["part"])
    assert set(table["model_version"].to_pylist()) == {mv} and table["image_id"].to_pylist() == ids
    assert np.allclose(np.linalg.norm(read_vectors(table), axis=1), 1.0, atol=1e-5)
    assert {r[0] for r in db.execute("SELECT model_version FROM image_embeddings").fetchall()} == {mv}

    models = settings.data_location.path / "models"
    pointer = json.loads((models / "efficientnet-lite0+int8.json").read_text())
    art = quantize.artifact("efficientnet-lite0", settings)
    assert pointer["tag"] == art.tag and pointer["onnx_sha256"] == sha256_file(art.path)
    assert not (models / "efficientnet-lite0.json").exists()  # the fp32 file's pointer is another one

    clear_cache()
    monkeypatch.setattr(onnx_export, "missing_export_modules", lambda model: ["torch", "onnx"])
    server = get_embedder(INT8, settings)
    assert server.backend.path == models / pointer["file"]
    assert (models / pointer["file"]).read_bytes() == art.path.read_bytes()
