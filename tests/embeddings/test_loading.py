"""Image loading: every odd file becomes an RGB image or a short reason; paths never leave the root."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.sample_data import sample_formats_dir
from embeddings.loading import ImageLoadError, load_image, load_image_info, resolve_image_path

REASONS = {"missing", "not a file", "unreadable", "truncated", "too large", "not an image"}
# What each shared format file must give: None = loads, else the reason.
EXPECTED = {"ukbench09268_corrupt.jpg": "not an image"}
FORMATS = sample_formats_dir()


@pytest.mark.samples
@pytest.mark.skipif(FORMATS is None, reason="no shared formats dir (SAMPLE_DATA_DIR)")
@pytest.mark.parametrize("name", sorted(p.name for p in FORMATS.iterdir()) if FORMATS else [])
def test_every_shared_format_file_loads_or_gives_a_short_reason(name: str) -> None:
    path = FORMATS / name  # type: ignore[operator]
    expected = EXPECTED.get(name)
    if expected is None:
        info = load_image_info(path)
        assert info.image.mode == "RGB"
        assert min(info.image.size) > 0 and info.width > 0 and info.height > 0
    else:
        with pytest.raises(ImageLoadError) as err:
            load_image(path)
        assert err.value.reason == expected


def _png(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def test_transparency_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    out = np.asarray(load_image(_png(rgba)))
    assert (out == 255).all()
    la = Image.new("LA", (8, 8), (0, 0))
    assert (np.asarray(load_image(_png(la))) == 255).all()
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0] * 256)
    assert (np.asarray(load_image(_png(pal, transparency=0))) == 255).all()


def test_sixteen_bit_one_bit_and_cmyk_become_rgb() -> None:
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    img16 = Image.fromarray(ramp)  # mode I;16
    out = np.asarray(load_image(_png(img16)))
    assert out.shape == (8, 8, 3) and out[0, 0, 0] == 0 and out[-1, -1, 0] > 240
    assert load_image(_png(Image.new("1", (9, 7), 1))).size == (9, 7)
    cmyk = Image.new("CMYK", (10, 10), (0, 255, 255, 0))  # red
    r, g, b = load_image(_jpeg(cmyk)).getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60


def test_animation_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    r, _g, b = load_image(path).getpixel((5, 5))
    assert r > 200 and b < 50


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=95)
    info = load_image_info(path)
    assert info.image.size == (20, 40) and (info.width, info.height) == (20, 40)
    top = np.asarray(info.image)[:20].mean()
    assert top > 200  # the white half is now on top


def test_big_jpeg_is_decoded_in_draft_mode_but_reports_full_size(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (10, 120, 200)).save(path, quality=80)
    info = load_image_info(path, draft_side=256)
    assert (info.width, info.height) == (4000, 3000)
    assert 256 <= min(info.image.size) <= 512  # 1/8 scale: 500x375
    assert load_image_info(path, draft_side=None).image.size == (4000, 3000)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "nope.jpg", "missing"),
        (lambda d: d, "not a file"),
        (lambda d: _write(d / "empty.jpg", b""), "not an image"),
        (lambda d: _write(d / "text.png", b"hello, not a picture\n" * 10), "not an image"),
        (lambda d: _write(d / "cut.jpg", _jpeg(_noise(300, 200), quality=90)[:3000]), "truncated"),
        (lambda d: _write(d / "cut.png", _png(_noise(300, 200))[:5000]), "truncated"),
    ],
    ids=["missing", "directory", "empty", "text", "truncated-jpeg", "truncated-png"],
)
def test_bad_files_give_short_reasons(tmp_path: Path, make, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageLoadError) as err:
        load_image(make(tmp_path))
    assert err.value.reason == reason and err.value.reason in REASONS


def test_decompression_bomb_is_too_large(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.png", _png(Image.new("L", (2000, 2000))))
    with pytest.raises(ImageLoadError) as err:
        load_image(path, max_pixels=1_000_000)
    assert err.value.reason == "too large"


def test_decode_budget_is_in_bytes_after_draft(tmp_path: Path) -> None:
    """The budget counts the decoded buffer: a PNG over it is refused, a JPEG that drafts under it passes."""
    png = _write(tmp_path / "rgb.png", _png(Image.new("RGB", (2000, 2000), (9, 9, 9))))  # 16 MB decoded
    with pytest.raises(ImageLoadError) as err:
        load_image(png, max_decode_bytes=8 * 2**20)
    assert err.value.reason == "too large" and "needs 15 MB" in str(err.value)
    assert load_image(png, max_decode_bytes=32 * 2**20).size == (2000, 2000)  # under REDUCE_ABOVE: untouched
    jpeg = _write(tmp_path / "rgb.jpg", _jpeg(Image.new("RGB", (2000, 2000), (9, 9, 9))))
    assert min(load_image(jpeg, draft_side=256, max_decode_bytes=1 * 2**20).size) >= 250


def test_big_sixteen_bit_png_is_reduced_before_conversion(tmp_path: Path) -> None:
    """72 MB of 16-bit pixels: box-reduced at once, scaled in uint16 (x // 257), the shorter side kept >= 256."""
    pixels = np.zeros((6000, 6000), dtype=np.uint16)
    pixels[:3000, :3000] = 40000
    path = _write(tmp_path / "big16.png", _png(Image.fromarray(pixels)))
    del pixels
    info = load_image_info(path, draft_side=256)
    assert (info.width, info.height) == (6000, 6000)
    assert info.image.size == (260, 260) and info.image.mode == "RGB"  # 6000 // 23
    px = np.asarray(info.image)
    assert px[0, 0, 0] == 40000 // 257 and px[-1, -1, 0] == 0
    assert load_image_info(path, draft_side=None).image.size == (6000, 6000)  # no target: full size


def test_float_and_int32_images_scale_without_float64() -> None:
    arr = np.linspace(-5.0, 5.0, 64, dtype=np.float32).reshape(8, 8)
    buf = io.BytesIO()
    Image.fromarray(arr, "F").save(buf, "TIFF")
    out = np.asarray(load_image(buf.getvalue()))
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def _noise(w: int, h: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- paths --------------------------------------------------------------------------------------

def test_seed_paths_resolve_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "uploads").mkdir(parents=True)
    assert resolve_image_path(root, "/uploads/cat.jpg") == root.resolve() / "uploads" / "cat.jpg"
    assert resolve_image_path(root, "uploads/cat.jpg") == root.resolve() / "uploads" / "cat.jpg"
    inside = str(root.resolve() / "uploads" / "cat.jpg")
    assert resolve_image_path(root, inside) == Path(inside)
    # An absolute path elsewhere is read as relative to the root, never from its real place.
    assert resolve_image_path(root, "/etc/passwd") == root.resolve() / "etc" / "passwd"


@pytest.mark.parametrize("bad", ["../secret.jpg", "uploads/../../secret.jpg", "/../../etc/passwd", "a\x00b",
                                 "uploads/" + "n" * 300 + ".jpg", "a/" * 3000])
def test_escapes_are_refused(tmp_path: Path, bad: str) -> None:
    root = tmp_path / "root"
    (root / "uploads").mkdir(parents=True)
    with pytest.raises(ImageLoadError) as err:
        resolve_image_path(root, bad)
    assert err.value.reason in {"outside image root", "invalid path"}
    assert str(tmp_path) not in str(err.value)  # reasons never show server paths


def test_symlinks_out_of_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "secret.jpg"
    Image.new("RGB", (4, 4)).save(secret)
    os.symlink(secret, root / "link.jpg")
    os.symlink(tmp_path, root / "dirlink")
    for name in ("link.jpg", "dirlink/secret.jpg"):
        with pytest.raises(ImageLoadError) as err:
            resolve_image_path(root, name)
        assert err.value.reason == "outside image root"
    os.symlink(root / "real.jpg", root / "inner.jpg")
    assert resolve_image_path(root, "inner.jpg") == root.resolve() / "real.jpg"
