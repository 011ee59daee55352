"""Find new index versions: poll CURRENT every SWAP_POLL_SECONDS and LISTEN for `index_published`.

Two daemon threads. The poller owns every load (so loads never overlap) and
re-checks the served version's checksums every INDEX_RECHECK_SECONDS; the
listener only wakes it early, with the version a publish named. If the
database is down the listener retries quietly and polling alone still swaps.
"""

from __future__ import annotations

import json
import logging
import threading
import time

import psycopg

from serving.holder import IndexHolder

log = logging.getLogger("serving.watcher")

CHANNEL = "index_published"


class IndexWatcher:
    def __init__(self, holder: IndexHolder, conninfo: str | None, poll_seconds: float,
                 recheck_seconds: float = 600.0) -> None:
        self.holder = holder
        self.conninfo = conninfo
        self.poll_seconds = poll_seconds
        self.recheck_seconds = recheck_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._forced: int | None = None
        self._threads: list[threading.Thread] = []
        self.listening = False
        self.notifications = 0

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._poll_loop, name="index-poll", daemon=True)]
        if self.conninfo:
            self._threads.append(threading.Thread(target=self._listen_loop, name="index-listen", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)

    def wake(self, version: int | None = None) -> None:
        """Check CURRENT now (a publish happened); `version` is retried even if it failed before."""
        self._forced = version
        self._wake.set()

    def _poll_loop(self) -> None:
        next_check = time.monotonic() + self.recheck_seconds
        while not self._stop.is_set():
            forced, self._forced = self._forced, None
            self.holder.refresh(force_version=forced)
            if time.monotonic() >= next_check:
                try:
                    self.holder.recheck()
                except Exception:  # the poller must survive anything
                    log.exception("index re-check failed")
                next_check = time.monotonic() + self.recheck_seconds
            self._wake.wait(min(self.poll_seconds, max(0.05, next_check - time.monotonic())))
            self._wake.clear()

    def _listen_loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=3) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    backoff = 0.5
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._on_notify(note.payload)
                        # notifies() with a timeout returns without raising on a dead socket only
                        # sometimes; a cheap query surfaces a stopped server.
                        conn.execute("SELECT 1")
            except psycopg.Error as exc:
                if self.listening:
                    log.warning("LISTEN %s lost (%s); polling continues", CHANNEL, str(exc).strip().splitlines()[0:1])
                self.listening = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _on_notify(self, payload: str) -> None:
        self.notifications += 1
        version: int | None = None
        try:
            data = json.loads(payload or "{}")
            if isinstance(data, dict):
                if data.get("model_version") not in (None, self.holder.model_version):
                    return  # another model's index
                raw = data.get("version")
                version = int(raw) if raw is not None else None
        except (ValueError, TypeError):
            version = None
        log.info("publish notification: %s", payload)
        self.wake(version)
