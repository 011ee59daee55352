"""The one reference to the served index version, replaced atomically after a new version loads.

Requests read `holder.current` once at their start and keep that object, so a
swap never changes the version under a request in flight; the old version is
freed when its last request drops it. Loading and verifying happen in the
watcher's thread, never on the request path. A version that fails is recorded
with its reason (for /stats and /metrics) and not retried until CURRENT names
another version or a publish notification names it again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from core.settings import Settings
from serving.served import ServedIndex

log = logging.getLogger("serving.holder")


@dataclass
class SwapStats:
    swaps: int = 0
    failures: int = 0
    last_error: str | None = None
    last_swap_at: datetime | None = None
    failed_versions: dict[int, str] = field(default_factory=dict)


class IndexHolder:
    """Holds the served version; `refresh()` (watcher thread) loads CURRENT when it changed."""

    def __init__(
        self,
        settings: Settings,
        model_version: Callable[[], str],
        on_change: Callable[[IndexHolder], None] | None = None,
    ) -> None:
        self.settings = settings
        self._resolve_model_version = model_version
        self._model_version: str | None = None
        self._on_change = on_change
        self._current: ServedIndex | None = None
        self._lock = threading.Lock()
        self.stats = SwapStats()
        self.reason: str | None = "loading the index"
        self.current_on_disk: int | None = None

    @property
    def current(self) -> ServedIndex | None:
        """The served version; read it once per request and keep the object."""
        return self._current

    @property
    def model_version(self) -> str | None:
        return self._model_version

    def store(self):  # type: ignore[no-untyped-def]
        """The index store of the served model (None until the model version is known)."""
        if self._model_version is None:
            return None
        from indexing.store import IndexStore

        return IndexStore(self.settings, self._model_version)

    def refresh(self, force_version: int | None = None) -> bool:
        """Load CURRENT if it differs from the served version; True when a swap happened.

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

    def _refresh(self, force_version: int | None) -> bool:
        if self._model_version is None:
            try:
                self._model_version = self._resolve_model_version()
            except Exception as exc:
                self.reason = f"model unavailable: {exc}"
                return False
        store = self.store()
        assert store is not None
        version = store.current_version()
        self.current_on_disk = version
        current = self._current
        if version is None:
            if current is None:
                self.reason = (f"no published index version for model {self._model_version} "
                               f"under {store.root} (run the image_index DAG or `python -m indexing`)")
            return False
        if current is not None and current.version == version:
            return False
        if version in self.stats.failed_versions and version != force_version:
            return False
        return self._load(version)

    def _load(self, version: int) -> bool:
        from indexing.store import IndexCorrupt, load_version

        started = time.perf_counter()
        try:
            served = ServedIndex(load_version(self.settings, self._model_version, version))
            if served.model_version != self._model_version:
                raise ValueError(f"manifest model {served.model_version} is not the served {self._model_version}")
            served.self_check()
        except (IndexCorrupt, ValueError, OSError, KeyError, RuntimeError, TypeError) as exc:
            self._note_failure(version, f"version {version} refused: {type(exc).__name__}: {exc}")
            return False
        old = self._current
        self._current = served  # the atomic switch: one reference assignment
        self.stats.swaps += 1 if old is not None else 0
        self.stats.last_swap_at = datetime.now(UTC)
        self.stats.failed_versions.pop(version, None)
        self.reason = None
        log.info("serving index version %s (%s vectors, %s) loaded in %.2fs%s", version, served.count,
                 served.index_type, time.perf_counter() - started,
                 f", was {old.version}" if old is not None else "")
        return True

    def _note_failure(self, version: int | None, reason: str) -> None:
        if version is None and reason == self.stats.last_error:
            return  # the same problem seen again by the next poll (e.g. an unreadable CURRENT): counted once
        log.error("%s", reason)
        self.stats.failures += 1
        self.stats.last_error = reason
        if version is not None:
            self.stats.failed_versions[version] = reason
        if self._current is None:
            self.reason = reason
