"""An object-store DATA_DIR: the local index store is this process's mirror of it.

Every host keeps only a cache (`settings.resolved_data_dir` under STORAGE_CACHE_DIR). The code that
builds, verifies and loads versions works on the local store as with a local DATA_DIR; this module
moves whole, verified versions between the two.

In the object store a version is its manifest, `vNNNNNN/manifest.json`; the files it lists are
objects named by their content, `objects/<sha256>`, one per content, shared by every version that
lists it (what hard links are locally: a merge's unchanged base costs no byte and no request). So:
- `push_version` uploads the files the store does not hold yet, reads each back and checks its sha256,
  then the manifest, last (a version without its manifest does not exist for readers).
- `pull_version` downloads a version the manifest's checksums vouch for into a temp folder, renamed
  into place only when every file matched; a damaged local copy is fetched again.
- `delete_version` removes the manifest, then every object no remaining manifest lists
  (`collect_objects`): a pruned version never takes an object a kept one uses. Writers hold the
  store's writer lock (indexing.pipeline.writer_lock), so no upload runs meanwhile.
- `pull_pointer` mirrors the CURRENT object (written only under the publishers' database lock,
  `index_current`); `push_pointer` writes it.
BACKUP_DIR is another store with its own objects: backup copies share among themselves, never with
the live store. Versions uploaded before objects were shared (files under `vNNNNNN/`) still pull.
(The Parquet parts' mirror is embeddings.dataset's: `push_part`, `pull_parts`.)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.settings import Settings
from indexing.store.files import make_read_only
from indexing.store.integrity import IndexCorrupt, sha256_file
from indexing.store.layout import (
    CURRENT_FILE,
    MANIFEST_FILE,
    CurrentPointer,
    IndexStore,
    Manifest,
    backup_store,
    parse_version,
    version_name,
    version_of,
)
from storage import objects
from storage.location import Location

# Versions this process has hashed in full, with the manifest they matched: (local root, version) -> bytes.
_VERIFIED: dict[tuple[str, int], bytes] = {}
_FETCHED: set[tuple[str, int]] = set()


def remote_root(store: IndexStore) -> Location | None:
    """The object-store folder this store mirrors, None for a local store."""
    return store.remote


def remote_versions(store: IndexStore) -> list[int]:
    """Versions whose manifest is in the object store (complete uploads), ascending."""
    remote = store.remote
    if remote is None:
        return store.versions()
    found = []
    for name in objects.list_folders(store.settings, remote):
        version = version_of(name)
        if version is not None and objects.info(store.settings, remote, f"{name}/{MANIFEST_FILE}") is not None:
            found.append(version)
    return sorted(found)


OBJECTS_DIR = "objects"  # the store's files by content: objects/<sha256>
_SHA256_HEX = frozenset("0123456789abcdef")


def object_key(sha256: str) -> str:
    """Where a file with this content is in the store; IndexCorrupt for anything but a sha256 (a manifest
    from the store is input: a digest like '../x' must never become a key)."""
    if len(sha256) != 64 or not set(sha256) <= _SHA256_HEX:
        raise IndexCorrupt(f"not a sha256 digest: {sha256[:80]!r}")
    return f"{OBJECTS_DIR}/{sha256}"


def push_version(store: IndexStore, version: int, *, recheck: bool = False) -> None:
    """Upload a local version: the files the store lacks, each proven by its sha256 after upload (IndexCorrupt
    if not), then the manifest.

    A file whose object is already there with the recorded size (a merge's base, its parent's) is not sent:
    that object was proven when it was uploaded, and a damaged one fails every reader's checksums. With
    `recheck` (a version restored from the backup because the store's copy was damaged; the daily backup)
    such an object is read back too and replaced when it does not match.
    """
    remote = store.remote
    if remote is None:
        return
    manifest = store.read_manifest(version)
    folder = store.version_dir(version)
    stored = {o.name: o.size for o in objects.list_files(store.settings, remote, OBJECTS_DIR)}
    for fname in manifest.files:
        sha, size = manifest.sha256[fname], manifest.sizes.get(fname)
        key = object_key(sha)
        held = sha in stored and (size is None or stored[sha] == size)
        if held and (not recheck or objects.checksum(store.settings, remote, key) == (sha, stored[sha])):
            continue
        objects.put_file(store.settings, remote, key, folder / fname)
        got_sha, got_size = objects.checksum(store.settings, remote, key)
        if got_sha != sha or got_size != (got_size if size is None else size):
            objects.delete(store.settings, remote, key)
            raise IndexCorrupt(f"{remote.url}/{key} ({version_name(version)}/{fname}): differs from what was "
                               "uploaded (sha256 after upload)")
        stored[sha] = got_size
    objects.put_file(store.settings, remote, f"{version_name(version)}/{MANIFEST_FILE}", folder / MANIFEST_FILE)
    # What was just uploaded and proven is this process's verified copy: the next pull of it (verify's, right
    # after the build) checks sizes, as for a version it downloaded; verify's load hashes every file anyway.
    _VERIFIED[(str(store.root), version)] = (folder / MANIFEST_FILE).read_bytes()


def _local_copies(store: IndexStore, manifest: Manifest) -> dict[str, tuple[Path, bool]]:
    """{file: (a local file of another cached version with the same sha256 and size, whether this process
    hashed that version in full)} (a merge's base, in the version a replica serves)."""
    found: dict[str, tuple[Path, bool]] = {}
    wanted = {sha: fname for fname, sha in manifest.sha256.items()}
    for other in store.versions():
        if other == manifest.version:
            continue
        try:
            theirs = store.read_manifest(other)
            hashed = _VERIFIED.get((str(store.root), other)) == (store.version_dir(other) / MANIFEST_FILE).read_bytes()
        except (IndexCorrupt, OSError):
            continue
        for fname, sha in theirs.sha256.items():
            mine = wanted.get(sha)
            if mine and mine not in found and theirs.sizes.get(fname) == manifest.sizes.get(mine):
                found[mine] = (store.version_dir(other) / fname, hashed)
    return found


def pull_version(store: IndexStore, version: int) -> bool:
    """Make the local copy of `version` whole and verified (download what is missing or damaged).

    Returns True when something was downloaded. IndexCorrupt when the object store's copy does not
    match its own manifest; StorageUnavailable when the store does not answer; FileNotFoundError-free:
    a version missing remotely is IndexCorrupt naming it.
    """
    remote = store.remote
    if remote is None:
        return False
    name = version_name(version)
    local = store.version_dir(version)
    try:
        raw = objects.read_bytes(store.settings, remote, f"{name}/{MANIFEST_FILE}")
    except FileNotFoundError:
        raise IndexCorrupt(f"{name} of {store.model_version} is not in {remote.url}") from None
    manifest = Manifest.from_json(raw, Path(f"{remote.url}/{name}/{MANIFEST_FILE}"))
    memo = (str(store.root), version)
    if local.is_dir():
        try:
            if (local / MANIFEST_FILE).read_bytes() == raw:
                # Hashed once per process (then sizes only: a replica polls every few seconds); a load that
                # finds a file damaged calls forget() and the next pull hashes, and fetches, again.
                store.check_files(version, manifest, checksums=_VERIFIED.get(memo) != raw)
                _VERIFIED[memo] = raw
                return False
        except (OSError, IndexCorrupt):
            pass  # damaged or stale: fetched again below
    _VERIFIED.pop(memo, None)
    store.root.mkdir(parents=True, exist_ok=True)
    tmp = store.root / f".tmp-pull-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    reuse = _local_copies(store, manifest)
    try:
        for fname in manifest.files:
            if fname in reuse and _link_cached(*reuse[fname], tmp / fname, manifest.sha256[fname],
                                               manifest.sizes.get(fname)):
                continue  # a segment this cache already holds (a merge shares its parent's base)
            _download(store, remote, manifest, name, fname, tmp / fname)
            make_read_only(tmp / fname)
        (tmp / MANIFEST_FILE).write_bytes(raw)
        if local.is_dir():
            trash = store.root / f".trash-{name}-{uuid.uuid4().hex[:8]}"
            local.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        tmp.rename(local)
        _VERIFIED[memo] = raw
        _FETCHED.add(memo)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def _download(store: IndexStore, remote: Location, manifest: Manifest, name: str, fname: str, dest: Path) -> None:
    """One file of a version from its object (or, uploaded before objects were shared, `vN/<file>`), verified."""
    sha, size = manifest.sha256[fname], manifest.sizes.get(fname)
    keys = (object_key(sha), f"{name}/{fname}")
    for key in keys:
        try:
            objects.get_file(store.settings, remote, key, dest, size=size, sha256=sha)
            return
        except FileNotFoundError:
            continue
        except objects.ChecksumMismatch as exc:
            raise IndexCorrupt(f"{exc} ({name}/{fname})") from None
    raise IndexCorrupt(f"{remote.url}/{keys[0]} ({name}/{fname}): missing")


def _link_cached(src: Path, hashed: bool, dst: Path, sha256: str, size: int | None) -> bool:
    """Hard-link a cached segment into a version being pulled: hashed first, unless this process hashed its
    version in full already (then, as every poll of that version does, its size is checked). Either way the
    loader hashes the private copy it serves; a load that finds damage calls forget(), which makes every
    cached version of the store be hashed again before anything is linked from it."""
    try:
        if hashed:
            if size is not None and src.stat().st_size != size:
                return False
        elif sha256_file(src) != sha256:
            return False
        os.link(src, dst)
        return True
    except OSError:
        return False


def fetched(store: IndexStore, version: int) -> bool:
    """Whether a pull downloaded `version` since the last call (a reader may retry a copy it refused)."""
    memo = (str(store.root), version)
    if memo in _FETCHED:
        _FETCHED.discard(memo)
        return True
    return False


def forget(store: IndexStore, version: int) -> None:
    """A local copy was found damaged (a load refused it): the next pull hashes it again and refetches. Every
    cached version of the store is forgotten with it: they may share the damaged file by a hard link."""
    del version
    root = str(store.root)
    for memo in [m for m in _VERIFIED if m[0] == root]:
        del _VERIFIED[memo]


def pull_pointer(store: IndexStore, *, fetch: bool = False) -> CurrentPointer:
    """Mirror the CURRENT object into the local store (as it is, damage included) and read it.

    With `fetch`, the version it names is pulled first (verified), so the local CURRENT never names a
    version whose files are not yet here; a remote copy that does not verify raises IndexCorrupt after
    CURRENT is mirrored, and that version's BACKUP_DIR copy is pulled into the backup's mirror (the reader
    then falls back to it, or to an older version, and says why). StorageUnavailable changes nothing.
    """
    remote = store.remote
    if remote is None:
        return store.current()
    store.root.mkdir(parents=True, exist_ok=True)
    local = store.root / CURRENT_FILE
    try:
        raw = objects.read_bytes(store.settings, remote, CURRENT_FILE)
    except FileNotFoundError:
        local.unlink(missing_ok=True)
        return store.current()
    problem: IndexCorrupt | None = None
    if fetch:
        try:
            version = parse_version(raw.decode("ascii", "replace"))
        except ValueError:
            version = None
        if version is not None:
            try:
                pull_version(store, version)
            except IndexCorrupt as exc:
                problem = exc
                copies = backup_store(store.settings, store.model_version)
                if copies.remote is not None:  # a local BACKUP_DIR is read where it is
                    with contextlib.suppress(IndexCorrupt):
                        pull_version(copies, version)
    if not local.is_file() or local.read_bytes() != raw:
        tmp = local.with_name(f".{CURRENT_FILE}.{uuid.uuid4().hex[:8]}")
        tmp.write_bytes(raw)
        os.replace(tmp, local)
    if problem is not None:
        raise problem
    return store.current()


def push_pointer(store: IndexStore, version: int | None) -> None:
    """Write (or with None remove) the CURRENT object; the caller holds the publishers' lock."""
    remote = store.remote
    if remote is None:
        return
    if version is None:
        objects.delete(store.settings, remote, CURRENT_FILE)
    else:
        objects.put_bytes(store.settings, remote, CURRENT_FILE, (version_name(version) + "\n").encode())


def delete_version(store: IndexStore, version: int) -> None:
    """Remove a version from the object store: the manifest first, so it stops existing before its files go;
    then the objects no other version lists (`collect_objects`). The caller holds the writer lock."""
    remote = store.remote
    if remote is None:
        return
    name = version_name(version)
    objects.delete(store.settings, remote, f"{name}/{MANIFEST_FILE}")
    objects.delete(store.settings, remote, name, recursive=True)
    collect_objects(store)


def collect_objects(store: IndexStore) -> list[str]:
    """Delete the objects no version's manifest lists (a pruned version's own files, a failed upload's); the
    names deleted. A manifest that cannot be read or parsed might list any object: then nothing is deleted."""
    remote = store.remote
    if remote is None:
        return []
    used: set[str] = set()
    for name in objects.list_folders(store.settings, remote):
        if version_of(name) is None:
            continue
        try:
            raw = objects.read_bytes(store.settings, remote, f"{name}/{MANIFEST_FILE}")
        except FileNotFoundError:
            continue  # no manifest, no version: it lists nothing
        try:
            used |= set(Manifest.from_json(raw, Path(f"{remote.url}/{name}/{MANIFEST_FILE}")).sha256.values())
        except IndexCorrupt:
            return []
    gone = [o.name for o in objects.list_files(store.settings, remote, OBJECTS_DIR) if o.name not in used]
    for obj in gone:
        objects.delete(store.settings, remote, f"{OBJECTS_DIR}/{obj}")
    return gone


def evict(store: IndexStore, keep: set[int]) -> list[int]:
    """Drop local copies of versions not in `keep` (a replica's cache holds what it serves and may fall back to),
    backup copies pulled by `pull_pointer` included."""
    if store.remote is None:
        return []
    dropped = []
    copies = backup_store(store.settings, store.model_version)
    for cache in (store, copies) if copies.remote is not None else (store,):
        for v in cache.versions():
            if v in keep:
                continue
            trash = cache.root / f".trash-{version_name(v)}-{uuid.uuid4().hex[:8]}"
            cache.version_dir(v).rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
            if cache is store:
                dropped.append(v)
    return dropped


def read_manifest(store: IndexStore, version: int) -> Manifest:
    """A version's manifest from the object store (the local store's for a local one)."""
    if store.remote is None:
        return store.read_manifest(version)
    name = version_name(version)
    try:
        raw = objects.read_bytes(store.settings, store.remote, f"{name}/{MANIFEST_FILE}")
    except FileNotFoundError:
        raise IndexCorrupt(f"{name} of {store.model_version} is not in {store.remote.url}") from None
    where = Path(f"{store.remote.url}/{name}/{MANIFEST_FILE}")
    manifest = Manifest.from_json(raw, where)
    store.check_identity(version, manifest, where)
    return manifest


def backup(settings: Settings, model_version: str, *, published: list[int] | None, keep: int | None,
           run_backup: Callable[..., Any]) -> Any:
    """`indexing.store.backup.backup` where the store or BACKUP_DIR is an object store: mirror both (verified),
    back up between the mirrors, then upload the new copies (re-read after upload) and drop pruned ones."""
    store = IndexStore(settings, model_version)
    copies = backup_store(settings, model_version)
    if store.remote is not None:
        pull_pointer(store)
        for v in remote_versions(store):
            if published is None or v in published:
                with contextlib.suppress(IndexCorrupt):  # a damaged one is reported by the backup as skipped
                    pull_version(store, v)
    for v in remote_versions(copies):
        with contextlib.suppress(IndexCorrupt):  # a damaged copy is copied again by the backup
            pull_version(copies, v)
    report = run_backup(settings, model_version, published=published, keep=keep)
    for v in report.copied:
        push_version(copies, v, recheck=True)  # the daily run re-reads the objects it shares, too
    for v in report.pruned:
        delete_version(copies, v)
    if copies.remote is not None:
        report.root = copies.remote.url
    return report


def stored_model_versions(settings: Settings) -> list[str]:
    """The model versions with an index store in the object store (read from a manifest)."""
    remote = settings.data_location.child("indexes")
    found: set[str] = set()
    for folder in objects.list_folders(settings, remote):
        for name in reversed(objects.list_folders(settings, remote, folder)):
            if version_of(name) is None:
                continue
            try:
                data = json.loads(objects.read_bytes(settings, remote, f"{folder}/{name}/{MANIFEST_FILE}"))
                found.add(str(data["model_version"]))
                break
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                continue
    return sorted(found)
