"""What verification needs of one image, computed once (by the pipeline, or for an upload).

A fingerprint holds:
- the sha256 of the file bytes (a re-upload of the same file is decided without pixels);
- a small grayscale thumbnail (`THUMB_SIDE` px on the long side), onto which a
  candidate is warped to compare the aligned pixels, and its colour (Cb, Cr at half
  that size): a figure as bright as its background but of another colour moves
  unseen in grey (rules v10);
- ORB keypoints and binary descriptors of the image (capped at `MAX_KEYPOINTS`,
  strongest first) and of its mirror image, so a flipped copy matches too
  (ORB is rotation-invariant, not mirror-invariant).
Everything is in a compact binary form (`to_bytes`, about 50 KB per image) so it
can be stored beside the vectors and read back without the image file. The previous
format (`orb2`, no colour) still reads: its images are judged in grey alone.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from duplicates import opencv

# orb2: keypoint positions at pixel-centre accuracy (ORB's coarse pyramid levels corrected) and stored
# as 1/64-px fixed point (orb1's float16 rounded positions past 256 px to 0.25 px).
# orb3: orb2 plus the thumbnail's colour (Cb, Cr planes at half its size).
FINGERPRINT_VERSION = "orb3"
GREY_VERSION = "orb2"  # the format before colour: still read (chroma None) and written for a grey-only fingerprint
READABLE_VERSIONS = (GREY_VERSION, FINGERPRINT_VERSION)

# Long side of the image the keypoints are detected on. 480 px keeps a 40% crop
# (about 300 px) rich in corners while a detection stays a few milliseconds.
FEATURE_SIDE = 480
# Small images are upscaled to this before detection: a 96-px thumbnail has too
# few FAST corners at its own size.
MIN_FEATURE_SIDE = 320
MAX_KEYPOINTS = 300
ORB_SCALE = 1.3  # between ORB pyramid levels
ORB_EDGE = 19  # px: ORB's border (edgeThreshold) and patch size
XY_UNIT = 64  # stored keypoint positions: uint16 in 1/64 px (feature images are at most 480 px)
# Long side of the stored grayscale thumbnail used for the pixel agreement.
THUMB_SIDE = 160
CHROMA_STEP = 2  # the colour planes are stored at 1/CHROMA_STEP of the thumbnail's size (as JPEG's 4:2:0)

_MAGIC = b"DFP1"
_HEADER = struct.Struct("<4s8sIIHHHHHH32s")  # magic, version, w, h, feat w/h, thumb w/h, n, n_mirror, sha256


class FingerprintError(ValueError):
    """Bytes that are not a fingerprint of this version (corrupt, truncated, other format)."""


@dataclass(frozen=True, eq=False)
class Keypoints:
    """Keypoint positions (feature-image pixels, float32 (n, 2)) and ORB descriptors (uint8 (n, 32))."""

    xy: np.ndarray
    desc: np.ndarray

    def __len__(self) -> int:
        return len(self.xy)


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """What verification needs of one image; see the module docstring."""

    sha256: bytes
    width: int  # of the image fingerprinted (upright)
    height: int
    feature_size: tuple[int, int]  # (w, h) of the image keypoints were detected on
    thumb: np.ndarray = field(repr=False)  # uint8 (th, tw) grayscale
    keypoints: Keypoints = field(repr=False)
    mirrored: Keypoints = field(repr=False)  # of the left-right mirror image, mirror coordinates
    # uint8 (2, ch, cw) Cb and Cr of the thumbnail at half its size (_chroma_size); None: grey only (orb2)
    chroma: np.ndarray | None = field(default=None, repr=False)

    def to_bytes(self) -> bytes:
        th, tw = self.thumb.shape
        fw, fh = self.feature_size
        version = FINGERPRINT_VERSION if self.chroma is not None else GREY_VERSION
        head = _HEADER.pack(_MAGIC, version.encode().ljust(8, b"\0"), self.width, self.height,
                            fw, fh, tw, th, len(self.keypoints), len(self.mirrored), self.sha256)
        parts = [head, np.ascontiguousarray(self.thumb, np.uint8).tobytes()]
        if self.chroma is not None:
            parts.append(np.ascontiguousarray(self.chroma, np.uint8).tobytes())
        for kp in (self.keypoints, self.mirrored):
            parts.append(np.round(np.clip(kp.xy, 0, 65535 / XY_UNIT) * XY_UNIT).astype("<u2").tobytes())
            parts.append(np.ascontiguousarray(kp.desc, np.uint8).tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Fingerprint:
        data = bytes(data) if not isinstance(data, bytes) else data
        if len(data) < _HEADER.size:
            raise FingerprintError(f"fingerprint too short ({len(data)} bytes)")
        magic, version, w, h, fw, fh, tw, th, n, m, sha = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise FingerprintError("not a fingerprint (bad magic)")
        name = version.rstrip(b"\0").decode(errors="replace")
        if name not in READABLE_VERSIONS:
            raise FingerprintError(f"fingerprint version {name!r}, expected {FINGERPRINT_VERSION}")
        cw, ch = _chroma_size(tw, th)
        colour = 2 * cw * ch if name == FINGERPRINT_VERSION else 0
        expected = _HEADER.size + tw * th + colour + (n + m) * (4 + 32)
        if len(data) != expected or tw == 0 or th == 0:
            raise FingerprintError(f"fingerprint of {len(data)} bytes, header says {expected}")
        pos = _HEADER.size
        thumb = np.frombuffer(data, np.uint8, tw * th, pos).reshape(th, tw)
        pos += tw * th
        chroma = np.frombuffer(data, np.uint8, colour, pos).reshape(2, ch, cw) if colour else None
        pos += colour
        sets = []
        for count in (n, m):
            xy = np.frombuffer(data, "<u2", count * 2, pos).reshape(count, 2).astype(np.float32) / XY_UNIT
            pos += count * 4
            desc = np.frombuffer(data, np.uint8, count * 32, pos).reshape(count, 32)
            pos += count * 32
            sets.append(Keypoints(xy, desc))
        return cls(sha, w, h, (fw, fh), thumb, sets[0], sets[1], chroma)


def _chroma_size(tw: int, th: int) -> tuple[int, int]:
    """(w, h) of the colour planes of a (tw x th) thumbnail."""
    return max(1, round(tw / CHROMA_STEP)), max(1, round(th / CHROMA_STEP))


def chroma_planes(fp: Fingerprint) -> np.ndarray | None:
    """float32 (2, th, tw) Cb and Cr on the thumbnail's grid (upsampled from storage), or None (grey only)."""
    cv2 = opencv.cv2()

    if fp.chroma is None:
        return None
    th, tw = fp.thumb.shape
    return np.stack([cv2.resize(p.astype(np.float32), (tw, th), interpolation=cv2.INTER_LINEAR) for p in fp.chroma])


