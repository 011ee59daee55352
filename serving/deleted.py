"""Which images of the served version were deleted from `images`, known without a query per search.

The index is a snapshot; the server keeps, per served version, the set of its
ids no longer in `images`. A listener thread with its own connection builds it
when a version is served (one anti-join of the version's ids against `images`,
off the request path), then keeps it fresh from the `images_deleted` NOTIFY
that sql/007's trigger sends on every DELETE. NOTIFYs sent while the listener
is disconnected are lost, so every (re)connect, a TRUNCATE and a periodic
catch-up re-run the anti-join.

`fresh_at` is the moment before the listener's last heartbeat (`SELECT 1` on
the listening connection): every deletion committed before it has been
applied, up to the NOTIFY's own latency (a millisecond on one host). While it
is younger than `stale_after` and the listener is connected, searches filter
from the set alone. Otherwise (the listener lost its connection: at once; the
database hangs: after `stale_after`), or while not built yet for the
served version (just swapped): searches ask the database as before (one
`id = ANY(...)` query, under the Database's deadline and breaker) and, when it
cannot answer either, answer with the stale set applied and say so
(`X-Deleted-Filter: skipped`, `X-Deleted-Filter-Age`).
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg

from serving.database import Database
from serving.served import ServedIndex

log = logging.getLogger("serving.deleted")

CHANNEL = "images_deleted"
ANTI_JOIN = ("SELECT v.id FROM unnest(%s::int[]) AS v(id) "
             "WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.id = v.id)")


@dataclass(frozen=True)
class Verdict:
    """Which of the asked ids are deleted, and how sure the server is."""

    dead: set[int]
    checked: bool = True  # False: neither a fresh set nor the database could say (X-Deleted-Filter: skipped)
    age: float | None = None  # seconds the applied set lags behind, when it was stale


@dataclass(frozen=True)
class _Known:
    """No reference to the version itself: a swapped-out version is freed even while the listener is down.

    `dead` grows in the listener thread only (set.update is atomic under the GIL). Notified ids are added
    unfiltered (an id the version does not hold is never asked about); every catch-up trims it back to
    the version's own deleted ids.
    """

    version: int
    dead: set[int]


class DeletedImages:
    def __init__(self, conninfo: str | None, current: Callable[[], ServedIndex | None], db: Database | None, *,
                 stale_after: float = 2.0, beat: float = 0.5, catch_up_seconds: float = 300.0) -> None:
        self.conninfo = conninfo
        self._current = current
        self.db = db
        self.stale_after = stale_after
        self.beat = beat
        self.catch_up_seconds = catch_up_seconds
        self._known: _Known | None = None
        self._during: set[int] | None = None  # ids notified while an anti-join runs
        self._resync = False
        self.fresh_at: float | None = None  # monotonic; see the module docstring
        self.listening = False
        self.notifications = 0
        self.catch_ups = 0
        self.fallbacks = 0  # filter calls that had to ask the database (stale or not built yet)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the request path ----------------------------------------------------------------------------
    def known(self, version: int) -> tuple[set[int], float] | None:
        """The deleted ids of `version` and their age in seconds; None until built for that version."""
        known, fresh_at = self._known, self.fresh_at
        if known is None or known.version != version or fresh_at is None:
            return None
        return known.dead, max(0.0, time.monotonic() - fresh_at)

    async def dead_among(self, served: ServedIndex, ids: Sequence[int]) -> Verdict:
        """The deleted ones among `ids`: from the kept set while fresh, else from the database."""
        ids = [int(i) for i in ids]
        known = self.known(served.version)
        dead = {i for i in ids if i in known[0]} if known is not None else set()
        if known is not None and self.listening and known[1] <= self.stale_after:
            return Verdict(dead)
        if not ids:
            return Verdict(set())
        self.fallbacks += 1
        live = await self.db.live_ids(ids) if self.db is not None else None
        if live is None:
            return Verdict(dead, checked=False, age=None if known is None else round(known[1], 1))
        return Verdict(dead | (set(ids) - live))

    def snapshot(self) -> dict[str, object]:
        """For /stats: is the set in use, for which version, how old, how many deletions it holds."""
        known = self._known
        age = None if self.fresh_at is None else round(time.monotonic() - self.fresh_at, 3)
        return {"listening": self.listening, "version": None if known is None else known.version,
                "deleted_known": None if known is None else len(known.dead), "age_seconds": age,
                "fresh": age is not None and age <= self.stale_after, "notifications": self.notifications,
                "catch_ups": self.catch_ups, "database_fallbacks": self.fallbacks}

    # -- the listener thread -------------------------------------------------------------------------
    def start(self) -> None:
        if self.conninfo and self._thread is None:
            self._thread = threading.Thread(target=self._listen_loop, name="deleted-listen", daemon=True)
            self._thread.start()

    def wait_fresh(self, timeout: float = 30.0) -> bool:
        """Block until the set is built for the served version and fresh (benches, tools); False at timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            served = self._current()
            known = None if served is None else self.known(served.version)
            if known is not None and self.listening and known[1] <= self.stale_after:
                return True
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _listen_loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=3) as conn:  # type: ignore[arg-type]
                    conn.add_notify_handler(self._on_notify)
                    conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.5
                    self._follow(conn)
            except psycopg.Error as exc:
                if self.listening:
                    log.warning("LISTEN %s lost (%s); searches ask the database until it is back", CHANNEL,
                                str(exc).strip().splitlines()[:1])
                self.listening = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        self.listening = False

    def _follow(self, conn: psycopg.Connection) -> None:
        """Heartbeats on a listening connection; (re)builds the set whenever it may have missed something."""
        synced_at: float | None = None  # None: this connection has not built the set yet
        while not self._stop.is_set():
            started = time.monotonic()
            served = self._current()
            known = self._known
            if served is not None and (synced_at is None or self._resync or known is None
                                       or known.version != served.version
                                       or started - synced_at > self.catch_up_seconds):
                self._catch_up(conn, served)
                synced_at = started
            serving, served = served is not None, None  # hold no version while waiting (a swap frees it)
            conn.execute("SELECT 1")  # every NOTIFY sent before `started` has reached _on_notify by now
            if serving and not self._resync:
                self.fresh_at = started
            self.listening = True  # only now: after a reconnect, the catch-up above ran first
            select.select([conn.fileno()], [], [], self.beat)  # a NOTIFY wakes us at once

    def _catch_up(self, conn: psycopg.Connection, served: ServedIndex) -> None:
        """The anti-join for `served`, plus whatever was notified while it ran."""
        t0 = time.perf_counter()
        self._resync = False
        self._during = set()
        if self._known is None or self._known.version != served.version:
            self.fresh_at = None  # a new version: not usable until built
        ids = served.loaded.ids.tolist()
        dead = {int(r[0]) for r in conn.execute(ANTI_JOIN, (ids,)).fetchall()}
        during, self._during = self._during, None
        dead.update(i for i in during if served.has(i))
        self._known = _Known(served.version, dead)
        self.catch_ups += 1
        log.info("deleted images of version %s: %d of %d (anti-join %.0f ms)", served.version, len(dead), len(ids),
                 (time.perf_counter() - t0) * 1000)

    def _on_notify(self, note: psycopg.Notify) -> None:
        if note.channel != CHANNEL:
            return
        self.notifications += 1
        if note.payload.strip() == "*":  # TRUNCATE: nothing short of the anti-join can say what is left
            self._resync = True
            self.fresh_at = None
            return
        try:
            ids = [int(p) for p in note.payload.split(",") if p.strip()]
        except ValueError:
            log.warning("ignoring a malformed %s payload: %.80s", CHANNEL, note.payload)
            return
        if self._during is not None:
            self._during.update(ids)
        known = self._known
        if known is not None:
            known.dead.update(ids)
