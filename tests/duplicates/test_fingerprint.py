"""Fingerprints: compact, exact round trip, clear errors on garbage."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from duplicates.edits import encode
from duplicates.fingerprint import FINGERPRINT_VERSION, Fingerprint, FingerprintError, fingerprint
from embeddings.loading import load_image


def _equal(a: Fingerprint, b: Fingerprint) -> None:
    assert (a.sha256, a.width, a.height, a.feature_size) == (b.sha256, b.width, b.height, b.feature_size)
    np.testing.assert_array_equal(a.thumb, b.thumb)
    assert (a.chroma is None) == (b.chroma is None)
    if a.chroma is not None:
        np.testing.assert_array_equal(a.chroma, b.chroma)
    for ka, kb in ((a.keypoints, b.keypoints), (a.mirrored, b.mirrored)):
        np.testing.assert_array_equal(ka.desc, kb.desc)
        np.testing.assert_allclose(ka.xy, kb.xy, atol=0.25)  # float16 positions: < 1/4 px at 480 px


def test_round_trip_is_exact_and_compact(synthetic_photos: list[Image.Image]) -> None:
    raw = encode(synthetic_photos[0])
    fp = fingerprint(load_image(raw), raw)
    data = fp.to_bytes()
    assert len(fp.keypoints) > 50 and len(fp.mirrored) > 50
    assert len(data) < 56_000
    _equal(fp, Fingerprint.from_bytes(data))
    _equal(fp, Fingerprint.from_bytes(memoryview(data)))


def test_sha256_is_of_the_file_bytes(synthetic_photos: list[Image.Image]) -> None:
    import hashlib

    raw = encode(synthetic_photos[1])
    assert fingerprint(load_image(raw), raw).sha256 == hashlib.sha256(raw).digest()
    # Without the bytes, equal pixels still give equal digests, other pixels do not.
    img = load_image(raw)
    assert fingerprint(img).sha256 == fingerprint(img.copy()).sha256
    assert fingerprint(img).sha256 != fingerprint(img.rotate(90, expand=True)).sha256


@pytest.mark.parametrize("garbage", [
    b"", b"DFP1", b"not a fingerprint at all" * 10, bytes(range(256)) * 4,
])
def test_garbage_bytes_raise_fingerprint_error(garbage: bytes) -> None:
    with pytest.raises(FingerprintError):
        Fingerprint.from_bytes(garbage)


def test_truncated_extended_and_other_version_raise(synthetic_photos: list[Image.Image]) -> None:
    data = fingerprint(synthetic_photos[2]).to_bytes()
    for bad in (data[:-1], data + b"\0", data[: len(data) // 2]):
        with pytest.raises(FingerprintError):
            Fingerprint.from_bytes(bad)
    other = data[:4] + b"zzz9".ljust(8, b"\0") + data[12:]
    with pytest.raises(FingerprintError, match="version"):
        Fingerprint.from_bytes(other)
    assert FINGERPRINT_VERSION.encode() in data[:12]


def test_colour_is_kept_at_half_the_thumbnail_size() -> None:
    """Cb and Cr planes (a red picture: Cr high, Cb low; grey: both 128) at half the thumbnail's size."""
    red = fingerprint(Image.new("RGB", (640, 480), (200, 30, 30)))
    assert red.chroma is not None and red.chroma.shape == (2, 60, 80) and red.thumb.shape == (120, 160)
    assert red.chroma[1].min() > 200 and red.chroma[0].max() < 110
    grey = fingerprint(Image.new("RGB", (300, 500), (90, 90, 90)))
    assert grey.chroma is not None and np.abs(grey.chroma.astype(int) - 128).max() <= 1


def test_the_previous_grey_only_format_still_reads(synthetic_photos: list[Image.Image]) -> None:
    """orb2 fingerprints (stored before colour was kept) stay verifiable: read back without colour."""
    from dataclasses import replace

    fp = fingerprint(synthetic_photos[3])
    old = replace(fp, chroma=None).to_bytes()
    assert b"orb2" in old[:12] and len(old) == len(fp.to_bytes()) - fp.chroma.size
    back = Fingerprint.from_bytes(old)
    assert back.chroma is None
    _equal(replace(fp, chroma=None), back)


def test_flat_and_tiny_images_still_fingerprint() -> None:
    """No corners at all (a blank slide), 8 px, or a strip 1 px wide: no keypoints, but a usable fingerprint."""
    for img in (Image.new("RGB", (640, 480), (200, 30, 30)), Image.new("RGB", (8, 6), (0, 0, 0)),
                Image.new("RGB", (1, 400), (9, 9, 9)), Image.new("RGB", (400, 1), (9, 9, 9))):
        fp = fingerprint(img)
        assert Fingerprint.from_bytes(fp.to_bytes()).thumb.shape == fp.thumb.shape


def test_first_fingerprint_sets_one_opencv_thread() -> None:
    """A fresh process (a server or worker) gets one OpenCV thread from its first fingerprint."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import cv2; from PIL import Image; from duplicates.fingerprint import fingerprint; "
            "before = cv2.getNumThreads(); fingerprint(Image.new('RGB', (64, 48))); "
            "print(before, cv2.getNumThreads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "2", "PATH": ""}, cwd=Path(__file__).parents[2])
    assert out.stdout.split()[1] == "1", out.stdout
