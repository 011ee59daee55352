"""The stack's supervision without Airflow (fast): supervisord restarts a killed service and the service's
leftovers are ended first, one stack per home, `stop_running` leaves nothing; the recovery settings are
real Airflow options and the same in docker-compose.yaml; the private PostgreSQL is durable.
"""

from __future__ import annotations

import configparser
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from stack.local import Stack, StackConfig, StackRunning, recovery_settings, running_pid, stop_running
from stack.service import MARK_HOME, end_processes, stack_processes
from stack.supervisord import Program, Supervisord, write_config

REPO = Path(__file__).resolve().parents[2]

# A service like a Celery worker: a child in its process group with no trace of the stack in its
# environment (a pool process that set its title overwrites it), which runs a grandchild in a process
# group of its own (Airflow's task runner does), then both wait.
GRANDCHILD = "import time; time.sleep(600)"
CHILD = (f"import os, subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}], "
         "process_group=0); print('child', os.getpid(), g.pid, flush=True); time.sleep(600)")
PARENT = (f"import os, subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {CHILD!r}], "
          "env={'PATH': os.environ['PATH']}); time.sleep(600)")


def _wait(check, timeout: float = 30, every: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := check():
            return got
        time.sleep(every)
    raise AssertionError("timed out")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture
def mini(tmp_path: Path) -> Iterator[tuple[Path, Supervisord]]:
    """A stack home with one service, `toy`, under a real supervisord (what stack/local.py writes)."""
    home = tmp_path / "home"
    write_config(home, [Program("toy", priority=10, startsecs=1)])
    env = {k: v for k, v in os.environ.items() if k not in (MARK_HOME,)}
    layout = {"env": env, "services": {"toy": {"argv": [sys.executable, "-c", PARENT], "env": {}, "port": None,
                                               "user": None, "cwd": str(home)}}}
    (home / "run" / "services.json").write_text(json.dumps(layout))
    sup = Supervisord(home)
    sup.start()
    try:
        yield home, sup
    finally:
        stop_running(home, timeout=30)


def _children(home: Path) -> list[list[int]]:
    """[child, grandchild] of each run of the toy service, from its log."""
    lines = (home / "logs" / "toy.log").read_text().splitlines()
    return [[int(x) for x in line.split()[1:]] for line in lines if line.startswith("child ")]


def test_a_killed_service_is_restarted_and_its_leftovers_ended(mini: tuple[Path, Supervisord]) -> None:
    home, sup = mini
    sup.rpc().supervisor.startProcess("toy", True)
    first = sup.info()["toy"]["pid"]
    child, grandchild = _wait(lambda: _children(home))[0]
    assert set(stack_processes(home, "toy")) == {first, child, grandchild}
    os.kill(first, signal.SIGKILL)  # a crash: its child and grandchild are left behind
    second = _wait(lambda: (p := sup.info()["toy"]) and p["statename"] == "RUNNING" and p["pid"] != first
                   and p["pid"])
    # Ended by stack/service.py before the service ran again: the child by the old process group, the
    # grandchild as the child's descendant.
    _wait(lambda: not _alive(child) and not _alive(grandchild), timeout=10)
    assert "left behind" in (home / "logs" / "toy.log").read_text()
    new = _wait(lambda: len(_children(home)) > 1 and _children(home)[-1])
    assert set(stack_processes(home)) >= {sup.pid(), second, *new}


def test_stop_ends_everything_even_after_supervisord_was_killed(mini: tuple[Path, Supervisord]) -> None:
    home, sup = mini
    sup.rpc().supervisor.startProcess("toy", True)
    child, grandchild = _wait(lambda: _children(home))[0]
    service = sup.info()["toy"]["pid"]
    sup.kill()  # SIGKILL: the service and its children go on without it
    _wait(lambda: sup.pid() is None)
    assert _alive(service) and _alive(child) and _alive(grandchild)
    assert running_pid(home) is not None  # still a stack here: a second start would refuse
    assert stop_running(home, timeout=30)
    assert not any(_alive(p) for p in (service, child, grandchild))
    assert stack_processes(home) == [] and running_pid(home) is None
    assert not stop_running(home)  # nothing left to stop


def test_one_stack_per_home(mini: tuple[Path, Supervisord]) -> None:
    home, sup = mini
    other = Stack(StackConfig(home=home))
    with pytest.raises(StackRunning, match=rf"a stack is already running in {home} \(pid {sup.pid()}\); "
                                           "make stack-stop first"):
        other.start()
    other.stop()  # not its stack: touches nothing
    assert sup.pid() is not None and sup.info()["toy"]["statename"] == "STOPPED"


def test_end_processes_escalates_to_sigkill(tmp_path: Path) -> None:
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"],
                                stdout=subprocess.PIPE)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    assert end_processes([stubborn.pid], grace=0.5) == []
    assert stubborn.wait(5) == -signal.SIGKILL


def test_supervisord_config(tmp_path: Path) -> None:
    conf = write_config(tmp_path / "home", [Program("postgres", 1, 3, "INT"), Program("worker", 30)])
    parser = configparser.RawConfigParser()
    parser.read(conf)
    worker = parser["program:worker"]
    assert worker["autorestart"] == "true" and worker["autostart"] == "false"
    assert worker["stopasgroup"] == worker["killasgroup"] == "true"
    assert int(worker["startretries"]) >= 10 and worker["startsecs"] == "10"
    assert worker["stdout_logfile"] == str(tmp_path / "home" / "logs" / "worker.log")
    assert worker["command"].endswith(f"-m stack.service --home {tmp_path / 'home'} worker")
    assert parser["program:postgres"]["stopsignal"] == "INT" and parser["program:postgres"]["priority"] == "1"


def _compose_airflow_env() -> dict[str, str]:
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    return {k: str(v) for k, v in compose["x-airflow-common"]["environment"].items()}


def test_recovery_settings_are_airflow_options_and_the_same_in_compose() -> None:
    from airflow.configuration import conf

    ours = recovery_settings(worker_slots=4)  # compose: 2 worker replicas x concurrency 2
    compose = _compose_airflow_env()
    for key, value in ours.items():
        section, option = key.removeprefix("AIRFLOW__").lower().split("__")
        if section != "celery_broker_transport_options":  # passed to Celery as they are
            assert conf.has_option(section, option), key
        assert compose.get(key, "").lower() == value.lower(), (key, compose.get(key), value)
    assert float(ours["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"]) + float(
        ours["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL"]) <= 90  # leaves 30 s of the 2 minutes
    assert int(ours["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]) >= 3600


def test_the_private_postgres_is_durable(tmp_path: Path) -> None:
    from core.localpg import LocalPostgres, find_bindir

    if find_bindir() is None:
        pytest.skip("no PostgreSQL binaries")
    durable = LocalPostgres(tmp_path / "a")
    assert durable.durable and not any("fsync" in o or "synchronous_commit" in o or "full_page_writes" in o
                                       for o in durable.argv())
    fast = LocalPostgres(tmp_path / "b", durable=False)
    assert {"fsync=off", "synchronous_commit=off", "full_page_writes=off"} <= set(fast.argv())


def test_a_port_in_use_stops_the_start_before_anything_runs(tmp_path: Path) -> None:
    import socket

    from core.localpg import free_port
    from stack.local import StackError

    home = tmp_path / "home"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack = Stack(StackConfig(home=home, airflow_port=port, search_port=free_port()))
        with pytest.raises(StackError, match=f"port {port} of the api-server is already in use"):
            stack.start()
        stack.stop()
    assert Supervisord(home).pid() is None and stack_processes(home) == []
    assert running_pid(home) is None  # nothing left that would block the next start
