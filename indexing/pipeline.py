"""The index lifecycle the CLI and the `image_index` DAG call: build, verify, publish, prune, rollback.

Every function that touches the database takes `conninfo`, so Airflow (PostgresHook) and
the CLI (settings) run the same code. Writers of one model's store are serialised by a
file lock (and, with an object-store DATA_DIR, a database advisory lock: writers may be on any
host); readers (servers) never lock: they see a version only after its folder was renamed into
place (its manifest uploaded, for an object store) and CURRENT only through an atomic rename (one
PUT). Publishers agree on the pointer through the `index_current` row, locked while CURRENT flips.
With an object-store DATA_DIR every step works on this host's mirror (indexing/store/remote.py): pull
what it needs, verified; push what it made, verified after upload.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.db import connect
from core.settings import Settings
from embeddings.dataset import pull_parts
from indexing.build import sources
from indexing.build.builder import build_version, next_version
from indexing.store import remote
from indexing.store.backup import backup as run_backup
from indexing.store.backup import copy_version
from indexing.store.integrity import IndexCorrupt
from indexing.store.layout import (
    CURRENT_FILE,
    MANIFEST_FORMAT,
    IndexStore,
    Manifest,
    backup_store,
    store_lock,
    version_name,
)
from indexing.verify import VerificationFailed, check_version, ensure_intact

NOTIFY_CHANNEL = "index_published"
STALE_TEMP_SECONDS = 3600


class RollbackError(RuntimeError):
    """There is no version to roll back to (the message says what exists)."""


class PublishConflict(RuntimeError):
    """A newer version was published meanwhile: publishing this one would move CURRENT backwards."""


@contextmanager
def writer_lock(conninfo: str | None, store: IndexStore) -> Iterator[None]:
    """The store's writer lock: the local file lock, plus for an object store a database advisory lock
    (held by a session: it dies with its owner), so writers on several hosts take turns."""
    with store_lock(store):
        if store.remote is None or not conninfo:
            yield
            return
        with connect(conninfo=conninfo, autocommit=True) as conn:
            key = f"image-similarity index store {store.model_version}"
            conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


def _pull_current(store: IndexStore) -> None:
    """Mirror CURRENT and the version it names (a damaged remote copy is left for the build to rebuild)."""
    if store.remote is None:
        return
    pointer = remote.pull_pointer(store)
    if pointer.version is not None:
        with contextlib.suppress(IndexCorrupt):  # read_manifest / the merge report it and rebuild
            remote.pull_version(store, pointer.version)


def _db_max_version(conninfo: str, model_version: str) -> int | None:
    with connect(conninfo=conninfo) as conn:
        row = conn.execute("SELECT max(version) FROM index_versions WHERE model_version = %s",
                           (model_version,)).fetchone()
    return row[0] if row else None


def _ensure_row(conn: Any, store: IndexStore, version: int, manifest: Manifest, status: str) -> None:
    """Insert the row of a version found on disk (e.g. built by an older run) if the table lacks it."""
    conn.execute(
        """INSERT INTO index_versions (model_version, version, index_type, vector_count, path, status,
                                       parent_version, dag_run_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (model_version, version) DO NOTHING""",
        (store.model_version, version, manifest.index_type, manifest.count, str(store.version_dir(version)),
         status, manifest.parent_version, manifest.dag_run_id),
    )


def _status(conninfo: str, model_version: str, version: int) -> tuple[str | None, str | None]:
    with connect(conninfo=conninfo) as conn:
        row = conn.execute("SELECT status, error FROM index_versions WHERE model_version = %s AND version = %s",
                           (model_version, version)).fetchone()
    return (row[0], row[1]) if row else (None, None)


def _statuses(conninfo: str, model_version: str) -> dict[int, str]:
    with connect(conninfo=conninfo) as conn:
        rows = conn.execute("SELECT version, status FROM index_versions WHERE model_version = %s",
                            (model_version,)).fetchall()
    return {int(v): str(s) for v, s in rows}


def _published(conninfo: str, model_version: str) -> list[int]:
    """Versions that were published once, newest publish first (even if found damaged since: a backup
    copy may still restore them; every use verifies the files first)."""
    with connect(conninfo=conninfo) as conn:
        rows = conn.execute("""SELECT version FROM index_versions WHERE model_version = %s
                               AND published_at IS NOT NULL ORDER BY published_at DESC, version DESC""",
                            (model_version,)).fetchall()
    return [int(r[0]) for r in rows]


def _unchanged_since(ledger: sources.Ledger, manifest: Manifest, index_type: str | None) -> bool:
    """True when the ledger has not changed since `manifest`'s version was built (a merge would add nothing).

    Conservative: any embedded row newer than the version's ledger snapshot, or a different
    count (deleted images, failed re-embeds), means "changed". Decided from the ledger the
    build reads anyway (no second query on the merge's path).
    """
    from datetime import datetime

    import pandas as pd

    if not manifest.ledger_snapshot or (index_type and index_type != manifest.index_type):
        return False
    rows = ledger.rows
    if (len(ledger.live_ids) if ledger.live_ids is not None else len(rows)) != manifest.count:
        return False
    return len(rows) == 0 or rows["embedded_at"].max() <= pd.Timestamp(datetime.fromisoformat(manifest.ledger_snapshot))


def _merge_watermark(store: IndexStore, parent: int) -> Any:
    """Where a merge into `parent` starts reading the ledger: its watermark (None: read it all)."""
    from datetime import datetime

    try:
        manifest = store.read_manifest(parent)
    except IndexCorrupt:
        return None
    if manifest.format != MANIFEST_FORMAT or not manifest.ledger_watermark:
        return None
    return datetime.fromisoformat(manifest.ledger_watermark)


def build(conninfo: str, settings: Settings, model_version: str, *, mode: str = "merge",
          index_type: str | None = None, dag_run_id: str | None = None) -> dict[str, Any]:
    """Build the next version (not yet published). Returns version, path, count, index_type, mode, ...

    A merge when nothing changed since CURRENT builds nothing: `version` is None, `current`
    names the version that is already up to date. That is decided here, under the store lock,
    so two callers never both build the same state. A damaged CURRENT makes a merge a rebuild.
    """
    store = IndexStore(settings, model_version)
    with writer_lock(conninfo, store):
        if store.remote is not None:
            _pull_current(store)
            pull_parts(settings, model_version)
        pointer = store.current()
        parent = pointer.version
        since = None
        if mode == "merge" and parent is not None:
            since = _merge_watermark(store, parent)
        ledger = sources.read_ledger(conninfo, model_version, since)
        broken = None
        if mode == "merge" and parent is not None:
            try:
                _intact(settings, store, parent)  # restored from BACKUP_DIR if the store's copy is damaged
                parent_manifest = store.read_manifest(parent)
                if _unchanged_since(ledger, parent_manifest, index_type or parent_manifest.requested_index_type):
                    return {"version": None, "current": parent, "mode": "none",
                            "reason": f"nothing new since {version_name(parent)}"}
            except IndexCorrupt as exc:  # no intact copy anywhere: nothing to merge into, nothing to keep serving
                broken = f"{version_name(parent)} has no intact copy ({' '.join(str(exc).split())[:300]})"
                mode, since = "rebuild", None
                ledger = sources.read_ledger(conninfo, model_version)
        db_max = _db_max_version(conninfo, model_version)
        if store.remote is not None:
            db_max = max([db_max or 0, *remote.remote_versions(store)])
        version = next_version(store, db_max)
        extra: dict[str, Any] = {"dag_run_id": dag_run_id}
        if pointer.damaged and mode == "merge":
            extra["rebuild_reason"] = f"nothing to merge into: {pointer.problem}"
        if broken:
            extra["rebuild_reason"] = broken
        built = build_version(settings, model_version, ledger, mode=mode, index_type=index_type,
                              version=version, parent=parent, extra=extra,
                              full_ledger=lambda: sources.read_ledger(conninfo, model_version))
        remote.push_version(store, version)  # object store: uploaded and re-read before anyone hears of it
        m = built.manifest
        with connect(conninfo=conninfo) as conn:
            conn.execute(
                """INSERT INTO index_versions (model_version, version, index_type, vector_count, path, checksum,
                                               status, parent_version, dag_run_id)
                   VALUES (%s, %s, %s, %s, %s, %s, 'built', %s, %s)
                   ON CONFLICT (model_version, version) DO UPDATE SET index_type = EXCLUDED.index_type,
                     vector_count = EXCLUDED.vector_count, path = EXCLUDED.path, checksum = EXCLUDED.checksum,
                     status = 'built', error = NULL, parent_version = EXCLUDED.parent_version,
                     dag_run_id = EXCLUDED.dag_run_id""",
                (model_version, version, m.index_type, m.count, str(built.path), built.digest, m.parent_version,
                 dag_run_id),
            )
    return {"version": version, "path": str(built.path), "count": m.count, "index_type": m.index_type,
            "mode": m.mode, "rebuild_reason": m.rebuild_reason, "parent_version": m.parent_version,
            "build_seconds": m.build_seconds, "changes": m.changes, "relations": m.relations}


def verify(conninfo: str, settings: Settings, model_version: str, version: int) -> None:
    """Run every check; on failure mark the row 'failed' with the reason and raise VerificationFailed."""
    report = verify_report(conninfo, settings, model_version, version)
    del report


def verify_report(conninfo: str, settings: Settings, model_version: str, version: int) -> dict[str, Any]:
    """verify() returning what was checked (for the CLI)."""
    store = IndexStore(settings, model_version)
    if store.remote is not None:
        try:
            remote.pull_version(store, version)
        except IndexCorrupt as exc:
            raise VerificationFailed(str(exc)) from None
    if not store.version_dir(version).is_dir():
        raise VerificationFailed(f"{version_name(version)} of {model_version} does not exist "
                                 f"(on disk: {', '.join(map(version_name, store.versions())) or 'none'})")
    try:
        report = check_version(conninfo, settings, model_version, version)
    except VerificationFailed as exc:
        _mark(conninfo, store, version, status="failed", error=str(exc))
        raise
    status, _ = _status(conninfo, model_version, version)
    if status != "published":
        _mark(conninfo, store, version, status="verified", error=None)
    return report


def _mark(conninfo: str, store: IndexStore, version: int, *, status: str, error: str | None) -> None:
    with connect(conninfo=conninfo) as conn:
        try:
            manifest = store.read_manifest(version)
            _ensure_row(conn, store, version, manifest, status)
        except IndexCorrupt:
            conn.execute(
                """INSERT INTO index_versions (model_version, version, index_type, vector_count, path, status)
                   VALUES (%s, %s, 'unknown', 0, %s, %s) ON CONFLICT (model_version, version) DO NOTHING""",
                (store.model_version, version, str(store.version_dir(version)), status),
            )
        conn.execute("UPDATE index_versions SET status = %s, error = %s WHERE model_version = %s AND version = %s",
                     (status, error, store.model_version, version))


def _activate(conninfo: str, store: IndexStore, version: int, reason: str = "publish") -> None:
    """Make `version` the served one: images.faiss_index, the row, NOTIFY and CURRENT, together.

    The `index_current` row is locked first: publishers take turns, and a publish older than
    the recorded one raises PublishConflict (only a rollback moves it back). CURRENT (and the
    CURRENT object of an object store) is flipped inside the transaction, right before COMMIT
    (which delivers the NOTIFY); if the commit fails, CURRENT is put back.
    """

    manifest = store.read_manifest(version)
    ids = store.live_ids(version, manifest)
    previous = store.current().version  # None when missing or damaged: then there is nothing to put back
    payload = json.dumps({"model_version": store.model_version, "version": version})
    buf = io.StringIO()
    for value in ids:
        buf.write(f"{int(value)}\n")
    flipped = False
    try:
        with connect(conninfo=conninfo) as conn:
            conn.execute("""INSERT INTO index_current (model_version, version, reason) VALUES (%s, %s, %s)
                            ON CONFLICT (model_version) DO NOTHING""", (store.model_version, version, reason))
            recorded = conn.execute("SELECT version FROM index_current WHERE model_version = %s FOR UPDATE",
                                    (store.model_version,)).fetchone()[0]  # type: ignore[index]
            if reason == "publish" and recorded > version:
                raise PublishConflict(f"{version_name(recorded)} of {store.model_version} was published after "
                                      f"{version_name(version)} was built; publishing it would move CURRENT back "
                                      "(use rollback for that)")
            conn.execute("""UPDATE index_current SET version = %s, reason = %s, updated_at = now()
                            WHERE model_version = %s""", (version, reason, store.model_version))
            conn.execute("CREATE TEMP TABLE _indexed (id integer PRIMARY KEY) ON COMMIT DROP")
            with conn.cursor().copy("COPY _indexed (id) FROM STDIN") as copy:
                copy.write(buf.getvalue())
            conn.execute("""UPDATE images i SET faiss_index = i.id FROM _indexed t
                            WHERE i.id = t.id AND i.faiss_index IS DISTINCT FROM i.id""")
            conn.execute("""UPDATE images i SET faiss_index = NULL WHERE i.faiss_index IS NOT NULL
                            AND NOT EXISTS (SELECT 1 FROM _indexed t WHERE t.id = i.id)""")
            _ensure_row(conn, store, version, manifest, "published")
            conn.execute("""UPDATE index_versions SET status = 'published', error = NULL, published_at = now()
                            WHERE model_version = %s AND version = %s""", (store.model_version, version))
            conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))
            flipped = True
            store.set_current(version)
            remote.push_pointer(store, version)
    except BaseException:
        if flipped:
            if previous is not None and store.version_dir(previous).is_dir():
                store.set_current(previous)
                remote.push_pointer(store, previous)
            else:
                (store.root / CURRENT_FILE).unlink(missing_ok=True)
                remote.push_pointer(store, None)
        raise


def publish(conninfo: str, settings: Settings, model_version: str, version: int) -> None:
    """Verify (unless already verified, then re-check checksums) and make `version` current."""
    store = IndexStore(settings, model_version)
    if store.remote is not None:
        try:
            remote.pull_version(store, version)
        except IndexCorrupt as exc:
            _mark(conninfo, store, version, status="failed", error=str(exc))
            raise VerificationFailed(str(exc)) from None
    status, error = _status(conninfo, model_version, version)
    if status == "failed":
        raise VerificationFailed(f"{version_name(version)} failed verification and cannot be published: {error}")
    if status in ("verified", "published"):
        try:
            store.check_files(version, store.read_manifest(version), checksums=True)
        except IndexCorrupt as exc:
            _mark(conninfo, store, version, status="failed", error=str(exc))
            raise VerificationFailed(str(exc)) from None
    else:
        verify(conninfo, settings, model_version, version)
    with writer_lock(conninfo, store):
        _back_up(settings, store, version)
        _activate(conninfo, store, version)


def _back_up(settings: Settings, store: IndexStore, version: int) -> None:
    """A verified copy of `version` in BACKUP_DIR before it is served, so one damaged file (a merged version
    shares its base with its parent by hard link) never leaves the servers without a version. Files the
    backup already holds for another version (that base) are linked there, not copied again."""
    dest = backup_store(settings, store.model_version)
    if dest.remote is None and dest.version_dir(version).is_dir():
        try:
            dest.check_files(version, dest.read_manifest(version), checksums=True)
            return
        except IndexCorrupt:
            pass  # copied afresh below
    copy_version(store, dest, version, share=True)
    remote.push_version(dest, version)  # object store: uploaded, re-read, before anyone hears of the version


def prune(settings: Settings, model_version: str, keep: int | None = None, conninfo: str | None = None) -> list[int]:
    """Delete all but the newest `keep` published versions (default INDEX_KEEP_VERSIONS); CURRENT is always kept.

    With `conninfo`, the database says which versions were published: failed or never-published
    builds do not take a backup's place, and builds newer than CURRENT that are still on their way
    to publishing (built, verified) are left alone. Without it every folder counts as published (a local
    store only: an object store's prune needs the database's writers' lock, ValueError otherwise).
    With a damaged CURRENT the last version published stands in for it. Returns the pruned
    versions. Stale temp folders of crashed builds are removed too.
    """
    keep = settings.index_keep_versions if keep is None else int(keep)
    if keep < 1:
        raise ValueError("keep must be at least 1")
    store = IndexStore(settings, model_version)
    if store.remote is not None and not conninfo:
        # Deleting objects no manifest lists is safe only while no other host uploads a version's files
        # ahead of its manifest: the writers' lock that orders hosts is the database's.
        raise ValueError(f"prune of {store.remote.url} needs the database (DATABASE_URL): its writers' lock keeps "
                         "other hosts' builds from uploading while unlisted objects are deleted")
    if not store.root.is_dir() and store.remote is None:
        return []
    pruned: list[int] = []
    with writer_lock(conninfo, store):
        pointer = remote.pull_pointer(store) if store.remote is not None else store.current()
        current = pointer.version
        if current is None and pointer.damaged:
            recent = _published(conninfo, model_version) if conninfo else []
            current = recent[0] if recent else None
            if current is None:
                return []  # nothing says which version is served: delete nothing
        versions = remote.remote_versions(store)
        statuses = _statuses(conninfo, model_version) if conninfo else {}
        published = [v for v in versions if v == current or statuses.get(v, "published") == "published"]
        kept = set(published[-keep:]) | ({current} if current is not None else set())
        kept |= {v for v in versions if (current is None or v > current) and statuses.get(v) in ("built", "verified")}
        for v in versions:
            if v in kept:
                continue
            remote.delete_version(store, v)  # object store: the manifest first, then its files
            if store.version_dir(v).is_dir():
                trash = store.root / f".trash-{version_name(v)}-{uuid.uuid4().hex[:8]}"
                store.version_dir(v).rename(trash)  # disappears from listings atomically, then is deleted
                shutil.rmtree(trash, ignore_errors=True)
            pruned.append(v)
        now = time.time()
        for entry in (store.root.iterdir() if store.root.is_dir() else ()):
            stale = entry.name.startswith(".trash-") or (
                entry.name.startswith((".tmp-build-", ".tmp-restore-"))
                and now - entry.stat().st_mtime > STALE_TEMP_SECONDS)
            if stale and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
    if pruned and conninfo:
        with connect(conninfo=conninfo) as conn:
            conn.execute("UPDATE index_versions SET status = 'pruned' WHERE model_version = %s AND version = ANY(%s)",
                         (model_version, pruned))
    return pruned


def rollback(conninfo: str, settings: Settings, model_version: str, to: int | None = None) -> int:
    """Flip CURRENT to `to`, or back to the newest earlier published version that is intact.

    With a damaged CURRENT and no `to`, the version last published or rolled back to that is
    intact becomes current again (the repair: `published_at` records each activation). The target
    is verified first (the server's checks: files, shapes,
    normalisation, self-search); when its files are damaged or gone and BACKUP_DIR holds an
    intact copy, the copy is restored into the store first. Returns the version now current.
    """

    store = IndexStore(settings, model_version)
    pointer = remote.pull_pointer(store) if store.remote is not None else store.current()
    on_disk = remote.remote_versions(store)
    known = sorted(set(on_disk) | set(backup_store(settings, model_version).versions()))
    if to is None:
        published = _published(conninfo, model_version)
        if pointer.damaged:  # the last publish or rollback first (recorded), not the highest number
            candidates = published
        elif pointer.version is None:
            raise RollbackError(f"nothing is published for {model_version}: no CURRENT to roll back from")
        else:
            candidates = sorted((v for v in published if v < pointer.version), reverse=True)
        problems: list[str] = []
        for v in candidates:
            if v not in known:
                continue
            try:
                with writer_lock(conninfo, store):
                    _intact(settings, store, v)
                    _activate(conninfo, store, v, reason="rollback")
                return v
            except IndexCorrupt as exc:
                problems.append(str(exc))
        what = f"current {version_name(pointer.version)}" if pointer.version else pointer.problem
        raise RollbackError(
            f"no {'' if pointer.damaged else 'earlier '}published version of {model_version} that is intact to roll "
            f"back to ({what}; on disk: {', '.join(map(version_name, on_disk)) or 'none'}"
            + (f"; refused: {problems[0]}" if problems else "") + ")")
    if to not in known:
        raise RollbackError(f"{version_name(to)} of {model_version} is not on disk nor in the backup "
                            f"(kept: {', '.join(map(version_name, known)) or 'none'})")
    status, error = _status(conninfo, model_version, to)
    with writer_lock(conninfo, store):
        source = _intact(settings, store, to)  # raises IndexCorrupt naming the bad file
        # A version that failed because its files were damaged is fine once restored from the backup;
        # one that failed for any other reason (wrong count, not normalised) stays refused.
        if status == "failed" and source != "restored":
            raise RollbackError(f"{version_name(to)} failed verification ({error}); choose another with --to")
        _activate(conninfo, store, to, reason="rollback")
    return to


def _pull_if_remote(store: IndexStore, version: int) -> None:
    """Bring an object-store version (and its BACKUP_DIR copy) into the mirrors; a damaged copy is left to
    ensure_intact (which restores from the backup) to judge."""
    for copy in (store, backup_store(store.settings, store.model_version)):
        if copy.remote is not None:
            with contextlib.suppress(IndexCorrupt):
                remote.pull_version(copy, version)


def _intact(settings: Settings, store: IndexStore, version: int) -> str:
    """ensure_intact on the mirrors; a version restored from the backup is uploaded to the store again."""
    _pull_if_remote(store, version)
    source = ensure_intact(settings, store.model_version, version)
    if source == "restored":  # the store's copy was damaged: its shared objects are re-read, replaced if bad
        remote.push_version(store, version, recheck=True)
    return source


def list_versions(settings: Settings, model_version: str, conninfo: str | None = None) -> list[dict[str, Any]]:
    """Versions on disk and in the table, newest first: version, status, current, index_type, count, dates,
    and whether BACKUP_DIR holds a copy."""
    store = IndexStore(settings, model_version)
    current = (remote.pull_pointer(store) if store.remote is not None else store.current()).version
    backup = backup_store(settings, model_version)
    backed_up = set(remote.remote_versions(backup))
    rows: dict[int, dict[str, Any]] = {}
    for v in remote.remote_versions(store):
        try:
            m = remote.read_manifest(store, v)
        except IndexCorrupt as exc:
            rows[v] = {"version": v, "status": "corrupt", "error": str(exc), "on_disk": True}
            continue
        rows[v] = {"version": v, "index_type": m.index_type, "count": m.count, "mode": m.mode,
                   "created_at": m.created_at, "on_disk": True, "status": None}
    if conninfo:
        with connect(conninfo=conninfo) as conn:
            for r in conn.execute(
                """SELECT version, index_type, vector_count, status, error, created_at, published_at, parent_version
                   FROM index_versions WHERE model_version = %s""", (model_version,)):
                entry = rows.setdefault(r[0], {"version": r[0], "on_disk": False})
                entry.update({"index_type": entry.get("index_type") or r[1], "count": entry.get("count", r[2]),
                              "status": r[3] if entry.get("status") != "corrupt" else "corrupt",
                              "error": entry.get("error") or r[4],
                              "created_at": entry.get("created_at") or r[5].isoformat(),
                              "published_at": r[6].isoformat() if r[6] else None, "parent_version": r[7]})
    for v in backed_up:
        rows.setdefault(v, {"version": v, "on_disk": False, "status": None})
    for v, entry in rows.items():
        entry["current"] = v == current
        entry["backup"] = v in backed_up
    return [rows[v] for v in sorted(rows, reverse=True)]


def backup(conninfo: str | None, settings: Settings, model_version: str, keep: int | None = None):  # type: ignore[no-untyped-def]
    """Back up the published versions into BACKUP_DIR and re-verify the copies there (indexing/store/backup.py)."""
    store = IndexStore(settings, model_version)
    published = _published(conninfo, model_version) if conninfo else None
    with writer_lock(conninfo, store):
        if store.remote is None and backup_store(settings, model_version).remote is None:
            return run_backup(settings, model_version, published=published, keep=keep)
        return remote.backup(settings, model_version, published=published, keep=keep, run_backup=run_backup)


def stored_model_versions(settings: Settings) -> list[str]:
    """The model versions that have an index store (read from a manifest: folder names are sanitised)."""
    if settings.remote_data:
        return remote.stored_model_versions(settings)
    found: set[str] = set()
    if not settings.indexes_dir.is_dir():
        return []
    for folder in sorted(p for p in settings.indexes_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for version_dir in sorted(folder.glob("v[0-9]*"), reverse=True):
            try:
                data = json.loads((version_dir / "manifest.json").read_bytes())
                found.add(str(data["model_version"]))
                break
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return sorted(found)
