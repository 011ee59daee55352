"""Planning in one path against the real test database: scopes, the backfill interval, parts, and claims."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from embeddings.planning import (
    OWNER_GRACE,
    Selection,
    SelectionError,
    claimed_by_run,
    cut,
    plan,
    release,
    take,
)
from tests.embeddings.helpers import add_event, register

MV = "efficientnet-lite0@crop224"
REPO = Path(__file__).resolve().parents[2]


def _flat(parts: list[list[int]]) -> list[int]:
    return [i for p in parts for i in p]


@pytest.fixture
def rows(db):  # type: ignore[no-untyped-def]
    """Event A: 3 rows on days 0-2, event B: 2 rows on days 3-4; A's first row already failed for MV."""
    a, b = add_event(db), add_event(db)
    ids_a = [register(db, a, f"/a/{n}.jpg") for n in range(3)]
    ids_b = [register(db, b, f"/b/{n}.jpg") for n in range(2)]
    base = datetime(2024, 5, 1, tzinfo=UTC)
    db.execute("SET TIME ZONE 'UTC'")
    for n, i in enumerate(ids_a + ids_b):
        naive = base.replace(tzinfo=None) + timedelta(days=n)
        db.execute("UPDATE images SET created_at = %s WHERE id = %s", (naive, i))
    db.execute("INSERT INTO image_embeddings (image_id, model_version, status, error) VALUES (%s, %s, 'failed', "
               "'missing')", (ids_a[0], MV))
    return {"a": a, "b": b, "ids_a": ids_a, "ids_b": ids_b, "base": base}


def test_scopes_interval_limit_and_parts(settings, rows) -> None:  # type: ignore[no-untyped-def]
    info, ids_a, ids_b, base = settings.conninfo(), rows["ids_a"], rows["ids_b"], rows["base"]
    n = iter(range(100))

    def ids(selection: Selection, **kw) -> list[list[int]]:  # type: ignore[no-untyped-def]
        """One run's plan, its claims released after (each call below is a run on its own)."""
        kw.setdefault("images_per_part", 10)
        mv, run_id = kw.pop("mv", MV), f"r{next(n)}"
        parts = plan(info, mv, selection, run_id=run_id, **kw)
        release(info, mv, run_id, _flat(parts))
        return parts

    assert ids(Selection("pending"), images_per_part=2) == [ids_a[1:], ids_b]
    assert ids(Selection("pending"), mv="places365-resnet50@crop224") == [ids_a + ids_b]
    assert ids(Selection("pending", limit=1)) == [ids_a[1:2]]
    assert ids(Selection("event", event_code=rows["b"])) == [ids_b]
    assert ids(Selection("range", start=base + timedelta(days=1), end=base + timedelta(days=3))) == [ids_a[1:3]]
    assert ids(Selection("all")) == [ids_a + ids_b]
    assert ids(Selection("failed")) == [ids_a[:1]]
    # A backfill's data interval narrows any scope, in the same statement (days 0-1: ids_a[0:2]).
    interval = (base, base + timedelta(days=2))
    assert ids(Selection("pending", interval=interval)) == [ids_a[1:2]]
    assert ids(Selection("all", interval=interval, limit=1)) == [ids_a[:1]]
    # Parts grow rather than exceed the mapped-task limit; nothing is dropped.
    assert ids(Selection("all"), images_per_part=1, max_parts=2) == [ids_a[:3], ids_a[3:] + ids_b]
    assert cut(list(range(5)), 2) == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"scope": "nope"}, "scope"),
        ({"scope": "event"}, "event_code"),
        ({"scope": "event", "event_code": "x"}, "event_code"),
        ({"scope": "pending", "event_code": "0b5e6c2e-0000-4000-8000-000000000000"}, "event_code"),
        ({"scope": "range"}, "start/end"),
        ({"scope": "range", "start": datetime(2024, 2, 1), "end": datetime(2024, 1, 1)}, "start/end"),
        ({"scope": "all", "start": datetime(2024, 2, 1)}, "start/end"),
        ({"scope": "all", "limit": 0}, "limit"),
        ({"scope": "all", "limit": True}, "limit"),
    ],
)
def test_a_bad_selection_names_its_field(kwargs, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SelectionError) as info:
        Selection(**kwargs)
    assert str(info.value).startswith(field)


def test_images_per_part_is_checked_before_the_database() -> None:
    with pytest.raises(SelectionError, match=r"^images_per_part"):
        plan("host=/nonexistent dbname=x", MV, Selection("all"), run_id="r", images_per_part=0)


