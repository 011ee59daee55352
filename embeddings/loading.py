"""Reading image files: the file is the truth, and a bad file is a short reason, never a crash.

`load_image` turns a path or bytes into an RGB PIL image (EXIF orientation
applied, first frame of animations, transparency composited on white, 16-bit and
CMYK converted) and decodes JPEGs in draft mode near the size the model needs,
so a 24-megapixel photo costs little more than a thumbnail. Every failure is an
`ImageLoadError` whose `.reason` is one of a few short words the ledger stores.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Decompression-bomb limit: a 24 MP phone photo passes with room to spare, a
# crafted 30000x30000 PNG does not. Checked from the header, before decoding.
MAX_PIXELS = 120_000_000
# Files are read whole (decoder and duplicate fingerprint share the bytes): refuse anything bigger first.
MAX_FILE_BYTES = 256 << 20
# Default draft target: both 224-pixel preprocessings are exact from a decode
# whose shorter side is at least this.
DEFAULT_DRAFT_SIDE = 256

# Short reasons (stored in image_embeddings.error).
MISSING = "missing"
NOT_A_FILE = "not a file"
UNREADABLE = "unreadable"
TRUNCATED = "truncated"
TOO_LARGE = "too large"
NOT_AN_IMAGE = "not an image"
OUTSIDE_ROOT = "outside image root"
INVALID_PATH = "invalid path"


class ImageLoadError(Exception):
    """A file that cannot become an image; `.reason` is short, `.detail` says more for logs."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image plus the file's full size (upright), which draft decoding would hide."""

    image: Image.Image
    width: int
    height: int


def resolve_image_path(image_root: Path | str, file_path: str | os.PathLike[str]) -> Path:
    """Where `images.file_path` lives under the image root; refuses anything that escapes it.

    The seed stores paths like `/uploads/cat.jpg`: a leading slash means "from
    the image root", unless the path already lies inside the root. `..` and
    symlinks are followed first and the result must still be inside the root.
    """
    root = Path(image_root).resolve()
    text = os.fspath(file_path)
    if not text or "\x00" in text:
        raise ImageLoadError(INVALID_PATH, repr(text))
    candidate = Path(text)
    if candidate.is_absolute():
        try:
            candidate = candidate.resolve().relative_to(root)
        except ValueError:
            candidate = Path(*candidate.parts[1:]) if len(candidate.parts) > 1 else Path()
    target = (root / candidate).resolve()
    if target != root and root not in target.parents:
        raise ImageLoadError(OUTSIDE_ROOT, text)
    return target


def _open(source: Path | bytes | bytearray | memoryview) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Our MAX_PIXELS decides (checked by the caller); PIL's own warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if isinstance(source, bytes | bytearray | memoryview):
                return Image.open(io.BytesIO(bytes(source)))
            path = Path(source)
            if path.is_dir():
                raise ImageLoadError(NOT_A_FILE, str(path))
            return Image.open(path)
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(MISSING, str(source)) from None
    except PermissionError:
        raise ImageLoadError(UNREADABLE, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageLoadError(NOT_AN_IMAGE) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(TOO_LARGE) from None
    except OSError as exc:
        raise ImageLoadError(UNREADABLE, str(exc)) from None


def read_file(path: Path | str) -> bytes:
    """The file's bytes (read once: the decoder and the duplicate fingerprint's sha256 both use them)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageLoadError(NOT_A_FILE, str(path))
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageLoadError(TOO_LARGE, f"{size} bytes (limit {MAX_FILE_BYTES})")
        return path.read_bytes()
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(MISSING, str(path)) from None
    except PermissionError:
        raise ImageLoadError(UNREADABLE, "permission denied") from None
    except MemoryError:
        raise ImageLoadError(TOO_LARGE, "out of memory while reading") from None
    except OSError as exc:
        raise ImageLoadError(UNREADABLE, str(exc)) from None


def _upright_size(img: Image.Image) -> tuple[int, int]:
    """The full-resolution size once EXIF orientation is applied."""
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block is not worth failing the image for
        orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB whatever the mode: alpha composited on white, 16-bit/float scaled to 8 bits."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = (0.0, 65535.0) if mode.startswith("I;16") else (float(arr.min()), float(arr.max()))
        if mode in ("I", "F") and lo >= 0 and hi <= 255:
            lo, hi = 0.0, 255.0
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def load_image_info(
    source: Path | bytes | bytearray | memoryview,
    *,
    draft_side: int | None = DEFAULT_DRAFT_SIDE,
    draft_long_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> LoadedImage:
    """Decode `source` to an upright RGB image; JPEGs may decode at a reduced scale (draft mode).

    The decoded shorter side stays >= draft_side and the longer >= draft_long_side
    (both None: full size).
    """
    img = opened = _open(source)
    try:
        w, h = img.size
        if w * h > max_pixels:
            raise ImageLoadError(TOO_LARGE, f"{w}x{h} pixels (limit {max_pixels})")
        if w <= 0 or h <= 0:
            raise ImageLoadError(NOT_AN_IMAGE, "empty image")
        upright = _upright_size(img)
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        if (draft_side or draft_long_side) and img.format == "JPEG":
            scale = max((draft_side or 0) / min(w, h), (draft_long_side or 0) / max(w, h))
            if scale < 0.5:  # draft only reduces by 1/2, 1/4, 1/8
                img.draft(img.mode if img.mode in ("RGB", "L") else None,
                          (max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5))))
        img.load()
        img = ImageOps.exif_transpose(img) or img
        rgb = _to_rgb(img)
        rgb.load()
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(TOO_LARGE) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc).lower()
        if "truncated" in text or "premature end" in text or isinstance(exc, EOFError):
            raise ImageLoadError(TRUNCATED, str(exc)) from None
        if isinstance(exc, FileNotFoundError):
            raise ImageLoadError(MISSING) from None
        raise ImageLoadError(UNREADABLE, str(exc) or type(exc).__name__) from None
    except MemoryError:
        raise ImageLoadError(TOO_LARGE, "out of memory while decoding") from None
    finally:
        opened.close()  # releases the file of multi-frame images; decoded pixels stay in `rgb`
    return LoadedImage(rgb, upright[0], upright[1])


def load_image(
    source: Path | bytes | bytearray | memoryview,
    *,
    draft_side: int | None = DEFAULT_DRAFT_SIDE,
    draft_long_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Image.Image:
    """An upright RGB image from a path or bytes, or `ImageLoadError` with a short `.reason`."""
    return load_image_info(source, draft_side=draft_side, draft_long_side=draft_long_side,
                           max_pixels=max_pixels).image
