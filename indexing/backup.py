"""Full, verified copies of published versions in BACKUP_DIR, and restoring from them.

Versions in the live store share their base by hard links (that is what keeps a merge
O(change)), so one damaged base damages every version that links it. The backup is
the independent copy: a second store (same layout) under BACKUP_DIR whose files are
byte copies, never links, each hashed while it is copied and re-hashed once written.
`python -m indexing backup` (and the `image_index_backup` DAG, daily) copies the
published versions the backup lacks, re-verifies the copies it already has, and keeps
the newest INDEX_KEEP_VERSIONS. `rollback` restores a damaged or pruned version from
it, and the search server falls back to it by itself (serving/holder.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import Settings
from indexing.store import (
    MANIFEST_FILE,
    IndexCorrupt,
    IndexStore,
    Manifest,
    backup_store,
    check_file,
    fsync_dir,
    make_read_only,
    version_name,
)

_CHUNK = 16 << 20


@dataclass
class BackupReport:
    """What one backup run did. `damaged`: backup copies found bad and not repaired by this run;
    `skipped`: store versions too damaged to copy. Either is a problem for the operator."""

    root: str
    copied: list[int] = field(default_factory=list)
    verified: list[int] = field(default_factory=list)
    damaged: dict[int, str] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)  # store copies too damaged to back up
    pruned: list[int] = field(default_factory=list)


def _copy_file(src: Path, dst: Path, sha256: str, size: int | None) -> None:
    """Copy while hashing the source (a damaged source is never backed up), fsync, re-hash the copy."""
    digest = hashlib.sha256()
    try:
        with open(src, "rb", buffering=0) as fin, open(dst, "wb") as fout:
            while True:
                block = fin.read(_CHUNK)
                if not block:
                    break
                digest.update(block)
                fout.write(block)
            fout.flush()
            os.fsync(fout.fileno())
    except FileNotFoundError:
        raise IndexCorrupt(f"{src}: missing") from None
    if digest.hexdigest() != sha256:
        raise IndexCorrupt(f"{src}: checksum mismatch (file changed or corrupt)")
    check_file(dst, sha256, size)  # what landed on the backup disk
    make_read_only(dst)


def copy_version(src: IndexStore, dst: IndexStore, version: int) -> None:
    """Copy one version from `src` to `dst` (byte copies, verified), replacing a damaged copy there atomically."""
    manifest = src.read_manifest(version)
    dst.root.mkdir(parents=True, exist_ok=True)
    tmp = dst.root / f".tmp-restore-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        for fname in manifest.files:
            _copy_file(src.version_dir(version) / fname, tmp / fname, manifest.sha256[fname],
                       manifest.sizes.get(fname))
        raw = (src.version_dir(version) / MANIFEST_FILE).read_bytes()
        Manifest.from_json(raw, src.version_dir(version) / MANIFEST_FILE)
        with open(tmp / MANIFEST_FILE, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        make_read_only(tmp / MANIFEST_FILE)
        fsync_dir(tmp)
        final = dst.version_dir(version)
        if final.exists():
            trash = dst.root / f".trash-{version_name(version)}-{uuid.uuid4().hex[:8]}"
            final.rename(trash)
            os.rename(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, final)
        fsync_dir(dst.root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_usable(store: IndexStore, version: int) -> None:
    """The server's load checks (files, shapes, normalisation, self-search); IndexCorrupt otherwise."""
    from indexing.loaded import open_version
    from indexing.verify import VerificationFailed, check_loaded

    loaded = open_version(store, version, float16=False)  # checked, not served
    try:
        check_loaded(loaded)
    except VerificationFailed as exc:
        raise IndexCorrupt(str(exc)) from None
    finally:
        loaded.close()


def ensure_intact(settings: Settings, model_version: str, version: int) -> str:
    """Make sure the live store holds an intact `version`: "store" when it does, "restored" when it
    was copied back from BACKUP_DIR. IndexCorrupt naming the bad files when neither copy is usable.
    The caller holds the store lock."""
    store = IndexStore(settings, model_version)
    backup = backup_store(settings, model_version)
    problem = f"{version_name(version)} is not in {store.root}"
    if store.version_dir(version).is_dir():
        try:
            check_usable(store, version)
            return "store"
        except IndexCorrupt as exc:
            problem = str(exc)
    if not backup.version_dir(version).is_dir():
        raise IndexCorrupt(f"{problem} (and {backup.root} holds no copy of {version_name(version)} to restore; "
                           "`python -m indexing backup` makes them)")
    try:
        check_usable(backup, version)
        copy_version(backup, store, version)
        check_usable(store, version)
    except IndexCorrupt as exc:
        raise IndexCorrupt(f"{problem}; the backup copy is no better: {exc}") from None
    return "restored"


def backup(settings: Settings, model_version: str, *, published: list[int] | None = None,
           keep: int | None = None) -> BackupReport:
    """Copy into BACKUP_DIR the published versions it lacks, re-verify the copies it has, keep the newest `keep`.

    `published` lists the versions that were published (from the database); without it only
    CURRENT is backed up. CURRENT's copy is never pruned. The caller holds the store lock.
    """
    keep = settings.index_keep_versions if keep is None else int(keep)
    if keep < 1:
        raise ValueError("keep must be at least 1")
    store = IndexStore(settings, model_version)
    dest = backup_store(settings, model_version)
    report = BackupReport(root=str(dest.root))
    current = store.current().version
    wanted = set(published or []) | ({current} if current is not None else set())
    wanted &= set(store.versions())
    newest = sorted(set(sorted(wanted, reverse=True)[:keep]) | ({current} & wanted if current else set()))
    have = set(dest.versions())
    for v in sorted(have):  # re-verify what is there: a backup nobody checks is not a backup
        try:
            dest.check_files(v, dest.read_manifest(v), checksums=True)
            report.verified.append(v)
        except IndexCorrupt as exc:
            report.damaged[v] = str(exc)
    for v in newest:
        if v in report.verified:
            continue
        try:
            copy_version(store, dest, v)
            report.copied.append(v)
            report.damaged.pop(v, None)
        except IndexCorrupt as exc:
            report.skipped[v] = str(exc)
    good = sorted(set(report.verified) | set(report.copied), reverse=True)
    protected = set(good[:keep]) | ({current} if current is not None else set())
    # A damaged copy is kept only while it is the one copy of a version we could not copy afresh.
    protected |= {v for v in report.damaged if v in report.skipped}
    for v in sorted(dest.versions()):
        if v not in protected:
            report.damaged.pop(v, None)
            trash = dest.root / f".trash-{version_name(v)}-{uuid.uuid4().hex[:8]}"
            dest.version_dir(v).rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
            report.pruned.append(v)
    report.verified = [v for v in report.verified if v not in report.pruned]
    return report