def resize_long(gray: np.ndarray, side: int) -> np.ndarray:
    """`gray` resized to `side` px on its long side (area-averaged when shrinking)."""
    cv2 = opencv.cv2()

    h, w = gray.shape
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(gray, size, interpolation=interp)


_ORB = None


def _orb():  # type: ignore[no-untyped-def]
    global _ORB
    if _ORB is None:
        cv2 = opencv.cv2()

        _ORB = cv2.ORB_create(nfeatures=MAX_KEYPOINTS, scaleFactor=ORB_SCALE, nlevels=6,
                              edgeThreshold=ORB_EDGE, patchSize=ORB_EDGE, fastThreshold=8)
    return _ORB


def detect(gray: np.ndarray) -> Keypoints:
    """ORB keypoints of a grayscale image, strongest first, at most MAX_KEYPOINTS.

    ORB reports a keypoint found at pixel p of pyramid level L (scale s = 1.3^L) at
    p * s; that pixel's centre lies at (p + 0.5) * s - 0.5. The half-pixel-times-s
    offset is the same for a copy in the same orientation, but a turned copy's offset
    points another way, which bent the residuals of 90-degree turns like a slight
    change of perspective: the verification now tests for exactly that.
    """
    # ORB finds nothing within ORB_EDGE px of the border, and its pyramid fails on a 1-px-wide strip.
    kps, desc = _orb().detectAndCompute(gray, None) if min(gray.shape) > 2 * ORB_EDGE else ((), None)
    if desc is None or not kps:
        return Keypoints(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
    order = np.argsort([-k.response for k in kps])[:MAX_KEYPOINTS]
    xy = np.array([kps[i].pt for i in order], np.float32).reshape(-1, 2)
    scale = np.array([ORB_SCALE ** kps[i].octave for i in order], np.float32)
    xy += (0.5 * (scale - 1.0))[:, None]
    return Keypoints(xy, np.ascontiguousarray(desc[order]))


def to_gray(image: Image.Image) -> np.ndarray:
    """Luma of an RGB image as uint8 (grayscale so colour filters and B/W copies compare alike)."""
    return np.asarray(image.convert("L"), dtype=np.uint8)


def fingerprint(image: Image.Image, raw: bytes | None = None) -> Fingerprint:
    """The fingerprint of an upright RGB image; `raw` = the file bytes (for the sha256), if known.

    Without `raw` the sha256 is of the decoded pixels, so equal pixels still
    short-cut verification.
    """
    if image.width < 1 or image.height < 1:
        raise FingerprintError("empty image")
    opencv.cv2()  # one OpenCV thread in this process (duplicates/opencv.py says why)
    gray = to_gray(image)
    digest = hashlib.sha256(raw if raw is not None else gray.tobytes() + struct.pack("<II", *image.size)).digest()
    long_side = max(gray.shape)
    side = min(FEATURE_SIDE, max(long_side, MIN_FEATURE_SIDE))
    feat = resize_long(gray, side) if side != long_side else gray
    mirror = np.ascontiguousarray(feat[:, ::-1])
    thumb = resize_long(gray, THUMB_SIDE)
    return Fingerprint(digest, image.width, image.height, (feat.shape[1], feat.shape[0]), thumb,
                       detect(feat), detect(mirror), _chroma(image, thumb.shape))


def _chroma(image: Image.Image, thumb_shape: tuple[int, int]) -> np.ndarray:
    """Cb and Cr of `image` at half the thumbnail's size (area-averaged), uint8 (2, ch, cw)."""
    cv2 = opencv.cv2()

    cw, ch = _chroma_size(thumb_shape[1], thumb_shape[0])
    ycc = np.asarray(image.convert("YCbCr"), np.uint8)
    return np.stack([cv2.resize(ycc[..., k], (cw, ch), interpolation=cv2.INTER_AREA) for k in (1, 2)])
