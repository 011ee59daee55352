"""Everything one server instance holds: settings, the index holder and watcher, the database, the model."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from core.settings import Settings
from serving.database import Database
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
        self.holder = IndexHolder(settings, self.model_version, on_change=self.metrics.observe_holder)
        self.watcher = IndexWatcher(self.holder, settings.conninfo(), settings.swap_poll_seconds)
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
        return str(self.embedder().model_version)

    def embed(self, images: list[Any]) -> np.ndarray:
        """L2-normalised (n, dim) float32 vectors for decoded images."""
        embedder = self.embedder()
        with self.infer_lock:
            vecs = embedder.embed_images(images)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        self.watcher.start()

    async def stop(self) -> None:
        self.watcher.stop()
        await self.db.close()
