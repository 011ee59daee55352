"""What one embedding run embeds: a validated selection, claimed for the run and cut into parts, in one path.

Why claims: scheduled, manual and backfill runs of `image_embeddings` (and
`python -m embeddings`) may run at the same time. The plan selects its images
*and* claims them in one SQL statement (`embedding_claims`), skipping images
another live run holds, so two runs never embed the same image.

Claims die with their owner. While a process of a run works (an embed task,
the CLI), it holds the run's session advisory lock (`owner`); PostgreSQL ends
that lock the moment the process or its connection dies, so a re-run right
after a crash takes the images of the batch that was being embedded. Claims
of batches not started yet survive OWNER_GRACE after the run was last seen
(its plan, a task's start or end): the hand-off between a plan and its tasks.
The lease (CLAIM_LEASE) stays the upper bound. A run that lost its claims
records nothing for them (`settle` writes the ledger only for what it still
holds), so an image is never recorded by two runs.

Planning and releasing are serialised per model version with a transaction
advisory lock. That closes the one gap a lone statement leaves: a run that
finishes (ledger written, claims deleted) while another run's plan statement
is between its snapshot and its insert would otherwise be re-selected.

This module imports nothing heavy (psycopg lazily), so the DAG files can read
SCOPES and the defaults at parse time.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

SCOPES: tuple[str, ...] = ("pending", "failed", "event", "range", "all")
# Images per planned batch = per embed task = per Parquet part. (EMBED_BATCH_SIZE is the model's forward pass.)
DEFAULT_IMAGES_PER_PART = 256
MAX_IMAGES_PER_PART = 10_000
# How long a claim keeps other runs away after its last renewal (plan, or the start of its embed task).
CLAIM_LEASE = timedelta(minutes=30)
# How long claims of a run's batches that no task has started yet outlive the run's last sign of life
# (its plan, a task's start or end) when no process of the run holds its lock: the scheduler's hand-off
# from plan to tasks, or from one task to the next, takes seconds. Too short costs nothing but a
# concurrent run taking those images over (never twice: see settle); too long delays a re-run after a crash.
OWNER_GRACE = timedelta(minutes=2)


class SelectionError(ValueError):
    """A selection that cannot run; the message starts with the field to fix."""


def parse_timestamp(value: Any, field: str) -> datetime | None:
    """ISO 8601 text (or a datetime) -> an aware datetime; naive values are taken as UTC."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise SelectionError(f"{field}: not an ISO 8601 date-time (got {value!r})") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Selection:
    """Which images a run embeds. Validated once, here; fields of another scope must be left empty.

    scope: `pending` (no ledger row for the model version), `failed` (the last attempt failed),
    `event` (every row of event_code), `range` (created_at in [start, end)), `all` (every row).
    interval: a backfill run's data interval; narrows any scope to rows created inside it.
    limit: at most this many images.
    """

    scope: str = "pending"
    event_code: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    interval: tuple[datetime, datetime] | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise SelectionError(f"scope: must be one of {', '.join(SCOPES)} (got {self.scope!r})")
        if self.scope == "event":
            if not self.event_code:
                raise SelectionError("event_code: required when scope is 'event'")
            try:
                object.__setattr__(self, "event_code", str(uuid.UUID(str(self.event_code))))
            except ValueError:
                raise SelectionError(f"event_code: not a UUID (got {self.event_code!r})") from None
        elif self.event_code:
            raise SelectionError(f"event_code: only for scope 'event' (scope is {self.scope!r})")
        if self.scope == "range":
            if self.start is None and self.end is None:
                raise SelectionError("start/end: at least one bound is required when scope is 'range'")
            if self.start is not None and self.end is not None and self.start >= self.end:
                raise SelectionError(f"start/end: start ({self.start.isoformat()}) must be before end "
                                     f"({self.end.isoformat()})")
        elif self.start is not None or self.end is not None:
            raise SelectionError(f"start/end: only for scope 'range' (scope is {self.scope!r})")
        if self.interval is not None and not self.interval[0] < self.interval[1]:
            raise SelectionError(f"interval: empty data interval {self.interval}")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)
                                       or self.limit < 1):
            raise SelectionError(f"limit: a positive integer or empty (got {self.limit!r})")

    def describe(self) -> str:
        parts = [f"scope={self.scope}"]
        if self.event_code:
            parts.append(f"event_code={self.event_code}")
        if self.start or self.end:
            parts.append(f"range=[{self.start}, {self.end})")
        if self.interval:
            parts.append(f"data interval=[{self.interval[0]}, {self.interval[1]})")
        if self.limit:
            parts.append(f"limit={self.limit}")
        return " ".join(parts)

    def where(self) -> tuple[str, dict[str, Any]]:
        """The SQL condition on `images i` (named parameters; %(mv)s is the model version)."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if self.scope == "pending":
            clauses.append("NOT EXISTS (SELECT 1 FROM image_embeddings e"
                           " WHERE e.image_id = i.id AND e.model_version = %(mv)s)")
        elif self.scope == "failed":
            clauses.append("EXISTS (SELECT 1 FROM image_embeddings e"
                           " WHERE e.image_id = i.id AND e.model_version = %(mv)s AND e.status = 'failed')")
        elif self.scope == "event":
            clauses.append("i.event_code = %(event_code)s::uuid")
            params["event_code"] = self.event_code
        elif self.scope == "range":
            if self.start is not None:
                clauses.append("i.created_at >= %(start)s")
                params["start"] = self.start
            if self.end is not None:
                clauses.append("i.created_at < %(end)s")
                params["end"] = self.end
        if self.interval is not None:
            clauses.append("i.created_at >= %(interval_start)s AND i.created_at < %(interval_end)s")
            params.update(interval_start=self.interval[0], interval_end=self.interval[1])
        return (" AND ".join(clauses) or "TRUE"), params


def cut(ids: list[int], images_per_part: int, max_parts: int | None = None) -> list[list[int]]:
    """Cut ids into parts of images_per_part, growing the parts when there would be more than max_parts.

    Airflow refuses to map a task over more than `core.max_map_length` items; bigger
    parts keep every claimed row in this run instead of dropping some.
    """
    if not 1 <= images_per_part <= MAX_IMAGES_PER_PART:
        raise SelectionError(f"images_per_part: an integer from 1 to {MAX_IMAGES_PER_PART} (got {images_per_part!r})")
    if not ids:
        return []
    size = images_per_part if not max_parts else max(images_per_part, -(-len(ids) // max(1, max_parts)))
    return [ids[i : i + size] for i in range(0, len(ids), size)]


_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('embedding_claims:' || %(mv)s, 0))"

_CLAIM = """
WITH candidates AS (
    SELECT i.id FROM images i
    WHERE {where}
      AND NOT EXISTS (SELECT 1 FROM embedding_claims c
                      WHERE c.image_id = i.id AND c.model_version = %(mv)s
                        AND c.run_id <> %(run_id)s AND c.expires_at > now())
    ORDER BY i.id
    LIMIT %(limit)s
)
INSERT INTO embedding_claims AS c (image_id, model_version, run_id, claimed_at, expires_at)
SELECT id, %(mv)s, %(run_id)s, now(), now() + %(lease)s FROM candidates
ON CONFLICT (image_id, model_version) DO UPDATE
    SET run_id = EXCLUDED.run_id, claimed_at = EXCLUDED.claimed_at, expires_at = EXCLUDED.expires_at,
        taken_at = NULL
    WHERE c.run_id = EXCLUDED.run_id OR c.expires_at <= now()
