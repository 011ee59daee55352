"""Measure where the duplicate threshold belongs: scores of true copies vs different photos.

`python -m serving.duplicate_tuning [--limit 100] [--model efficientnet-lite0]`

Each sample photo gets transformed copies (resize, crop, JPEG quality, flip,
colour, grayscale, text overlay, padding, a 90-degree turn). A copy should
match its original; the best score of an original against any *other* photo
is the negative. Scores are computed the way the server computes them: the
upload check takes the best of the query's four rotations; stored pairs
(the event groups) compare plain vectors. Prints percentiles of both
distributions and precision/recall per threshold; docs/api.md records the run.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

Transform = Callable[["Image.Image"], "Image.Image"]  # type: ignore[name-defined]  # noqa: F821


def transforms() -> dict[str, Transform]:
    from PIL import Image, ImageDraw, ImageEnhance, ImageOps

    def jpeg(img: Image.Image, q: int = 25) -> Image.Image:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=q)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    def crop(img: Image.Image) -> Image.Image:
        w, h = img.size
        return img.crop((int(w * 0.08), int(h * 0.08), int(w * 0.92), int(h * 0.92)))

    def text(img: Image.Image) -> Image.Image:
        out = img.copy()
        draw = ImageDraw.Draw(out)
        w, h = out.size
        draw.rectangle((0, int(h * 0.85), w, h), fill=(0, 0, 0))
        draw.text((10, int(h * 0.87)), "Event 2024 - photo by someone", fill=(255, 255, 255))
        return out

    return {
        "resize50": lambda im: im.resize((im.width // 2, im.height // 2)),
        "crop84": crop,
        "jpeg25": jpeg,
        "flip": lambda im: ImageOps.mirror(im),
        "colour": lambda im: ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(1.25)).enhance(1.4),
        "grayscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
        "text": text,
        "pad10": lambda im: ImageOps.expand(im, border=max(im.size) // 10, fill=(255, 255, 255)),
        "rotate90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    }


def measure(limit: int, model: str, out_dir: Path) -> dict[str, np.ndarray]:
    """Scores: 'copy_tta' / 'copy_plain' per (photo, transform), 'other_tta' / 'other_plain' per query."""
    from core.sample_data import sample_photos
    from embeddings.loading import load_image
    from embeddings.models import get_embedder

    embedder = get_embedder(model)
    photos = sample_photos(limit, out_dir=out_dir)
    originals = [load_image(p, **embedder.load_kwargs()) for p in photos]
    base = embedder.embed_images(originals)  # (n, d): what the index holds
    tf = transforms()
    copy_tta, copy_plain, other_tta, other_plain, names = [], [], [], [], []
    for name, fn in tf.items():
        copies = [fn(im) for im in originals]
        rot = embedder.embed_rotations(copies)  # (n, 4, d)
        sims = np.einsum("nrd,md->nrm", rot, base)  # each copy's 4 rotations vs every original
        tta = sims.max(axis=1)  # (n, m)
        plain = sims[:, 0, :]
        idx = np.arange(len(photos))
        copy_tta.append(tta[idx, idx])
        copy_plain.append(plain[idx, idx])
        mask = ~np.eye(len(photos), dtype=bool)
        other_tta.append(np.where(mask, tta, -1).max(axis=1))
        other_plain.append(np.where(mask, plain, -1).max(axis=1))
        names += [name] * len(photos)
    return {
        "names": np.asarray(names),
        "copy_tta": np.concatenate(copy_tta), "copy_plain": np.concatenate(copy_plain),
        "other_tta": np.concatenate(other_tta), "other_plain": np.concatenate(other_plain),
    }


def report(scores: dict[str, np.ndarray]) -> str:
    lines = []
    pct = (0, 1, 5, 50, 95, 99, 100)

    def row(label: str, values: np.ndarray) -> str:
        return f"{label:<28}" + " ".join(f"{np.percentile(values, p):6.3f}" for p in pct)

    lines.append(f"{'scores (percentiles)':<28}" + " ".join(f"{'p' + str(p):>6}" for p in pct))
    lines.append(row("copy vs original (4 rot)", scores["copy_tta"]))
    lines.append(row("copy vs original (plain)", scores["copy_plain"]))
    lines.append(row("best other photo (4 rot)", scores["other_tta"]))
    lines.append(row("best other photo (plain)", scores["other_plain"]))
    lines.append("")
    lines.append("per transform, min / median copy score (4 rot | plain):")
    for name in dict.fromkeys(scores["names"].tolist()):
        sel = scores["names"] == name
        lines.append(f"  {name:<10} {scores['copy_tta'][sel].min():.3f} / {np.median(scores['copy_tta'][sel]):.3f}"
                     f"   | {scores['copy_plain'][sel].min():.3f} / {np.median(scores['copy_plain'][sel]):.3f}")
    lines.append("")
    lines.append("threshold   recall(4rot)  false-match(4rot)   recall(plain)  false-match(plain)")
    for t in np.arange(0.60, 0.96, 0.025):
        lines.append(f"  {t:.3f}      {np.mean(scores['copy_tta'] >= t):6.3f}        "
                     f"{np.mean(scores['other_tta'] >= t):6.4f}           {np.mean(scores['copy_plain'] >= t):6.3f}"
                     f"         {np.mean(scores['other_plain'] >= t):6.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.duplicate_tuning", description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=100, help="sample photos to use (default 100)")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--out-dir", type=Path, default=Path("data/tuning"),
                        help="where generated photos go when no sample data exists")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    print(report(measure(args.limit, args.model, args.out_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
