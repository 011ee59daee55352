"""Both model loaders, the registry and the Embedder API."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.sample_data import sample_photos
from core.settings import load_settings
from embeddings.loading import load_image
from embeddings.models import ModelUnavailable, get_embedder, parse_name


def test_model_versions_spell_out_the_preprocessing() -> None:
    assert parse_name("efficientnet-lite0@seed-pad224").model_version == "efficientnet-lite0@seed-pad224"
    assert parse_name("places365-resnet50@crop224+rot4").model_version == "places365-resnet50@crop224+rot4"
    assert parse_name("efficientnet-lite0").model_version == "efficientnet-lite0@crop224"  # the defaults: plain
    assert parse_name("places365-resnet50").model_version == "places365-resnet50@crop224+rot4"  # ... rot4
    assert parse_name("efficientnet-lite0+rot4").model_version == "efficientnet-lite0@crop224+rot4"
    assert parse_name("efficientnet-lite0+plain").model_version == "efficientnet-lite0@crop224"
    for spec in ("efficientnet-lite0", "efficientnet-lite0+plain", "places365-resnet50@seed-pad224",
                 "places365-resnet50@pad224+rot4"):
        mv = parse_name(spec).model_version
        assert parse_name(mv).model_version == mv  # a stored model version parses back to itself
    for bad in ("resnet9000", "efficientnet-lite0@warp", "efficientnet-lite0+rot7"):
        with pytest.raises(ModelUnavailable):
            parse_name(bad)


@pytest.mark.samples
def test_lite0_embeds_normalised_vectors(lite0, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photos = sample_photos(4, out_dir=tmp_path)
    images = [load_image(p) for p in photos]
    vecs = lite0.embed_images(images)
    assert lite0.name == "efficientnet-lite0" and lite0.dim == 1280
    assert vecs.shape == (4, 1280) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert lite0.embed_images([]).shape == (0, 1280)
    # Same image, same vector; different photos are further apart than a photo and itself.
    again = lite0.embed_images(images[:1])
    assert float(again[0] @ vecs[0]) > 0.9999
    assert float(vecs[0] @ vecs[1]) < 0.9


@pytest.mark.samples
def test_embed_rotations_gives_each_rotation(lite0, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    img = load_image(sample_photos(1, out_dir=tmp_path)[0])
    rots = lite0.embed_rotations([img])
    assert rots.shape == (1, 4, 1280)
    assert float(rots[0, 0] @ lite0.embed_images([img])[0]) > 0.9999
    # The 90-degree slot of the upright image matches the plain vector of the image turned back by 90.
    turned = img.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise
    plain_turned = lite0.embed_images([turned])[0]
    assert max(float(rots[0, k] @ plain_turned) for k in range(4)) > 0.97


@pytest.mark.samples
def test_rot4_embedding_is_rotation_invariant(lite0_rot4, lite0, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    img = load_image(sample_photos(2, out_dir=tmp_path)[1])
    turned = load_image(_jpeg_bytes(img.transpose(Image.Transpose.ROTATE_270)))  # a phone's turn, no EXIF
    inv = lite0_rot4.embed_images([img, turned])
    assert float(inv[0] @ inv[1]) > 0.99
    plain = lite0.embed_images([img, turned])
    assert float(plain[0] @ plain[1]) < float(inv[0] @ inv[1])
    rots = lite0_rot4.embed_rotations([img])
    assert rots.shape == (1, 4, 1280) and np.allclose(rots[0], inv[0], atol=1e-5)


def _jpeg_bytes(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.mark.samples
def test_lite0_weights_are_really_pretrained(lite0) -> None:  # type: ignore[no-untyped-def]
    """The shared photos are named <wnid>_<label>.jpg: the classifier head must get most of them right."""
    from timm.data import ImageNetInfo

    from embeddings import efficientnet

    photos = sample_photos(60) if _have_shared_photos() else []
    if not photos:
        pytest.skip("no shared photos (SAMPLE_DATA_DIR)")
    model = efficientnet.build(with_classifier=True)
    info = ImageNetInfo()
    wnid_to_index = {info.index_to_label_name(i): i for i in range(1000)}
    batch = torch.as_tensor(np.stack([lite0.prepare(load_image(p)) for p in photos]))
    with torch.inference_mode():
        pred = model(batch).argmax(1).tolist()
    truth = [wnid_to_index[p.name.split("_")[0]] for p in photos]
    hits = Counter(a == b for a, b in zip(pred, truth, strict=True))[True]
    assert hits / len(photos) >= 0.7, f"only {hits}/{len(photos)} photos classified right"


def _have_shared_photos() -> bool:
    try:
        return bool(sample_photos(1))
    except ValueError:
        return False


@pytest.mark.samples
def test_places365_loads_the_csail_checkpoint(places_checkpoint: Path, tmp_path: Path) -> None:
    """Loaded into torchvision's resnet50 exactly: our feature equals the reference model's avg-pool output."""
    from torchvision.models import resnet50

    settings = load_settings(model_weights=places_checkpoint)
    assert get_embedder("places365-resnet50", settings).model_version == "places365-resnet50@crop224+rot4"
    emb = get_embedder("places365-resnet50+plain", settings)
    assert emb.dim == 2048 and emb.model_version == "places365-resnet50@crop224"
    reference = resnet50(weights=None, num_classes=365)
    state = torch.load(places_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    reference.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    reference.fc = torch.nn.Identity()
    reference.eval()
    img = load_image(sample_photos(1, out_dir=tmp_path)[0])
    x = torch.as_tensor(emb.prepare(img))[None]
    with torch.inference_mode():
        ref = reference(x).numpy()[0]
    ref /= np.linalg.norm(ref)
    ours = emb.embed_images([img])[0]
    assert ours.shape == (2048,)
    assert float(ours @ ref) > 0.9999


def test_places365_missing_or_bad_weights_give_a_clear_message(tmp_path: Path) -> None:
    """The loader's messages, in this process (the torch runtime: no export subprocess per case; the ONNX
    path reports the exporter's reason: test_onnx.py::test_bad_checkpoint_reports_the_exporters_reason)."""
    from functools import partial

    settings_of = partial(load_settings, embedding_runtime="torch", data_dir=tmp_path / "data")
    missing = tmp_path / "nowhere.pth.tar"
    with pytest.raises(ModelUnavailable) as err:
        get_embedder("places365-resnet50", settings_of(model_weights=missing))
    text = str(err.value)
    assert "MODEL_WEIGHTS" in text and "make weights" in text and str(missing) in text
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailable) as err:
        get_embedder("places365-resnet50", settings_of(model_weights=junk))
    assert "MODEL_WEIGHTS" in str(err.value)
    wrong = tmp_path / "wrong.pth.tar"
    torch.save({"state_dict": {"module.fc.weight": torch.zeros(10, 2048)}}, wrong)
    with pytest.raises(ModelUnavailable, match="does not fit"):
        get_embedder("places365-resnet50", settings_of(model_weights=wrong))


def test_lite0_conversion_checks_every_shape() -> None:
    from embeddings.efficientnet import WeightsMismatch, convert_state_dict

    src = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    assert list(convert_state_dict(src, {"x": torch.zeros(2, 3), "y": torch.zeros(4)})) == ["x", "y"]
    with pytest.raises(WeightsMismatch):
        convert_state_dict(src, {"x": torch.zeros(2, 3), "y": torch.zeros(5)})
    with pytest.raises(WeightsMismatch):
        convert_state_dict(src, {"x": torch.zeros(2, 3)})