RETURNING c.image_id
"""


def plan(
    conninfo: str,
    model_version: str,
    selection: Selection,
    *,
    run_id: str,
    images_per_part: int = DEFAULT_IMAGES_PER_PART,
    max_parts: int | None = None,
    lease: timedelta = CLAIM_LEASE,
) -> list[list[int]]:
    """Select the run's images, claim them for `run_id` and cut them into parts (ids in id order).

    Images another live run holds are left out (that run embeds them); a second plan of the
    same run (a retry) gets its own claims again.
    """
    import psycopg

    from core.db import connect

    cut([], images_per_part)  # validate before touching the database
    where, params = selection.where()
    params |= {"mv": model_version, "run_id": run_id, "limit": selection.limit, "lease": lease}
    with connect(conninfo=conninfo) as conn, conn.transaction():
        conn.execute(_LOCK, params)
        conn.execute("DELETE FROM embedding_claims WHERE model_version = %(mv)s AND expires_at < now() - %(keep)s",
                     {"mv": model_version, "keep": timedelta(days=1)})
        _expire_dead_owners(conn, model_version, run_id)
        conn.execute("DELETE FROM embedding_runs w WHERE w.last_seen < now() - %(keep)s AND NOT EXISTS"
                     " (SELECT 1 FROM embedding_claims c WHERE c.run_id = w.run_id)", {"keep": timedelta(days=1)})
        _seen(conn, run_id)
        try:
            rows = conn.execute(_CLAIM.format(where=where), params).fetchall()  # type: ignore[arg-type]
        except psycopg.errors.DataError as exc:  # e.g. a date PostgreSQL cannot represent
            raise SelectionError(f"{selection.scope}: {str(exc).splitlines()[0]}") from None
    return cut(sorted(int(r[0]) for r in rows), images_per_part, max_parts)


@dataclass(frozen=True)
class Taken:
    """What an embed task may do with its batch: embed `todo`; `done` already has this part's ledger rows."""

    todo: list[int]
    done: list[int]
    lost: list[int]  # claimed by another run after ours expired, or never ours: that run embeds them


