"""The published ONNX file (embeddings/onnx_export.py): the pipeline puts its export in DATA_DIR/models,
a host that cannot export (no torch: a server-only install; or no source weights) runs that file,
verified against the pointer's sha256, from a local folder or an object store."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from core.settings import load_settings
from embeddings import onnx_export
from embeddings.models import ModelUnavailable, clear_cache, get_embedder
from embeddings.onnx_export import OnnxArtifact, ensure, publish, publish_for, published_location
from embeddings.weights import sha256_file

MODEL = "efficientnet-lite0"


@pytest.fixture(autouse=True)
def _fresh() -> None:
    """Each test publishes into its own DATA_DIR: forget what earlier ones published and loaded."""
    onnx_export._PUBLISHED.clear()
    clear_cache()
    yield
    onnx_export._PUBLISHED.clear()
    clear_cache()


def no_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process as a server-only install sees it: nothing to export with."""
    monkeypatch.setattr(onnx_export, "missing_export_modules", lambda model: ["torch", "timm"])


def pointer(settings) -> dict:  # type: ignore[no-untyped-def]
    return json.loads((settings.data_location.path / "models" / f"{MODEL}.json").read_text())


def test_published_file_is_what_a_host_without_torch_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(data_dir=tmp_path / "data")  # MODEL_CACHE_DIR: the run's exports (conftest)
    art = ensure(MODEL, settings)
    assert publish(art, settings) is True
    side = json.loads(art.sidecar.read_text())
    got = pointer(settings)
    assert got["file"] == f"{MODEL}-{side['onnx_sha256'][:16]}.onnx"
    assert got["onnx_sha256"] == side["onnx_sha256"] == sha256_file(tmp_path / "data" / "models" / got["file"])
    assert got["tag"] == art.tag and got["size"] == art.path.stat().st_size
    assert sorted(p.name for p in (tmp_path / "data" / "models").iterdir()) == sorted([got["file"], f"{MODEL}.json"])
    # Published already: nothing is written again (in this process, nor in the next one).
    assert publish(art, settings) is False
    onnx_export._PUBLISHED.clear()
    before = (tmp_path / "data" / "models" / f"{MODEL}.json").stat().st_mtime_ns
    assert publish(art, settings) is False
    assert (tmp_path / "data" / "models" / f"{MODEL}.json").stat().st_mtime_ns == before

    # A host that cannot export runs the published file (in place for a local DATA_DIR), same vectors.
    no_torch(monkeypatch)
    server = ensure(MODEL, settings)
    assert server.path == tmp_path / "data" / "models" / got["file"] and server.tag == art.tag
    assert server.path.read_bytes() == art.path.read_bytes()
    embedder = get_embedder(MODEL, settings)
    assert embedder.backend.path == server.path


