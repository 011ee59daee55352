"""Hot-swap: no index -> 503 then ready; swaps under load with zero failed requests; corrupt versions refused."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import numpy as np
import psycopg

from tests.helpers import flip_byte


def _wait(predicate, timeout: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_no_index_is_503_with_reason_until_a_publish(scenario, live_server, base) -> None:
    scn = scenario("empty", swap_poll_seconds=60)  # only the publish NOTIFY can wake it in time
    srv = live_server(scn.settings)
    _wait(lambda: "no published index" in srv.client.get("/").text, what="a reason in GET /")
    r = srv.client.get("/")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"
    assert r.json()["message"] == r.json()["detail"] and "python -m indexing" in r.json()["reason"]
    r = srv.client.post("/search", json={"vector": [0.1] * 1280})
    assert r.status_code == 503 and "no index loaded" in r.json()["message"]
    assert srv.client.get(f"/images/{base.ids[0]}/similar").status_code == 503
    stats = srv.client.get("/stats").json()
    assert stats["total_vectors_faiss"] == 0 and stats["status"].startswith("unavailable")
    _wait(lambda: srv.state.watcher.listening, what="LISTEN")
    scn.publish()
    started = time.monotonic()
    assert srv.wait_ready(timeout=20)["index_version"] == 1
    assert time.monotonic() - started < 10  # the NOTIFY, not the 60 s poll
    assert srv.client.post("/search", json={"vector": [0.1] * 1280}).status_code == 200


def test_no_index_for_the_model_version_names_the_other_variant_published(scenario, live_server) -> None:
    """An upgrade changed efficientnet-lite0's default variant (+rot4 -> plain): a server whose version has no
    index, while the same model's other variant has one, says which and how to serve it."""
    scn = scenario("variant", swap_poll_seconds=60)
    scn.publish()  # the base's version, efficientnet-lite0@crop224 (plain)
    srv = live_server(scn.settings.model_copy(update={"embedding_model": "efficientnet-lite0+rot4"}))
    _wait(lambda: "no published index" in srv.client.get("/").text, what="a reason in GET /")
    reason = srv.client.get("/").json()["reason"]
    assert "for model efficientnet-lite0@crop224+rot4" in reason
    assert "efficientnet-lite0@crop224 has published versions (newest 1)" in reason
    assert "EMBEDDING_MODEL=efficientnet-lite0@crop224 " in reason


def test_hot_swap_under_concurrent_load_fails_no_request(scenario, live_server, base) -> None:
    scn = scenario("swap", swap_poll_seconds=0.2)
    scn.publish()
    srv = live_server(scn.settings)
    srv.wait_ready(version=1)
    old = srv.state.holder.current
    query = old.vector(base.ids[3]).tolist()
    stop = threading.Event()
    failures: list[str] = []
    versions: Counter[int] = Counter()
    done = Counter()

    def worker(n: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if i % 3 == 0:
                        r = client.get("/")
                        if r.status_code == 200:
                            versions[r.json()["index_version"]] += 1
                    elif i % 3 == 1:
                        r = client.post("/search", json={"vector": query, "top_k": 5,
                                                         "filters": {"event_code": base.event_a}})
                    else:
                        r = client.get(f"/images/{base.ids[3]}/similar", params={"top_k": 5})
                    if r.status_code != 200 or (i % 3 and not r.json()):
                        failures.append(f"{r.request.url.path}: {r.status_code} {r.text[:200]}")
                    done[n] += 1
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        scn.execute("DELETE FROM images WHERE id = %s", (base.ids[20],))  # a change for the merge
        assert scn.publish(mode="merge") == 2
        _wait(lambda: srv.state.holder.current.version == 2, what="swap to v2")
        time.sleep(0.5)
        assert scn.publish(mode="rebuild") == 3
        _wait(lambda: srv.state.holder.current.version == 3, what="swap to v3")
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert sum(done.values()) > 100 and {1, 2, 3} <= set(versions)
    stats = srv.client.get("/stats").json()
    assert stats["index_version"] == 3 and stats["total_vectors_faiss"] == base.total - 1
    assert stats["swap"]["swaps"] == 2 and stats["swap"]["failures"] == 0
    assert "imgsim_index_swaps_total 2.0" in srv.client.get("/metrics").text
    # A request that took v1 before the swaps still completes on v1: the old object stays whole.
    _scores, ids = old.search(np.asarray(query, dtype=np.float32), 3)
    assert old.version == 1 and ids[0] == base.ids[3]


def test_corrupt_version_refused_while_old_keeps_serving(scenario, live_server, base) -> None:
    from indexing import pipeline

    scn = scenario("corrupt", swap_poll_seconds=60)
    scn.publish()
    srv = live_server(scn.settings)
    srv.wait_ready(version=1)
    _wait(lambda: srv.state.watcher.listening, what="LISTEN")
    built = pipeline.build(scn.conninfo, scn.settings, base.model_version, mode="rebuild")
    flip_byte(scn.store().version_dir(built["version"]) / "index.faiss")  # only the checksum can tell
    scn.store().set_current(built["version"])  # as a bad copy or a careless hand would
    with psycopg.connect(scn.conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_notify('index_published', %s)",
                     (f'{{"model_version": "{base.model_version}", "version": {built["version"]}}}',))
    _wait(lambda: srv.state.holder.stats.failures >= 1, timeout=20, what="the refusal")
    r = srv.client.get("/")
    assert r.status_code == 200 and r.json()["index_version"] == 1
    assert srv.client.get(f"/images/{base.ids[0]}/similar").status_code == 200
    stats = srv.client.get("/stats").json()
    assert stats["index_version"] == 1 and stats["swap"]["failures"] == 1
    assert "checksum" in stats["swap"]["failed_versions"]["2"] and "checksum" in stats["swap"]["last_error"]
    metrics = srv.client.get("/metrics").text
    assert "imgsim_index_swap_failures_total 1.0" in metrics and 'imgsim_index_version_refused{reason=' in metrics
    versions = srv.client.get("/versions").json()
    assert versions["current"] == 2 and versions["served"] == 1
    assert "checksum" in next(v for v in versions["versions"] if v["version"] == 2)["error"]
    # The next good publish swaps in at once (NOTIFY) and the refusal stays on record.
    good = scn.publish(mode="rebuild")
    assert srv.wait_ready(timeout=20, version=good)["index_version"] == 3
    assert srv.client.get("/stats").json()["swap"]["failures"] == 1
