"""Duplicate-finding quality: do transformed copies of a photo find their original (recall@1)?

The library is the shared photos (or generated ones); each photo gets transformed
copies (resize, thumbnail, crops, JPEG quality, pixel rotations as a phone stores
them without EXIF, small tilt, flip, colour filter, grayscale, blur, text overlay,
padding, screenshot), each saved as a JPEG and read back through the real loader.
For each model and preprocessing it prints recall@1 per transform and overall,
for three ways of handling rotation:
  plain   index and query embedded as they are
  tta     plain index; the query is searched in its 4 rotations, best score kept (server side)
  rot4    the `+rot4` model version: index and query both average the 4 rotations' features
Goal with efficientnet-lite0: >= 0.99 overall. Places365 runs only with its real
weights at MODEL_WEIGHTS (random weights say nothing about quality).

  .venv/bin/python bench/quality.py [--limit 294] [--models efficientnet-lite0@crop224,efficientnet-lite0@seed-pad224]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.sample_data import sample_photos
from core.settings import get_settings

Transform = Callable[[Image.Image, np.random.Generator], Image.Image]


def _crop(img: Image.Image, frac: float, rng: np.random.Generator | None) -> Image.Image:
    w, h = img.size
    cw, ch = int(w * frac), int(h * frac)
    if rng is None:
        left, top = (w - cw) // 2, (h - ch) // 2
    else:
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((left, top, left + cw, top + ch))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def _text(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = img.copy().convert("RGBA")
    w, h = out.size
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.rectangle((0, int(h * 0.78), w, h), fill=(0, 0, 0, 140))
    draw.text((int(w * 0.05), int(h * 0.80)), "Summer Gala 2024  #event", font=_font(max(14, h // 12)),
              fill=(255, 255, 255, 255))
    draw.text((int(w * 0.05), int(h * 0.05)), "@photographer", font=_font(max(12, h // 16)), fill=(255, 255, 0, 230))
    return Image.alpha_composite(out, layer).convert("RGB")


def _screenshot(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo shown in a phone app: scaled into a tall white screen with bars and text around it."""
    w, h = img.size
    sw = 390
    sh = 844
    screen = Image.new("RGB", (sw, sh), (250, 250, 250))
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, sw, 44), fill=(20, 20, 20))
    draw.text((12, 14), "9:41", font=_font(16), fill=(255, 255, 255))
    draw.rectangle((0, sh - 80, sw, sh), fill=(235, 235, 235))
    draw.text((16, 60), "Anna shared a photo", font=_font(18), fill=(30, 30, 30))
    scaled = img.resize((sw, round(h * sw / w)), Image.Resampling.BILINEAR)
    screen.paste(scaled, (0, 100))
    draw.text((16, 110 + scaled.height), "42 likes  ·  3 comments", font=_font(16), fill=(90, 90, 90))
    return screen


TRANSFORMS: dict[str, Transform] = {
    "resize_half": lambda im, r: im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR),
    "thumbnail_160": lambda im, r: ImageOps.contain(im, (160, 160)),
    "crop_center_80": lambda im, r: _crop(im, 0.8, None),
    "crop_offset_60": lambda im, r: _crop(im, 0.6, r),
    "jpeg_q15": lambda im, r: im,  # encoded at quality 15 below
    "rotate_90": lambda im, r: im.transpose(Image.Transpose.ROTATE_270),  # a phone's clockwise turn, no EXIF
    "rotate_180": lambda im, r: im.transpose(Image.Transpose.ROTATE_180),
    "rotate_270": lambda im, r: im.transpose(Image.Transpose.ROTATE_90),
    "tilt_10": lambda im, r: im.rotate(10, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=(0, 0, 0)),
    "flip": lambda im, r: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "colour_filter": lambda im, r: ImageEnhance.Contrast(ImageEnhance.Brightness(
        ImageEnhance.Color(im).enhance(1.8)).enhance(1.15)).enhance(1.25),
    "grayscale": lambda im, r: im.convert("L"),
    "blur": lambda im, r: im.filter(ImageFilter.GaussianBlur(2.5)),
    "text_overlay": _text,
    "padding": lambda im, r: ImageOps.pad(im, (max(im.size), max(im.size)), color=(0, 0, 0)),
    "screenshot": _screenshot,
}