def take(conninfo: str, model_version: str, run_id: str, ids: list[int], part_file: str,
         *, lease: timedelta = CLAIM_LEASE) -> Taken:
    """Renew this run's claims on `ids` as its embed task starts.

    `done`: ids whose ledger row points at this batch's part and was written after the claim (an
    earlier try of this task committed, then died before releasing): not embedded again. A run
    re-planned later (cleared, or a backfill reprocessing it) re-claims and so re-embeds.
    `lost`: ids this run no longer holds.
    """
    from core.db import connect

    wanted = list(dict.fromkeys(int(i) for i in ids))
    # Long enough for the batch itself (1 s per image is slower than any model here on a CPU).
    lease = lease + timedelta(seconds=len(wanted))
    with connect(conninfo=conninfo) as conn, conn.transaction():
        rows = conn.execute(
            """UPDATE embedding_claims c SET expires_at = now() + %(lease)s, taken_at = now()
               WHERE c.model_version = %(mv)s AND c.run_id = %(run_id)s AND c.image_id = ANY(%(ids)s)
               RETURNING c.image_id, EXISTS (
                   SELECT 1 FROM image_embeddings e
                   WHERE e.image_id = c.image_id AND e.model_version = c.model_version AND e.status = 'embedded'
                     AND e.embedded_at >= c.claimed_at AND e.parquet_part LIKE %(part)s)""",
            {"lease": lease, "mv": model_version, "run_id": run_id, "ids": wanted,
             "part": f"%{part_file.removesuffix('.parquet')}%"},
        ).fetchall()
    held = {int(r[0]) for r in rows}
    done = {int(r[0]) for r in rows if r[1]}
    return Taken(todo=[i for i in wanted if i in held and i not in done], done=[i for i in wanted if i in done],
                 lost=[i for i in wanted if i not in held and i not in done])


def release(conninfo: str, model_version: str, run_id: str, ids: list[int]) -> int:
    """Delete this run's claims on `ids` once their ledger rows are committed; returns how many."""
    from core.db import connect

    with connect(conninfo=conninfo) as conn, conn.transaction():
        conn.execute(_LOCK, {"mv": model_version})
        cur = conn.execute("DELETE FROM embedding_claims WHERE model_version = %s AND run_id = %s"
                           " AND image_id = ANY(%s)", (model_version, run_id, [int(i) for i in ids]))
        return cur.rowcount


