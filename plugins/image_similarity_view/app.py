"""The plugin's FastAPI app: an HTML status page for the Airflow UI and the same data as JSON.

Mounted by Airflow's api-server under `/image-similarity` (fastapi_apps); the
Airflow UI shows the page in its navigation (external_views). The database is
the Airflow connection `image_db` through PostgresHook, as in the DAGs; the
settings' database is the fallback where that connection is not defined.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse

from core.db import DatabaseUnavailable
from core.settings import Settings, get_settings
from image_similarity_view.status import ModelStatus, Status, collect_status

log = logging.getLogger(__name__)

IMAGE_DB_CONN_ID = "image_db"


def image_db_conninfo(conn_id: str = IMAGE_DB_CONN_ID) -> str:
    """The Airflow connection through PostgresHook; the settings' database when the connection is not defined."""
    try:
        from core.db import airflow_conninfo

        return airflow_conninfo(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or no Airflow at all
        log.info("connection %s unavailable (%s); using the DB_* settings", conn_id, exc)
        return get_settings().conninfo()


def create_app(
    conninfo: str | Callable[[], str] | None = None, settings: Callable[[], Settings] | None = None
) -> FastAPI:
    """The status app; `conninfo` and `settings` default to the Airflow connection and the process settings."""
    app = FastAPI(title="Image similarity pipeline status", docs_url=None, redoc_url=None, openapi_url=None)

    def load(failures: int, versions: int) -> Status:
        info = conninfo() if callable(conninfo) else (conninfo or image_db_conninfo())
        return collect_status(info, (settings or get_settings)(), failures=failures, versions=versions)

    @app.get("/api/status")
    def status_json(
        failures: int = Query(5, ge=0, le=100), versions: int = Query(5, ge=1, le=100)
    ) -> JSONResponse:
        try:
            return JSONResponse(load(failures, versions).to_json())
        except DatabaseUnavailable as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get("/", response_class=HTMLResponse)
    def status_page(
        failures: int = Query(5, ge=0, le=100), versions: int = Query(5, ge=1, le=100)
    ) -> HTMLResponse:
        try:
            return HTMLResponse(render(load(failures, versions)))
        except DatabaseUnavailable as exc:
            return HTMLResponse(page("<p class='error'>" + html.escape(str(exc)) + "</p>"), status_code=503)

    return app


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1f2933; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #cbd2d9; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f0f4f8; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.failed { color: #b42318; } .current { font-weight: bold; } .error { color: #b42318; }
section { margin-bottom: 2rem; }
"""


def page(body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Image similarity</title>"
        f"<style>{STYLE}</style></head><body><h1>Image similarity pipeline</h1>{body}</body></html>"
    )


def _fmt(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return html.escape(value.strftime("%Y-%m-%d %H:%M:%S %Z").strip())
    return html.escape(str(value))


def _model_section(m: ModelStatus) -> str:
    e = html.escape
    rows = [
        "<table><tr><th>images</th><th>embedded</th><th>failed</th><th>pending</th><th>last embedded</th>"
        "<th>current index</th></tr>",
        f"<tr><td class='num'>{m.images_total}</td><td class='num'>{m.embedded}</td>"
        f"<td class='num failed'>{m.failed}</td><td class='num'>{m.pending}</td><td>{_fmt(m.last_embedded_at)}</td>"
        f"<td>{'v' + str(m.current_version) if m.current_version else '—'}</td></tr></table>",
    ]
    if m.failure_reasons:
        rows.append("<h3>Failure reasons</h3><table><tr><th>reason</th><th>images</th></tr>")
        rows += [f"<tr><td>{e(r)}</td><td class='num'>{n}</td></tr>" for r, n in m.failure_reasons.items()]
        rows.append("</table>")
    if m.latest_failures:
        rows.append("<h3>Latest failures</h3><table><tr><th>image id</th><th>file</th><th>reason</th>"
                    "<th>attempts</th><th>at</th></tr>")
        rows += [
            f"<tr><td class='num'>{f.image_id}</td><td>{e(f.file_path)}</td><td class='failed'>{_fmt(f.error)}</td>"
            f"<td class='num'>{f.attempts}</td><td>{_fmt(f.at)}</td></tr>"
            for f in m.latest_failures
        ]
        rows.append("</table>")
    rows.append("<h3>Index versions</h3>")
    if m.versions:
        rows.append("<table><tr><th>version</th><th>status</th><th>type</th><th>vectors</th><th>created</th>"
                    "<th>published</th><th>DAG run</th></tr>")
        rows += [
            f"<tr class='{'current' if v.current else ''}'><td>v{v.version}{' (current)' if v.current else ''}</td>"
            f"<td>{e(v.status)}</td><td>{e(v.index_type)}</td><td class='num'>{v.vector_count}</td>"
            f"<td>{_fmt(v.created_at)}</td><td>{_fmt(v.published_at)}</td><td>{_fmt(v.dag_run_id)}</td></tr>"
            for v in m.versions
        ]
        rows.append("</table>")
    else:
        rows.append("<p>No index built yet: run the <code>image_index</code> DAG.</p>")
    return f"<section><h2>{e(m.model_version)}</h2>{''.join(rows)}</section>"


def render(status: Status) -> str:
    """The whole page; every value from the database is HTML-escaped."""
    url = html.escape(status.search_server_url, quote=True)
    head = (
        f"<p>{status.images_total} images in {status.events_total} events · "
        f"search server: <a href='{url}' target='_blank' rel='noopener'>{url}</a> · "
        "<a href='api/status'>JSON</a></p>"
    )
    if not status.models:
        return page(head + "<p>Nothing embedded yet: run the <code>image_embeddings</code> DAG.</p>")
    return page(head + "".join(_model_section(m) for m in status.models))
