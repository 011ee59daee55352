"""Deleted images leave search results through NOTIFY, with no database query per search.

The server's database is a private PostgreSQL (core/localpg.py) so that it can
be stopped with SIGSTOP: answers that stay right while it is stopped came from
the server's own set, not from a query.
"""

from __future__ import annotations

import time

import psycopg
from psycopg.conninfo import make_conninfo

from tests.serving.conftest import API_KEY, copy_corpus, hang, resume

NOTIFY_BOUND = 1.0  # seconds from a DELETE's commit to the server's answers (docs/api.md says ms; CI is slow)


def _server(scenario, live_server, stoppable_pg, name: str, **overrides):  # type: ignore[no-untyped-def]
    scn = scenario(name)
    scn.publish()
    pg_info = make_conninfo(host="127.0.0.1", port=stoppable_pg.port, user="postgres", dbname="postgres")
    copy_corpus(scn.conninfo, pg_info)
    settings = scn.settings.model_copy(update={"db_port": stoppable_pg.port, "db_name": "postgres", "db_pass": "",
                                               "db_user": "postgres", "db_host": "127.0.0.1", "api_key": API_KEY,
                                               **overrides})
    srv = live_server(settings)
    srv.wait_ready()
    srv.wait_filter_fresh()
    return srv, pg_info


def _gone_within(srv, search, image_id: int, bound: float) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while True:
        r = search()
        assert r.status_code == 200 and "x-deleted-filter" not in r.headers
        if image_id not in [h["id"] for h in r.json()]:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < bound, f"deleted image {image_id} still served after {bound} s"


def test_deletion_arrives_by_notify_and_searches_ask_nothing(scenario, live_server, base, stoppable_pg) -> None:
    srv, pg_info = _server(scenario, live_server, stoppable_pg, "notify", deleted_filter_stale_seconds=1.0)
    served = srv.state.holder.current
    victim = base.dup_pairs[0][1]
    query = served.vector(victim).tolist()

    def search():  # type: ignore[no-untyped-def]
        return srv.client.post("/search", json={"vector": query, "top_k": 5, "filters": {"event_code": base.event_a}})

    assert search().json()[0]["id"] == victim
    calls = srv.state.db.calls
    with psycopg.connect(pg_info, autocommit=True) as conn:
        conn.execute("DELETE FROM images WHERE id = %s", (victim,))
    took = _gone_within(srv, search, victim, NOTIFY_BOUND)
    for _ in range(20):
        assert victim not in [h["id"] for h in search().json()]
    similar = srv.client.get(f"/images/{victim}/similar")
    assert similar.status_code == 404 and "deleted" in similar.json()["message"]
    groups = srv.client.get(f"/events/{base.event_a}/duplicates").json()["groups"]
    assert victim not in {i["id"] for g in groups for i in g["images"]}
    assert srv.state.db.calls == calls, "a search asked the database"
    stats = srv.client.get("/stats").json()["deleted_filter"]
    assert stats["deleted_known"] == 1 and stats["notifications"] >= 1 and stats["database_fallbacks"] == 0
    # The database stops answering: answers stay right (they never needed it) and say nothing...
    hang(stoppable_pg)
    try:
        t0 = time.perf_counter()
        r = search()
        assert time.perf_counter() - t0 < 0.5 and "x-deleted-filter" not in r.headers
        assert r.status_code == 200 and victim not in [h["id"] for h in r.json()]
        # ... until the set goes unconfirmed for longer than DELETED_FILTER_STALE_SECONDS: then the header
        # says so, with the set's age, and the set is still applied.
        time.sleep(1.3)
        for _ in range(5):
            r = search()
        assert r.headers["x-deleted-filter"] == "skipped" and float(r.headers["x-deleted-filter-age"]) >= 1.0
        assert victim not in [h["id"] for h in r.json()]
        assert srv.state.db.timeouts == 1  # the fallback query paid one deadline, then the breaker answered
    finally:
        resume(stoppable_pg)
    deadline = time.monotonic() + 20
    while "x-deleted-filter" in search().headers:
        assert time.monotonic() < deadline, "filtering did not resume"
        time.sleep(0.1)
    print(f"deletion applied {took * 1000:.1f} ms after its commit (upper bound, includes one search)")


def test_deletions_no_trigger_saw_are_caught_up(scenario, live_server, base, stoppable_pg) -> None:
    """NOTIFYs are lost while the listener reconnects (and a replica-role session fires no trigger): every
    (re)connect re-reads which served ids still exist; a TRUNCATE sends '*' and does the same."""
    srv, pg_info = _server(scenario, live_server, stoppable_pg, "catchup")
    served = srv.state.holder.current
    victim = base.dup_pairs[0][1]
    query = served.vector(victim).tolist()

    def search():  # type: ignore[no-untyped-def]
        return srv.client.post("/search", json={"vector": query, "top_k": 5})

    with psycopg.connect(pg_info, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # triggers off, as in a logical replica's apply
        conn.execute("DELETE FROM images WHERE id = %s", (victim,))
    time.sleep(0.3)
    assert search().json()[0]["id"] == victim  # unseen: proof that no search asks the database
    catch_ups = srv.state.deleted.catch_ups
    with psycopg.connect(pg_info, autocommit=True) as conn:  # the listener's connection dies
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT 1%%' "
                     "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
    deadline = time.monotonic() + 15
    while not (srv.state.deleted.catch_ups > catch_ups and srv.client.get("/stats").json()["deleted_filter"]["fresh"]):
        assert srv.client.post("/search", json={"vector": query, "top_k": 5}).status_code == 200
        assert time.monotonic() < deadline, "the listener did not reconnect"
        time.sleep(0.05)
    assert srv.state.deleted.known(served.version)[0] == {victim}
    assert victim not in [h["id"] for h in search().json()]
    with psycopg.connect(pg_info, autocommit=True) as conn:
        conn.execute("TRUNCATE images CASCADE")
    deadline = time.monotonic() + NOTIFY_BOUND
    while True:
        r = search()
        assert r.status_code == 200
        if r.json() == []:
            break
        assert time.monotonic() < deadline, f"TRUNCATE not applied: {r.json()}"
    srv.wait_filter_fresh()
    assert srv.state.deleted.known(served.version)[0] == set(served.loaded.ids.tolist())
