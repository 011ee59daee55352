"""Sample images for tests, the demo and benchmarks.

Real photos come from the sample-data folder (SAMPLE_DATA_DIR, see
`core.settings.sample_data_dir`). A user's clone has none, so the same callers can generate
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


def sample_scene_pairs(limit: int, *, out_dir: Path | None = None, seed: int = 0) -> list[tuple[Path, Path]]:
    """`limit` pairs of different shots of one scene (docs/design.md: "same scene", never a duplicate).

    Real ones when the sample data has `scenes/` (the first two photos of each
    group in groups.csv; burst-like "video-frames-0.5s" groups first: the plainest
    case of another shot a moment later), else generated ones
    (`generate_scene_shots`) in `out_dir`. bench/duplicates.py measures all groups.
    """
    data = sample_data_dir()
    scenes = data / "scenes" if data is not None else None
    if scenes is not None and (scenes / "groups.csv").is_file():
        import csv

        groups: dict[str, list[Path]] = {}
        burst: set[str] = set()
        origin: dict[str, tuple[str, str]] = {}
        with open(scenes / "groups.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                groups.setdefault(row["group"], []).append(scenes / row["file"])
                origin.setdefault(row["group"], (row.get("repo", ""), row.get("path", "") or row["group"]))
                if row.get("kind", "").startswith("video-frames-0.5s"):
                    burst.add(row["group"])
        # Two groups cut from one video may show one scene: keep one group per source file.
        seen: set[tuple[str, str]] = set()
        distinct = []
        for g in groups:
            if origin[g] not in seen:
                seen.add(origin[g])
                distinct.append(g)
        order = sorted(distinct, key=lambda g: g not in burst)  # stable: file order within each kind
        pairs = [(groups[g][0], groups[g][1]) for g in order
                 if len(groups[g]) >= 2 and groups[g][0].is_file() and groups[g][1].is_file()]
        if pairs:
            return pairs[:limit]
    if out_dir is None:
        raise ValueError("no sample scenes (set SAMPLE_DATA_DIR) and no out_dir to generate them in")
    return [generate_scene_shots(out_dir, seed=seed * 1000 + i) for i in range(limit)]


def generate_scene_shots(out_dir: Path, *, seed: int = 0, size: tuple[int, int] = (500, 375)) -> tuple[Path, Path]:
    """Two synthetic shots of one scene: the second from a viewpoint moved sideways (near things shift
    more than far ones: parallax), with the "people" in front moved and fresh sensor noise. Another
    exposure, not a copy: no single transform of one shot gives the other.
    """
    from PIL import Image, ImageDraw, ImageFilter

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / f"scene_{seed:04d}_0.jpg", out_dir / f"scene_{seed:04d}_1.jpg")
    if all(p.exists() for p in paths):
        return paths
    rng = np.random.default_rng(10_000_019 + seed)
    w, h = size
    margin = w // 4
    # Far wall (a wide textured canvas), middle things (shapes) and near "people": three depths.
    wide = Image.open(generate_photos(out_dir / ".scene-parts", 1, seed=50_000 + seed, size=(w + 2 * margin, h))[0])
    things = [(int(rng.integers(0, w + margin)), int(rng.integers(0, h)), int(rng.integers(25, 70)),
               tuple(int(c) for c in rng.integers(0, 256, 3))) for _ in range(int(rng.integers(6, 10)))]
    people = [(int(rng.integers(0, w)), int(rng.integers(h // 3, h)), int(rng.integers(40, 90)),
               tuple(int(c) for c in rng.integers(0, 256, 3))) for _ in range(int(rng.integers(6, 9)))]
    moves = [(int(rng.integers(-80, 80)), int(rng.integers(-40, 40))) for _ in people]
    for shot, path in enumerate(paths):
        step = 0 if shot == 0 else int(w * 0.05)  # the camera moved 5% of the width sideways
        img = wide.crop((margin + step, 0, margin + step + w, h))
        draw = ImageDraw.Draw(img)
        for x, y, r, colour in things:  # twice as near as the wall: they shift twice as far
            cx = x - margin - 2 * step
            draw.rectangle((cx - r, y - r // 2, cx + r, y + r // 2), fill=colour, outline=(20, 20, 20), width=3)
        for (x, y, r, colour), (mx, my) in zip(people, moves, strict=True):  # nearer still, and they moved
            cx, cy = x - 4 * step + (mx if shot else 0), y + (my if shot else 0)
            draw.ellipse((cx - r // 2, cy - r, cx + r // 2, cy + r), fill=colour)
            draw.ellipse((cx - r // 3, cy - r - r // 2, cx + r // 3, cy - r + r // 6), fill=(225, 190, 160))
        arr = np.asarray(img, dtype=np.float64) * (1.0 if shot == 0 else 1.06)
        arr += np.random.default_rng(seed * 7 + shot).normal(0, 6, arr.shape)
        out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.4))
        out.save(path, quality=90)
    return paths
