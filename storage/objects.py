"""The few file operations the pipeline does on a Location, the same for a folder and an object store.

Writes are whole or absent: a local file is written under a temp name and renamed; an object is
one PUT (or a multipart upload, which appears only when completed). Reads that matter are
verified: `get_file` hashes while it streams and renames into place only what matches.
Errors: FileNotFoundError for a missing object, StorageUnavailable (one line, no credentials)
when the store does not answer, so callers can keep serving what they have and retry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from storage.filesystems import describe, filesystem
from storage.location import Location

if TYPE_CHECKING:
    from core.settings import Settings

CHUNK = 8 << 20


class StorageUnavailable(RuntimeError):
    """The object store did not answer or refused (network, timeout, credentials); the message is one line."""


class ChecksumMismatch(RuntimeError):
    """What was read is not what the manifest says (size or sha256); nothing was put in place."""


@dataclass(frozen=True)
class ObjectInfo:
    """One file of a listing: its name relative to the listed folder, size, modification time, entity tag."""

    name: str
    size: int
    mtime: float
    etag: str | None = None


@contextmanager
def translated(location: Location, settings: Settings, what: str) -> Iterator[None]:
    """Turn a filesystem's failures into FileNotFoundError (missing) or StorageUnavailable (one line)."""
    try:
        yield
    except (FileNotFoundError, ChecksumMismatch, IsADirectoryError, NotADirectoryError):
        raise
    except StorageUnavailable:
        raise
    except Exception as exc:
        if location.is_local and isinstance(exc, OSError):
            raise
        detail = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise StorageUnavailable(f"{what} on {describe(location, settings)} failed: {type(exc).__name__}"
                                 f"{': ' + detail if detail else ''}") from None


class Readable(Protocol):
    """What `hash_stream` reads from: a file, an object store's stream, or anything with `read(size)`."""

    def read(self, size: int, /) -> bytes: ...


