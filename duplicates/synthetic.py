"""Photo-free test material: textured synthetic scenes and other shots of them.

A user's clone has no real photos. Flat generated shapes would make every
decision trivially easy (or impossible: no corners), so a scene here is a
"world" with photographic statistics: multi-octave noise texture (1/f-like),
many shapes with their own texture, soft lighting. A *shot* of a scene is a
camera window on that world; *another shot* moves the camera (shift, zoom, a
slight rotation), moves a few foreground objects (people moved) and shifts the
foreground more than the background (parallax), then adds its own sensor noise:
exactly what makes a real burst shot "the same scene" but not "the same photograph".
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

WORLD = (900, 700)  # world canvas (w, h); a shot sees about 60% of it
SHOT = (480, 360)


@dataclass(frozen=True)
class _Blob:
    x: float
    y: float
    rx: float
    ry: float
    colour: np.ndarray
    seed: int


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Multi-octave value noise in [-1, 1]: coarse shapes plus fine grain, like natural images."""
    import cv2

    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for cells in (4, 9, 21, 48, 110):
        small = rng.standard_normal((cells, max(2, cells * w // h))).astype(np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        amp *= 0.55
    return out / (np.abs(out).max() + 1e-6)


def _world(seed: int) -> tuple[np.ndarray, list[_Blob]]:
    import cv2

    rng = np.random.default_rng(seed)
    w, h = WORLD
    base = rng.integers(40, 200, 3).astype(np.float32)
    tint = rng.normal(0, 40, 3).astype(np.float32)
    tex = _texture(rng, h, w)
    img = base + tex[..., None] * (40 + tint)
    for _ in range(int(rng.integers(25, 45))):  # background structures: walls, windows, tables
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(20, 220)), y0 + int(rng.integers(10, 160))
        colour = rng.integers(0, 256, 3).astype(np.float32)
        patch = np.zeros((h, w), np.uint8)
        if rng.random() < 0.5:
            cv2.rectangle(patch, (x0, y0), (x1, y1), 1, -1)
        else:
            cv2.ellipse(patch, ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2),
                        float(rng.uniform(0, 180)), 0, 360, 1, -1)
        sel = patch.astype(bool)
        img[sel] = colour + 30 * tex[sel, None]
    blobs = [_Blob(float(rng.uniform(0.25, 0.75) * w), float(rng.uniform(0.3, 0.8) * h),
                   float(rng.uniform(18, 45)), float(rng.uniform(45, 110)),
                   rng.integers(0, 256, 3).astype(np.float32), int(rng.integers(1 << 30)))
             for _ in range(int(rng.integers(3, 6)))]
    return np.clip(img, 0, 255), blobs


def _draw_blobs(img: np.ndarray, blobs: list[_Blob], dx: float, dy: float) -> None:
    """Foreground 'people': textured ellipses with a head, shifted by (dx, dy)."""
    import cv2

    h, w = img.shape[:2]
    for b in blobs:
        rng = np.random.default_rng(b.seed)
        mask = np.zeros((h, w), np.uint8)
        cx, cy = int(b.x + dx), int(b.y + dy)
        cv2.ellipse(mask, (cx, cy), (int(b.rx), int(b.ry)), 0, 0, 360, 1, -1)
        cv2.circle(mask, (cx, int(cy - b.ry - b.rx * 0.6)), int(b.rx * 0.6), 1, -1)
        # The figure's own texture goes where the figure goes (its centre on the texture's centre):
        # a person who moved takes their clothes along.
        tex = np.roll(_texture(rng, h, w), (cy - h // 2, cx - w // 2), axis=(0, 1))
        sel = mask.astype(bool)
        img[sel] = b.colour + 35 * tex[sel, None]


def shot(seed: int, index: int) -> Image.Image:
    """Shot `index` of synthetic scene `seed`; index 0 is the reference, others moved a little.

    Rendered once per (seed, index) and process (tests and benchmarks ask for the same shots again and
    again); each call returns its own copy."""
    return _rendered(seed, index).copy()


@functools.lru_cache(maxsize=512)
def _rendered(seed: int, index: int) -> Image.Image:
    import cv2

    world, blobs = _world(seed)
    rng = np.random.default_rng(seed * 7919 + index)
    w, h = WORLD
    sw, sh = SHOT
    if index:
        moved = list(blobs)
        for k in rng.choice(len(blobs), size=max(1, len(blobs) // 2), replace=False):
            b = blobs[k]
            moved[k] = _Blob(b.x + float(rng.uniform(-40, 40)), b.y + float(rng.uniform(-12, 12)), b.rx, b.ry,
                             b.colour, b.seed)
        blobs = moved
    # Camera: window centre, zoom and roll; foreground parallax grows with the camera shift.
    shift = rng.uniform(-35, 35, 2) if index else np.zeros(2)
    zoom = float(rng.uniform(0.94, 1.06)) if index else 1.0
    roll = float(rng.uniform(-3, 3)) if index else 0.0
    canvas = world.copy()
    _draw_blobs(canvas, blobs, 0.6 * shift[0], 0.6 * shift[1])
    cx, cy = w / 2 + shift[0], h / 2 + shift[1]
    scale = zoom * sw / (w * 0.62)
    m = cv2.getRotationMatrix2D((cx, cy), roll, scale)
    m[:, 2] += (sw / 2 - cx, sh / 2 - cy)
    view = cv2.warpAffine(canvas.astype(np.float32), m, (sw, sh), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REFLECT)
    gain = float(rng.uniform(0.9, 1.1)) if index else 1.0
    view = view * gain + rng.normal(0, 3.0, view.shape)
    view = cv2.GaussianBlur(view.astype(np.float32), (0, 0), 0.6)
    return Image.fromarray(np.clip(view, 0, 255).astype(np.uint8))


def scene_groups(count: int, shots: int = 2, seed: int = 1000) -> list[list[Image.Image]]:
    """`count` synthetic scenes with `shots` different shots each."""
    return [[shot(seed + g, i) for i in range(shots)] for g in range(count)]


def photos(count: int, seed: int = 5000) -> list[Image.Image]:
    """`count` distinct synthetic photos (one shot of as many scenes)."""
    return [shot(seed + i, 0) for i in range(count)]
