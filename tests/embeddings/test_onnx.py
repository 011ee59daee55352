"""The ONNX runtime gives the torch vectors, for both models, every preprocessing and variant."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.sample_data import sample_photos
from core.settings import REPO_ROOT, load_settings
from embeddings.loading import load_image
from embeddings.models import MODELS, ModelUnavailable, clear_cache, get_embedder
from embeddings.preprocess import PREPROCESSES
from tests.selection import reads_samples

SPECS = [f"{pre}{variant}" for pre in PREPROCESSES for variant in ("+rot4", "")]


@pytest.fixture(scope="module")
@reads_samples
def photos(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    paths = sample_photos(2, out_dir=tmp_path_factory.mktemp("onnx-photos"))
    return [load_image(p) for p in paths]


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("spec", SPECS)
def test_onnx_vectors_equal_torch_vectors(model: str, spec: str, photos, places_checkpoint: Path) -> None:  # type: ignore[no-untyped-def]
    settings = {"model_weights": places_checkpoint}  # the CSAIL format with random weights (no download here)
    name = f"{model}@{spec}"
    onnx = get_embedder(name, load_settings(embedding_runtime="onnx", **settings))
    torch_ = get_embedder(name, load_settings(embedding_runtime="torch", **settings))
    assert onnx.backend.runtime == "onnx" and torch_.backend.runtime == "torch"
    assert onnx.model_version == torch_.model_version == name  # the runtime is not part of the model version
    pairs = [(onnx.embed_images(photos), torch_.embed_images(photos))]
    if onnx.variant is None:  # (+rot4's embed_rotations repeats embed_images)
        pairs.append((onnx.embed_rotations(photos), torch_.embed_rotations(photos)))
    for a, b in pairs:
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        assert float(np.abs(a - b).max()) < 2e-5
        cos = (a * b).sum(axis=-1)
        assert float(cos.min()) >= 0.9999


def test_stale_or_damaged_export_is_never_used(tmp_path: Path, places_checkpoint: Path) -> None:
    """Other weights get another file; a damaged file or a foreign sidecar is exported again, never loaded."""
    import shutil

    from embeddings.onnx_export import artifact, ensure, is_current

    weights = tmp_path / "w.pth.tar"
    shutil.copyfile(places_checkpoint, weights)
    before = artifact("places365-resnet50", load_settings(model_weights=weights))
    with open(weights, "ab") as fh:  # the weights change at the same path: the old export no longer matches
        fh.write(b"\0")
    assert artifact("places365-resnet50", load_settings(model_weights=weights)).path != before.path

    # The run's export (made once per run, MODEL_CACHE_DIR), copied into a cache of this test's own.
    shared = ensure("efficientnet-lite0", load_settings())
    settings = load_settings(model_cache_dir=tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    for path in (shared.path, shared.sidecar):
        shutil.copyfile(path, tmp_path / "cache" / path.name)
    first = ensure("efficientnet-lite0", settings)
    assert first.path.parent == tmp_path / "cache" and first.path.name == shared.path.name
    assert is_current(first) and json.loads(first.sidecar.read_text())["tag"] == first.tag
    good = first.path.read_bytes()
    with open(first.path, "r+b") as fh:  # damage the export
        fh.seek(len(good) // 2)
        fh.write(b"garbage")
    assert not is_current(first)
    again = ensure("efficientnet-lite0", settings)
    assert again.path == first.path and is_current(again) and again.path.read_bytes() == good
    side = json.loads(again.sidecar.read_text())
    side["tag"]["weights_sha256"] = "0" * 64  # a sidecar for other weights
    again.sidecar.write_text(json.dumps(side))
    assert not is_current(again)


def test_missing_weights_is_a_clear_error(tmp_path: Path) -> None:
    clear_cache()
    with pytest.raises(ModelUnavailable, match="MODEL_WEIGHTS"):  # (and nothing published in this DATA_DIR)
        get_embedder("places365-resnet50", load_settings(model_weights=tmp_path / "none.pth.tar",
                                                         data_dir=tmp_path / "data"))


def test_bad_checkpoint_reports_the_exporters_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from embeddings import onnx_export

    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"not a checkpoint")
    settings = load_settings(model_weights=bad, model_cache_dir=tmp_path / "c")
    with pytest.raises(ModelUnavailable, match="cannot read Places365 weights"):
        get_embedder("places365-resnet50", settings)
    assert not list((tmp_path / "c").glob("*.onnx"))

    def no_second_export(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the failed export ran again for the same weights file")

    # Asked again (a server's next request): the failure is remembered, no torch process per request.
    monkeypatch.setattr(onnx_export.subprocess, "run", no_second_export)
    with pytest.raises(ModelUnavailable, match="cannot read Places365 weights"):
        get_embedder("places365-resnet50", settings)


def test_a_process_that_embeds_never_imports_torch(tmp_path: Path) -> None:
    """With an empty cache the export runs in a subprocess; the embedding process itself stays torch-free."""
    code = (
        "import sys\n"
        "from PIL import Image\n"
        "from embeddings.models import get_embedder\n"
        "e = get_embedder('efficientnet-lite0')\n"
        "v = e.embed_rotations([Image.new('RGB', (300, 200), (200, 40, 40))])\n"
        "assert v.shape == (1, 4, 1280), v.shape\n"
        "print('torch' in sys.modules)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "DATA_DIR": str(tmp_path / "data"),
           "MODEL_CACHE_DIR": str(tmp_path / "cache"), "TORCH_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "False"
    assert len(list((tmp_path / "cache").glob("efficientnet-lite0-*.onnx"))) == 1
