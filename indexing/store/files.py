"""Writing the store's files durably, sealing them, sharing them between versions.

A version's files are written into a temp folder, fsynced (`write_synced`, `fsync_file`),
made read-only (`make_read_only`: segments are immutable once written) and the folder is
renamed into place (`fsync_dir` after). A small file replaced in place (CURRENT) goes through
`write_atomic`. A merge shares its parent's immutable files by hard links (`link_or_copy`).
Reading them so that what is used is what was verified is integrity.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def write_synced(path: Path, data: bytes) -> None:
    """Write a file whole and fsync it (a file of a temp folder that is renamed into place afterwards)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_atomic(path: Path, data: bytes) -> None:
    """Write a small file under a temp name, fsync, then rename over the target."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write_synced(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_file(path: Path) -> None:
    """Flush a file written by somebody else (FAISS, pyarrow, numpy) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_read_only(path: Path) -> None:
    """Segments are immutable once written: drop the write bits (hard links share the mode)."""
    with contextlib.suppress(OSError):
        os.chmod(path, 0o444)


def link_or_copy(src: Path, dst: Path) -> None:
    """Share an immutable, read-only file with the parent version (a hard link), or copy where links are refused."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
