"""Sample images for tests, the demo and benchmarks.

Real photos come from the sample data dir (SAMPLE_DATA_DIR, else ../shared/data
beside the repo). A user's clone has neither, so the same callers can generate
distinct synthetic scenes instead: nothing is ever copied into the repo.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.settings import sample_data_dir


def sample_photos(limit: int | None = None, *, out_dir: Path | None = None, seed: int = 0) -> list[Path]:
    """Real photos when available, else `limit` (default 40) generated ones written to `out_dir`."""
    data = sample_data_dir()
    if data is not None and (data / "photos").is_dir():
        photos = sorted((data / "photos").glob("*.jpg"))
        if photos:
            return photos[:limit] if limit else photos
    if out_dir is None:
        raise ValueError("no sample photos (set SAMPLE_DATA_DIR) and no out_dir to generate them in")
    return generate_photos(out_dir, limit or 40, seed=seed)


def sample_formats_dir() -> Path | None:
    """The folder of odd and broken image files, when the sample data has one."""
    data = sample_data_dir()
    return data / "formats" if data is not None and (data / "formats").is_dir() else None


def generate_photos(out_dir: Path, count: int, *, seed: int = 0, size: tuple[int, int] = (500, 375)) -> list[Path]:
    """Write `count` distinct synthetic JPEG scenes (gradient, shapes, texture) to out_dir.

    Existing files of the same name are reused, so a second run costs nothing.
    """
    from PIL import Image, ImageDraw, ImageFilter

    out_dir.mkdir(parents=True, exist_ok=True)
    w, h = size
    paths = []
    for i in range(count):
        path = out_dir / f"generated_{seed:03d}_{i:04d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng(seed * 100_003 + i)
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0.0, 1.0, h)[:, None, None]
        base = top * (1 - t) + bottom * t + rng.normal(0, 12, (h, w, 3))
        img = Image.fromarray(np.clip(np.broadcast_to(base, (h, w, 3)), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(6, 14))):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            shape = int(rng.integers(0, 4))
            if shape == 0:
                draw.rectangle((x0, y0, x1, y1), fill=colour)
            elif shape == 1:
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            elif shape == 2:
                draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(3, 15)))
            else:
                pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(int(rng.integers(3, 7)))]
                draw.polygon(pts, fill=colour)
        img.filter(ImageFilter.GaussianBlur(float(rng.choice([0.0, 0.5, 1.0])))).save(path, quality=90)
    return paths
