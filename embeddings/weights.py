"""Download the Places365 checkpoint and verify its sha256 before it can be used.

The file is streamed to a temporary name beside the destination, hashed on
the way, and renamed into place only when the hash matches: a partial or
tampered download never sits at MODEL_WEIGHTS.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from embeddings.places365 import SHA256, URL

CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """The download failed or its hash does not match; nothing was written at the destination."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    dest: Path,
    *,
    url: str = URL,
    sha256: str = SHA256,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Fetch `url` to `dest` if `dest` is not already the verified file; returns dest.

    A mismatching hash is refused (WeightsError) and the temp file removed.
    """
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    done = 0
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    total = resp.headers.get("Content-Length")
                    total_int = int(total) if total and total.isdigit() else None
                    while chunk := resp.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total_int)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise WeightsError(f"cannot download {url}: {reason}") from None
        got = digest.hexdigest()
        if got != sha256:
            raise WeightsError(
                f"refusing {url}: sha256 {got} does not match the expected {sha256} ({done} bytes received)"
            )
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)
