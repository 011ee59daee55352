"""The plugin over HTTP: Airflow's own api-server app (plugins loaded by Airflow) under a real uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

MV = "efficientnet-lite0@crop224"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


USERS = {"admin": "admin-pw", "viewer": "viewer-pw"}


@pytest.fixture(scope="module")
def airflow_api(airflow_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Airflow's api-server FastAPI app, which mounts every plugin's fastapi_apps, served on 127.0.0.1.

    Real logins (the simple auth manager with an admin and a viewer), as in production: no all-admins mode.
    """
    import json

    import uvicorn

    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    passwords.write_text(json.dumps(USERS))
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin,viewer:viewer")
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
    mp.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "s" * 64)  # HS512 wants 64 bytes (else HMAC key warnings)
    from airflow.api_fastapi.app import create_app

    app = create_app()
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    mp.undo()


def _login(base_url: str, user: str = "admin") -> httpx.Client:
    """A client carrying a JWT from Airflow's own POST /auth/token, as API users and the UI get one."""
    r = httpx.post(f"{base_url}/auth/token", json={"username": user, "password": USERS[user]}, timeout=30)
    assert r.status_code in (200, 201), r.text
    return httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {r.json()['access_token']}"})


def _seed(conn: psycopg.Connection, rows) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Ledger and index history as the DAGs leave them: 3 embedded, 2 failed, 1 pending; v1 and v2 (current)."""
    ids = [rows.add(f"photos/p{i}.jpg") for i in range(6)]
    for i in ids[:3]:
        conn.execute(
            "INSERT INTO image_embeddings (image_id, model_version, status, parquet_part)"
            " VALUES (%s, %s, 'embedded', 'p')",
            (i, MV),
        )
    conn.execute(
        "INSERT INTO image_embeddings (image_id, model_version, status, error, attempts, embedded_at)"
        " VALUES (%s, %s, 'failed', 'truncated', 2, now() - interval '1 minute'),"
        " (%s, %s, 'failed', '<missing>', 1, now())",
        (ids[3], MV, ids[4], MV),
    )
    conn.execute(
        """INSERT INTO index_versions (model_version, version, index_type, vector_count, path, status, published_at,
                                       dag_run_id)
           VALUES (%s, 1, 'flat', 2, '/x/v000001', 'published', now() - interval '1 hour', 'manual__1'),
                  (%s, 2, 'hnsw', 3, '/x/v000002', 'published', now(), 'asset_triggered__2')""",
        (MV, MV),
    )
    return {"failed_latest": ids[4]}


def test_status_json_and_page_inside_airflow(airflow_api: str, image_rows, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(image_rows.conn, image_rows)
    monkeypatch.setenv("SEARCH_SERVER_URL", "http://search.example:8000/")
    from core.settings import get_settings

    get_settings.cache_clear()
    with _login(airflow_api) as client:
        status = client.get("/image-similarity/api/status")
        assert status.status_code == 200, status.text
        body = status.json()
        assert body["images_total"] == 6
        assert body["search_server_url"] == "http://search.example:8000/"
        (model,) = body["models"]
        assert model["model_version"] == MV
        assert (model["embedded"], model["failed"], model["pending"]) == (3, 2, 1)
        assert model["failure_reasons"] == {"<missing>": 1, "truncated": 1}
        assert model["latest_failures"][0]["image_id"] == seeded["failed_latest"]  # newest first
        assert model["current_version"] == 2  # no index store on disk here: the latest published row
        assert [(v["version"], v["index_type"], v["vector_count"], v["current"]) for v in model["versions"]] == [
            (2, "hnsw", 3, True), (1, "flat", 2, False)]

        page = client.get("/image-similarity/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        text = page.text
        assert MV in text and "v2 (current)" in text and "hnsw" in text
        assert "&lt;missing&gt;" in text and "<missing>" not in text  # database text is escaped
        assert "href='http://search.example:8000/'" in text

        # Airflow itself lists the plugin's app and its navigation entry.
        plugins = client.get("/api/v2/plugins")
        assert plugins.status_code == 200, plugins.text
        ours = [p for p in plugins.json()["plugins"] if p["name"] == "image_similarity"]
        assert ours, plugins.json()
        assert ours[0]["fastapi_apps"][0]["url_prefix"] == "/image-similarity"
        (view,) = ours[0]["external_views"]
        assert view["href"] == "image-similarity/" and view["destination"] == "nav"


def test_status_reads_current_from_the_index_store(airflow_api: str, image_rows, settings) -> None:  # type: ignore[no-untyped-def]
    """CURRENT on disk (e.g. after a rollback) wins over the newest published row."""
    from indexing.store.layout import IndexStore

    _seed(image_rows.conn, image_rows)
    store = IndexStore(settings, MV)
    store.root.mkdir(parents=True)
    (store.root / "CURRENT").write_text("v000001\n")
    assert store.current_version() == 1
    with _login(airflow_api) as client:
        (model,) = client.get("/image-similarity/api/status").json()["models"]
    assert model["current_version"] == 1
    assert [v["current"] for v in model["versions"]] == [False, True]


def test_empty_database_and_bad_query(airflow_api: str, image_rows) -> None:  # type: ignore[no-untyped-def]
    with _login(airflow_api) as client:
        body = client.get("/image-similarity/api/status").json()
        assert body["images_total"] == 0 and body["models"] == []
        assert "Nothing embedded yet" in client.get("/image-similarity/").text
        bad = client.get("/image-similarity/api/status", params={"failures": "lots"})
        assert bad.status_code == 422


def test_the_plugin_needs_an_airflow_login_like_the_api(airflow_api: str, image_rows) -> None:  # type: ignore[no-untyped-def]
    _seed(image_rows.conn, image_rows)
    with httpx.Client(base_url=airflow_api, timeout=30) as anonymous:
        assert anonymous.get("/api/v2/dags").status_code == 401  # Airflow's own API, for comparison
        for path in ("/image-similarity/api/status", "/image-similarity/"):
            r = anonymous.get(path)
            assert r.status_code == 401, (path, r.status_code, r.text[:200])
            assert "images_total" not in r.text
        forged = {"Authorization": "Bearer not-a-token"}
        bad = anonymous.get("/image-similarity/api/status", headers=forged)
        assert bad.status_code == anonymous.get("/api/v2/dags", headers=forged).status_code == 403
        assert anonymous.post("/image-similarity/api/reembed-failed", json={"model_version": MV}).status_code == 401
    # The UI's session cookie works the same as a bearer token (the page is shown inside the UI).
    token = _login(airflow_api).headers["Authorization"].split()[1]
    with httpx.Client(base_url=airflow_api, timeout=30, cookies={"_token": token}) as browser:
        assert browser.get("/image-similarity/api/status").status_code == 200
    # A viewer may read, not start runs.
    with _login(airflow_api, "viewer") as viewer:
        assert viewer.get("/image-similarity/api/status").status_code == 200
        assert viewer.post("/image-similarity/api/reembed-failed", json={"model_version": MV}).status_code == 403


def test_reembed_failed_triggers_a_run_with_conf(airflow_api: str, image_rows, dag_bag) -> None:  # type: ignore[no-untyped-def]
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from tests.dags.conftest import sync_dags

    sync_dags(dag_bag)
    _seed(image_rows.conn, image_rows)
    with _login(airflow_api) as client:
        r = client.post("/image-similarity/api/reembed-failed", json={"model_version": MV})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["conf"] == {"scope": "failed", "model": MV} and body["images"] == 2
        with create_session() as session:
            run = session.scalar(select(DagRun).where(DagRun.run_id == body["dag_run_id"]))
            assert run is not None and run.dag_id == "image_embeddings" and run.conf == body["conf"]
        # Unknown model version (or nothing failed): 404; a malformed body: 422.
        assert client.post("/image-similarity/api/reembed-failed",
                           json={"model_version": "places365-resnet50@crop224"}).status_code == 404
        assert client.post("/image-similarity/api/reembed-failed", json={}).status_code == 422
        # The versions carry their rollback command; the page shows the button and the commands.
        (model,) = client.get("/image-similarity/api/status").json()["models"]
        assert [v["rollback_command"] for v in model["versions"]] == [
            None, f"python -m indexing --model-version {MV} rollback --to v1"]
        page = client.get("/image-similarity/").text
        assert "Re-embed the 2 failed images" in page and "rollback --to v1" in page
        assert "Embedding runs in progress" in page