def encode(img: Image.Image, name: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=15 if name == "jpeg_q15" else 92)
    return buf.getvalue()


def rotation_features(embedder, arrays: list[np.ndarray], batch: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """(4, n, dim) raw (un-normalised) features of each array at 0/90/180/270 degrees."""
    out = []
    for k in range(4):
        feats = []
        for i in range(0, len(arrays), batch):
            x = np.rot90(np.stack(arrays[i:i + batch]), k, axes=(2, 3))
            feats.append(embedder._features(x))
        out.append(np.concatenate(feats))
    return np.stack(out)


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def evaluate(embedder, photos: list[Path], batch: int) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    from embeddings.loading import load_image

    rng = np.random.default_rng(0)
    lib_arrays, q_arrays, q_truth, q_kind = [], [], [], []
    for idx, path in enumerate(photos):
        original = load_image(path, draft_side=None)
        lib_arrays.append(embedder.prepare(load_image(path, **embedder.load_kwargs())))
        for name, fn in TRANSFORMS.items():
            copy = load_image(encode(fn(original, rng).convert("RGB") if name != "grayscale"
                                     else fn(original, rng), name), **embedder.load_kwargs())
            q_arrays.append(embedder.prepare(copy))
            q_truth.append(idx)
            q_kind.append(name)
    lib = rotation_features(embedder, lib_arrays, batch)
    qry = rotation_features(embedder, q_arrays, batch)
    truth = np.asarray(q_truth)
    kinds = np.asarray(q_kind)
    lib_plain = l2(lib[0])
    scores = {
        "plain": l2(qry[0]) @ lib_plain.T,
        "tta": np.max(np.stack([l2(qry[k]) @ lib_plain.T for k in range(4)]), axis=0),
        "rot4": l2(qry.sum(0)) @ l2(lib.sum(0)).T,
    }
    result: dict[str, dict[str, float]] = {}
    for mode, s in scores.items():
        hit = s.argmax(1) == truth
        per = {name: float(hit[kinds == name].mean()) for name in TRANSFORMS}
        per["overall"] = float(hit.mean())
        own = s[np.arange(len(truth)), truth]
        s_other = s.copy()
        s_other[np.arange(len(truth)), truth] = -np.inf
        per["median_margin"] = float(np.median(own - s_other.max(1)))
        result[mode] = per
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="photos (default: all shared photos, or 120 generated)")
    parser.add_argument("--models", default="efficientnet-lite0@crop224,efficientnet-lite0@seed-pad224,"
                                            "efficientnet-lite0@pad224,places365-resnet50@crop224,"
                                            "places365-resnet50@seed-pad224,places365-resnet50@pad224",
                        help="model@preprocess specs; the three rotation modes are computed for each")
    args = parser.parse_args()

    from embeddings.models import ModelUnavailable, get_embedder

    settings = get_settings()
    photos = sample_photos(args.limit, out_dir=Path(tempfile.mkdtemp(prefix="quality-")) / "photos")
    if "generated_" in photos[0].name and args.limit is None:
        photos = sample_photos(120, out_dir=photos[0].parent)
    print(f"{len(photos)} library photos, {len(TRANSFORMS)} transformed copies each "
          f"({'generated' if 'generated_' in photos[0].name else 'shared'})")
    for spec in [m.strip() for m in args.models.split(",") if m.strip()]:
        if spec.startswith("places365") and not settings.resolved_model_weights.is_file():
            print(f"\n{spec}: skipped, no Places365 weights at {settings.resolved_model_weights} (make weights)")
            continue
        try:
            embedder = get_embedder(spec, settings)
        except ModelUnavailable as exc:
            print(f"\n{spec}: skipped, {exc}")
            continue
        started = time.perf_counter()
        res = evaluate(embedder, photos, settings.embed_batch_size)
        print(f"\n{embedder.model_version}  ({time.perf_counter() - started:.0f} s)")
        print(f"  {'transform':16s} " + " ".join(f"{m:>7s}" for m in res))
        for name in [*TRANSFORMS, "overall", "median_margin"]:
            print(f"  {name:16s} " + " ".join(f"{res[m][name]:7.3f}" for m in res))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