def test_a_damaged_or_missing_published_file_is_refused_with_what_to_do(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    publish(ensure(MODEL, settings), settings)
    no_torch(monkeypatch)
    models = tmp_path / "data" / "models"
    file = models / pointer(settings)["file"]
    good = file.read_bytes()
    file.write_bytes(good[:-10] + b"0123456789")  # same size, other bytes
    with pytest.raises(ModelUnavailable, match="does not match the sha256 of its pointer"):
        ensure(MODEL, settings)
    file.unlink()
    with pytest.raises(ModelUnavailable, match="is missing or does not match"):
        ensure(MODEL, settings)
    shutil.rmtree(models)
    with pytest.raises(ModelUnavailable) as info:
        get_embedder(MODEL, settings)
    text = str(info.value)
    assert f"no ONNX file of {MODEL} is published in {tmp_path / 'data' / 'models'}/" in text
    assert "this install has no torch, timm to export it" in text
    assert text.endswith(f"run the pipeline (an embedding run publishes it), or `python -m embeddings --model {MODEL} "
                         "export` on a pipeline host, to publish it")
    # A pointer that is not one (torn, foreign, naming a path outside the folder) counts as none.
    models.mkdir()
    for bad in ("{", json.dumps({"file": "../x.onnx", "onnx_sha256": "0" * 64, "size": 1, "tag": {"model": MODEL}})):
        (models / f"{MODEL}.json").write_text(bad)
        with pytest.raises(ModelUnavailable, match="no ONNX file of"):
            ensure(MODEL, settings)


def test_missing_source_weights_take_the_published_file(tmp_path: Path, places_checkpoint: Path) -> None:
    """A pipeline host publishes Places365; another host with torch but without the checkpoint runs that file."""
    pipeline = load_settings(data_dir=tmp_path / "data", model_weights=places_checkpoint)
    art = ensure("places365-resnet50", pipeline)
    publish(art, pipeline)
    other = load_settings(data_dir=tmp_path / "data", model_weights=tmp_path / "absent.pth.tar",
                          model_cache_dir=tmp_path / "other-cache")
    got = ensure("places365-resnet50", other)
    assert got.path.parent == tmp_path / "data" / "models" and got.path.read_bytes() == art.path.read_bytes()
    assert not (tmp_path / "other-cache").exists()  # nothing exported there
    # Nothing published: the weights' own message (what to set) and how to publish.
    with pytest.raises(ModelUnavailable, match=r"MODEL_WEIGHTS.*python -m embeddings --model places365-resnet50 "):
        ensure("places365-resnet50", load_settings(data_dir=tmp_path / "empty",
                                                   model_weights=tmp_path / "absent.pth.tar"))


def test_a_new_export_replaces_the_published_one(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    art = ensure(MODEL, settings)
    publish(art, settings)
    first = pointer(settings)["file"]
    # Another export (say after a torch upgrade): other bytes, another tag.
    newer = tmp_path / "newer" / art.path.name
    newer.parent.mkdir()
    newer.write_bytes(art.path.read_bytes() + b"\0")
    tag = {**art.tag, "torch": "9.9.9"}
    newer.with_name(newer.name + ".json").write_text(json.dumps({"tag": tag, "onnx_sha256": sha256_file(newer)}))
    assert publish(OnnxArtifact(MODEL, art.source, newer, tag), settings) is True
    got = pointer(settings)
    assert got["file"] != first and got["tag"] == tag and got["onnx_sha256"] == sha256_file(newer)
    # The file nothing names any more is gone; the new one is whole.
    assert sorted(p.name for p in (tmp_path / "data" / "models").iterdir()) == sorted([got["file"], f"{MODEL}.json"])


def test_the_pipeline_publishes_and_a_failure_does_not_stop_it(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    publish_for(get_embedder(MODEL, settings), settings)
    assert pointer(settings)["tag"]["model"] == MODEL
    # The torch runtime runs no ONNX file: nothing to publish.
    torch_runtime = load_settings(data_dir=tmp_path / "torch", embedding_runtime="torch")
    publish_for(get_embedder(f"{MODEL}+plain", torch_runtime), torch_runtime)
    assert not (tmp_path / "torch").exists()
    # A data store that refuses the write is a warning: the embedding goes on.
    onnx_export._PUBLISHED.clear()
    (tmp_path / "ro").write_text("a file where a folder should be")
    refused = load_settings(data_dir=tmp_path / "ro")
    with caplog.at_level(logging.WARNING, logger="embeddings.onnx_export"):
        publish_for(get_embedder(MODEL, refused), refused)
    assert "cannot publish the ONNX file of efficientnet-lite0" in caplog.text


def test_export_command_publishes(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from embeddings.cli import main

    assert settings.data_location.path == tmp_path / "data"  # (the fixture's environment, read by the command)
    assert main(["-q", "--model", MODEL, "export"]) == 0
    out = capsys.readouterr().out
    assert f"published to {tmp_path / 'data' / 'models'}/" in out
    assert (tmp_path / "data" / "models" / f"{MODEL}.json").is_file()
    assert main(["-q", "--model", MODEL, "export"]) == 0
    assert "already published in" in capsys.readouterr().out
    # On a server-only install it says where to run it instead of failing on `import torch`.
    no_torch(monkeypatch)
    assert main(["-q", "--model", MODEL, "export"]) == 2
    assert "run it on a pipeline host (requirements-pipeline.txt)" in capsys.readouterr().err


def test_published_over_an_object_store(s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """DATA_DIR=s3://...: uploaded through storage.objects, downloaded (verified) into the reader's cache."""
    server, bucket, folder = s3
    data = f"s3://{bucket}/pipeline"
    pipeline = load_settings(data_dir=data)
    art = ensure(MODEL, pipeline)
    assert publish(art, pipeline) is True
    assert published_location(pipeline).url == f"s3://{bucket}/pipeline/models"
    stored = folder / "pipeline" / "models"
    name = json.loads((stored / f"{MODEL}.json").read_text())["file"]
    assert (stored / name).read_bytes() == art.path.read_bytes()

    no_torch(monkeypatch)
    reader = load_settings(data_dir=data, model_cache_dir=tmp_path / "server-cache")
    got = ensure(MODEL, reader)
    assert got.path == tmp_path / "server-cache" / "published" / name
    assert got.path.read_bytes() == art.path.read_bytes()
    assert ensure(MODEL, reader).path == got.path  # the verified copy is used again, not downloaded again
    # A damaged object is refused, and never replaces the good local copy.
    (stored / name).write_bytes(b"x" * len(art.path.read_bytes()))
    server.settle()
    got.path.write_bytes(b"stale")  # (the local copy is damaged too, so it must be fetched)
    with pytest.raises(ModelUnavailable, match="does not match the sha256 of its pointer"):
        ensure(MODEL, reader)
    assert got.path.read_bytes() == b"stale"
