"""The one reference to the served index version, replaced atomically after a version verifies.

Requests read `holder.current` once at their start and keep that object, so a
swap never changes the version under a request in flight; the old version is
freed when its last request drops it. Loading happens in the watcher's thread,
never on the request path, and loading is verifying: sizes and checksums of
every file (read into private copies, see indexing/search/loaded.py), shapes, ids,
normalisation and self-search, the very checks `python -m indexing verify` runs
that need no database.

Which version: the one CURRENT names, from the store. When that cannot be
served (CURRENT damaged or missing, its files damaged), the newest good
candidate: the same version's copy in BACKUP_DIR, then older versions (never
newer than CURRENT; with CURRENT unreadable, only versions the database says
were published, or every version when the database is down too). The server
says so in `degraded` (/, /stats, /versions, metrics, one log line per change).

`recheck()` (periodically, and on demand from POST /versions/check) re-hashes the
served private copies and the store's files; a version that went bad is swapped
for the newest good candidate. A failed candidate is not retried until a publish
notification names its version again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.settings import Settings
from indexing.store import remote
from indexing.store.integrity import IndexCorrupt
from indexing.store.layout import CurrentPointer, IndexStore, backup_store, version_name
from serving.served import ServedIndex
from storage.objects import StorageUnavailable

log = logging.getLogger("serving.holder")

Candidate = tuple[int, str]  # (version, "store" | "backup")


@dataclass
class SwapStats:
    swaps: int = 0
    failures: int = 0
    last_error: str | None = None
    last_swap_at: datetime | None = None
    failed_versions: dict[int, str] = field(default_factory=dict)


@dataclass
class IntegrityStats:
    """Re-checks of the served version's files (periodic and on demand)."""

    checks: int = 0
    failures: int = 0
    last_check_at: datetime | None = None
    last_problem: str | None = None  # None when the last check found the served version sound


