"""The server's few database reads and its one write, through a small async connection pool, with deadlines.

Searches ask the database which result ids still exist (one indexed query,
`id = ANY(...)` on the primary key) only while the server's own set of deleted
images (serving/deleted.py, kept by NOTIFY) is stale or not built yet. Every call on the request path has ONE
deadline covering the wait for a pooled connection, the connect, the statement
and the fetch. It holds against a database that refuses (an error at once), a
slow one (the server's statement_timeout) and a HUNG one (a stopped postmaster
answers nothing, not even a cancel request): the caller stops waiting at the
deadline, and the abandoned call is cancelled and its connection dropped in
the background.

A timeout or a refusal opens the breaker: every caller then gets DatabaseDown
at once (searches answer from the loaded index alone and say so with
`X-Deleted-Filter: skipped`), the callers already waiting are released at once
too, and one background probe, never a request, checks every `retry_after`
seconds whether the database answers again and closes the breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg

from core.db import explain

log = logging.getLogger("serving.database")
T = TypeVar("T")


class DatabaseDown(RuntimeError):
    """The database did not answer (in time); the message says why (for 503s and /stats).

    `sent` is False when the call never left the server (the breaker was open): a write then surely did
    not happen. True: it may have reached the database before it stopped answering.
    """

    def __init__(self, reason: str, *, sent: bool = True) -> None:
        super().__init__(reason)
        self.sent = sent


class Database:
    def __init__(self, conninfo: str, *, size: int = 4, timeout: float = 0.25, slow_timeout: float = 2.0,
                 retry_after: float = 0.5) -> None:
        self.conninfo = conninfo
        self.size = size
        self.timeout = timeout  # the default deadline of a call (searches' filter)
        self.slow_timeout = max(timeout, slow_timeout)  # the longest any call may ask for (counts, writes)
        self.retry_after = retry_after
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots: asyncio.Semaphore | None = None
        self._open = False  # the breaker
        self._opened: asyncio.Event | None = None  # set while open: releases callers already waiting
        self._probe: asyncio.Task[None] | None = None
        self._abandoned: set[asyncio.Task[Any]] = set()
        self.last_error: str | None = None
        self.skipped_filters = 0
        self.timeouts = 0
        self.calls = 0  # calls that reached for the database (tests and /stats prove searches make none)

    @property
    def state(self) -> str:
        return "up" if self.last_error is None else f"down: {self.last_error}"

    @property
    def breaker_open(self) -> bool:
        return self._open

    # -- breaker -------------------------------------------------------------------------------------------
    def _mark_down(self, exc: BaseException) -> DatabaseDown:
        if isinstance(exc, psycopg.OperationalError):
            reason = explain(exc, self.conninfo)
        elif isinstance(exc, TimeoutError):
            reason = "no answer within the deadline (DB_REQUEST_TIMEOUT)"
        else:
            reason = f"{type(exc).__name__}: {str(exc).strip() or 'no answer'}"
        if not self._open:
            log.warning("database unavailable, searches answer from the index alone: %s", reason)
        self.last_error = reason
        self._open = True
        if self._opened is not None:
            self._opened.set()
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())
        return DatabaseDown(reason)

    async def _probe_until_up(self) -> None:
        """One `SELECT 1` per `retry_after` with the same deadline, until one answers: then close the breaker."""
        while self._open:
            await asyncio.sleep(self.retry_after)
            try:
                await self._deadline(self._execute("SELECT 1", (), fetch=True))
            except psycopg.OperationalError as exc:
                self.last_error = explain(exc, self.conninfo)
                continue
            except Exception:  # a timeout again, or any other failure: still down
                continue
            self._open = False
            self._opened = None
            self.last_error = None
            log.warning("database answers again: deleted-image filtering resumes")

    # -- calls ---------------------------------------------------------------------------------------------
    async def close(self) -> None:
        self._open = False
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(BaseException):
                await self._probe
        for task in list(self._abandoned):
            task.cancel()
        idle, self._idle = self._idle, []
        for conn in idle:
            await _quiet_close(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled autocommit connection (no deadline of its own: callers go through `fetch`)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            try:
                if conn is None or conn.closed:
                    # The server's own net under the client's deadline: a statement stuck behind a lock
                    # or a slow plan ends there even if our cancel request never arrives.
                    ms = max(1, int(self.slow_timeout * 1000))
                    conn = await psycopg.AsyncConnection.connect(
                        self.conninfo, autocommit=True, connect_timeout=max(2, int(self.slow_timeout + 0.999)),
                        options=f"-c statement_timeout={ms} -c lock_timeout={ms}")
                yield conn
            except BaseException:
                if conn is not None:
                    await _quiet_close(conn)
                    conn = None
                raise
            finally:
                if conn is not None and not conn.closed:
                    self._idle.append(conn)

    async def _execute(self, query: str, params: Sequence[Any], *, fetch: bool) -> list[tuple[Any, ...]]:
        async with self.connection() as conn:
            return await _rows(conn, query, params, fetch=fetch)

    async def _with_connection(self, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        async with self.connection() as conn:
            return await work(conn)

    async def _deadline(self, work: Awaitable[T], timeout: float | None = None) -> T:
        """`work`'s result within the deadline, else TimeoutError at once (the work goes on being cancelled
        in the background: psycopg's own cancel waits for a server that may never answer)."""
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout or self.timeout)
        except asyncio.CancelledError:  # our caller went away: so does the work
            self._abandon(task)
            raise
        if task in done:
            return task.result()
        self._abandon(task)
        raise TimeoutError

    def _abandon(self, task: asyncio.Task[Any]) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: no "exception never retrieved" noise

    async def fetch(self, query: str, params: Sequence[Any] = (), *, timeout: float | None = None
                    ) -> list[tuple[Any, ...]]:
        """Rows of `query`; DatabaseDown at once while the breaker is open, or when the deadline passes.

        `timeout` (default: the short one) is capped at `slow_timeout`. SQL errors (constraint
        violations, bad values) pass through as psycopg errors.
        """
        return await self.run(lambda conn: _rows(conn, query, params, fetch=True), timeout=timeout)

    async def run(self, work: Callable[[psycopg.AsyncConnection], Awaitable[T]], *, timeout: float | None = None
                  ) -> T:
        """`work(conn)` on a pooled connection under the same breaker and deadline as `fetch` (a transaction
        of several statements, e.g. the idempotent registration, holds against a hung server too)."""
        if self._open:
            raise DatabaseDown(self.last_error or "database unavailable", sent=False)
        self.calls += 1
        if self._opened is None:
            self._opened = asyncio.Event()
        opened = self._opened
        limit = min(timeout or self.timeout, self.slow_timeout)
        call = asyncio.ensure_future(self._deadline(self._with_connection(work), limit))
        released = asyncio.ensure_future(opened.wait())
        try:
            await asyncio.wait({call, released}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            released.cancel()
        if not call.done():  # another call timed out meanwhile: this one would too; stop waiting now
            self._abandon(call)
            raise DatabaseDown(self.last_error or "database unavailable")
        try:
            return call.result()
        except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError, OSError) as exc:
            self.timeouts += isinstance(exc, TimeoutError)
            raise self._mark_down(exc) from None

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


async def _rows(conn: psycopg.AsyncConnection, query: str, params: Sequence[Any], *, fetch: bool
                ) -> list[tuple[Any, ...]]:
    cur = await conn.execute(query, params)  # type: ignore[arg-type]
    return await cur.fetchall() if fetch and cur.description else []


async def _quiet_close(conn: psycopg.AsyncConnection) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection must not mask the real error
        await conn.close()
