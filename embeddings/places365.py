"""Places365 ResNet50 (the seed's model): torchvision resnet50 with the CSAIL checkpoint.

The checkpoint `resnet50_places365.pth.tar` is a dict whose "state_dict" has
keys prefixed `module.` (it was saved from DataParallel). The embedding is the
2048-d global-average-pool output, so the 365-way classifier is dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a model is built, so the URL and hash cost nothing to import
    import torch
    from torch import nn

DIM = 2048
NUM_CLASSES = 365
URL = "http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar"
SHA256 = "46529c86902bd0cfb0ea562a30b2850c28d2620d96282b3db9c318e1d774f6c5"


class CheckpointError(RuntimeError):
    """The checkpoint file is missing, unreadable or not the CSAIL ResNet50 format."""


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors with the DataParallel `module.` prefix removed."""
    import torch

    if not path.is_file():
        raise CheckpointError(f"Places365 weights not found at {path}")
    try:
        # weights_only: the CSAIL file holds tensors, ints and strings only, so nothing gets unpickled blindly.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read Places365 weights {path}: {str(exc).splitlines()[0][:200]}") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path} is not a CSAIL checkpoint (no state_dict)")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def build(path: Path, *, with_classifier: bool = False) -> nn.Module:
    """ResNet50 with the Places365 weights; the 2048-d pooled feature unless `with_classifier`."""
    from torch import nn
    from torchvision.models import resnet50

    model = resnet50(weights=None, num_classes=NUM_CLASSES)
    state = read_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit resnet50(num_classes=365): {str(exc)[:300]}") from None
    if not with_classifier:
        model.fc = nn.Identity()
    return model.eval()
