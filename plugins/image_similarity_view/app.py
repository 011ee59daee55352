"""The plugin's FastAPI app: the pipeline's page in the Airflow UI, its JSON, and one action.

Mounted by Airflow's api-server under `/image-similarity` (fastapi_apps); the
Airflow UI shows the page in its navigation (external_views). The database is
the Airflow connection `image_db` through PostgresHook, as in the DAGs; the
settings' database is the fallback where that connection is not defined.

Airflow does not authenticate a plugin's app (a mounted app inherits none of
the core API's dependencies), so every route here asks Airflow's auth manager
itself: reading needs read access to the `image_embeddings` DAG (the UI's
session cookie or an API token), re-embedding needs the right to create its
runs. Without a login: 401, like Airflow's own API.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from datetime import datetime

from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from core.db import DatabaseUnavailable
from core.settings import Settings, get_settings
from image_similarity_view.status import ModelStatus, RunProgress, Status, collect_status, embedding_runs

log = logging.getLogger(__name__)

IMAGE_DB_CONN_ID = "image_db"
EMBEDDINGS_DAG_ID = "image_embeddings"


class ReembedRequest(BaseModel):
    """Re-embed the failed images of one model version (a run of image_embeddings with scope=failed)."""

    model_version: str = Field(min_length=1, max_length=200)


def image_db_conninfo(conn_id: str = IMAGE_DB_CONN_ID) -> str:
    """The Airflow connection through PostgresHook; the settings' database when the connection is not defined."""
    try:
        from core.db import airflow_conninfo

        return airflow_conninfo(conn_id)
    except Exception as exc:  # AirflowNotFoundException, or no Airflow at all
        log.info("connection %s unavailable (%s); using the DB_* settings", conn_id, exc)
        return get_settings().conninfo()


def _access() -> tuple[object, object]:
    """Airflow's own permission checks (read the embeddings DAG, create its runs) as FastAPI dependencies."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return (requires_access_dag("GET", param_dag_id=EMBEDDINGS_DAG_ID),
            requires_access_dag("POST", DagAccessEntity.RUN, param_dag_id=EMBEDDINGS_DAG_ID))


def create_app(
    conninfo: str | Callable[[], str] | None = None, settings: Callable[[], Settings] | None = None
) -> FastAPI:
    """The status app; `conninfo` and `settings` default to the Airflow connection and the process settings."""
    can_read, can_trigger = _access()
    app = FastAPI(title="Image similarity pipeline status", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(can_read)])

    def info() -> str:
        return conninfo() if callable(conninfo) else (conninfo or image_db_conninfo())

    def load(failures: int, versions: int) -> Status:
        db = info()
        status = collect_status(db, (settings or get_settings)(), failures=failures, versions=versions)
        try:
            status.runs = embedding_runs(db, EMBEDDINGS_DAG_ID)
        except Exception as exc:  # the metadata DB is Airflow's business; the page still shows the rest
            log.warning("cannot read the running embedding runs: %s", exc)
        return status

    @app.get("/api/status")
    def status_json(
        failures: int = Query(5, ge=0, le=100), versions: int = Query(5, ge=1, le=100)
    ) -> JSONResponse:
        try:
            return JSONResponse(load(failures, versions).to_json())
        except DatabaseUnavailable as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.post("/api/reembed-failed", status_code=202, dependencies=[Depends(can_trigger)])
    def reembed_failed(body: ReembedRequest) -> JSONResponse:
        """Trigger image_embeddings with conf {"scope": "failed", "model": <model version>}."""
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.utils.types import DagRunTriggeredByType

        try:
            status = collect_status(info(), (settings or get_settings)(), failures=0, versions=1)
        except DatabaseUnavailable as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        model = next((m for m in status.models if m.model_version == body.model_version), None)
        if model is None or model.failed == 0:
            return JSONResponse({"detail": f"no failed images for model version {body.model_version!r}"},
                                status_code=404)
        conf = {"scope": "failed", "model": body.model_version}
        try:
            run = trigger_dag(EMBEDDINGS_DAG_ID, conf=conf, triggered_by=DagRunTriggeredByType.UI,
                              note=f"re-embed {model.failed} failed images (Image similarity page)")
        except Exception as exc:  # DAG not parsed yet, params refused, ...
            return JSONResponse({"detail": f"cannot trigger {EMBEDDINGS_DAG_ID}: {exc}"}, status_code=409)
        run_id = getattr(run, "run_id", None)
        return JSONResponse({"dag_id": EMBEDDINGS_DAG_ID, "dag_run_id": run_id, "conf": conf,
                             "images": model.failed}, status_code=202)

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
button { padding: 0.3rem 0.8rem; cursor: pointer; } code { background: #f0f4f8; padding: 0 0.2rem; }
"""

