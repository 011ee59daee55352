"""What the status page shows, read from the image database and the index store.

Per model version: images total / embedded / failed / pending, the latest
failures with their reasons, the served (CURRENT) index version and the
recent versions with their counts and types. Read-only queries on the
ledger's (model_version, status) index, so the page stays cheap on big tables.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from core.db import connect
from core.settings import Settings


@dataclass
class Failure:
    image_id: int
    filename: str
    file_path: str
    error: str | None
    attempts: int
    at: datetime | None


@dataclass
class IndexVersion:
    version: int
    index_type: str
    vector_count: int
    status: str
    created_at: datetime | None
    published_at: datetime | None
    dag_run_id: str | None
    current: bool = False
    # How to serve this version again (kept, published, not current): indexing's CLI flips CURRENT.
    rollback_command: str | None = None


@dataclass
class ModelStatus:
    model_version: str
    images_total: int
    embedded: int
    failed: int
    pending: int
    last_embedded_at: datetime | None
    failure_reasons: dict[str, int] = field(default_factory=dict)
    latest_failures: list[Failure] = field(default_factory=list)
    current_version: int | None = None
    versions: list[IndexVersion] = field(default_factory=list)


@dataclass
class RunProgress:
    """A queued or running image_embeddings run: its embed tasks by state and the images it still holds."""

    run_id: str
    run_type: str
    state: str
    started_at: datetime | None
    conf: dict[str, Any]
    batches: dict[str, int]
    batches_total: int
    images_claimed: int


@dataclass
class Status:
    images_total: int
    events_total: int
    models: list[ModelStatus]
    search_server_url: str
    runs: list[RunProgress] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def encode(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: encode(v) for k, v in value.items()}
            if isinstance(value, list):
                return [encode(v) for v in value]
            return value

        return encode(asdict(self))


def search_server_url(settings: Settings) -> str:
    """SEARCH_SERVER_URL, else the search server's own API_HOST:API_PORT."""
    if settings.search_server_url:
        return settings.search_server_url
    host = "localhost" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
    return f"http://{host}:{settings.api_port}/"


def rollback_command(model_version: str, version: int) -> str:
    """The operator's command that serves `version` again (docs/indexing.md)."""
    return f"python -m indexing --model-version {shlex.quote(model_version)} rollback --to v{version}"


def embedding_runs(conninfo: str, dag_id: str = "image_embeddings") -> list[RunProgress]:
    """Progress of the queued and running embedding runs, from Airflow's metadata DB and the claims table."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    from embeddings.planning import claimed_by_run

    with create_session() as session:
        runs = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id, DagRun.state.in_(("queued", "running"))).order_by(DagRun.id)
        ).all()
        ids = [r.run_id for r in runs]
        counts = session.execute(
            select(TaskInstance.run_id, TaskInstance.state, func.count())
            .where(TaskInstance.dag_id == dag_id, TaskInstance.task_id == "embed", TaskInstance.run_id.in_(ids))
            .group_by(TaskInstance.run_id, TaskInstance.state)
        ).all() if ids else []
        out = [RunProgress(r.run_id, str(getattr(r.run_type, "value", r.run_type)), str(r.state), r.start_date,
                           dict(r.conf or {}), {}, 0, 0) for r in runs]
    claimed = claimed_by_run(conninfo) if out else {}
    by_id = {p.run_id: p for p in out}
    for run_id, state, n in counts:
        progress = by_id[run_id]
        progress.batches[str(state or "none")] = int(n)
        progress.batches_total += int(n)
    for p in out:
        p.images_claimed = claimed.get(p.run_id, 0)
    return out


def current_version(settings: Settings, model_version: str, published: list[IndexVersion]) -> int | None:
    """CURRENT on disk when this process can see the index store, else the latest published row."""
    try:
        from indexing.store.layout import IndexStore

        store = IndexStore(settings, model_version)
        if store.root.is_dir():
            return store.current_version()
    except Exception:  # a missing or unreadable store: fall back to the database's view
        pass
    live = [v for v in published if v.status == "published" and v.published_at is not None]
    return max(live, key=lambda v: v.published_at).version if live else None  # type: ignore[arg-type,return-value]


def collect_status(conninfo: str, settings: Settings, *, failures: int = 5, versions: int = 5) -> Status:
    """One consistent read of everything the page shows (a REPEATABLE READ snapshot)."""
    with connect(conninfo=conninfo) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        images_total = conn.execute("SELECT count(*) FROM images").fetchone()[0]  # type: ignore[index]
        events_total = conn.execute("SELECT count(DISTINCT event_code) FROM images").fetchone()[0]  # type: ignore[index]
        counts = conn.execute(
            """
            SELECT model_version,
                   count(*) FILTER (WHERE status = 'embedded'),
                   count(*) FILTER (WHERE status = 'failed'),
                   max(embedded_at) FILTER (WHERE status = 'embedded')
            FROM image_embeddings GROUP BY model_version
            """
        ).fetchall()
        per_model = {row[0]: row[1:] for row in counts}
        for (mv,) in conn.execute("SELECT DISTINCT model_version FROM index_versions").fetchall():
            per_model.setdefault(mv, (0, 0, None))

        models = []
        for mv in sorted(per_model):
            embedded, failed, last = per_model[mv]
            status = ModelStatus(
                model_version=mv,
                images_total=images_total,
                embedded=embedded,
                failed=failed,
                pending=max(0, images_total - embedded - failed),
                last_embedded_at=last,
            )
            status.failure_reasons = {
                (reason or "unknown"): n
                for reason, n in conn.execute(
                    "SELECT error, count(*) FROM image_embeddings WHERE model_version = %s AND status = 'failed'"
                    " GROUP BY error ORDER BY count(*) DESC, error LIMIT 20",
                    (mv,),
                ).fetchall()
            }
            status.latest_failures = [
                Failure(*row)
                for row in conn.execute(
                    """
                    SELECT e.image_id, i.filename, i.file_path, e.error, e.attempts, e.embedded_at
                    FROM image_embeddings e JOIN images i ON i.id = e.image_id
                    WHERE e.model_version = %s AND e.status = 'failed'
                    ORDER BY e.embedded_at DESC, e.image_id DESC LIMIT %s
                    """,
                    (mv, failures),
                ).fetchall()
            ]
            status.versions = [
                IndexVersion(*row)
                for row in conn.execute(
                    """
                    SELECT version, index_type, vector_count, status, created_at, published_at, dag_run_id
                    FROM index_versions WHERE model_version = %s ORDER BY version DESC LIMIT %s
                    """,
                    (mv, versions),
                ).fetchall()
            ]
            status.current_version = current_version(settings, mv, status.versions)
            for v in status.versions:
                v.current = v.version == status.current_version
                if v.status == "published" and not v.current:
                    v.rollback_command = rollback_command(mv, v.version)
            models.append(status)
    return Status(images_total, events_total, models, search_server_url(settings))
