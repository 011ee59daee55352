"""The index lifecycle the CLI and the `image_index` DAG call: build, verify, publish, prune, rollback.

Every function that touches the database takes `conninfo`, so Airflow (PostgresHook) and
the CLI (settings) run the same code. Writers of one model's store are serialised by a
file lock; readers (servers) never lock: they see a version only after its folder was
renamed into place and CURRENT only through an atomic rename.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import uuid
from typing import Any

from core.db import connect
from core.settings import Settings
from indexing import sources
from indexing.build import build_version, next_version, store_lock
from indexing.store import IndexCorrupt, IndexStore, load_version, version_name
from indexing.verify import VerificationFailed, check_version

NOTIFY_CHANNEL = "index_published"
STALE_TEMP_SECONDS = 3600


class RollbackError(RuntimeError):
    """There is no version to roll back to (the message says what exists)."""


def _db_max_version(conninfo: str, model_version: str) -> int | None:
    with connect(conninfo=conninfo) as conn:
        row = conn.execute("SELECT max(version) FROM index_versions WHERE model_version = %s",
                           (model_version,)).fetchone()
    return row[0] if row else None


def _record(conninfo: str, model_version: str, version: int, **fields: Any) -> None:
    """Update an index_versions row (it exists once build() ran)."""
    sets = ", ".join(f"{k} = %s" for k in fields)
    with connect(conninfo=conninfo) as conn:
        conn.execute(f"UPDATE index_versions SET {sets} WHERE model_version = %s AND version = %s",
                     (*fields.values(), model_version, version))


def _ensure_row(conn: Any, store: IndexStore, version: int, manifest: dict[str, Any], status: str) -> None:
    """Insert the row of a version found on disk (e.g. built by an older run) if the table lacks it."""
    conn.execute(
        """INSERT INTO index_versions (model_version, version, index_type, vector_count, path, status,
                                       parent_version, dag_run_id)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (model_version, version) DO NOTHING""",
        (store.model_version, version, manifest["index_type"], manifest["count"], str(store.version_dir(version)),
         status, manifest.get("parent_version"), manifest.get("dag_run_id")),
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


def unchanged_since_current(conninfo: str, settings: Settings, model_version: str,
                            index_type: str | None = None) -> int | None:
    """The current version when the ledger has not changed since it was built (a merge would add nothing).

    Conservative: any embedded row newer than the version's ledger snapshot, or a different
    count (deleted images, failed re-embeds), means "changed" and returns None.
    """
    from datetime import datetime

    store = IndexStore(settings, model_version)
    current = store.current_version() if store.root.is_dir() else None
    if current is None:
        return None
    try:
        manifest = store.read_manifest(current)
    except (IndexCorrupt, OSError, ValueError):
        return None
    snapshot = manifest.get("ledger_snapshot")
    if not snapshot or (index_type and index_type != manifest.get("index_type")):
        return None
    with connect(conninfo=conninfo) as conn:
        count, newest = conn.execute(
            "SELECT count(*), max(e.embedded_at) FROM image_embeddings e JOIN images i ON i.id = e.image_id"
            " WHERE e.model_version = %s AND e.status = 'embedded'",
            (model_version,),
        ).fetchone()  # type: ignore[misc]
    if int(count) != int(manifest.get("count", -1)):
        return None
    return current if newest is None or newest <= datetime.fromisoformat(snapshot) else None


def build(conninfo: str, settings: Settings, model_version: str, *, mode: str = "merge",
          index_type: str | None = None, dag_run_id: str | None = None) -> dict[str, Any]:
    """Build the next version (not yet published). Returns version, path, count, index_type, mode, ..."""
    store = IndexStore(settings, model_version)
    with store_lock(store):
        ledger = sources.read_ledger(conninfo, model_version)
        version = next_version(store, _db_max_version(conninfo, model_version))
        manifest = build_version(settings, model_version, ledger, mode=mode, index_type=index_type,
                                 version=version, extra={"dag_run_id": dag_run_id})
        with connect(conninfo=conninfo) as conn:
            conn.execute(
                """INSERT INTO index_versions (model_version, version, index_type, vector_count, path, checksum,
                                               status, parent_version, dag_run_id)
                   VALUES (%s, %s, %s, %s, %s, %s, 'built', %s, %s)
                   ON CONFLICT (model_version, version) DO UPDATE SET index_type = EXCLUDED.index_type,
                     vector_count = EXCLUDED.vector_count, path = EXCLUDED.path, checksum = EXCLUDED.checksum,
                     status = 'built', error = NULL, parent_version = EXCLUDED.parent_version,
                     dag_run_id = EXCLUDED.dag_run_id""",
                (model_version, version, manifest["index_type"], manifest["count"], manifest["path"],
                 manifest["_manifest_sha256"], manifest.get("parent_version"), dag_run_id),
            )
    return {"version": version, "path": manifest["path"], "count": manifest["count"],
            "index_type": manifest["index_type"], "mode": manifest["mode"],
            "rebuild_reason": manifest.get("rebuild_reason"), "parent_version": manifest.get("parent_version"),
            "build_seconds": manifest["build_seconds"], "changes": manifest.get("changes")}


def verify(conninfo: str, settings: Settings, model_version: str, version: int) -> None:
    """Run every check; on failure mark the row 'failed' with the reason and raise VerificationFailed."""
    report = verify_report(conninfo, settings, model_version, version)
    del report


def verify_report(conninfo: str, settings: Settings, model_version: str, version: int) -> dict[str, Any]:
    """verify() returning what was checked (for the CLI)."""
    store = IndexStore(settings, model_version)
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


def _activate(conninfo: str, store: IndexStore, version: int) -> None:
    """Make `version` the served one: images.faiss_index, the row, NOTIFY and CURRENT, together.

    CURRENT is flipped inside the transaction, right before COMMIT (which delivers the NOTIFY);
    if the commit fails, CURRENT is put back.
    """
    import pyarrow.parquet as pq

    manifest = store.read_manifest(version)
    ids = pq.read_table(store.version_dir(version) / "meta.parquet", columns=["image_id"]).column("image_id")
    previous = store.current_version()
    payload = json.dumps({"model_version": store.model_version, "version": version})
    buf = io.StringIO()
    for value in ids.to_numpy():
        buf.write(f"{int(value)}\n")
    flipped = False
    try:
        with connect(conninfo=conninfo) as conn:
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
            store.set_current(version)
            flipped = True
    except BaseException:
        if flipped:
            if previous is not None and store.version_dir(previous).is_dir():
                store.set_current(previous)
            else:
                (store.root / "CURRENT").unlink(missing_ok=True)
        raise


def publish(conninfo: str, settings: Settings, model_version: str, version: int) -> None:
    """Verify (unless already verified, then re-check checksums) and make `version` current."""
    store = IndexStore(settings, model_version)
    status, error = _status(conninfo, model_version, version)
    if status == "failed":
        raise VerificationFailed(f"{version_name(version)} failed verification and cannot be published: {error}")
    if status in ("verified", "published"):
        try:
            store.check_manifest(version, store.read_manifest(version), checksums=True)
        except IndexCorrupt as exc:
            _mark(conninfo, store, version, status="failed", error=str(exc))
            raise VerificationFailed(str(exc)) from None
    else:
        verify(conninfo, settings, model_version, version)
    with store_lock(store):
        _activate(conninfo, store, version)


def prune(settings: Settings, model_version: str, keep: int | None = None, conninfo: str | None = None) -> list[int]:
    """Delete all but the newest `keep` published versions (default INDEX_KEEP_VERSIONS); CURRENT is always kept.

    With `conninfo`, the database says which versions were published: failed or never-published
    builds do not take a backup's place, and builds newer than CURRENT that are still on their way
    to publishing (built, verified) are left alone. Without it every folder counts as published.
    Returns the pruned versions. Stale temp folders of crashed builds are removed too.
    """
    keep = settings.index_keep_versions if keep is None else int(keep)
    if keep < 1:
        raise ValueError("keep must be at least 1")
    store = IndexStore(settings, model_version)
    if not store.root.is_dir():
        return []
    pruned: list[int] = []
    with store_lock(store):
        current = store.current_version()
        versions = store.versions()
        statuses = _statuses(conninfo, model_version) if conninfo else {}
        published = [v for v in versions if v == current or statuses.get(v, "published") == "published"]
        kept = set(published[-keep:]) | ({current} if current is not None else set())
        kept |= {v for v in versions if (current is None or v > current) and statuses.get(v) in ("built", "verified")}
        for v in versions:
            if v in kept:
                continue
            trash = store.root / f".trash-{version_name(v)}-{uuid.uuid4().hex[:8]}"
            store.version_dir(v).rename(trash)  # disappears from listings atomically, then is deleted
            shutil.rmtree(trash, ignore_errors=True)
            pruned.append(v)
        now = time.time()
        for entry in store.root.iterdir():
            stale = entry.name.startswith(".trash-") or (
                entry.name.startswith(".tmp-build-") and now - entry.stat().st_mtime > STALE_TEMP_SECONDS)
            if stale and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
    if pruned and conninfo:
        with connect(conninfo=conninfo) as conn:
            conn.execute("UPDATE index_versions SET status = 'pruned' WHERE model_version = %s AND version = ANY(%s)",
                         (model_version, pruned))
    return pruned


def rollback(conninfo: str, settings: Settings, model_version: str, to: int | None = None) -> int:
    """Flip CURRENT back to `to`, or to the newest earlier version that was published and is intact.

    The target's checksums are verified first; returns the version now current.
    """
    store = IndexStore(settings, model_version)
    current = store.current_version()
    on_disk = store.versions()
    if to is None:
        if current is None:
            raise RollbackError(f"nothing is published for {model_version}: no CURRENT to roll back from")
        with connect(conninfo=conninfo) as conn:
            rows = conn.execute("""SELECT version FROM index_versions WHERE model_version = %s AND version < %s
                                   AND status = 'published' ORDER BY version DESC""",
                                (model_version, current)).fetchall()
        candidates = [r[0] for r in rows if r[0] in on_disk]
        if not candidates:
            older = [v for v in on_disk if v < current]
            raise RollbackError(
                f"no earlier published version of {model_version} on disk to roll back to (current "
                f"{version_name(current)}; other versions on disk: {', '.join(map(version_name, older)) or 'none'})"
            )
        to = candidates[0]
    if to not in on_disk:
        raise RollbackError(f"{version_name(to)} of {model_version} is not on disk "
                            f"(kept: {', '.join(map(version_name, on_disk)) or 'none'})")
    status, error = _status(conninfo, model_version, to)
    if status == "failed":
        raise RollbackError(f"{version_name(to)} failed verification ({error}); choose another with --to")
    load_version(settings, model_version, to)  # manifest + checksums + opens; raises IndexCorrupt
    with store_lock(store):
        _activate(conninfo, store, to)
    return to


def list_versions(settings: Settings, model_version: str, conninfo: str | None = None) -> list[dict[str, Any]]:
    """Versions on disk and in the table, newest first: version, status, current, index_type, count, dates."""
    store = IndexStore(settings, model_version)
    current = store.current_version() if store.root.is_dir() else None
    rows: dict[int, dict[str, Any]] = {}
    for v in store.versions():
        try:
            m = store.read_manifest(v)
        except IndexCorrupt as exc:
            rows[v] = {"version": v, "status": "corrupt", "error": str(exc), "on_disk": True}
            continue
        rows[v] = {"version": v, "index_type": m.get("index_type"), "count": m.get("count"),
                   "mode": m.get("mode"), "created_at": m.get("created_at"), "on_disk": True, "status": None}
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
    for v, entry in rows.items():
        entry["current"] = v == current
    return [rows[v] for v in sorted(rows, reverse=True)]