# The button posts JSON (a cross-site form cannot), with the UI's session cookie; the answer is shown beside it.
SCRIPT = """
async function reembed(button) {
  const out = button.nextElementSibling;
  button.disabled = true; out.textContent = 'triggering...';
  try {
    const r = await fetch('api/reembed-failed', {method: 'POST', credentials: 'same-origin',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({model_version: button.dataset.model})});
    const body = await r.json();
    out.textContent = r.ok ? 'run ' + body.dag_run_id + ' queued' : 'error ' + r.status + ': ' + body.detail;
  } catch (e) { out.textContent = 'error: ' + e; }
  button.disabled = false;
}
"""


def page(body: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Image similarity</title>"
        f"<style>{STYLE}</style><script>{SCRIPT}</script></head>"
        f"<body><h1>Image similarity pipeline</h1>{body}</body></html>"
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
    if m.failed:
        rows.append(f"<p><button data-model='{e(m.model_version)}' onclick='reembed(this)'>Re-embed the {m.failed} "
                    "failed images</button> <span class='result'></span> (a run of <code>image_embeddings</code> "
                    "with scope <code>failed</code>; fix the files first)</p>")
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
                    "<th>published</th><th>DAG run</th><th>roll back to it</th></tr>")
        rows += [
            f"<tr class='{'current' if v.current else ''}'><td>v{v.version}{' (current)' if v.current else ''}</td>"
            f"<td>{e(v.status)}</td><td>{e(v.index_type)}</td><td class='num'>{v.vector_count}</td>"
            f"<td>{_fmt(v.created_at)}</td><td>{_fmt(v.published_at)}</td><td>{_fmt(v.dag_run_id)}</td>"
            f"<td>{'<code>' + e(v.rollback_command) + '</code>' if v.rollback_command else '—'}</td></tr>"
            for v in m.versions
        ]
        rows.append("</table>")
    else:
        rows.append("<p>No index built yet: run the <code>image_index</code> DAG.</p>")
    return f"<section><h2>{e(m.model_version)}</h2>{''.join(rows)}</section>"


def _runs_section(runs: list[RunProgress]) -> str:
    if not runs:
        return "<p>No embedding run in progress.</p>"
    e = html.escape
    rows = ["<table><tr><th>run</th><th>type</th><th>state</th><th>started</th><th>batches done</th>"
            "<th>batches by state</th><th>images still claimed</th></tr>"]
    for r in runs:
        done = r.batches.get("success", 0) + r.batches.get("failed", 0) + r.batches.get("skipped", 0)
        states = ", ".join(f"{e(k)} {n}" for k, n in sorted(r.batches.items())) or "planning"
        rows.append(f"<tr><td>{e(r.run_id)}</td><td>{e(r.run_type)}</td><td>{e(r.state)}</td>"
                    f"<td>{_fmt(r.started_at)}</td><td class='num'>{done} / {r.batches_total}</td><td>{states}</td>"
                    f"<td class='num'>{r.images_claimed}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def events_page_url(search_server_url: str) -> str:
    """The search server's page listing the events, each linking to its copies and similar shots."""
    return search_server_url.rstrip("/") + "/pages/events"


def render(status: Status) -> str:
    """The whole page; every value from the database is HTML-escaped."""
    url = html.escape(status.search_server_url, quote=True)
    # The search server's pages for people: each event's copies and similar shots as thumbnails, with the
    # relation and the rule that decided it, and a form that checks an upload (serving/routes/pages.py).
    pages = html.escape(events_page_url(status.search_server_url), quote=True)
    head = (
        f"<p>{status.images_total} images in {status.events_total} events · "
        f"search server: <a href='{url}' target='_blank' rel='noopener'>{url}</a> · "
        f"<a href='{pages}' target='_blank' rel='noopener'>copies and similar shots, by event</a> · "
        "<a href='api/status'>JSON</a></p>"
    )
    runs = "<section><h2>Embedding runs in progress</h2>" + _runs_section(status.runs) + "</section>"
    if not status.models:
        return page(head + runs + "<p>Nothing embedded yet: run the <code>image_embeddings</code> DAG.</p>")
    return page(head + runs + "".join(_model_section(m) for m in status.models))
