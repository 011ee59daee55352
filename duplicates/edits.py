"""The edits that leave a photo "the same photograph" (docs/design.md): each must be decided COPY.

One catalogue for the benchmark, the tests and the demo, so they all plant the
same kinds of copies. Every edit takes and returns an RGB PIL image; `encode`
turns the result into the bytes an upload would carry.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

Edit = Callable[[Image.Image], Image.Image]


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _crop(img: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = img.size
    return img.crop((int(w * left), int(h * top), int(w * right), int(h * bottom)))


def _text_bar(img: Image.Image) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    draw.rectangle((0, int(h * 0.84), w, h), fill=(10, 10, 10))
    caption = "Gala night 2024 - photo by A. Nguyen - do not reuse"
    draw.text((int(w * 0.03), int(h * 0.88)), caption, fill=(255, 255, 255))
    return out


def _logo(img: Image.Image) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    s = max(12, min(w, h) // 6)
    x0, y0 = w - s - w // 30, h // 30
    draw.ellipse((x0, y0, x0 + s, y0 + s), fill=(230, 40, 40), outline=(255, 255, 255), width=max(1, s // 12))
    draw.text((x0 + s // 4, y0 + s // 3), "LOGO", fill=(255, 255, 255))
    return out


def _letterbox(img: Image.Image) -> Image.Image:
    """Padded to a 16:9 canvas with black bars (or a square one for wide photos)."""
    w, h = img.size
    tw, th = (max(w, int(h * 16 / 9)), h) if w / h < 16 / 9 else (w, w)
    canvas = Image.new("RGB", (tw, th), (0, 0, 0))
    canvas.paste(img, ((tw - w) // 2, (th - h) // 2))
    return canvas


def _screenshot(img: Image.Image) -> Image.Image:
    """The photo shown at about 55% inside an app-like frame: status bar, header, caption, buttons."""
    w, h = img.size
    sw, sh = 720, 1280
    scale = min(sw * 0.92 / w, sh * 0.55 / h)
    shown = img.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (sw, sh), (250, 250, 250))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, sw, 60), fill=(30, 30, 30))
    draw.text((20, 20), "12:41   LTE   87%", fill=(255, 255, 255))
    draw.rectangle((0, 60, sw, 170), fill=(59, 89, 152))
    draw.ellipse((20, 75, 100, 155), fill=(200, 200, 200))
    draw.text((120, 100), "friend_of_the_bride  shared a photo", fill=(255, 255, 255))
    top = 200
    canvas.paste(shown, ((sw - shown.width) // 2, top))
    y = top + shown.height + 30
    for i, label in enumerate(("Like", "Comment", "Share")):
        draw.rounded_rectangle((30 + i * 230, y, 220 + i * 230, y + 60), radius=20, fill=(225, 225, 225))
        draw.text((90 + i * 230, y + 22), label, fill=(20, 20, 20))
    for k in range(4):
        draw.text((30, y + 100 + k * 40), "What a night! So happy for you both " * 2, fill=(60, 60, 60))
    return _jpeg(canvas, 85)


def _combo(img: Image.Image) -> Image.Image:
    """Crop, colour filter, text bar and a low-quality re-encode at once."""
    out = _crop(img, 0.05, 0.1, 0.9, 0.95)
    out = ImageEnhance.Contrast(ImageEnhance.Color(out).enhance(1.6)).enhance(1.2)
    return _jpeg(_text_bar(out), 30)


def _sepia(img: Image.Image) -> Image.Image:
    gray = ImageOps.grayscale(img)
    return ImageOps.colorize(gray, black=(40, 20, 0), white=(255, 235, 190))


def _shift_mat(img: Image.Image) -> Image.Image:
    """4% cut off the left, a white mat of the same width added on the right: same size, same shape.

    The edit that looks most like a camera pan (each frame shows a strip the
    other lacks); the strip here is added canvas, not picture.
    """
    w, h = img.size
    cut = max(1, round(w * 0.04))
    out = Image.new("RGB", (w, h), (250, 250, 250))
    out.paste(img.crop((cut, 0, w, h)), (0, 0))
    return out


def _thumb(img: Image.Image, side: int = 96) -> Image.Image:
    out = img.copy()
    out.thumbnail((side, side), Image.Resampling.BICUBIC)
    return out


EDITS: dict[str, Edit] = {
    "jpeg_q5": lambda im: _jpeg(im, 5),
    "jpeg_q30": lambda im: _jpeg(im, 30),
    "resize_50": lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.BILINEAR),
    "thumb_96": _thumb,
    "crop_80": lambda im: _crop(im, 0.1, 0.1, 0.9, 0.9),
    "crop_40_offcentre": lambda im: _crop(im, 0.0, 0.3, 0.63, 0.93),
    "rotate_90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rotate_270": lambda im: im.transpose(Image.Transpose.ROTATE_270),
    "flip": ImageOps.mirror,
    "colour": lambda im: ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(1.25)).enhance(1.5),
    "sepia": _sepia,
    "grayscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "blur_3": lambda im: im.filter(ImageFilter.GaussianBlur(3)),
    "text_bar": _text_bar,
    "logo": _logo,
    "letterbox": _letterbox,
    "screenshot": _screenshot,
    "combo": _combo,
    "flip_crop_q20": lambda im: _jpeg(ImageOps.mirror(_crop(im, 0.15, 0.0, 1.0, 0.8)), 20),
    "shift_mat": _shift_mat,
}

# The edits issue 11 names as hard for a global embedding (found first only ~82-95% of the time).
HARD = ("thumb_96", "jpeg_q5", "blur_3", "crop_40_offcentre", "screenshot", "rotate_90")


def encode(img: Image.Image, quality: int = 90) -> bytes:
    """The bytes an upload of `img` would carry (JPEG)."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()
