"""Reading a version's files so that what is used is exactly what was verified.

A FAISS file that is memory-mapped and then truncated on disk kills the process
with SIGBUS, and a file hashed and then read may have changed in between. So:
small files are read once and hashed from the very bytes that get parsed
(`read_verified`); segments are streamed once into a private, nameless temp file
(O_TMPFILE, no path anyone could truncate) while hashed, and only that private
copy is mapped (`PrivateCopy`). `PrivateCopy.intact()` re-hashes it later.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from indexing.store import IndexCorrupt, Manifest, read_bytes

_CHUNK = 16 << 20
_PROC_FD = Path("/proc/self/fd")


def read_verified(path: Path, manifest: Manifest) -> bytes:
    """A small file's bytes, checked against the manifest (the very bytes that will be parsed).

    Sidecar files of a version (listed in the manifest by the build) are read this way.
    """
    fname = path.name
    data = read_bytes(path)
    size = manifest.sizes.get(fname)
    if size is not None and len(data) != size:
        raise IndexCorrupt(f"{path}: is {len(data)} bytes, the manifest says {size} (truncated or overwritten)")
    if hashlib.sha256(data).hexdigest() != manifest.sha256[fname]:
        raise IndexCorrupt(f"{path}: checksum mismatch (file changed or corrupt)")
    return data


class PrivateCopy:
    """A verified copy of one segment in a nameless temp file: nobody else can truncate what we map."""

    def __init__(self, source: Path, manifest: Manifest, tmp_dir: Path | None) -> None:
        self.source = source
        self.sha256 = manifest.sha256[source.name]
        self.size = manifest.sizes.get(source.name)
        self.fh: BinaryIO = _temp_file(tmp_dir)
        digest = hashlib.sha256()
        written = 0
        try:
            with open(source, "rb", buffering=0) as src:
                while True:
                    block = src.read(_CHUNK)
                    if not block:
                        break
                    digest.update(block)
                    self.fh.write(block)
                    written += len(block)
            self.fh.flush()
        except FileNotFoundError:
            self.close()
            raise IndexCorrupt(f"{source}: missing") from None
        except OSError as exc:
            self.close()
            raise IndexCorrupt(f"{source}: unreadable or no room for a private copy ({exc.strerror or exc})") from None
        if self.size is not None and written != self.size:
            self.close()
            raise IndexCorrupt(f"{source}: is {written} bytes, the manifest says {self.size} "
                               "(truncated or overwritten)")
        if digest.hexdigest() != self.sha256:
            self.close()
            raise IndexCorrupt(f"{source}: checksum mismatch (file changed or corrupt)")

    @property
    def mappable(self) -> bool:
        """Whether the private copy can be opened by name (Linux /proc); elsewhere the source is read."""
        return _PROC_FD.is_dir()

    @property
    def path(self) -> str:
        """A path to the private copy for libraries that open by name (FAISS, numpy)."""
        return str(_PROC_FD / str(self.fh.fileno())) if self.mappable else str(self.source)

    def intact(self) -> str | None:
        """Re-hash the private copy (what is actually served); None when it still matches."""
        digest = hashlib.sha256()
        fd, offset = self.fh.fileno(), 0
        while True:
            block = os.pread(fd, _CHUNK, offset)
            if not block:
                break
            digest.update(block)
            offset += len(block)
        if digest.hexdigest() != self.sha256:
            return f"the served copy of {self.source} no longer matches its checksum (memory or disk fault)"
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()


def _temp_file(tmp_dir: Path | None) -> BinaryIO:
    if tmp_dir is not None:
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            return tempfile.TemporaryFile(dir=tmp_dir)  # O_TMPFILE: never has a name
        except OSError:
            pass
    return tempfile.TemporaryFile()
