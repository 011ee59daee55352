"""The image files `images.file_path` names, under IMAGE_ROOT: a local folder or an object-store prefix.

Every reader of image files (the embedding runner, the server's POST /add_image) goes through
`ImageFiles`, so both kinds of IMAGE_ROOT refuse the same hostile paths and fail a bad file with the
same short reasons (`embeddings.loading`: missing, not a file, too large, outside image root, invalid
path, ...). A local root is exactly `resolve_image_path` + `read_file`, as before.

For an object store, `images.file_path` becomes a key under the prefix by the local rules (a leading
`/` means from the root; `..` may not climb above it), plus what only a URL can smuggle: percent
escapes of `.`, `/`, `\\`, NUL or `%` itself, backslashes, and keys over S3's 1,024 bytes are refused
(`invalid path`); a full URL is accepted only inside IMAGE_ROOT (`outside image root` otherwise).
On S3 a read is ONE ranged GET capped at MAX_FILE_BYTES + 1 bytes (one round trip per photo, not a
lookup and a GET): its Content-Range gives the object's whole size before the body is read, so a huge
object is `too large` without downloading it; a GET serves one version of an object whole, so a file
replaced meanwhile yields the old or the new bytes, never a mix. Only a failed GET looks the key up
(`missing` or `not a file`); other stores look the size up first. The bytes are checked against the
ETag of the version served when that is their MD5 (a single-part, not KMS/SSE-C-encrypted object):
a server that tears a read anyway (a gateway over a folder whose file is replaced mid-read, as
`rclone serve s3` is) or a damaged transfer is read again. A store whose ETags are never MD5s is
noticed (the same bytes twice under one ETag) and then read unverified.

A store that does not answer (or refuses our credentials) is not the image's fault: `StorageUnavailable`
is raised, never a reason, so the Airflow task fails and its retry embeds the images.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from embeddings.loading import (
    _NAME_MAX,
    _PATH_MAX,
    INVALID_PATH,
    MAX_FILE_BYTES,
    MISSING,
    NOT_A_FILE,
    OUTSIDE_ROOT,
    TOO_LARGE,
    ImageLoadError,
    read_file,
    resolve_image_path,
)
from storage.filesystems import filesystem
from storage.location import Location
from storage.objects import StorageUnavailable, translated

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

    from core.settings import Settings

__all__ = ["KEY_MAX_BYTES", "ImageFiles", "StorageUnavailable"]

# S3's limit on a key (the prefix included), in UTF-8 bytes.
KEY_MAX_BYTES = 1024
# Percent escapes that would become '.', '/', '\', NUL or another escape ('%25') if anything decoded the key.
_ESCAPE = re.compile(r"%(?:2e|2f|5c|00|25)", re.IGNORECASE)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
# Attempts at one read when the object changes under it (a replacement by an empty object answers 416, a
# torn read does not match its ETag) or a GET is cut short.
_READ_ATTEMPTS = 4
# How much an open() handle fetches at a time (enough for an image header in one request).
_OPEN_BLOCK = 256 << 10

T = TypeVar("T")
log = logging.getLogger(__name__)


class ImageFiles:
    """`images.file_path` -> the file's key, bytes or existence, under the settings' IMAGE_ROOT."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.location: Location = settings.image_location
        self._root: Path | None = settings.resolved_image_root if self.location.is_local else None
        # Whether the store's plain ETags are the MD5 of the bytes: learnt from the first reads (True once one
        # matched; then a mismatch is always a torn or changed read, read again).
        self._etags_are_md5: bool | None = None

    @property
    def is_local(self) -> bool:
        return self._root is not None

    # --- where ----------------------------------------------------------------------------------------

    def key(self, file_path: str | os.PathLike[str]) -> str:
        """The file's path (local root) or its `bucket/prefix/...` key (object store); ImageLoadError
        (`invalid path`, `outside image root`) for a path that is not a file name under the root."""
        if self._root is not None:
            return str(resolve_image_path(self._root, file_path))
        return self.location.key(self._relative(file_path))

    def _relative(self, file_path: str | os.PathLike[str]) -> str:
        """The key under the prefix ('' for the root itself), by the rules of `resolve_image_path`."""
        text = os.fspath(file_path)
        if not text or "\x00" in text:
            raise ImageLoadError(INVALID_PATH, repr(text[:80]))
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError:
            raise ImageLoadError(INVALID_PATH, "not encodable as a file name") from None
        if len(encoded) > _PATH_MAX or any(len(part) > _NAME_MAX for part in encoded.split(b"/")):
            raise ImageLoadError(INVALID_PATH, f"name too long (at most {_NAME_MAX} bytes a part, {_PATH_MAX} in all)")
        if "\\" in text:
            raise ImageLoadError(INVALID_PATH, "backslash in an object key")
        if _ESCAPE.search(text):
            raise ImageLoadError(INVALID_PATH, "percent-encoded '.', '/', '\\', NUL or '%' in an object key")
        url = _URL.match(text)
        if url is not None:
            text = self._inside_root(text, url.group(1).lower(), url.group(2))
        parts: list[str] = []
        for part in text.split("/"):  # a leading '/' means from the root
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    raise ImageLoadError(OUTSIDE_ROOT, os.fspath(file_path))
                parts.pop()
            else:
                parts.append(part)
        rel = "/".join(parts)
        if len(self.location.key(rel).split("/", 1)[-1].encode("utf-8")) > KEY_MAX_BYTES:
            raise ImageLoadError(INVALID_PATH, f"object key too long (at most {KEY_MAX_BYTES} bytes with the prefix)")
        return rel

    def _inside_root(self, text: str, protocol: str, rest: str) -> str:
        """A full URL in file_path: its part under IMAGE_ROOT (the way an absolute local path inside the root
        is accepted), else `outside image root` (another bucket, prefix or scheme)."""
        root = self.location.root.rstrip("/") + "/"
        if protocol == self.location.protocol and rest.startswith(root):
            return rest[len(root):]  # its '..' parts are judged like any other path's
        raise ImageLoadError(OUTSIDE_ROOT, text)

    # --- what -----------------------------------------------------------------------------------------

    def read(self, file_path: str | os.PathLike[str]) -> bytes:
        """The file's bytes, at most MAX_FILE_BYTES; ImageLoadError with the local reasons, StorageUnavailable
        when the store does not answer."""
        if self._root is not None:
            return read_file(resolve_image_path(self._root, file_path))
        rel = self._relative(file_path)
        shown = os.fspath(file_path)[:200]
        if not rel:
            raise ImageLoadError(NOT_A_FILE, shown)
        key = self.location.key(rel)
        fs = self._fs()
        one_request = hasattr(fs, "_call_s3")
        seen: tuple[str, str] | None = None
        for attempt in range(1, _READ_ATTEMPTS + 1):
            if not one_request:  # no size in a GET's answer here: look it up first
                size = self._file_size(fs, key, rel, shown)
                if size > MAX_FILE_BYTES:
                    raise ImageLoadError(TOO_LARGE, f"{size} bytes (limit {MAX_FILE_BYTES})")
                if size == 0:  # nothing to fetch (and a range of an empty object is unsatisfiable)
                    return b""
            try:
                data, etag, digest, total = self._call(f"read of {rel}", lambda: _get(fs, key, MAX_FILE_BYTES + 1))
            except _Changed:
                if one_request:
                    return b""  # 416 to bytes=0-N: the object is empty
                continue  # replaced by an empty object since its size was read: look again
            except FileNotFoundError:
                if one_request:  # missing, or a prefix with objects under it: the lookup says which
                    self._file_size(fs, key, rel, shown)
                    continue  # created since the GET: read it
                raise ImageLoadError(MISSING, shown) from None
            except StorageUnavailable:
                if attempt == _READ_ATTEMPTS:
                    raise
                continue  # a GET cut short; the next attempt tells whether the store is still there
            if total > MAX_FILE_BYTES or len(data) > MAX_FILE_BYTES:  # (or replaced by a bigger one)
                raise ImageLoadError(TOO_LARGE, f"{total} bytes (limit {MAX_FILE_BYTES})")
            if digest is None or self._etags_are_md5 is False:
                return data  # an ETag that is no MD5 (encrypted, multipart, or this store's own kind)
            if digest == etag:
                self._etags_are_md5 = True
                return data  # the served version, whole
            if self._etags_are_md5 is None and seen == (etag, digest):
                # The same bytes twice under one ETag, and no ETag here has ever matched its bytes.
                log.warning("%s: this store's ETags are not MD5s of the objects; reads are not verified",
                            self.location.url)
                self._etags_are_md5 = False
                return data
            seen = (etag, digest)
            log.info("read of %s: the bytes do not match the ETag of the version served; reading again", rel)
        raise StorageUnavailable(f"read of {rel} on {self.location.url}: the object kept changing while it was read")

    def exists(self, file_path: str | os.PathLike[str]) -> bool:
        """A file (not a folder) is there. ImageLoadError for a path refused by the rules; StorageUnavailable."""
        if self._root is not None:
            return resolve_image_path(self._root, file_path).is_file()
        rel = self._relative(file_path)
        if not rel:
            return False
        try:
            self._file_size(self._fs(), self.location.key(rel), rel, rel)
        except ImageLoadError:
            return False
        return True

    @contextmanager
    def open(self, file_path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
        """A seekable binary handle on the file, read on demand (an object store: ranged reads of the version
        opened); for headers and facts, not for the bytes that are embedded (use `read`)."""
        if self._root is not None:
            path = resolve_image_path(self._root, file_path)
            if path.is_dir():
                raise ImageLoadError(NOT_A_FILE, os.fspath(file_path)[:200])
            try:
                fh = open(path, "rb")  # noqa: SIM115 (closed below)
            except FileNotFoundError:
                raise ImageLoadError(MISSING, os.fspath(file_path)[:200]) from None
            with fh:
                yield fh
            return
        rel = self._relative(file_path)
        shown = os.fspath(file_path)[:200]
        if not rel:
            raise ImageLoadError(NOT_A_FILE, shown)
        fs = self._fs()
        key = self.location.key(rel)
        self._file_size(fs, key, rel, shown)
        try:
            handle = self._call(f"open of {rel}", lambda: fs.open(key, "rb", block_size=_OPEN_BLOCK,
                                                                   cache_type="readahead"))
        except FileNotFoundError:  # _Changed too: gone or replaced since the lookup
            raise ImageLoadError(MISSING, shown) from None
        with handle:
            yield handle

    # --- object store -------------------------------------------------------------------------------

    def _fs(self) -> AbstractFileSystem:
        return filesystem(self.location, self.settings)

    def _file_size(self, fs: AbstractFileSystem, key: str, rel: str, shown: str) -> int:
        """The object's size; `missing` / `not a file` (a prefix with objects under it) as ImageLoadError."""
        try:
            got = self._call(f"lookup of {rel}", lambda: fs.info(key))
        except _Changed:
            raise StorageUnavailable(f"lookup of {rel} on {self.location.url}: precondition failed") from None
        except FileNotFoundError:
            raise ImageLoadError(MISSING, shown) from None
        if got.get("type") != "file":
            raise ImageLoadError(NOT_A_FILE, shown)
        return int(got.get("size") or 0)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """`fn()` with the store's failures as FileNotFoundError, _Changed (416/412: the object changed under
        the request), ImageLoadError `too large` (out of memory) or StorageUnavailable (one line, no
        credentials)."""
        with translated(self.location, self.settings, what):
            try:
                return fn()
            except MemoryError:
                pass  # raised below: translated() would make any other exception an outage
            except OSError as exc:
                if exc.errno == errno.EINVAL and not isinstance(exc, FileNotFoundError):
                    raise _Changed(str(exc)) from None
                raise
        raise ImageLoadError(TOO_LARGE, "out of memory while reading")


class _Changed(FileNotFoundError):
    """The object answered 416/412: it changed between the size lookup and the read (internal)."""


_MD5 = re.compile(r"[0-9a-f]{32}")


def _get(fs: AbstractFileSystem, key: str, limit: int) -> tuple[bytes, str, str | None, int]:
    """One GET of at most `limit` bytes: (bytes, the served version's ETag, the bytes' MD5 when that ETag
    should equal it, the object's whole size). S3 serves one version whole per GET; the MD5 also catches a
    server that does not (a gateway over a folder whose file is replaced mid-read) and a transfer gone
    wrong. An object of `limit` bytes or more is not read: its size comes with the answer's headers."""
    call = getattr(fs, "_call_s3", None)
    if call is None:  # another object store: its one ranged read, unverified
        data = bytes(fs.cat_file(key, start=0, end=limit))
        return data, "", None, len(data)
    from fsspec.asyn import sync

    bucket, name, _ = fs.split_path(key)

    async def get() -> tuple[bytes, dict[str, Any], int]:
        resp = await call("get_object", Bucket=bucket, Key=name, Range=f"bytes=0-{limit - 1}")
        try:
            total = _whole_size(resp)
            return (b"" if total >= limit else await resp["Body"].read()), resp, total
        finally:
            resp["Body"].close()

    data, resp, total = sync(fs.loop, get)
    etag = str(resp.get("ETag") or "").strip('"').lower()
    encrypted = resp.get("SSECustomerAlgorithm") or str(resp.get("ServerSideEncryption") or "").startswith("aws:kms")
    if encrypted or not _MD5.fullmatch(etag) or total >= limit:  # SSE-KMS/SSE-C and multipart ETags: no MD5
        return data, etag, None, total
    return data, etag, hashlib.md5(data, usedforsecurity=False).hexdigest(), total


def _whole_size(resp: dict[str, Any]) -> int:
    """The object's size from a ranged GET's answer: Content-Range `bytes 0-N/TOTAL`, else (a server that
    ignored the range and sent it all) Content-Length."""
    whole = str(resp.get("ContentRange") or "").rpartition("/")[2]
    return int(whole) if whole.isdigit() else int(resp.get("ContentLength") or 0)
