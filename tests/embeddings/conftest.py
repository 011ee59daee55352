"""Fixtures for the embeddings tests: one efficientnet-lite0 per session, a CSAIL-format checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def lite0():
    """The offline model without the rotation variant (4x cheaper), built once; runner tests use the same spec."""
    import torch

    from core.settings import load_settings
    from embeddings.models import get_embedder

    torch.set_num_threads(2)
    return get_embedder("efficientnet-lite0+plain", load_settings())


@pytest.fixture(scope="session")
def lite0_default():
    """What EMBEDDING_MODEL=efficientnet-lite0 gives: crop224, plain (one forward per photo)."""
    from core.settings import load_settings
    from embeddings.models import get_embedder

    return get_embedder("efficientnet-lite0", load_settings())


@pytest.fixture(scope="session")
def lite0_rot4():
    """EMBEDDING_MODEL=efficientnet-lite0+rot4: crop224, rotation-invariant (Places365's default variant)."""
    from core.settings import load_settings
    from embeddings.models import get_embedder

    return get_embedder("efficientnet-lite0+rot4", load_settings())


@pytest.fixture(scope="session")
def places_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint in exactly the CSAIL format (random weights): {"state_dict": {"module."+k: v}, ...}."""
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(0)
    model = resnet50(weights=None, num_classes=365)
    path = tmp_path_factory.mktemp("weights") / "resnet50_places365.pth.tar"
    torch.save({"epoch": 90, "arch": "resnet50", "best_prec1": 54.7,
                "state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    return path
