"""Start, watch and stop the production topology as local processes.

Services (each its own process group, its output in `<home>/logs/<name>.log`):
api-server, scheduler, dag-processor, triggerer, Celery workers on Redis, and
search servers (`python -m serving`). With STACK_OBJECT_STORE=1 (`make stack
ARGS=--object-store`) an S3 server (`rclone serve s3`, stack/objectstore.py) holds
DATA_DIR, BACKUP_DIR and IMAGE_ROOT, and every service gets its own
STORAGE_CACHE_DIR: no folder is shared, as on several hosts (STACK_WORKERS and
STACK_REPLICAS say how many workers and search servers). The metadata database is a database on
the configured PostgreSQL server (DB_HOST/DB_PORT/DB_USER/DB_PASS) or on a
private one (core.localpg) when none answers; the image database is DB_NAME on
the same server, migrated before anything starts.

The Airflow settings are those docker-compose.yaml sets (CeleryExecutor, a
64-byte JWT secret, the execution API URL, heartbeat timings that retry a lost
worker's tasks within about a minute); secrets are generated once and kept in
`<home>/secrets.json` so a restart keeps logins and encrypted connections valid.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
DAG_IDS = ("image_embeddings", "image_index")
# Seconds: a task whose worker vanished is failed (then retried) this long after its last heartbeat.
HEARTBEAT_TIMEOUT = 45
HEARTBEAT_EVERY = 5
# The broker re-delivers an unacknowledged message after this long; keep it above the longest task
# (Airflow has retried a dead worker's task long before; the old try's late copy is refused).
VISIBILITY_TIMEOUT = 6 * 3600


class StackError(RuntimeError):
    """The stack cannot start: the message says which setting or service to fix."""


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise StackError(f"{name} must be an integer (got {os.environ[name]!r})") from None


@dataclass
class StackConfig:
    """Where the stack lives and which ports and services it uses (from the environment)."""

    home: Path
    airflow_port: int = 8080
    search_port: int = 8000
    redis_url: str = "redis://127.0.0.1:6379/0"
    airflow_db: str = "airflow"
    queue: str = "default"
    worker_concurrency: int = 2
    admin_user: str = "admin"
    unpause: bool = True
    object_store: bool = False  # DATA_DIR, BACKUP_DIR, IMAGE_ROOT on a local S3 server; a cache per service
    workers: int = 1
    replicas: int = 1

    @classmethod
    def from_env(cls) -> StackConfig:
        from core.settings import get_settings

        home = Path(os.environ.get("STACK_HOME") or get_settings().resolved_data_dir / "stack")
        return cls(
            home=home.resolve(),
            airflow_port=_env_int("AIRFLOW_API_PORT", 8080),
            search_port=_env_int("API_PORT", 8000),
            redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            airflow_db=os.environ.get("AIRFLOW_DB_NAME", "airflow"),
            queue=os.environ.get("STACK_QUEUE", "default"),
            worker_concurrency=_env_int("AIRFLOW_WORKER_CONCURRENCY", 2),
            admin_user=os.environ.get("AIRFLOW_ADMIN_USER", "admin"),
            object_store=os.environ.get("STACK_OBJECT_STORE", "") not in ("", "0", "false", "no"),
            workers=max(1, _env_int("STACK_WORKERS", 1)),
            replicas=max(1, _env_int("STACK_REPLICAS", 1)),
        )


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's environment
    stopped: bool = False  # taken down on purpose (Stack.kill with stay_down): not a failure


@dataclass
class Stack:
    """The processes of one stack; `start()` then `stop()` (also on Ctrl-C)."""

    config: StackConfig
    log: Callable[[str], None] = print
    services: dict[str, Service] = field(default_factory=dict)
    _pg: Any = None
    _env: dict[str, str] = field(default_factory=dict)
    _token: str | None = None

    # --- set-up ---------------------------------------------------------------------------------

    @property
    def logs(self) -> Path:
        return self.config.home / "logs"

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.config.airflow_port}"

    @property
    def search_url(self) -> str:
        return f"http://127.0.0.1:{self.config.search_port}"

    def replica_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.services[name].port}"

    @property
    def replicas(self) -> list[str]:
        return [n for n in self.services if n.startswith("search-server")]

    @property
    def workers(self) -> list[str]:
        return [n for n in self.services if n.startswith("worker")]

    BUCKET = "imgsim"

    def _object_store(self) -> tuple[Service, dict[str, str]]:
        """The S3 server's service and what every process needs to use it (the standard AWS variables)."""
        from core.localpg import free_port
        from stack.objectstore import KEY_ID, SECRET, S3Server

        port = free_port()
        root = self.config.home / "object-store"
        (root / self.BUCKET).mkdir(parents=True, exist_ok=True)
        server = S3Server(root, port)
        argv = server.argv()
        env = {"AWS_ENDPOINT_URL": server.endpoint, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
               "AWS_DEFAULT_REGION": "us-east-1", "DATA_DIR": f"s3://{self.BUCKET}/data",
               "BACKUP_DIR": f"s3://{self.BUCKET}/backups", "IMAGE_ROOT": f"s3://{self.BUCKET}/images"}
        return Service("object-store", argv, port), env

    def secrets(self) -> dict[str, str]:
        """Generated once per home: Fernet key, a 64-byte JWT secret, the API secret key, the admin password."""
        path = self.config.home / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        from cryptography.fernet import Fernet

        values = {
            "fernet_key": Fernet.generate_key().decode(),
            # 64 characters = 64 bytes: HS512 wants a key at least as long as its digest (no HMAC warnings).
            "jwt_secret": secrets.token_urlsafe(48),
            "api_secret_key": secrets.token_urlsafe(32),
            "admin_password": os.environ.get("AIRFLOW_ADMIN_PASSWORD") or secrets.token_urlsafe(12),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=1))
        path.chmod(0o600)
        return values

    def _databases(self) -> tuple[str, str]:
        """(SQLAlchemy URL of the metadata DB, libpq conninfo of the image DB); both created if missing."""
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        from core.localpg import configured_or_private
        from core.migrate import apply_migrations
        from core.settings import get_settings

        admin, self._pg = configured_or_private(self.config.home, log=self.log)
        image_db = os.environ.get("DB_NAME") or get_settings().db_name
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in (self.config.airflow_db, image_db):
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                    conn.execute(f'CREATE DATABASE "{name}"')
        image_info = make_conninfo(admin, dbname=image_db)
        with psycopg.connect(image_info) as conn:
            applied = apply_migrations(conn)
        self.log(f"image database {image_db}: migrations {', '.join(applied) or 'up to date'}")
        p = conninfo_to_dict(admin)
        from urllib.parse import quote

        auth = quote(str(p.get("user", "postgres")), safe="")
        if p.get("password"):
            auth += ":" + quote(str(p["password"]), safe="")
        where = f"{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{self.config.airflow_db}"
        meta = f"postgresql+psycopg2://{auth}@{where}"
        return meta, image_info

    def _check_redis(self) -> None:
        import redis

        try:
            redis.Redis.from_url(self.config.redis_url, socket_connect_timeout=3).ping()
        except Exception as exc:
            raise StackError(f"Redis at {self.config.redis_url} does not answer ({exc}): start redis-server "
                             "or set REDIS_URL") from None

    def prepare(self) -> None:
        """Secrets, databases, Redis, the Airflow environment and its metadata migration."""
        from core.db import airflow_connection_json
        from core.localpg import free_port

        cfg = self.config
        self.logs.mkdir(parents=True, exist_ok=True)
        keys = self.secrets()
        self._check_redis()
        meta_url, image_info = self._databases()
        airflow_home = cfg.home / "airflow"
        airflow_home.mkdir(parents=True, exist_ok=True)
        passwords = airflow_home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({cfg.admin_user: keys["admin_password"]}))
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update({
            "PYTHONPATH": pythonpath,
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__CELERY__BROKER_URL": cfg.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta_url.replace("+psycopg2", ""),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(cfg.worker_concurrency),
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": cfg.queue,
            "AIRFLOW__CORE__FERNET_KEY": keys["fernet_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": keys["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": keys["api_secret_key"],
            "AIRFLOW__API__BASE_URL": self.airflow_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.airflow_url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER":
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{cfg.admin_user}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": str(HEARTBEAT_EVERY),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": str(HEARTBEAT_EVERY),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # Private ports for the log servers, so two stacks (or a compose) on one machine never clash.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_IMAGE_DB": airflow_connection_json(image_info),
            "SEARCH_SERVER_URL": os.environ.get("SEARCH_SERVER_URL") or f"{self.search_url}/",
        })
        from psycopg.conninfo import conninfo_to_dict

        p = conninfo_to_dict(image_info)
        env.update(DB_HOST=str(p.get("host", "127.0.0.1")), DB_PORT=str(p.get("port", 5432)),
                   DB_USER=str(p.get("user", "postgres")), DB_PASS=str(p.get("password") or ""),
                   DB_NAME=str(p["dbname"]))
        self._env = env
        airflow = [str(Path(sys.executable).with_name("airflow"))]
        self._run([*airflow, "db", "migrate"], "db-migrate", timeout=600)
        api = [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(cfg.airflow_port)]
        worker = [*airflow, "celery", "worker", "--queues", cfg.queue, "--concurrency", str(cfg.worker_concurrency)]
        services: list[Service] = []
        if cfg.object_store:
            store, store_env = self._object_store()
            self._env.update(store_env)
            services.append(store)
        services += [Service("api-server", api, cfg.airflow_port),
                     Service("scheduler", [*airflow, "scheduler"]),
                     Service("dag-processor", [*airflow, "dag-processor"]),
                     Service("triggerer", [*airflow, "triggerer"])]
        for n in range(1, cfg.workers + 1):
            name = "worker" if n == 1 else f"worker-{n}"
            svc = Service(name, [*worker, "--celery-hostname", f"{name}@%h"])
            if n > 1:  # each worker's log server on its own port
                svc.env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
            services.append(svc)
        for n in range(1, cfg.replicas + 1):
            name = "search-server" if n == 1 else f"search-server-{n}"
            port = cfg.search_port if n == 1 else free_port()
            services.append(Service(name, [sys.executable, "-m", "serving", "--host", "127.0.0.1", "--port",
                                           str(port)], port))
        if cfg.object_store:  # each process its own cache: nothing but the object store is shared
            for svc in services[1:]:
                svc.env["STORAGE_CACHE_DIR"] = str(cfg.home / "cache" / svc.name)
        self.services = {svc.name: svc for svc in services}

    def _run(self, argv: list[str], name: str, timeout: float) -> None:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.run(argv, env=self._env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                  cwd=REPO, check=False)
        if proc.returncode != 0:
            raise StackError(f"{' '.join(argv[-2:])} failed (exit {proc.returncode}); see {log}")

    # --- processes ------------------------------------------------------------------------------

    def start_service(self, name: str) -> Service:
        svc = self.services[name]
        svc.stopped = False
        out = (self.logs / f"{name}.log").open("ab")
        svc.proc = subprocess.Popen(svc.argv, env={**self._env, **svc.env}, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=REPO, start_new_session=True)  # its own process group: stopped as one
        out.close()
        self._write_state()
        return svc

    def start(self) -> None:
        """Everything, then wait until the API and the search server answer and the DAGs are loaded."""
        if not self.services:
            self.prepare()
        for name in self.services:
            self.start_service(name)
            if name == "object-store":
                self._wait_port(self.services[name].port or 0, name, 30)
        self._wait_http(f"{self.airflow_url}/api/v2/monitor/health", "api-server", 180)
        # The search server answers 503 until an index version is published: any answer means it is up.
        for name in self.replicas:
            self._wait_http(f"{self.replica_url(name)}/", name, 180, ok=lambda status: True)
        self.wait_for_dags()
        if self.config.unpause:
            for dag_id in DAG_IDS:
                self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def _wait_http(self, url: str, name: str, timeout: float,
                   ok: Callable[[int], bool] = lambda status: status < 500) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if ok(httpx.get(url, timeout=3).status_code):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise StackError(f"{name} did not answer at {url} within {timeout:.0f} s; see {self.logs / name}.log")

    def _wait_port(self, port: int, name: str, timeout: float) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise StackError(f"{name} did not listen on {port} within {timeout:.0f} s; see {self.logs / name}.log")

    def wait_for_dags(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            found = {d["dag_id"] for d in self.api("GET", "/api/v2/dags").json()["dags"]}
            if set(DAG_IDS) <= found:
                return
            time.sleep(2)
        raise StackError(f"the dag-processor did not load {DAG_IDS}; see {self.logs / 'dag-processor.log'}")

    def check_alive(self) -> None:
        for svc in self.services.values():
            if svc.proc is not None and svc.proc.poll() is not None and not svc.stopped:
                raise StackError(f"{svc.name} exited with {svc.proc.returncode}; see {self.logs / svc.name}.log")

    def kill(self, name: str, *, stay_down: bool = False) -> None:
        """SIGKILL a service's whole process group (what a lost machine looks like); for tests.
        `stay_down`: the stack keeps running without it (a lost replica, an object store outage)."""
        svc = self.services[name]
        if svc.proc is not None and svc.proc.poll() is None:
            os.killpg(svc.proc.pid, signal.SIGKILL)
            svc.proc.wait(30)
        svc.stopped = stay_down

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM every service (reverse start order), SIGKILL what is left after `timeout`; a private PG too."""
        running = [s.proc for s in reversed(self.services.values()) if s.proc is not None and s.proc.poll() is None]
        for proc in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # what is left of its group
        if self._pg is not None:
            self._pg.stop()
        (self.config.home / "stack.json").unlink(missing_ok=True)

    def _write_state(self) -> None:
        state = {"launcher": os.getpid(), "groups": {n: s.proc.pid for n, s in self.services.items() if s.proc}}
        (self.config.home / "stack.json").write_text(json.dumps(state))

    # --- the REST API ---------------------------------------------------------------------------

    def token(self) -> str:
        if self._token is None:
            keys = self.secrets()
            r = httpx.post(f"{self.airflow_url}/auth/token", timeout=30,
                           json={"username": self.config.admin_user, "password": keys["admin_password"]})
            r.raise_for_status()
            self._token = str(r.json()["access_token"])
        return self._token

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to Airflow's REST API as the admin user; raises on an HTTP error."""
        r = httpx.request(method, f"{self.airflow_url}{path}", timeout=60,
                          headers={"Authorization": f"Bearer {self.token()}"}, **kwargs)
        if r.status_code >= 400:
            raise StackError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r

    def summary(self) -> str:
        keys = self.secrets()
        lines = [
            f"Airflow UI and API  {self.airflow_url}/  (user {self.config.admin_user}, password "
            f"{keys['admin_password']}; kept in {self.config.home / 'secrets.json'})",
            *(f"search server       {self.replica_url(n)}/  ({n})" for n in self.replicas),
            *([f"object store        {self._env['AWS_ENDPOINT_URL']}  DATA_DIR {self._env['DATA_DIR']}, "
               f"IMAGE_ROOT {self._env['IMAGE_ROOT']} (key {self._env['AWS_ACCESS_KEY_ID']})"]
              if self.config.object_store else []),
            f"Redis (Celery)      {self.config.redis_url}  queue {self.config.queue}",
            f"metadata database   {self._env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'].split('@')[-1]}",
            f"image database      {self._env['DB_HOST']}:{self._env['DB_PORT']}/{self._env['DB_NAME']}",
            "logs:",
        ]
        lines += [f"  {name:<14} {self.logs / name}.log  (pid {s.proc.pid if s.proc else '-'})"
                  for name, s in self.services.items()]
        lines.append(f"  task logs      {self.config.home / 'airflow' / 'logs'}")
        return "\n".join(lines)


def stop_running(home: Path, timeout: float = 30) -> bool:
    """`make stack-stop`: SIGTERM the launcher of the stack in `home` (it stops its services); then its groups."""
    path = home / "stack.json"
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(state["launcher"]), signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    for pgid in state.get("groups", {}).values():  # a launcher killed hard leaves its services: end them
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(int(pgid), signal.SIGKILL)
    path.unlink(missing_ok=True)
    return True
