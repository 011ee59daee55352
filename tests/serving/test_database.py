"""The database side: deleted images never come back from a search; a stopped database stops no search."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.serving.conftest import API_KEY


def wait_known_deleted(srv, ids: set[int], bound: float = 1.0) -> None:  # type: ignore[no-untyped-def]
    """Deletions reach the server by NOTIFY within milliseconds (docs/api.md); `bound` allows a slow CI."""
    version = srv.state.holder.current.version
    t0 = time.monotonic()
    while not ids <= srv.state.deleted.known(version)[0]:
        assert time.monotonic() - t0 < bound, "deletion not notified"
        time.sleep(0.005)


def test_deleted_images_are_filtered(scenario, live_server, base) -> None:
    scn = scenario("deleted")
    scn.publish()
    srv = live_server(scn.settings)
    srv.wait_ready()
    original, copy = base.dup_pairs[0]
    served = srv.state.holder.current
    copy_vec = served.vector(copy).tolist()
    assert srv.client.post("/search", json={"vector": copy_vec, "top_k": 1}).json()[0]["id"] == copy
    srv.wait_filter_fresh()
    scn.execute("DELETE FROM images WHERE id = %s", (copy,))  # after the build: still in the index
    assert served.has(copy)
    wait_known_deleted(srv, {copy})
    hits = srv.client.post("/search", json={"vector": copy_vec, "top_k": 10}).json()
    assert copy not in {h["id"] for h in hits} and len(hits) == 10  # over-fetch keeps top_k full
    similar = srv.client.get(f"/images/{original}/similar", params={"top_k": 10}).json()
    assert copy not in {h["id"] for h in similar} and len(similar) == 10
    r = srv.client.get(f"/images/{copy}/similar")
    assert r.status_code == 404 and "deleted" in r.json()["message"]
    groups = srv.client.get(f"/events/{base.event_a}/duplicates").json()["groups"]
    assert sorted([i["id"] for i in g["images"]] for g in groups) == sorted(map(list, base.dup_pairs[1:]))
    # Many deletions at once: still a full page of live results.
    victims = [h["id"] for h in hits[1:8]]
    scn.execute("DELETE FROM images WHERE id = ANY(%s)", (victims,))
    wait_known_deleted(srv, set(victims))
    hits = srv.client.post("/search", json={"vector": copy_vec, "top_k": 10}).json()
    assert len(hits) == 10 and not ({copy, *victims} & {h["id"] for h in hits})


@pytest.fixture
def private_pg(pg_folder):  # type: ignore[no-untyped-def]
    from core.localpg import LocalPostgres

    server = LocalPostgres(pg_folder / "pg").start()
    yield server
    server.stop()


def test_database_stopped_mid_test(scenario, live_server, base, private_pg) -> None:
    """The server's database (a private PostgreSQL) stops while requests flow; searches keep answering."""
    from core.migrate import apply_migrations

    scn = scenario("dbstop")
    scn.publish()
    pg_info = make_conninfo(host="127.0.0.1", port=private_pg.port, user="postgres", dbname="postgres")
    with psycopg.connect(pg_info) as conn:
        apply_migrations(conn)
    with psycopg.connect(scn.conninfo) as src, psycopg.connect(pg_info) as dst:
        for code, name in src.execute("SELECT code, name FROM events"):
            dst.execute("INSERT INTO events (code, name) VALUES (%s, %s)", (code, name))
        for row in src.execute("SELECT id, code, event_code, filename, file_path FROM images"):
            dst.execute("INSERT INTO images (id, code, event_code, filename, file_path) VALUES (%s,%s,%s,%s,%s)", row)
    settings = scn.settings.model_copy(update={"db_port": private_pg.port, "db_name": "postgres", "db_pass": "",
                                               "db_user": "postgres", "db_host": "127.0.0.1", "api_key": API_KEY})
    srv = live_server(settings)
    srv.wait_ready()
    query = srv.state.holder.current.vector(base.ids[9]).tolist()

    def search():  # type: ignore[no-untyped-def]
        return srv.client.post("/search", json={"vector": query, "top_k": 5, "filters": {"event_code": base.event_a}})

    r = search()
    assert r.status_code == 200 and "x-deleted-filter" not in r.headers
    assert srv.client.get("/stats").json()["database"] == "up"
    private_pg.stop()
    for _ in range(20):  # every search answers, from the index alone, without waiting on the database
        t0 = time.perf_counter()
        r = search()
        assert r.status_code == 200 and r.json()[0]["id"] == base.ids[9]
        assert time.perf_counter() - t0 < 2.5
    assert r.headers["x-deleted-filter"] == "skipped"
    assert srv.client.get(f"/images/{base.ids[9]}/similar").status_code == 200
    assert srv.client.get("/").status_code == 200
    stats = srv.client.get("/stats").json()
    assert stats["database"].startswith("down") and stats["total_images_db"] is None
    assert stats["total_vectors_faiss"] == base.total
    body = {"filename": "x.jpg", "file_path": f"/uploads/{base.files[base.ids[0]].name}", "event_code": base.event_a}
    r = srv.client.post("/add_image", json=body, headers={"X-API-Key": API_KEY})
    assert r.status_code == 503 and "nothing was registered" in r.json()["message"]
    assert "imgsim_database_up 0.0" in srv.client.get("/metrics").text
    # The database comes back: filtering resumes by itself.
    private_pg.start()
    deadline = time.monotonic() + 15
    while "x-deleted-filter" in search().headers:
        assert time.monotonic() < deadline, "filtering did not resume"
        time.sleep(0.2)
    while srv.client.get("/stats").json()["database"] != "up":  # the breaker's probe (the listener may be first)
        assert time.monotonic() < deadline, "the breaker did not close"
        time.sleep(0.2)
