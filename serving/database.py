"""The server's few database reads and its one write, through a small async connection pool.

Searches ask the database which result ids still exist (one indexed query,
`id = ANY(...)` on the primary key). When the database does not answer, the
pool fails fast for `retry_after` seconds (a circuit breaker) and searches
answer from the loaded index alone: a stopped database never stalls a search.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from core.db import explain

log = logging.getLogger("serving.database")


class DatabaseDown(RuntimeError):
    """The database did not answer; the message says why (for 503s and /stats)."""


class Database:
    def __init__(self, conninfo: str, *, size: int = 4, timeout: float = 2.0, retry_after: float = 1.0) -> None:
        self.conninfo = conninfo
        self.size = size
        self.timeout = timeout
        self.retry_after = retry_after
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots: asyncio.Semaphore | None = None
        self._down_until = 0.0
        self.last_error: str | None = None
        self.skipped_filters = 0

    @property
    def state(self) -> str:
        return "up" if self.last_error is None else f"down: {self.last_error}"

    def _mark_down(self, exc: BaseException) -> DatabaseDown:
        if isinstance(exc, psycopg.OperationalError):
            reason = explain(exc, self.conninfo)
        else:
            reason = f"{type(exc).__name__}: {str(exc).strip() or f'no answer within {self.timeout:.1f}s'}"
        if self.last_error is None:
            log.warning("database unavailable, searches answer from the index alone: %s", reason)
        self.last_error = reason
        self._down_until = time.monotonic() + self.retry_after
        return DatabaseDown(reason)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled autocommit connection, or DatabaseDown at once while the breaker is open."""
        if time.monotonic() < self._down_until:
            raise DatabaseDown(self.last_error or "database unavailable")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            try:
                if conn is None or conn.closed:
                    conn = await asyncio.wait_for(
                        psycopg.AsyncConnection.connect(self.conninfo, autocommit=True,
                                                        connect_timeout=max(1, int(self.timeout))),
                        self.timeout)
                yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError, OSError) as exc:
                if conn is not None:
                    await _quiet_close(conn)
                    conn = None
                raise self._mark_down(exc) from None
            except BaseException:
                if conn is not None:
                    await _quiet_close(conn)
                    conn = None
                raise
            finally:
                if conn is not None and not conn.closed:
                    self._idle.append(conn)
        self.last_error = None

    async def fetch(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self.connection() as conn:
            cur = await asyncio.wait_for(conn.execute(query, params), self.timeout)  # type: ignore[arg-type]
            return await cur.fetchall()

    async def live_ids(self, ids: Sequence[int]) -> set[int] | None:
        """The subset of `ids` still in `images`; None when the database is down (no filtering)."""
        if not ids:
            return set()
        try:
            rows = await self.fetch("SELECT id FROM images WHERE id = ANY(%s)", ([int(i) for i in ids],))
        except DatabaseDown:
            self.skipped_filters += 1
            return None
        return {int(r[0]) for r in rows}


async def _quiet_close(conn: psycopg.AsyncConnection) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection must not mask the real error
        await conn.close()
