"""The stack across "hosts" that share no folder: `make stack ARGS="--object-store --workers 2 --replicas 2"`.

DATA_DIR, BACKUP_DIR and IMAGE_ROOT are on an S3 server (rclone serve s3); two Celery workers, the
scheduler and two search servers each keep only their own STORAGE_CACHE_DIR. Rows are added, the
mapped embeds run on both workers, the asset triggers the build, and both replicas answer from the
new version without a restart. Then one replica is killed (the other keeps answering) and the object
store is stopped for 30 s in the middle of a run (searches keep answering from the cache, the tasks
retry and finish, nothing is lost or embedded twice, no half part is read).
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow.parquet as pq
import pytest

from tests.embeddings.helpers import add_event, register
from tests.helpers import TABLES, generate_photos
from tests.stack.test_stack import EMBED, INDEX, _finished, _ledger, _runs, _tis, _trigger, wait

pytestmark = pytest.mark.slow

MODEL = "efficientnet-lite0+plain"


@pytest.fixture(scope="module")
def os_stack(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from core.localpg import free_port
    from core.settings import get_settings
    from embeddings.models import parse_name
    from stack.local import Stack, StackConfig

    home = tmp_path_factory.mktemp("os-stack")
    mp = pytest.MonkeyPatch()
    mp.setenv("EMBEDDING_MODEL", MODEL)
    mp.setenv("TORCH_THREADS", "1")
    mp.setenv("SWAP_POLL_SECONDS", "1")
    mp.setenv("EMBEDDING_SCHEDULE", "none")  # only this test's runs: a scheduled one would take their images
    get_settings.cache_clear()
    conn = psycopg.connect(pg_database, autocommit=True)
    conn.execute(f"TRUNCATE embedding_claims, {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    suffix = uuid.uuid4().hex[:8]
    config = StackConfig(home=home / "stack", airflow_port=free_port(), search_port=free_port(),
                         redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                         airflow_db=f"imgsim_airflow_{suffix}", queue=f"imgsim-{suffix}", worker_concurrency=1,
                         object_store=True, workers=2, replicas=2)
    stack = Stack(config, log=print)
    started = time.monotonic()
    try:
        stack.start()
        print(f"stack up in {time.monotonic() - started:.0f} s\n{stack.summary()}")
        yield {"stack": stack, "conn": conn, "event": add_event(conn), "home": home,
               "photos": generate_photos(home / "generated", 12, seed=2424), "mv": parse_name(MODEL).model_version}
    finally:
        stack.stop()
        conn.close()
        with psycopg.connect(psycopg.conninfo.make_conninfo(pg_database, dbname="postgres"), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{config.airflow_db}" WITH (FORCE)')
        mp.undo()
        get_settings.cache_clear()


def _upload(stack, conn: psycopg.Connection, event: str, photos: list[Path], sub: str) -> list[int]:  # type: ignore[no-untyped-def]
    """Put photos into the IMAGE_ROOT bucket through the S3 API (as the EMS would) and register them."""
    from core.settings import load_settings
    from storage import objects

    env = stack._env
    settings = load_settings(image_root=env["IMAGE_ROOT"], aws_endpoint_url=env["AWS_ENDPOINT_URL"],
                             aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                             aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], aws_default_region="us-east-1")
    ids = []
    for p in photos:
        objects.put_file(settings, settings.image_location, f"{sub}/{p.name}", p)
        ids.append(register(conn, event, f"/{sub}/{p.name}", p.name))
    return ids


def _bucket_rows(stack, mv: str) -> Counter[int]:  # type: ignore[no-untyped-def]
    """image_id -> rows holding it across the parts in the object store (read from the server's own folder)."""
    folder = stack.config.home / "object-store" / stack.BUCKET / "data" / "embeddings" / f"model_version={mv}"
    counts: Counter[int] = Counter()
    for part in folder.glob("*.parquet"):
        counts.update(pq.read_table(part, columns=["image_id"])["image_id"].to_pylist())
    return counts


def _count(stack, name: str) -> int | None:  # type: ignore[no-untyped-def]
    try:
        return httpx.get(f"{stack.replica_url(name)}/stats", timeout=5).json().get("total_vectors_faiss")
    except httpx.HTTPError:
        return None


def _index_runs_done(stack) -> int:  # type: ignore[no-untyped-def]
    return sum(r["state"] == "success" for r in _runs(stack, INDEX))


def test_no_shared_disk(os_stack: dict[str, Any]) -> None:
    stack, conn, event, mv = os_stack["stack"], os_stack["conn"], os_stack["event"], os_stack["mv"]
    photos = os_stack["photos"]
    timings: dict[str, float] = {}

    # 1. Set A into the bucket; one run, one image per mapped task, spread over both workers.
    mark = time.monotonic()
    set_a = _upload(stack, conn, event, photos[:8], "a")
    run_a = _trigger(stack, {"scope": "pending", "images_per_part": 1})
    assert wait(stack, "run A", lambda: _finished(stack, EMBED, run_a), 900) == "success"
    assert _ledger(conn, set_a) == {i: ("embedded", 1) for i in set_a}
    rows = _bucket_rows(stack, mv)
    assert {i: rows[i] for i in set_a} == dict.fromkeys(set_a, 1)
    caches = stack.config.home / "cache"
    in_bucket = {p.name for p in (stack.config.home / "object-store").rglob("part-*.parquet")}
    for worker in stack.workers:  # each wrote parts through its own cache; what is left there is a copy
        assert list((caches / worker).rglob("embeddings")), f"{worker} embedded nothing"
        assert {p.name for p in (caches / worker).rglob("part-*.parquet")} <= in_bucket
    assert not (stack.config.home.parent / "data").exists()  # no local DATA_DIR anywhere
    timings["set A embedded on two workers"] = time.monotonic() - mark

    # 2. The asset triggers image_index; both replicas serve the new version, never restarted.
    mark = time.monotonic()
    pids = {n: stack.pid(n) for n in stack.replicas}
    for name in stack.replicas:
        wait(stack, f"{name} to serve set A", lambda name=name: _count(stack, name) == len(set_a), 600)
    assert {n: stack.pid(n) for n in stack.replicas} == pids
    timings["asset-triggered build, served by both replicas"] = time.monotonic() - mark
    first = stack.replicas[0]
    similar = f"{stack.replica_url(first)}/images/{set_a[0]}/similar"
    assert httpx.get(similar, params={"top_k": 3}, timeout=30).status_code == 200

    # 3. One replica is lost (stopped, and kept down): the other keeps answering.
    stack.kill(stack.replicas[1], stay_down=True)
    assert all(httpx.get(similar, timeout=10).status_code == 200 for _ in range(20))

    # 4. Set B, and the object store stops for 30 s while its embeds run.
    mark = time.monotonic()
    index_runs = _index_runs_done(stack)
    set_b = _upload(stack, conn, event, photos[8:12], "b")
    run_b = _trigger(stack, {"scope": "pending", "images_per_part": 1})
    wait(stack, "an embed task of run B to be running", lambda: any(
        t["task_id"] == "embed" and t["state"] == "running" for t in _tis(stack, EMBED, run_b)), 300, every=0.3)
    stack.kill("object-store", stay_down=True)
    down_until = time.monotonic() + 30
    answers: Counter[int] = Counter()
    degraded = None
    while time.monotonic() < down_until:
        answers[httpx.get(similar, timeout=10).status_code] += 1
        stats = httpx.get(f"{stack.replica_url(first)}/stats", timeout=10).json()
        degraded = degraded or stats.get("degraded")
        time.sleep(0.5)
    stack.start_service("object-store")
    assert set(answers) == {200}, answers  # the cache served every search during the outage
    assert degraded and "object store unavailable" in degraded, degraded
    assert wait(stack, "run B after the outage", lambda: _finished(stack, EMBED, run_b), 900) == "success"
    embeds = [t for t in _tis(stack, EMBED, run_b) if t["task_id"] == "embed"]
    print("run B tries:", sorted(t["try_number"] for t in embeds))
    assert _ledger(conn, set_b) == {i: ("embedded", 1) for i in set_b}
    rows = _bucket_rows(stack, mv)
    assert {i: rows[i] for i in set_a + set_b} == dict.fromkeys(set_a + set_b, 1)
    assert conn.execute("SELECT count(*) FROM embedding_claims").fetchone()[0] == 0
    wait(stack, "the index run after the outage", lambda: _index_runs_done(stack) > index_runs, 900)
    wait(stack, f"{first} to serve sets A and B", lambda: _count(stack, first) == len(set_a) + len(set_b), 300)
    stats = httpx.get(f"{stack.replica_url(first)}/stats", timeout=10).json()
    assert stats["degraded"] is None and stats["storage_problem"] is None, stats
    assert stack.pid(first) == pids[first]
    timings["set B through a 30 s object-store outage, served"] = time.monotonic() - mark
    print("\n".join(f"{k:<52} {v:6.0f} s" for k, v in timings.items()))
