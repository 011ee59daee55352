"""Retrieval: transformed copies find their originals among the library.

Two claims, two tests. The global embedding alone ranks a copy's original
first on real photos (a property of photographs: generated pictures of
gradients and shapes differ mostly in colour, so a grayscale copy is
legitimately ambiguous to it; that test needs the sample photos). Verified
ranking, what `POST /search/image` and the duplicate check do (embedding
candidates re-ranked by `duplicates.rerank`), must find the original first on
any pictures, generated ones included.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from core.sample_data import sample_photos
from core.settings import sample_data_dir
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


@pytest.mark.samples
def test_transformed_copies_find_their_originals(lite0_default, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if sample_data_dir() is None:
        pytest.skip("a property of real photos: needs the sample photos (SAMPLE_DATA_DIR); "
                    "test_verified_ranking_finds_originals_first covers copies on generated pictures")
    lite0 = lite0_default  # the shipped configuration: crop224, plain
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


@pytest.mark.samples
def test_verified_ranking_finds_originals_first(lite0_default, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The server's path: rotation queries give candidates, verification puts the copy's original first."""
    from duplicates.fingerprint import fingerprint
    from duplicates.rerank import rerank

    lite0 = lite0_default
    photos = sample_photos(8, out_dir=tmp_path)  # the whole library is the candidate list: ranking is verification's
    kwargs = lite0.load_kwargs()
    originals = [load_image(p, **kwargs) for p in photos]
    library = lite0.embed_images(originals)
    prints = [fingerprint(im, p.read_bytes()) for im, p in zip(originals, photos, strict=True)]
    misses, copies_elsewhere = [], []
    for name, fn in TRANSFORMS.items():
        uploads = [_jpeg(fn(load_image(p))) for p in photos]
        queries = [load_image(data, **kwargs) for data in uploads]
        scores = np.einsum("nkd,md->nkm", lite0.embed_rotations(queries), library).max(axis=1)
        for i, (query, data) in enumerate(zip(queries, uploads, strict=True)):
            candidates = [(j, float(scores[i, j]), prints[j]) for j in np.argsort(-scores[i])]
            ranked = rerank(fingerprint(query, data), candidates)
            if ranked[0][0] != i or ranked[0][2].relation != "copy":
                misses.append((name, photos[i].name, ranked[0][2]))
            copies_elsewhere += [(name, photos[i].name, j) for j, _, v in ranked if j != i and v.relation == "copy"]
    assert len(misses) <= len(photos) * len(TRANSFORMS) // 50, misses  # >= 98% found first, as a copy
    assert copies_elsewhere == []  # and no other picture is ever called a copy of it
