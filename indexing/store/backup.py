"""Full, verified copies of published versions in BACKUP_DIR, and restoring from them.

Versions in the live store share their base by hard links (that is what keeps a merge
O(change)), so one damaged base damages every version that links it. The backup is
the independent copy: a second store (same layout) under BACKUP_DIR whose files are
byte copies, never links, each hashed while it is copied and re-hashed once written.
`python -m indexing backup` (and the `image_index_backup` DAG, daily) copies the
published versions the backup lacks, re-verifies the copies it already has, and keeps
the newest INDEX_KEEP_VERSIONS. `rollback` restores a damaged or pruned version from
it (`indexing.verify.ensure_intact`, with the server's load checks), and the search
server falls back to it by itself (serving/holder.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import Settings
from indexing.store.files import fsync_dir, make_read_only, write_synced
from indexing.store.integrity import CHUNK, IndexCorrupt, check_file
from indexing.store.layout import MANIFEST_FILE, IndexStore, Manifest, backup_store, version_name
from storage.objects import hash_stream


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
    try:
        with open(src, "rb", buffering=0) as fin, open(dst, "wb") as fout:
            digest, _ = hash_stream(fin, fout, CHUNK)
            fout.flush()
            os.fsync(fout.fileno())
    except FileNotFoundError:
        raise IndexCorrupt(f"{src}: missing") from None
    if digest != sha256:
        raise IndexCorrupt(f"{src}: checksum mismatch (file changed or corrupt)")
    check_file(dst, sha256, size)  # what landed on the backup disk
    make_read_only(dst)


def copy_version(src: IndexStore, dst: IndexStore, version: int, *, share: bool = False) -> None:
    """Copy one version from `src` to `dst` (byte copies, verified), replacing a damaged copy there atomically.

    share: a file another version in `dst` already holds with the same checksum and size is hard-linked
    from there instead of copied (a merged version's base, backed up at publish): `dst`'s copies stay
    independent of `src`'s files, which is what a backup is for.
    """
    manifest = src.read_manifest(version)
    dst.root.mkdir(parents=True, exist_ok=True)
    donors = _donors(dst, version) if share else {}
    tmp = dst.root / f".tmp-restore-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        for fname in manifest.files:
            donor = donors.get((manifest.sha256[fname], manifest.sizes.get(fname)))
            if donor is not None:
                with contextlib.suppress(OSError):  # another filesystem, or gone meanwhile: copied below
                    os.link(donor, tmp / fname)
                    continue
            _copy_file(src.version_dir(version) / fname, tmp / fname, manifest.sha256[fname],
                       manifest.sizes.get(fname))
        raw = (src.version_dir(version) / MANIFEST_FILE).read_bytes()
        Manifest.from_json(raw, src.version_dir(version) / MANIFEST_FILE)
        write_synced(tmp / MANIFEST_FILE, raw)
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


def _donors(store: IndexStore, version: int) -> dict[tuple[str, int | None], Path]:
    """(sha256, size) -> a file of another version of `store` with that content and size on disk."""
    found: dict[tuple[str, int | None], Path] = {}
    for v in store.versions():
        if v == version:
            continue
        try:
            manifest = store.read_manifest(v)
        except IndexCorrupt:
            continue
        for fname in manifest.files:
            path = store.version_dir(v) / fname
            size = manifest.sizes.get(fname)
            with contextlib.suppress(OSError):
                if size is not None and path.stat().st_size == size:
                    found.setdefault((manifest.sha256[fname], size), path)
    return found


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
