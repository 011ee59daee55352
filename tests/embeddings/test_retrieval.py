"""Retrieval on real photos: transformed copies find their originals among the library."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from core.sample_data import sample_photos
from embeddings.loading import load_image


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _caption(img: Image.Image) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, int(out.height * 0.8), out.width, out.height), fill=(0, 0, 0))
    draw.text((10, int(out.height * 0.83)), "Gala 2024", fill=(255, 255, 255))
    return out


TRANSFORMS = {
    "thumbnail": lambda im: ImageOps.contain(im, (160, 160)),
    "crop": lambda im: im.crop((im.width // 10, im.height // 10, im.width * 9 // 10, im.height * 9 // 10)),
    "jpeg_q20": lambda im: Image.open(io.BytesIO(_jpeg(im, 20))),
    "colour": lambda im: ImageEnhance.Color(im).enhance(1.8),
    "grayscale": lambda im: im.convert("L"),
    "caption": _caption,
    "padding": lambda im: ImageOps.pad(im, (max(im.size), max(im.size)), color=(0, 0, 0)),
    "rotate_90": lambda im: im.transpose(Image.Transpose.ROTATE_270),
}


def test_transformed_copies_find_their_originals(lite0_default, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lite0 = lite0_default  # the shipped configuration: crop224, rotation-invariant
    photos = sample_photos(16, out_dir=tmp_path)
    originals = [load_image(p) for p in photos]
    library = lite0.embed_images(originals)
    misses = []
    for name, fn in TRANSFORMS.items():
        copies = [load_image(_jpeg(fn(im))) for im in originals]
        # The server's query path: all four rotations of the query, best score per library image.
        rots = lite0.embed_rotations(copies)  # (n, 4, dim)
        scores = np.einsum("nkd,md->nkm", rots, library).max(axis=1)
        found = scores.argmax(axis=1)
        misses += [(name, photos[i].name) for i in range(len(photos)) if found[i] != i]
        # Stored vectors alone (the event duplicates route has no query to rotate) find them too.
        stored = (rots[:, 0] @ library.T).argmax(axis=1)
        misses += [(f"{name}/stored", photos[i].name) for i in range(len(photos)) if stored[i] != i]
    total = len(photos) * 2 * len(TRANSFORMS)
    assert len(misses) <= total // 50, misses  # >= 98% recall@1