def test_concurrent_runs_never_claim_the_same_image(settings, rows) -> None:  # type: ignore[no-untyped-def]
    """Schedule, manual and backfill plans at once: every image goes to exactly one of them."""
    info = settings.conninfo()
    everything = sorted(rows["ids_a"] + rows["ids_b"])
    selections = [Selection("all"), Selection("pending"), Selection("all"), Selection("range", start=rows["base"]),
                  Selection("all", interval=(rows["base"], rows["base"] + timedelta(days=9)))] * 2
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(len(selections))

    def run(n: int, selection: Selection) -> None:
        barrier.wait()
        got[f"run{n}"] = _flat(plan(info, MV, selection, run_id=f"run{n}"))

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in enumerate(selections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    claimed = sorted(i for ids in got.values() for i in ids)
    assert claimed == everything, got  # each image once: none twice, none lost
    assert sum(claimed_by_run(info).values()) == len(everything)


def test_claims_renew_for_a_retry_expire_for_a_dead_run_and_release(settings, rows, db) -> None:  # type: ignore[no-untyped-def]
    info = settings.conninfo()
    everything = sorted(rows["ids_a"] + rows["ids_b"])
    assert _flat(plan(info, MV, Selection("all"), run_id="first")) == everything
    # While "first" holds them, another run gets nothing; "first" planning again (a retry) gets them all.
    assert plan(info, MV, Selection("all"), run_id="second") == []
    assert _flat(plan(info, MV, Selection("all"), run_id="first")) == everything

    # The embed task of "first" renews its claims; a part already written by an earlier try is not redone.
    db.execute("INSERT INTO image_embeddings (image_id, model_version, status, parquet_part) VALUES "
               "(%s, %s, 'embedded', 'embeddings/x/part-first-00000.parquet')", (everything[1], MV))
    taken = take(info, MV, "first", everything[:3], "part-first-00000.parquet")
    assert (taken.todo, taken.done, taken.lost) == ([everything[0], everything[2]], [everything[1]], [])

    # "first" dies: once its lease is over, a later run takes the images over and "first" has lost them.
    db.execute("UPDATE embedding_claims SET expires_at = now() - interval '1 second' WHERE run_id = 'first'")
    assert _flat(plan(info, MV, Selection("all"), run_id="third")) == everything
    late = take(info, MV, "first", everything[:2], "part-first-00001.parquet")
    assert (late.todo, late.done, late.lost) == ([], [], everything[:2])

    # Released once recorded: a later pending plan sees only what has no ledger row.
    assert release(info, MV, "third", everything) == len(everything)
    assert claimed_by_run(info) == {}
    pending = _flat(plan(info, MV, Selection("pending"), run_id="fourth"))
    assert pending == [i for i in everything if i not in (rows["ids_a"][0], everything[1])]


def _owner_process(info: str, run_id: str, *, one_process: bool = False) -> subprocess.Popen[str]:
    """A real process working for `run_id` (holding its owner lock) until it is killed."""
    code = ("import sys, time\nfrom embeddings.planning import owner\n"
            f"with owner({info!r}, {run_id!r}, one_process={one_process!r}):\n"
            "    print('ready', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_claims_die_with_their_owner_and_never_while_it_lives(settings, rows, db) -> None:  # type: ignore[no-untyped-def]
    """The taken batch of a killed run is free at once; its batches not started wait OWNER_GRACE; a live
    run (its lock held, or seen within the grace) keeps everything."""
    info = settings.conninfo()
    everything = sorted(rows["ids_a"] + rows["ids_b"])
    started = everything[:2]
    assert _flat(plan(info, MV, Selection("all"), run_id="crashed")) == everything
    assert take(info, MV, "crashed", started, "part-crashed-00000.parquet").todo == started
    worker = _owner_process(info, "crashed")
    try:
        # Alive: a process holds the lock, even long after the run was last seen.
        db.execute("UPDATE embedding_runs SET last_seen = now() - interval '1 hour' WHERE run_id = 'crashed'")
        assert plan(info, MV, Selection("all"), run_id="live-check") == []
    finally:
        _kill(worker)
    # The process is gone: what it had taken goes to the next run at once; its waiting batch does not
    # while the run was seen within the grace (an Airflow run between two tasks).
    db.execute("UPDATE embedding_runs SET last_seen = now() WHERE run_id = 'crashed'")
    assert _flat(plan(info, MV, Selection("all"), run_id="rerun")) == started
    db.execute("UPDATE embedding_runs SET last_seen = now() - %s - interval '1 second' WHERE run_id = 'crashed'",
               (OWNER_GRACE,))
    assert _flat(plan(info, MV, Selection("all"), run_id="rerun")) == everything
    assert take(info, MV, "crashed", everything, "part-crashed-00001.parquet").lost == everything


def test_a_one_process_run_loses_everything_when_it_dies(settings, rows, db) -> None:  # type: ignore[no-untyped-def]
    """The CLI is the whole run: once its process dies, a re-run takes every image, started or not."""
    info = settings.conninfo()
    everything = sorted(rows["ids_a"] + rows["ids_b"])
    cli = _owner_process(info, "cli-run", one_process=True)
    try:
        assert _flat(plan(info, MV, Selection("all"), run_id="cli-run")) == everything
        assert plan(info, MV, Selection("all"), run_id="other") == []  # alive: nothing for another run
    finally:
        _kill(cli)
    assert _flat(plan(info, MV, Selection("all"), run_id="other")) == everything
