"""Everything one server instance holds: settings, the index holder and watcher, the database, the model."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from core.settings import Settings
from serving.database import Database
from serving.deleted import DeletedImages
from serving.holder import IndexHolder
from serving.metrics import ServerMetrics
from serving.watcher import IndexWatcher

log = logging.getLogger("serving.state")


class ModelNotReady(RuntimeError):
    """The embedding model could not be loaded; the message says why."""


class ServerState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        self.db = Database(settings.conninfo(), timeout=settings.db_request_timeout)
        self.holder = IndexHolder(settings, self.model_version, on_change=self.metrics.observe_holder,
                                  published_versions=self._published_versions)
        self.deleted = DeletedImages(settings.conninfo(), lambda: self.holder.current, self.db,
                                     stale_after=settings.deleted_filter_stale_seconds,
                                     catch_up_seconds=settings.deleted_catch_up_seconds)
        self.watcher = IndexWatcher(self.holder, settings.conninfo(), settings.swap_poll_seconds,
                                    recheck_seconds=settings.index_recheck_seconds)
        self._embedder: Any = None
        self._embedder_error: str | None = None
        self._embedder_lock = threading.Lock()
        # One forward pass at a time: on a few cores, parallel passes only fight over them.
        self.infer_lock = threading.Lock()

    # -- model ---------------------------------------------------------------------------------------
    def embedder(self) -> Any:
        """The served model, loaded once (thread-safe); raises ModelNotReady with the reason."""
        if self._embedder is not None:
            return self._embedder
        with self._embedder_lock:
            if self._embedder is None:
                try:
                    from embeddings.models import get_embedder

                    self._embedder = get_embedder(self.settings.embedding_model, self.settings)
                    self._embedder_error = None
                except Exception as exc:  # ModelUnavailable, ImportError, a broken weights file...
                    self._embedder_error = f"{type(exc).__name__}: {exc}"
                    raise ModelNotReady(self._embedder_error) from exc
        return self._embedder

    def model_version(self) -> str:
        """The served model's version, from its name alone: vector routes never wait for (or need) the model."""
        from embeddings.models import parse_name

        return parse_name(self.settings.embedding_model).model_version

    def _published_versions(self, model_version: str) -> list[int] | None:
        """Versions the database says were published, the last published or rolled back to first (for the
        fallback when CURRENT is unreadable: what the operator chose last, not the highest number); None if down."""
        import psycopg

        try:
            with psycopg.connect(self.settings.conninfo(), connect_timeout=3) as conn:
                rows = conn.execute("SELECT version FROM index_versions WHERE model_version = %s AND "
                                    "published_at IS NOT NULL ORDER BY published_at DESC, version DESC",
                                    (model_version,)).fetchall()
        except psycopg.Error as exc:
            log.warning("cannot ask the database which versions were published: %s", str(exc).strip()[:200])
            return None
        return [int(r[0]) for r in rows]

    def embed(self, images: list[Any]) -> np.ndarray:
        """L2-normalised (n, dim) float32 vectors for decoded images."""
        embedder = self.embedder()
        with self.infer_lock:
            vecs = embedder.embed_images(images)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.watcher.start()
        self.deleted.start()

    async def stop(self) -> None:
        self.watcher.stop()
        self.deleted.stop()
        await self.db.close()
