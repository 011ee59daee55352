"""Reading image files: the file is the truth, and a bad file is a short reason, never a crash.

`load_image` turns a path or bytes into an RGB PIL image (EXIF orientation
applied, first frame of animations, transparency composited on white, 16-bit and
CMYK converted) and decodes JPEGs in draft mode near the size the model needs,
so a 24-megapixel photo costs little more than a thumbnail. Every failure is an
`ImageLoadError` whose `.reason` is one of a few short words the ledger stores.

Memory is bounded in BYTES, not only pixels: the decoded buffer (as PIL holds
it, after any JPEG draft reduction) must fit `max_decode_bytes`, checked from
the header before decoding. A big non-JPEG is box-reduced right after decoding,
before any conversion, and 16-bit/float images are scaled in their own width
(uint16 or float32), never through float64: a 10,950² 16-bit PNG costs its
240 MB decode and little more.
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
# Largest decoded buffer one decode may allocate (a 120 MP 16-bit grey image is 240 MB).
MAX_DECODE_BYTES = 512 * 2**20
# A decoded non-JPEG bigger than this is box-reduced before conversion (normal photos are not touched).
REDUCE_ABOVE_BYTES = 64 * 2**20
# Bytes per pixel of PIL's decoded buffer (3-channel modes are stored 4 bytes a pixel).
_ONE_BYTE = {"1", "L", "P"}
_TWO_BYTES = {"I;16", "I;16B", "I;16L", "I;16N"}

# Linux limits for one path component and a whole path, in bytes.
_NAME_MAX = 255
_PATH_MAX = 4095

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
        raise ImageLoadError(INVALID_PATH, repr(text[:80]))
    try:
        encoded = os.fsencode(text)
    except UnicodeEncodeError:
        raise ImageLoadError(INVALID_PATH, "not encodable as a file name") from None
    # The OS would answer ENAMETOOLONG from deep inside a stat(): refuse such paths here, by rule.
    if len(encoded) > _PATH_MAX or any(len(part) > _NAME_MAX for part in encoded.split(b"/")):
        raise ImageLoadError(INVALID_PATH, f"name too long (at most {_NAME_MAX} bytes a part, {_PATH_MAX} in all)")
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


def decoded_bytes(mode: str, size: tuple[int, int]) -> int:
    """What PIL allocates to hold an image of `mode` and `size` (the decode's dominant cost)."""
    per_pixel = 1 if mode in _ONE_BYTE else 2 if mode in _TWO_BYTES else 4
    return size[0] * size[1] * per_pixel


def _reduce_factor(size: tuple[int, int], draft_side: int | None, draft_long_side: int | None) -> int:
    """The largest integer shrink that keeps the shorter side >= draft_side and the longer >= draft_long_side."""
    limits = [min(size) // draft_side] if draft_side else []
    limits += [max(size) // draft_long_side] if draft_long_side else []
    return max(1, min(limits)) if limits else 1


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """A box-filtered 1/factor image: PIL's reduce, strips of numpy for 16-bit (reduce lacks I;16 and a
    BOX resize mangles it), nearest for palette images (their indices cannot be averaged)."""
    w, h = img.size
    if img.mode in _TWO_BYTES:
        ow, oh = w // factor, h // factor
        out = np.empty((oh, ow), dtype=np.uint16)
        rows = max(1, (8 * 2**20) // (w * 2 * factor))  # output rows per strip: ~8 MB of input at a time
        for y in range(0, oh, rows):
            n = min(rows, oh - y)
            strip = np.asarray(img.crop((0, y * factor, ow * factor, (y + n) * factor)))
            out[y:y + n] = strip.reshape(n, factor, ow, factor).mean(axis=(1, 3), dtype=np.float32).round()
        return Image.fromarray(out)
    try:
        return img.reduce(factor)
    except ValueError:
        return img.resize((max(1, w // factor), max(1, h // factor)), Image.Resampling.NEAREST)


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
    if mode in _TWO_BYTES:
        # 16-bit: x * 255 / 65535 == x // 257, done in uint16 (no float copy of a big image).
        arr = np.asarray(img)
        return Image.fromarray((arr // 257).astype(np.uint8), "L").convert("RGB")
    if mode in ("I", "F"):
        arr = np.array(img, dtype=np.float32)  # a writable copy, scaled in place
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0 and hi <= 255:
            lo, hi = 0.0, 255.0
        if hi > lo:
            arr -= lo
            arr *= np.float32(255.0 / (hi - lo))
            np.clip(arr, 0, 255, out=arr)
        else:
            arr[:] = 0
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def load_image_info(
    source: Path | bytes | bytearray | memoryview,
    *,
    draft_side: int | None = DEFAULT_DRAFT_SIDE,
    draft_long_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
    max_decode_bytes: int = MAX_DECODE_BYTES,
) -> LoadedImage:
    """Decode `source` to an upright RGB image; big images may decode at a reduced scale.

    The decoded shorter side stays >= draft_side and the longer >= draft_long_side
    (both None: full size). JPEGs decode reduced (draft mode); other formats
    decode in full and, when over REDUCE_ABOVE_BYTES, are box-reduced at once.
    A decode whose buffer would exceed `max_decode_bytes` is refused (TOO_LARGE).
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
        scale = max((draft_side or 0) / min(w, h), (draft_long_side or 0) / max(w, h)) \
            if (draft_side or draft_long_side) else 1.0
        if scale < 0.5 and img.format == "JPEG":  # draft only reduces by 1/2, 1/4, 1/8
            img.draft(img.mode if img.mode in ("RGB", "L") else None,
                      (max(1, int(w * scale + 0.5)), max(1, int(h * scale + 0.5))))
        need = decoded_bytes(img.mode, img.size)
        if need > max_decode_bytes:
            raise ImageLoadError(TOO_LARGE, f"decoding {w}x{h} {img.mode} needs {need / 2**20:.0f} MB "
                                            f"(limit {max_decode_bytes / 2**20:.0f} MB)")
        img.load()
        factor = _reduce_factor(img.size, draft_side, draft_long_side)
        if factor >= 2 and decoded_bytes(img.mode, img.size) > REDUCE_ABOVE_BYTES:
            img = _reduce(img, factor)
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
    max_decode_bytes: int = MAX_DECODE_BYTES,
) -> Image.Image:
    """An upright RGB image from a path or bytes, or `ImageLoadError` with a short `.reason`."""
    return load_image_info(source, draft_side=draft_side, draft_long_side=draft_long_side,
                           max_pixels=max_pixels, max_decode_bytes=max_decode_bytes).image