def settle(conn: psycopg.Connection, model_version: str, run_id: str, ids: Sequence[int]) -> set[int]:
    """In the caller's ledger transaction: lock and delete this run's claims on `ids`; the ids it still held.

    The caller records ledger rows only for those, in the same transaction, so a run that lost an image
    to another run (its connection dropped, its owner lock ended, the other run took the image over)
    never records it too.
    """
    conn.execute(_LOCK, {"mv": model_version})
    rows = conn.execute("DELETE FROM embedding_claims WHERE model_version = %s AND run_id = %s"
                        " AND image_id = ANY(%s) RETURNING image_id",
                        (model_version, run_id, [int(i) for i in ids])).fetchall()
    return {int(r[0]) for r in rows}


# --- owners: claims that die with the process holding them ---------------------------------------

_RUN_KEY = "hashtextextended('embedding_run:' || {run}, 0)"

# Runs (other than ours) with live claims of this model version, and whether a session holds their lock.
# pg_locks shows a bigint advisory key as classid (high 32 bits), objid (low 32 bits), objsubid 1.
_DEAD_CLAIMS = f"""
WITH runs AS (
    SELECT DISTINCT run_id FROM embedding_claims
    WHERE model_version = %(mv)s AND run_id <> %(run_id)s AND expires_at > now()
), locked AS (
    SELECT r.run_id FROM runs r
    WHERE EXISTS (SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND l.classid = ((({_RUN_KEY.format(run="r.run_id")}) >> 32) & 4294967295)::oid
                    AND l.objid = (({_RUN_KEY.format(run="r.run_id")}) & 4294967295)::oid)
)
UPDATE embedding_claims c SET expires_at = now()
WHERE c.model_version = %(mv)s AND c.run_id IN (SELECT run_id FROM runs)
  AND c.run_id NOT IN (SELECT run_id FROM locked)
  AND (c.taken_at IS NOT NULL
       OR NOT EXISTS (SELECT 1 FROM embedding_runs w WHERE w.run_id = c.run_id AND NOT w.one_process
                      AND w.last_seen > now() - %(grace)s))
RETURNING c.run_id
"""


def _expire_dead_owners(conn: psycopg.Connection, model_version: str, run_id: str) -> None:
    """End the claims whose owner is gone (in the plan's transaction, under the model version's lock)."""
    rows = conn.execute(_DEAD_CLAIMS, {"mv": model_version, "run_id": run_id, "grace": OWNER_GRACE}).fetchall()
    for dead, n in sorted(Counter(str(r[0]) for r in rows).items()):
        log.warning("run %s: took over %d images claimed by run %s, whose owner is gone (no process of it holds "
                    "its lock)", run_id, n, dead)


def _seen(conn: psycopg.Connection, run_id: str, one_process: bool = False) -> None:
    conn.execute("INSERT INTO embedding_runs AS w (run_id, last_seen, one_process) VALUES (%s, now(), %s)"
                 " ON CONFLICT (run_id) DO UPDATE SET last_seen = now(), one_process = w.one_process"
                 " OR EXCLUDED.one_process", (run_id, one_process))


@contextmanager
def owner(conninfo: str, run_id: str, *, one_process: bool = False) -> Iterator[None]:
    """Hold the run's session lock while this process works for the run (shared: a run's tasks run at once).

    One connection for the duration: if this process dies, PostgreSQL ends the session and the lock, and
    the next plan takes over the claims this run had taken. On exit the run is marked seen, which keeps its
    batches not started yet for OWNER_GRACE. one_process: this process is the whole run (the CLI), so
    all its claims end with it, started or not.
    """
    from core.db import connect

    with connect(conninfo=conninfo, autocommit=True) as conn:
        conn.execute(f"SELECT pg_advisory_lock_shared({_RUN_KEY.format(run='%s')})", (run_id,))
        _seen(conn, run_id, one_process)
        try:
            yield
        finally:
            _seen(conn, run_id)


def claimed_by_run(conninfo: str) -> dict[str, int]:
    """run_id -> images it still holds (not yet embedded), for progress displays."""
    from core.db import connect

    with connect(conninfo=conninfo) as conn:
        rows = conn.execute("SELECT run_id, count(*) FROM embedding_claims GROUP BY run_id").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}
