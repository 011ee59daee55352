"""Run the pipeline's DAGs the way Airflow does, without a scheduler: `airflow dags test` subprocesses.

Airflow gets a home of its own under DATA_DIR/airflow with SQLite metadata
(migrated with `airflow db migrate`), the repo's DAGs and plugins folders, and
the image database as the connection `image_db` (AIRFLOW_CONN_IMAGE_DB), so
the tasks run exactly the code a deployment runs. Each run's output goes to a
log file; its task outcomes are echoed as they finish.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.db import airflow_connection_json

REPO = Path(__file__).resolve().parent.parent
# `airflow dags test` logs "[DAG TEST] starting task_id=embed map_index=3", the execution API's
# "Task instance state updated ... new_state=success", then "[DAG TEST] end task task_id=embed map_index=3".
_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>[\w.]+) map_index=(?P<map>-?\d+)")
_TASK_STATE = re.compile(r"\bnew_state=(?P<state>[a-z_]+)")
_TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(?P<task>[\w.]+) map_index=(?P<map>-?\d+)")


class AirflowRunError(RuntimeError):
    """An Airflow command failed; the message names the log file holding its output."""


@dataclass(frozen=True)
class DagRunResult:
    dag_id: str
    seconds: float
    log: Path
    tasks: dict[str, str]


class AirflowRunner:
    """`airflow db migrate` and `airflow dags test` against a private SQLite Airflow home."""

    def __init__(self, home: Path, conninfo: str, extra_env: dict[str, str]) -> None:
        self.home = home
        self.logs = home / "demo-logs"
        self.conninfo = conninfo
        self.extra_env = extra_env

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__DATABASE__")}
        pythonpath = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "AIRFLOW_CONN_IMAGE_DB": airflow_connection_json(self.conninfo),
                "PYTHONPATH": pythonpath,
                "PYTHONUNBUFFERED": "1",
                **self.extra_env,
            }
        )
        return env

    @staticmethod
    def executable() -> list[str]:
        airflow = Path(sys.executable).with_name("airflow")
        return [str(airflow)] if airflow.exists() else [sys.executable, "-m", "airflow"]

    def _run(self, args: list[str], log: Path, on_line: Callable[[str], None] | None = None) -> float:
        self.home.mkdir(parents=True, exist_ok=True)
        log.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with log.open("w") as out:
            proc = subprocess.Popen([*self.executable(), *args], env=self.env(), cwd=REPO, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace")
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    out.write(line)
                    if on_line is not None:
                        on_line(line)
                code = proc.wait()
            except BaseException:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise
        if code != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
            raise AirflowRunError(f"`airflow {' '.join(args)}` exited with {code}; full output in {log}\n{tail}")
        return time.monotonic() - started

    def migrate(self) -> float:
        """Create or upgrade the SQLite metadata database (fast when already current)."""
        return self._run(["db", "migrate"], self.logs / "db-migrate.log")

    def dags_test(self, dag_id: str, conf: dict[str, object],
                  on_task: Callable[[str, str], None] | None = None) -> DagRunResult:
        """One real DAG run (`airflow dags test`), tasks in-process; raises AirflowRunError if the run failed."""
        tasks: dict[str, str] = {}

        current: dict[str, str] = {}

        def watch(line: str) -> None:
            if match := _TASK_START.search(line):
                current.clear()
            elif match := _TASK_STATE.search(line):
                current["state"] = match.group("state")
            elif match := _TASK_END.search(line):
                task = match.group("task") + (f"[{match.group('map')}]" if match.group("map") != "-1" else "")
                state = current.get("state", "done")
                tasks[task] = state
                if on_task is not None:
                    on_task(task, state)

        stamp = time.strftime("%Y%m%d-%H%M%S")
        log = self.logs / f"{dag_id}-{stamp}.log"
        seconds = self._run(["dags", "test", dag_id, "--conf", json.dumps(conf)], log, watch)
        return DagRunResult(dag_id, seconds, log, tasks)
