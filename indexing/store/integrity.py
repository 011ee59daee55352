"""Checksums, and reading a version's files so that what is used is exactly what was verified.

Every file of a version is listed in its manifest with its size and sha256; `check_file`
compares one with its entry, hashing through `storage.objects.hash_stream` (the one
hash-while-streaming loop of the repository). A damaged file is `IndexCorrupt`, one line
naming the file and what is wrong.

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
from typing import BinaryIO, Protocol

from storage.objects import hash_stream

CHUNK = 16 << 20  # large reads: hashlib releases the GIL on them
_PROC_FD = Path("/proc/self/fd")


class IndexCorrupt(RuntimeError):
    """A version cannot be trusted (missing, half-written, checksum mismatch); never serve it.

    The message is one line naming the file and what is wrong with it.
    """


class Recorded(Protocol):
    """What a manifest records of its files (`indexing.store.layout.Manifest`): sha256 and size by name."""

    @property
    def sha256(self) -> dict[str, str]: ...

    @property
    def sizes(self) -> dict[str, int]: ...


def sha256_file(path: Path, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file, read in large chunks."""
    with open(path, "rb", buffering=0) as fh:
        return hash_stream(fh, chunk=chunk)[0]


def read_bytes(path: Path) -> bytes:
    """A store file's bytes, or IndexCorrupt naming the file and why it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise IndexCorrupt(f"{path}: missing") from None
    except OSError as exc:
        raise IndexCorrupt(f"{path}: unreadable ({exc.strerror or exc})") from None


def check_file(path: Path, sha256: str, size: int | None, *, checksums: bool = True) -> None:
    """One file against its manifest entry: present, the recorded size, the recorded sha256."""
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        raise IndexCorrupt(f"{path}: missing") from None
    except OSError as exc:
        raise IndexCorrupt(f"{path}: unreadable ({exc.strerror or exc})") from None
    if size is not None and actual != size:
        raise IndexCorrupt(f"{path}: is {actual} bytes, the manifest says {size} (truncated or overwritten)")
    if checksums:
        try:
            digest = sha256_file(path)
        except OSError as exc:
            raise IndexCorrupt(f"{path}: unreadable ({exc.strerror or exc})") from None
        if digest != sha256:
            raise IndexCorrupt(f"{path}: checksum mismatch (file changed or corrupt)")


def read_verified(path: Path, manifest: Recorded) -> bytes:
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


FileIdentity = tuple[int, int, int, int]


def file_identity(st: os.stat_result) -> FileIdentity:
    """Which file, in which state: device, inode, size, modification time. Equal for the hard links of one
    file (a merge shares its parent's base that way) until someone writes to it."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class PrivateCopy:
    """A verified copy of one segment in a nameless temp file: nobody else can truncate what we map."""

    def __init__(self, source: Path, manifest: Recorded, tmp_dir: Path | None) -> None:
        self.source = source
        self.sha256 = manifest.sha256[source.name]
        self.size = manifest.sizes.get(source.name)
        self.fh: BinaryIO = _temp_file(tmp_dir)
        self.origin: FileIdentity | None = None
        try:
            with open(source, "rb", buffering=0) as src:
                self.origin = file_identity(os.fstat(src.fileno()))
                digest, written = hash_stream(src, self.fh, CHUNK)
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
        if digest != self.sha256:
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
        digest, _ = hash_stream(_Positional(self.fh.fileno()), chunk=CHUNK)
        if digest != self.sha256:
            return f"the served copy of {self.source} no longer matches its checksum (memory or disk fault)"
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()


class _Positional:
    """A descriptor read from its start by pread, so the offset of the file object it belongs to never moves."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.offset = 0

    def read(self, size: int) -> bytes:
        block = os.pread(self.fd, size, self.offset)
        self.offset += len(block)
        return block


def _temp_file(tmp_dir: Path | None) -> BinaryIO:
    if tmp_dir is not None:
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            return tempfile.TemporaryFile(dir=tmp_dir)  # O_TMPFILE: never has a name
        except OSError:
            pass
    return tempfile.TemporaryFile()
