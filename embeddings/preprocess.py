"""Image → normalised float array, the two documented pipelines.

- `seed-pad224`: the seed's pipeline: grayscale, aspect-preserving resize so the
  longer side is 224, centred on a 224x224 canvas (padding is the mean colour,
  i.e. zero after normalisation).
- `crop224`: the CSAIL/ImageNet standard: colour, resize the shorter side to
  256, centre crop 224.
- `pad224`: the seed's geometry in colour (nothing cropped away: screenshots,
  off-centre crops and panoramas keep all their content).

Both resize in one PIL call straight from the decoded image (the crop is a
`box`, so no intermediate copy) and normalise with the model's mean and std.
The arrays are CHW float32, ready to stack into a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

SIZE = 224
RESAMPLE = Image.Resampling.BILINEAR


@dataclass(frozen=True)
class Normalisation:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def apply(self, rgb_uint8: np.ndarray) -> np.ndarray:
        """HWC uint8 → CHW float32 normalised."""
        scale = np.asarray([1.0 / (255.0 * s) for s in self.std], dtype=np.float32)
        shift = np.asarray([m / s for m, s in zip(self.mean, self.std, strict=True)], dtype=np.float32)
        out = rgb_uint8.astype(np.float32) * scale - shift
        return np.ascontiguousarray(out.transpose(2, 0, 1))


IMAGENET = Normalisation((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# The efficientnet-lite0 weights were trained on inputs scaled to [-1, 1] (TF-Lite convention).
HALF = Normalisation((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def crop224(img: Image.Image, norm: Normalisation) -> np.ndarray:
    """Shorter side → 256, centre 224x224 crop, colour."""
    w, h = img.size
    scale = 256.0 / min(w, h)
    side = SIZE / scale  # the crop's side in source pixels
    left, top = (w - side) / 2.0, (h - side) / 2.0
    out = img.resize((SIZE, SIZE), RESAMPLE, box=(left, top, left + side, top + side), reducing_gap=3.0)
    return norm.apply(np.asarray(out.convert("RGB")))


def _pad(img: Image.Image, norm: Normalisation) -> np.ndarray:
    """Longer side → 224 keeping the aspect ratio, centred on a zero (mean colour) canvas."""
    w, h = img.size
    scale = SIZE / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(img.resize((nw, nh), RESAMPLE, reducing_gap=3.0))
    if small.ndim == 2:
        small = np.repeat(small[:, :, None], 3, axis=2)
    body = norm.apply(small)
    out = np.zeros((3, SIZE, SIZE), dtype=np.float32)
    top, left = (SIZE - nh) // 2, (SIZE - nw) // 2
    out[:, top:top + nh, left:left + nw] = body
    return out


def seed_pad224(img: Image.Image, norm: Normalisation) -> np.ndarray:
    """The seed's pipeline: grayscale, then `_pad`."""
    return _pad(img.convert("L"), norm)


def pad224(img: Image.Image, norm: Normalisation) -> np.ndarray:
    """Like the seed's but in colour: the whole picture, aspect kept, padded to a square."""
    return _pad(img.convert("RGB"), norm)


@dataclass(frozen=True)
class Preprocess:
    """A named pipeline; the name goes into the model version string."""

    name: str
    fn: Callable[[Image.Image, Normalisation], np.ndarray]
    # Smallest decode that loses nothing (JPEG draft mode): shorter side / longer side at least.
    draft_side: int | None
    draft_long_side: int | None

    def __call__(self, img: Image.Image, norm: Normalisation) -> np.ndarray:
        return self.fn(img, norm)


PREPROCESSES: dict[str, Preprocess] = {
    "crop224": Preprocess("crop224", crop224, 256, None),
    "seed-pad224": Preprocess("seed-pad224", seed_pad224, None, 224),
    "pad224": Preprocess("pad224", pad224, None, 224),
}