class IndexHolder:
    """Holds the served version; `refresh()` (watcher thread) serves the best version that verifies."""

    def __init__(
        self,
        settings: Settings,
        model_version: Callable[[], str],
        on_change: Callable[[IndexHolder], None] | None = None,
        published_versions: Callable[[str], list[int] | None] | None = None,
    ) -> None:
        self.settings = settings
        self._resolve_model_version = model_version
        self._published_versions = published_versions or (lambda _mv: None)
        self._model_version: str | None = None
        self._on_change = on_change
        self._current: ServedIndex | None = None
        self._lock = threading.Lock()
        self._failed: dict[Candidate, str] = {}
        self.stats = SwapStats()
        self.integrity = IntegrityStats()
        self.reason: str | None = "loading the index"
        self.degraded: str | None = None  # why the served version is not CURRENT's store copy
        self.storage_problem: str | None = None  # an object-store DATA_DIR that did not answer the last pull
        self.pointer = CurrentPointer(None)
        self._hint: str | None = None  # _other_variant_hint's answer, once known

    @property
    def current(self) -> ServedIndex | None:
        """The served version; read it once per request and keep the object."""
        return self._current

    @property
    def model_version(self) -> str | None:
        return self._model_version

    @property
    def current_on_disk(self) -> int | None:
        return self.pointer.version

    def store(self) -> IndexStore | None:
        """The index store of the served model (None until the model version is known)."""
        if self._model_version is None:
            return None
        return IndexStore(self.settings, self._model_version)

    def backup(self) -> IndexStore | None:
        if self._model_version is None:
            return None
        return backup_store(self.settings, self._model_version)

    # -- choosing and loading -------------------------------------------------------------------
    def refresh(self, force_version: int | None = None) -> bool:
        """Serve the best version that verifies; True when a swap happened.

        `force_version` (from a publish notification) retries that version even if it failed before.
        """
        with self._lock:
            try:
                return self._refresh(force_version)
            except Exception as exc:  # the watcher must survive anything; the reason is shown in /stats
                log.exception("index refresh failed")
                self._note_failure(None, f"{type(exc).__name__}: {exc}")
                return False
            finally:
                if self._on_change is not None:
                    self._on_change(self)

    def _refresh(self, forced: int | None) -> bool:
        if self._model_version is None:
            try:
                self._model_version = self._resolve_model_version()
            except Exception as exc:
                self.reason = f"model unavailable: {exc}"
                return False
        if forced is not None:
            for key in [k for k in self._failed if k[0] == forced]:
                del self._failed[key]
        store, backup = self.store(), self.backup()
        assert store is not None and backup is not None
        self._pull(store)
        pointer = store.current()
        if pointer != self.pointer and pointer.damaged:
            log.error("%s", pointer.problem)
        self.pointer = pointer
        served = self._current
        if (served is not None and pointer.version == served.version and served.source == "store"
                and (served.version, "store") not in self._failed):
            self._set_degraded(self._with_storage(None))
            return False
        candidates = self._candidates(pointer, store, backup)
        if not candidates and served is None:
            self.reason = (pointer.problem + "; no version to fall back to") if pointer.damaged else (
                f"no published index version for model {self._model_version} under {store.root} "
                "(run the image_index DAG or `python -m indexing`)" + self._other_variant_hint())
        swapped = False
        for key in candidates:
            if key in self._failed:
                continue
            if served is not None and (served.version, served.source) == key:
                break  # already serving the best candidate that is left
            if self._load(key, store if key[1] == "store" else backup):
                swapped = True
                break
        # When nothing better loads, a served version whose disk files went bad keeps being served from
        # its verified private copy (better than no answer); _explain says so.
        self._set_degraded(self._with_storage(self._explain(pointer)))
        if swapped and store.remote is not None:
            keep = {v for v in (pointer.version, self._current.version if self._current else None) if v}
            remote.evict(store, keep)  # the cache holds what is served and what CURRENT names
        return swapped

    def _other_variant_hint(self) -> str:
        """When the same model's other variant (plain or +rot4) has published versions, what to do: an upgrade
        that changed efficientnet-lite0's default from +rot4 to plain (issue 28) leaves the old index under its
        own version. Asked of the database once per process (None: it did not answer; try again later)."""
        if self._hint is None and self._model_version is not None:
            from embeddings.models import ParsedName, parse_name

            own = parse_name(self._model_version)
            hint = ""
            for variant in (None, "rot4"):
                other = ParsedName(own.model, own.preprocess, variant, own.quant).model_version
                if variant == own.variant:
                    continue
                published = self._published_versions(other)
                if published is None:
                    return ""
                if published:
                    hint = (f"; {other} has published versions (newest {published[0]}): the model's default version "
                            f"may have changed (docs/embeddings.md, 'Does +rot4 still pay?'). Set "
                            f"EMBEDDING_MODEL={other} on the servers and the DAGs to serve it, or let the pipeline "
                            f"embed and index {self._model_version}")
            self._hint = hint
        return self._hint or ""

    def _pull(self, store: IndexStore) -> None:
        """Object-store DATA_DIR: bring CURRENT's version into this replica's cache, verified, before CURRENT
        itself (so a poll never sees a CURRENT whose files are still on their way). A store that does not
        answer leaves the cache as it is: what is served stays served, reported as degraded."""
        if store.remote is None:
            return
        try:
            pointer = remote.pull_pointer(store, fetch=True)
            if pointer.version is not None and remote.fetched(store, pointer.version):
                self._failed.pop((pointer.version, "store"), None)  # fetched again: worth another load
        except StorageUnavailable as exc:
            if str(exc) != self.storage_problem:
                log.error("object store unavailable, serving from the local cache: %s", exc)
            self.storage_problem = str(exc)
            return
        except IndexCorrupt as exc:  # the store's copy does not match its manifest: the holder falls back
            self._note_failure(None, str(exc))
        if self.storage_problem:
            log.info("object store reachable again")
        self.storage_problem = None

    def _with_storage(self, message: str | None) -> str | None:
        if self.storage_problem is None:
            return message
        served = self._current
        what = f"serving {version_name(served.version)} from the local cache" if served else "nothing cached to serve"
        return f"object store unavailable ({self.storage_problem}); {what}" + (f"; {message}" if message else "")

    def _candidates(self, pointer: CurrentPointer, store: IndexStore, backup: IndexStore) -> list[Candidate]:
        """What may be served, best first: CURRENT's version (store, then backup), then older ones. With
        CURRENT unreadable: the versions the database says were published, the last publish or rollback
        first (an operator's rollback is honoured), else (the database down too) every version, newest first."""
        in_store, in_backup = set(store.versions()), set(backup.versions())
        ceiling: int | None = pointer.version
        order = sorted(in_store | in_backup, reverse=True)
        if ceiling is None and (in_store or in_backup):
            published = self._published_versions(store.model_version)
            if published is not None:
                order = [v for v in published if v in in_store or v in in_backup]
            elif not pointer.damaged and not in_backup:
                return []  # nothing was ever published, as far as anything can tell
        out: list[Candidate] = []
        for v in order:
            if ceiling is not None and v > ceiling:
                continue
            if v in in_store:
                out.append((v, "store"))
            if v in in_backup:
                out.append((v, "backup"))
        return out

    def _load(self, key: Candidate, store: IndexStore) -> bool:
        from indexing.search.loaded import open_version
        from indexing.store.integrity import IndexCorrupt
        from indexing.verify import VerificationFailed, check_loaded

        version, source = key
        started = time.perf_counter()
        try:
            serving = self._current
            # The served version's verified copies of the files that did not change (a merge's base) are
            # used as they are: a swap copies and hashes what changed, not the whole index.
            loaded = open_version(store, version, reuse=serving.loaded if serving is not None else None)
            try:
                check_loaded(loaded)
            except VerificationFailed:
                loaded.close()
                raise
            served = ServedIndex(loaded, source)
        except (IndexCorrupt, VerificationFailed, ValueError, OSError, KeyError, RuntimeError, TypeError) as exc:
            where = "" if source == "store" else " (backup copy)"
            self._note_failure(key, f"{version_name(version)}{where} refused: {exc}")
            if store.remote is not None:
                remote.forget(store, version)  # the next pull re-hashes the cache and fetches what is damaged
            return False
        old = self._current
        self._current = served  # the atomic switch: one reference assignment
        self.stats.swaps += 1 if old is not None else 0
        self.stats.last_swap_at = datetime.now(UTC)
        self.reason = None
        reused = loaded.reused_bytes
        log.info("serving index version %s from the %s (%s vectors, %s), verified and loaded in %.2fs%s%s", version,
                 source, served.count, served.index_type, time.perf_counter() - started,
                 f", was {old.version}" if old is not None else "",
                 f" ({reused / 1e6:.0f} MB unchanged, shared with it)" if reused else "")
        return True

    def _explain(self, pointer: CurrentPointer) -> str | None:
        """Why the served version is not CURRENT's store copy (None when it is, or nothing is served)."""
        served = self._current
        if served is None:
            return None
        what = f"serving {version_name(served.version)} from the {served.source}"
        if pointer.damaged:
            return f"CURRENT is damaged ({pointer.problem}); {what}, the newest version that verifies"
        if pointer.version is None:
            return f"CURRENT is missing; {what}, the newest published version that verifies"
        if pointer.version != served.version:
            why = self._failed.get((pointer.version, "store"), "it does not verify")
            return f"CURRENT names {version_name(pointer.version)}, which cannot be served ({why}); {what}"
        if served.source != "store":
            why = self._failed.get((served.version, "store"), "damaged")
            return f"the store's copy of {version_name(served.version)} is damaged ({why}); {what}"
        if (served.version, "store") in self._failed:
            return (f"the files of {version_name(served.version)} are damaged on disk "
                    f"({self._failed[(served.version, 'store')]}) and no intact copy verifies; still serving the "
                    "copy verified at load (run `python -m indexing rollback`)")
        return None

    def _set_degraded(self, message: str | None) -> None:
        if message != self.degraded:
            if message:
                log.error("degraded: %s", message)
            elif self.degraded:
                log.info("serving CURRENT (%s) again", version_name(self.pointer.version or 0))
        self.degraded = message

    def _note_failure(self, key: Candidate | None, reason: str) -> None:
        if key is None and reason == self.stats.last_error:
            return  # the same problem seen again by the next poll: counted once
        log.error("%s", reason)
        self.stats.failures += 1
        self.stats.last_error = reason
        if key is not None:
            self._failed[key] = reason
            self.stats.failed_versions[key[0]] = reason
        if self._current is None:
            self.reason = reason

    # -- re-checking the served version ---------------------------------------------------------
    def recheck(self) -> IntegrityStats:
        """Re-hash the served copies and the store's files; swap away from a version that went bad."""
        with self._lock:
            served = self._current
            if served is None:
                return self.integrity
            started = time.perf_counter()
            in_memory, on_disk = served.loaded.recheck()
            self.integrity.checks += 1
            self.integrity.last_check_at = datetime.now(UTC)
            problem = in_memory or on_disk
            if problem is None:
                if self.integrity.last_problem:
                    log.info("index files of %s sound again", version_name(served.version))
                self.integrity.last_problem = None
                log.info("re-checked %s (%s): sound, %.2fs", version_name(served.version), served.source,
                         time.perf_counter() - started)
            else:
                self.integrity.failures += 1
                self.integrity.last_problem = problem
                log.error("re-check of %s (%s) failed: %s", version_name(served.version), served.source, problem)
                self._failed[(served.version, served.source)] = problem
                self.stats.failed_versions[served.version] = problem
                store = self.store()
                if store is not None and store.remote is not None:
                    remote.forget(store, served.version)  # the refresh below fetches the damaged cache again
                if in_memory is not None:  # what we answer from is wrong: never keep serving it
                    self._current = None
                    self.reason = problem
        self.refresh()
        return self.integrity

    def snapshot(self) -> dict[str, Any]:
        """The version-related state for /stats and /versions."""
        served = self._current
        return {
            "served_from": served.source if served else None,
            "current_on_disk": self.pointer.version,
            "current_problem": self.pointer.problem,
            "degraded": self.degraded,
            "storage_problem": self.storage_problem,
            "integrity": {"checks": self.integrity.checks, "failures": self.integrity.failures,
                          "last_check_at": self.integrity.last_check_at, "last_problem": self.integrity.last_problem},
        }