def hash_stream(src: Readable, dst: IO[bytes] | None = None, chunk: int = CHUNK) -> tuple[str, int]:
    """sha256 and size of what `src` yields, copied to `dst` on the way: the one hash-while-streaming loop
    (downloads, uploads proven, the index store's checksums, backup copies, private copies)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        block = src.read(chunk)
        if not block:
            return digest.hexdigest(), size
        digest.update(block)
        size += len(block)
        if dst is not None:
            dst.write(block)


def _fsync_and_rename(tmp: Path, dest: Path) -> None:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, dest)


def _write_local(dest: Path, fill: Callable[[IO[bytes]], object]) -> None:
    """Write a local file under a temp name in its folder, fsync, rename: whole or absent."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as out:
            fill(out)
        _fsync_and_rename(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def put_file(settings: Settings, location: Location, rel: str, local: Path) -> None:
    """Place the local file `local` at `rel` under `location`, whole or not at all."""
    if location.is_local:
        with open(local, "rb") as src:
            _write_local(location.path / rel, lambda out: shutil.copyfileobj(src, out, CHUNK))
        return
    fs = filesystem(location, settings)
    with translated(location, settings, f"upload of {rel}"):
        fs.put_file(str(local), location.key(rel))


def put_bytes(settings: Settings, location: Location, rel: str, data: bytes) -> None:
    """Small objects (a pointer, a manifest): one write, whole or absent."""
    if location.is_local:
        _write_local(location.path / rel, lambda out: out.write(data))
        return
    fs = filesystem(location, settings)
    with translated(location, settings, f"upload of {rel}"):
        fs.pipe_file(location.key(rel), data)


def get_file(settings: Settings, location: Location, rel: str, dest: Path, *, size: int | None = None,
             sha256: str | None = None) -> tuple[str, int]:
    """Download `rel` to `dest` through a temp file, hashing on the way; (sha256, size).

    With `size`/`sha256` given, a mismatch raises ChecksumMismatch and leaves `dest` untouched, so a
    damaged or replaced object never takes the place of a good local copy.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with translated(location, settings, f"download of {rel}"), open_read(settings, location, rel) as src, \
                open(tmp, "wb") as out:
            got_sha, got_size = hash_stream(src, out)
        if size is not None and got_size != size:
            raise ChecksumMismatch(f"{location.url}/{rel}: is {got_size} bytes, expected {size}")
        if sha256 is not None and got_sha != sha256:
            raise ChecksumMismatch(f"{location.url}/{rel}: checksum mismatch")
        _fsync_and_rename(tmp, dest)
        return got_sha, got_size
    finally:
        tmp.unlink(missing_ok=True)


def checksum(settings: Settings, location: Location, rel: str) -> tuple[str, int]:
    """sha256 and size of the stored object, read back in full (how an upload is proven)."""
    with translated(location, settings, f"read of {rel}"), open_read(settings, location, rel) as src:
        return hash_stream(src)


@contextmanager
def open_read(settings: Settings, location: Location, rel: str) -> Iterator[IO[bytes]]:
    if location.is_local:
        with open(location.path / rel, "rb") as fh:
            yield fh
        return
    fs = filesystem(location, settings)
    with fs.open(location.key(rel), "rb", block_size=CHUNK, cache_type="none") as fh:
        yield fh


def read_bytes(settings: Settings, location: Location, rel: str) -> bytes:
    if location.is_local:
        return (location.path / rel).read_bytes()
    fs = filesystem(location, settings)
    with translated(location, settings, f"read of {rel}"):
        return fs.cat_file(location.key(rel))


def info(settings: Settings, location: Location, rel: str) -> ObjectInfo | None:
    """The object's size and time, None when there is none (a folder is not an object)."""
    if location.is_local:
        try:
            st = (location.path / rel).stat()
        except FileNotFoundError:
            return None
        if not (location.path / rel).is_file():
            return None
        return ObjectInfo(Path(rel).name, st.st_size, st.st_mtime)
    fs = filesystem(location, settings)
    with translated(location, settings, f"lookup of {rel}"):
        try:
            got = fs.info(location.key(rel))
        except FileNotFoundError:
            return None
    if got.get("type") != "file":
        return None
    return _object_info(got)


def _object_info(entry: dict[str, Any]) -> ObjectInfo:
    modified = entry.get("LastModified") or entry.get("mtime") or entry.get("created") or 0
    mtime = modified.timestamp() if isinstance(modified, datetime) else float(modified or 0)
    etag = entry.get("ETag") or entry.get("etag")
    return ObjectInfo(entry["name"].rstrip("/").rsplit("/", 1)[-1], int(entry.get("size") or 0), mtime,
                      str(etag).strip('"') if etag else None)


def list_files(settings: Settings, location: Location, rel: str = "") -> list[ObjectInfo]:
    """The files directly under `rel` (no sub-folders), by name; [] when the folder does not exist."""
    if location.is_local:
        folder = location.path / rel
        if not folder.is_dir():
            return []
        return sorted((ObjectInfo(p.name, p.stat().st_size, p.stat().st_mtime) for p in folder.iterdir()
                       if p.is_file()), key=lambda o: o.name)
    return sorted((_object_info(e) for e in _entries(settings, location, rel) if e.get("type") == "file"),
                  key=lambda o: o.name)


def list_folders(settings: Settings, location: Location, rel: str = "") -> list[str]:
    """Names of the folders (common prefixes) directly under `rel`."""
    if location.is_local:
        folder = location.path / rel
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in _entries(settings, location, rel)
                  if e.get("type") == "directory")


def _entries(settings: Settings, location: Location, rel: str) -> list[dict[str, Any]]:
    """The remote store's listing of `rel` (files and folders, fsspec's detail dicts, read afresh); [] when absent."""
    fs = filesystem(location, settings)
    with translated(location, settings, f"listing of {rel or '/'}"):
        try:
            return list(fs.ls(location.key(rel), detail=True, refresh=True))
        except FileNotFoundError:
            return []


def delete(settings: Settings, location: Location, rel: str, *, recursive: bool = False) -> None:
    """Remove `rel` (a file, or with `recursive` a whole folder); a missing one is not an error."""
    if location.is_local:
        target = location.path / rel
        if target.is_dir() and recursive:
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)
        return
    fs = filesystem(location, settings)
    with translated(location, settings, f"delete of {rel}"), suppress(FileNotFoundError):
        fs.rm(location.key(rel), recursive=recursive)
