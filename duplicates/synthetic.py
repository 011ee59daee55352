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


def _world(seed: int, size: tuple[int, int] = WORLD) -> tuple[np.ndarray, list[_Blob]]:
    import cv2

    rng = np.random.default_rng(seed)
    w, h = size
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


# --- near-static frames (issue 26): a fixed or nearly fixed camera, one small figure moved a few pixels ---
# Two frames 0.5 s apart from a camera on a tripod where only a hand moved, or two frames of a video 1/25 s apart
# where the camera drifted about a pixel and people moved a little: at the 160-px thumbnail the motion is one or two
# pixels, and everything else is the same picture under new sensor noise. They are other shots, not copies.
STILL = (1600, 900)  # frame size (w, h): the size the held-out frames had
STILL_KINDS = ("hand", "video")


@dataclass(frozen=True)
class _Figure:
    """A compact foreground figure: an ellipse (palm or body) with smaller ellipses (fingers, or a head)."""

    x: float
    y: float
    parts: tuple[tuple[float, float, float, float, float], ...]  # (dx, dy, rx, ry, angle) from (x, y)
    colour: tuple[float, float, float]
    seed: int


def _figure_patch(fig: _Figure, angle: float) -> tuple[np.ndarray, np.ndarray, int]:
    """The figure drawn on its own patch (float32 RGB, coverage 0..1), turned by `angle` degrees, and the patch's
    half size: its texture goes where it goes."""
    import cv2

    half = int(max(max(abs(dx) + r, abs(dy) + r) for dx, dy, rx, ry, _ in fig.parts for r in (rx, ry))) + 8
    size = 2 * half + 1
    cover = np.zeros((size, size), np.float32)
    for dx, dy, rx, ry, a in fig.parts:
        cv2.ellipse(cover, (half + round(dx), half + round(dy)), (int(rx), int(ry)), a, 0, 360, 1.0, -1,
                    cv2.LINE_AA)
    rng = np.random.default_rng(fig.seed)
    tex = _texture(rng, size, size)
    shade = np.linspace(-18, 18, size, dtype=np.float32)[None, :, None]  # lit from one side: edges inside it
    patch = np.asarray(fig.colour, np.float32) + 40 * tex[..., None] + shade
    if angle:
        m = cv2.getRotationMatrix2D((half, half), angle, 1.0)
        patch = cv2.warpAffine(patch, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        cover = cv2.warpAffine(cover, m, (size, size), flags=cv2.INTER_LINEAR)
    return patch, np.clip(cover, 0, 1), half


def _paste(img: np.ndarray, fig: _Figure, dx: float, dy: float, angle: float) -> None:
    """Composite `fig` onto `img` at its place moved by (dx, dy) (sub-pixel: a warp, anti-aliased)."""
    import cv2

    patch, cover, half = _figure_patch(fig, angle)
    h, w = img.shape[:2]
    m = np.float32([[1, 0, fig.x + dx - half], [0, 1, fig.y + dy - half]])
    warped = cv2.warpAffine(patch, m, (w, h), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(cover, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    img[:] = img * (1 - alpha) + warped * alpha


def _hand(rng: np.random.Generator, w: int, h: int) -> _Figure:
    """A hand (palm and fingers) covering 1-4% of the frame."""
    palm = float(rng.uniform(0.035, 0.06) * w)
    parts = [(0.0, 0.0, palm * 0.8, palm, float(rng.uniform(-20, 20)))]
    for k in range(4):
        parts.append((palm * (-0.6 + 0.4 * k), -palm * 1.5, palm * 0.17, palm * 0.65, float(rng.uniform(-12, 12))))
    parts.append((palm * 0.95, -palm * 0.2, palm * 0.18, palm * 0.55, 50.0))  # thumb
    return _Figure(float(rng.uniform(0.2, 0.8) * w), float(rng.uniform(0.3, 0.75) * h), tuple(parts),
                   tuple(float(v) for v in rng.integers(30, 230, 3)), int(rng.integers(1 << 30)))


def _person(rng: np.random.Generator, w: int, h: int) -> _Figure:
    """A person (body and head) a fifth to a third of the frame tall."""
    body = float(rng.uniform(0.07, 0.12) * h)
    parts = ((0.0, 0.0, body * 0.45, body, 0.0), (0.0, -body * 1.35, body * 0.3, body * 0.36, 0.0))
    return _Figure(float(rng.uniform(0.15, 0.85) * w), float(rng.uniform(0.45, 0.75) * h), parts,
                   tuple(float(v) for v in rng.integers(30, 230, 3)), int(rng.integers(1 << 30)))


@functools.lru_cache(maxsize=8)
def _still_scene(seed: int, kind: str) -> tuple[np.ndarray, tuple[_Figure, ...]]:
    """The static background of a near-static scene (a 1600x900 world) and its figures."""
    world, _ = _world(seed, STILL)
    rng = np.random.default_rng(seed * 31 + 17)
    w, h = STILL
    figures = (_hand(rng, w, h),) if kind == "hand" else tuple(_person(rng, w, h)
                                                                for _ in range(int(rng.integers(2, 4))))
    return world.astype(np.float32), figures


def still_frame(seed: int, kind: str, index: int) -> Image.Image:
    """Frame `index` of near-static scene `seed` (`kind` "hand": a fixed camera, one hand moved 5-20 px at 1600 px
    between frames; "video": frames 1/25 s apart, the camera drifted 0.3-1.5 px and turned a little, each person
    moved 2-10 px). Frame 0 is the reference; every frame has its own sensor noise and exposure."""
    import cv2

    if kind not in STILL_KINDS:
        raise ValueError(f"kind {kind!r}: one of {STILL_KINDS}")
    world, figures = _still_scene(seed, kind)
    rng = np.random.default_rng(seed * 7919 + index * 13 + (1 if kind == "hand" else 2))
    img = world.copy()
    reach = (5.0, 20.0) if kind == "hand" else (2.0, 10.0)
    for fig in figures:
        dx = dy = angle = 0.0
        if index:
            step, way = float(rng.uniform(*reach)), float(rng.uniform(0, 2 * np.pi))
            dx, dy = step * float(np.cos(way)), step * float(np.sin(way))
            angle = float(rng.uniform(-4, 4)) if kind == "hand" else 0.0
        _paste(img, fig, dx, dy, angle)
    if index and kind == "video":  # the hand-held camera drifted about a pixel and turned a hair
        w, h = STILL
        drift, way = float(rng.uniform(0.3, 1.5)), float(rng.uniform(0, 2 * np.pi))
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-0.05, 0.05)), 1.0)
        m[:, 2] += (drift * np.cos(way), drift * np.sin(way))
        img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    gain = float(rng.uniform(0.98, 1.02)) if index else 1.0
    img = img * gain + rng.normal(0, 2.5, img.shape).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), 0.7)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
