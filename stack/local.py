"""Start, watch and stop the production topology as local processes, under supervisord.

Services (each a supervisord program, restarted on its own when it exits, its output in
`<home>/logs/<name>.log`): api-server, scheduler, dag-processor, triggerer, Celery workers on Redis,
search servers (`python -m serving`), with STACK_OBJECT_STORE=1 (`make stack ARGS=--object-store`)
an S3 server (`rclone serve s3`, stack/objectstore.py) holding DATA_DIR, BACKUP_DIR and IMAGE_ROOT
(every service then gets its own STORAGE_CACHE_DIR: no folder is shared, as on several hosts), and
the private PostgreSQL when the stack runs its own. STACK_WORKERS and STACK_REPLICAS say how many
workers and search servers. The metadata database is a database on the configured PostgreSQL
server (DB_HOST/DB_PORT/DB_USER/DB_PASS) or on a private one (core.localpg, durable settings, in
`<home>/pg`) when none answers or STACK_PRIVATE_PG=1; the image database is DB_NAME on the same
server, migrated before anything starts.

The one-time preparation (secrets, databases, migrations, `airflow db migrate`) runs here before
supervisord starts the services; then the DAGs are unpaused and the default pool sized to the
workers' slots through the REST API. stack/supervisord.py writes the configuration, stack/service.py
is what each program runs (it ends a crashed service's leftovers before starting it again). One
stack per home: a second start refuses with one line and touches nothing (`StackRunning`);
`stop_running` ends everything the stack started, whatever died first.

The Airflow settings are those docker-compose.yaml sets (CeleryExecutor, a 64-byte JWT secret, the
execution API URL, and the recovery settings below, which bring a lost worker's tasks back within
two minutes); secrets are generated once and kept in `<home>/secrets.json` so a restart keeps logins
and encrypted connections valid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from stack.service import MARK_HOME, MARK_SERVICE, end_processes, stack_processes
from stack.supervisord import Program, Supervisord, write_config

REPO = Path(__file__).resolve().parent.parent
DAG_IDS = ("image_embeddings", "image_index", "image_index_backup")

# --- Recovery: what brings a lost worker's tasks back (docker-compose.yaml sets the same values; ------
# docs/operations.md, "Recovery settings", says why each). Measured by tests/stack/test_stack.py.
# A started task whose worker vanished: failed (then retried) this long after its last heartbeat (tasks
# heartbeat every 5 s: [workers] min_heartbeat_interval). Then comes the DAG's retry delay (image_embeddings:
# 30 s doubled per try, with a per-task spread up to twice that: 30-59 s for the first retry).
HEARTBEAT_TIMEOUT = 30
HEARTBEAT_EVERY = 5
# A task queued to a worker that died before starting it (its message taken, never acknowledged): the
# scheduler re-queues it after this long in `queued` (Airflow's default is 600 s, checked every 120 s:
# the 11 minutes of issue 25). Safe only because nothing waits in the broker: the default pool has as
# many slots as the workers have (POOL below), so a task is queued only when a worker slot is free.
QUEUED_TIMEOUT = 60
QUEUED_CHECK_EVERY = 10
# Tasks queued by a scheduler that died are adopted by the next one after this (default 300 s).
ORPHANED_CHECK_EVERY = 60
# The broker re-delivers an unacknowledged message after this long; keep it above the longest task
# (Airflow has retried a dead worker's task long before; the old try's late copy is refused).
VISIBILITY_TIMEOUT = 6 * 3600


def recovery_settings(worker_slots: int) -> dict[str, str]:
    """The Airflow settings (environment form) that govern recovery from a lost worker or scheduler."""
    return {
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": str(HEARTBEAT_EVERY),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": str(HEARTBEAT_EVERY),
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(QUEUED_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": str(QUEUED_CHECK_EVERY),
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": str(ORPHANED_CHECK_EVERY),
        # A worker takes a message only when it starts it, and acknowledges it when the task ends: what a
        # killed worker held is only what it was running (Airflow's defaults, set so nobody changes one alone).
        "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        # The default pool's size when the metadata database is created (the stack then keeps it equal to
        # the workers' slots through the REST API at each start).
        "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": str(worker_slots),
    }


class StackError(RuntimeError):
    """The stack cannot start: the message says which setting or service to fix."""


class StackRunning(StackError):
    """A stack already runs in this home (its launcher, supervisord or a process it started is alive)."""

    def __init__(self, home: Path, pid: int | None) -> None:
        super().__init__(f"a stack is already running in {home} (pid {pid if pid else '?'}); make stack-stop first")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise StackError(f"{name} must be an integer (got {os.environ[name]!r})") from None


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false", "no")


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
    private_pg: bool = False  # run the stack's own PostgreSQL even when DB_HOST/DB_PORT answer

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
            object_store=_flag("STACK_OBJECT_STORE"),
            workers=max(1, _env_int("STACK_WORKERS", 1)),
            replicas=max(1, _env_int("STACK_REPLICAS", 1)),
            private_pg=_flag("STACK_PRIVATE_PG"),
        )

    @property
    def worker_slots(self) -> int:
        return self.workers * self.worker_concurrency


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int | None = None
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's environment
    user: str | None = None  # run as this account (when the stack runs as root)
    priority: int = 50  # start order (supervisord stops in reverse)
    startsecs: int = 10  # up this long = started (an earlier exit is a failed start: backoff)
    stopsignal: str = "TERM"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_launcher(pid: int) -> bool:
    """`pid` runs `python -m stack` (not a recycled pid), and is not this process."""
    if pid == os.getpid():
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"-m" in args and b"stack" in args


def running_pid(home: Path) -> int | None:
    """The pid of what runs the stack in `home` (its launcher, supervisord, or any process it started), or None."""
    launcher = _read_pid(home / "run" / "launcher.pid")
    if launcher is not None and _is_launcher(launcher):
        return launcher
    pid = Supervisord(home).pid()
    if pid is not None:
        return pid
    left = stack_processes(home)
    return left[0] if left else None


@dataclass
class Stack:
    """The processes of one stack: `start()` then `stop()` (also on Ctrl-C); `attach()` to a running one."""

    config: StackConfig
    log: Callable[[str], None] = print
    services: dict[str, Service] = field(default_factory=dict)
    _env: dict[str, str] = field(default_factory=dict)
    _token: str | None = None
    _admin: str = ""  # libpq conninfo of the server's `postgres` database
    _pg: Any = None  # core.localpg.LocalPostgres when the stack runs its own server
    _lock_fd: int | None = None  # held while this object owns the stack (start() .. stop())
    _started: set[str] = field(default_factory=set)
    _stopped: set[str] = field(default_factory=set)  # taken down on purpose (kill with stay_down)

    # --- paths and names ------------------------------------------------------------------------

    @property
    def logs(self) -> Path:
        return self.config.home / "logs"

    @property
    def run_dir(self) -> Path:
        return self.config.home / "run"

    @property
    def supervisord(self) -> Supervisord:
        return Supervisord(self.config.home)

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

    # --- set-up ---------------------------------------------------------------------------------

    def _object_store(self) -> tuple[Service, dict[str, str]]:
        """The S3 server's service and what every process needs to use it (the standard AWS variables)."""
        from core.localpg import free_port
        from stack.objectstore import KEY_ID, SECRET, S3Server

        port = free_port()
        root = self.config.home / "object-store"
        (root / self.BUCKET).mkdir(parents=True, exist_ok=True)
        server = S3Server(root, port)
        env = {"AWS_ENDPOINT_URL": server.endpoint, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
               "AWS_DEFAULT_REGION": "us-east-1", "DATA_DIR": f"s3://{self.BUCKET}/data",
               "BACKUP_DIR": f"s3://{self.BUCKET}/backups", "IMAGE_ROOT": f"s3://{self.BUCKET}/images"}
        return Service("object-store", server.argv(), port, priority=5, startsecs=2), env

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

    def _server(self) -> str:
        """The admin conninfo: the configured server, else the stack's own (created here, run by supervisord)."""
        from psycopg.conninfo import make_conninfo

        from core.localpg import LocalPostgres, configured_server

        if not self.config.private_pg:
            info = configured_server(log=self.log)
            if info is not None:
                return info
            self.log(f"no PostgreSQL lets us in at {os.environ.get('DB_HOST', '127.0.0.1')}:"
                     f"{os.environ.get('DB_PORT', '5432')}: the stack runs its own in {self.config.home / 'pg'}")
        self._pg = LocalPostgres(self.config.home / "pg").init()  # durable: PostgreSQL's default settings
        return make_conninfo(host="127.0.0.1", port=self._pg.port, user="postgres", dbname="postgres",
                             connect_timeout=5)

    def _databases(self, image_info: str) -> None:
        """Create the metadata and image databases if missing; migrate the image database."""
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        from core.migrate import apply_migrations

        image_db = str(conninfo_to_dict(image_info)["dbname"])
        with psycopg.connect(self._admin, autocommit=True) as conn:
            for name in (self.config.airflow_db, image_db):
                if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                    conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(image_info) as conn:
            applied = apply_migrations(conn)
        self.log(f"image database {image_db}: migrations {', '.join(applied) or 'up to date'}")

    def _check_redis(self) -> None:
        import redis

        try:
            redis.Redis.from_url(self.config.redis_url, socket_connect_timeout=3).ping()
        except Exception as exc:
            raise StackError(f"Redis at {self.config.redis_url} does not answer ({exc}): start redis-server "
                             "or set REDIS_URL") from None

    def prepare(self) -> None:
        """Secrets, Redis, the database server, the environment, the services; writes the supervisord
        configuration and `run/services.json`. Starts nothing."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        from core.db import airflow_connection_json
        from core.localpg import free_port
        from core.settings import get_settings

        cfg = self.config
        self.logs.mkdir(parents=True, exist_ok=True)
        keys = self.secrets()
        self._check_redis()
        self._admin = self._server()
        image_info = make_conninfo(self._admin, dbname=os.environ.get("DB_NAME") or get_settings().db_name)
        p = conninfo_to_dict(self._admin)
        from urllib.parse import quote

        auth = quote(str(p.get("user", "postgres")), safe="")
        if p.get("password"):
            auth += ":" + quote(str(p["password"]), safe="")
        meta_url = f"postgresql+psycopg2://{auth}@{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{cfg.airflow_db}"
        airflow_home = cfg.home / "airflow"
        airflow_home.mkdir(parents=True, exist_ok=True)
        passwords = airflow_home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({cfg.admin_user: keys["admin_password"]}))
        pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AIRFLOW__") and k not in (MARK_HOME, MARK_SERVICE)}
        env.update({
            "PYTHONPATH": pythonpath,
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False" if cfg.unpause else "True",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__CELERY__BROKER_URL": cfg.redis_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + meta_url.replace("+psycopg2", ""),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(cfg.worker_concurrency),
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
            **recovery_settings(cfg.worker_slots),
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # Private ports for the log servers, so two stacks (or a compose) on one machine never clash.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_IMAGE_DB": airflow_connection_json(image_info),
            "SEARCH_SERVER_URL": os.environ.get("SEARCH_SERVER_URL") or f"{self.search_url}/",
        })
        q = conninfo_to_dict(image_info)
        env.update(DB_HOST=str(q.get("host", "127.0.0.1")), DB_PORT=str(q.get("port", 5432)),
                   DB_USER=str(q.get("user", "postgres")), DB_PASS=str(q.get("password") or ""),
                   DB_NAME=str(q["dbname"]))
        self._env = env
        airflow = [str(Path(sys.executable).with_name("airflow"))]
        api = [*airflow, "api-server", "--host", "127.0.0.1", "--port", str(cfg.airflow_port)]
        worker = [*airflow, "celery", "worker", "--queues", cfg.queue, "--concurrency", str(cfg.worker_concurrency)]
        services: list[Service] = []
        if self._pg is not None:
            services.append(Service("postgres", self._pg.argv(), self._pg.port, user=self._pg.user, priority=1,
                                    startsecs=3, stopsignal="INT"))  # SIGINT: PostgreSQL's fast shutdown
        if cfg.object_store:
            store, store_env = self._object_store()
            self._env.update(store_env)
            services.append(store)
        services += [Service("api-server", api, cfg.airflow_port, priority=10),
                     Service("scheduler", [*airflow, "scheduler"], priority=20),
                     Service("dag-processor", [*airflow, "dag-processor"], priority=20),
                     Service("triggerer", [*airflow, "triggerer"], priority=20)]
        for n in range(1, cfg.workers + 1):
            name = "worker" if n == 1 else f"worker-{n}"
            svc = Service(name, [*worker, "--celery-hostname", f"{name}@%h"], priority=30)
            if n > 1:  # each worker's log server on its own port
                svc.env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
            services.append(svc)
        for n in range(1, cfg.replicas + 1):
            name = "search-server" if n == 1 else f"search-server-{n}"
            port = cfg.search_port if n == 1 else free_port()
            services.append(Service(name, [sys.executable, "-m", "serving", "--host", "127.0.0.1", "--port",
                                           str(port)], port, priority=40, startsecs=5))
        if cfg.object_store:  # each process its own cache: nothing but the object store is shared
            for svc in services:
                if svc.name not in ("postgres", "object-store"):
                    svc.env["STORAGE_CACHE_DIR"] = str(cfg.home / "cache" / svc.name)
        self.services = {svc.name: svc for svc in services}
        self._write_layout(image_info)
        write_config(cfg.home, [Program(s.name, s.priority, s.startsecs, s.stopsignal) for s in services])

    def _write_layout(self, image_info: str) -> None:
        """`run/services.json` (mode 600: it holds the secrets): what stack/service.py starts, and attach() reads."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        layout = {
            "env": self._env,
            "admin": self._admin,
            "image_db": image_info,
            "services": {s.name: {"argv": s.argv, "env": s.env, "port": s.port, "user": s.user,
                                  "cwd": "/" if s.user else str(REPO)} for s in self.services.values()},
        }
        path = self.run_dir / "services.json"
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(json.dumps(layout, indent=1))

    @classmethod
    def attach(cls, config: StackConfig, log: Callable[[str], None] = print) -> Stack:
        """The running stack in `config.home` (started by `python -m stack` elsewhere), to watch and drive it."""
        layout = json.loads((config.home / "run" / "services.json").read_text())
        stack = cls(config, log=log)
        stack._env, stack._admin = layout["env"], layout["admin"]
        stack.services = {name: Service(name, s["argv"], s["port"], s["env"], s["user"])
                          for name, s in layout["services"].items()}
        stack._started = set(stack.services)
        return stack

    @property
    def image_db(self) -> str:
        """The libpq conninfo of the image database."""
        return str(json.loads((self.run_dir / "services.json").read_text())["image_db"])

    def _run(self, argv: list[str], name: str, timeout: float) -> None:
        log = self.logs / f"{name}.log"
        env = {**self._env, MARK_HOME: str(self.config.home), MARK_SERVICE: name}
        with log.open("ab") as out:
            proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                  cwd=REPO, check=False)
        if proc.returncode != 0:
            raise StackError(f"{' '.join(argv[-2:])} failed (exit {proc.returncode}); see {log}")

    # --- one stack per home -----------------------------------------------------------------------

    def acquire(self) -> None:
        """Hold `run/stack.lock`; refuse (StackRunning) when another launcher holds it or anything of a
        stack still runs in this home. Nothing of the other stack is touched."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / "stack.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StackRunning(self.config.home, _read_pid(self.run_dir / "launcher.pid")) from None
        pid = running_pid(self.config.home)
        if pid is not None:
            os.close(fd)
            raise StackRunning(self.config.home, pid)
        self._lock_fd = fd
        (self.run_dir / "launcher.pid").write_text(str(os.getpid()))

    def release(self) -> None:
        """Let go of the lock without stopping anything (`--detach`: supervisord keeps the stack)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            (self.run_dir / "launcher.pid").unlink(missing_ok=True)

    # --- processes ------------------------------------------------------------------------------

    def start(self) -> None:
        """Everything, then wait until the API and the search servers answer and the DAGs are loaded."""
        if self._lock_fd is None:
            self.acquire()
        if not self.services:
            self.prepare()
        from core.localpg import port_answers

        for svc in self.services.values():  # taken by another stack (another home) or server: say so, start nothing
            if svc.port and svc.name != "postgres" and port_answers("127.0.0.1", svc.port, timeout=0.5):
                raise StackError(f"port {svc.port} of the {svc.name} is already in use (another stack or server?); "
                                 "set AIRFLOW_API_PORT / API_PORT, or stop what listens there")
        self.supervisord.start()
        if self._pg is not None:
            self.start_service("postgres")
            self._wait_postgres(120)
        self._databases(self.image_db)
        airflow = str(Path(sys.executable).with_name("airflow"))
        self._run([airflow, "db", "migrate"], "db-migrate", timeout=600)
        for name in self.services:
            if name == "postgres":
                continue
            self.start_service(name)
            if name == "object-store":
                self._wait_port(self.services[name].port or 0, name, 30)
        self._wait_http(f"{self.airflow_url}/api/v2/monitor/health", "api-server", 180)
        # The search server answers 503 until an index version is published: any answer means it is up.
        for name in self.replicas:
            self._wait_http(f"{self.replica_url(name)}/", name, 180, ok=lambda status: True)
        self.set_pool(self.config.worker_slots)
        self.wait_for_dags()
        if self.config.unpause:
            for dag_id in DAG_IDS:
                self.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def set_pool(self, slots: int) -> None:
        """The default pool as large as the workers' slots: a task is queued only when a worker can take it."""
        self.api("PATCH", "/api/v2/pools/default_pool", params={"update_mask": "slots"}, json={"slots": slots})

    def _wait_postgres(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                psycopg.connect(self._admin).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.5)
        raise StackError(f"the stack's PostgreSQL did not accept connections within {timeout:.0f} s; "
                         f"see {self.logs / 'postgres.log'}")

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

    def info(self) -> dict[str, dict[str, Any]]:
        """supervisord's view of every service: statename, pid, exitstatus, spawnerr, ..."""
        return self.supervisord.info()

    def pid(self, name: str) -> int:
        """The service's pid (0 when it is not running)."""
        return int(self.supervisord.rpc().supervisor.getProcessInfo(name)["pid"])

    def start_service(self, name: str) -> None:
        """Start a service (again, after `kill(..., stay_down=True)`); supervisord runs it from then on."""
        self._stopped.discard(name)
        self._started.add(name)
        try:
            self.supervisord.rpc().supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as exc:
            if "ALREADY_STARTED" not in exc.faultString:
                raise

    def wait_running(self, name: str, timeout: float = 300, other_than: int = 0) -> int:
        """Wait until supervisord says the service is RUNNING (with a pid other than `other_than`); its pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.supervisord.rpc().supervisor.getProcessInfo(name)
            if info["statename"] == "RUNNING" and info["pid"] and info["pid"] != other_than:
                return int(info["pid"])
            if info["statename"] == "FATAL":
                break
            time.sleep(0.2)
        raise StackError(f"{name} is not running again ({info['statename']}); see {self.logs / name}.log")

    def check_alive(self) -> None:
        """Raise when supervisord is gone or gave up on a service (FATAL: it failed to start too often)."""
        if self.supervisord.pid() is None:
            raise StackError(f"supervisord of {self.config.home} is not running; see {self.logs}/supervisord.log")
        for name, p in self.info().items():
            if name in self._stopped or name not in self._started:
                continue
            if p["statename"] in ("FATAL", "STOPPED", "UNKNOWN"):
                raise StackError(f"{name} is {p['statename']} ({p['spawnerr'] or 'exit ' + str(p['exitstatus'])})"
                                 f"; see {self.logs / name}.log")

    def kill(self, name: str, *, stay_down: bool = False) -> int:
        """SIGKILL the service's process (a crash: supervisord starts it again, stack/service.py ends its
        leftovers first); returns the killed pid. `stay_down`: stop it through supervisord instead and keep
        it down until `start_service` (a lost replica, an object-store outage)."""
        pid = self.pid(name)
        if stay_down:
            self._stopped.add(name)
            self.supervisord.rpc().supervisor.stopProcess(name, True)
        elif pid:
            os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self, timeout: float = 180) -> None:
        """Stop everything this object started (nothing when it does not own the stack: `StackRunning`)."""
        if self._lock_fd is None:
            return
        stop_running(self.config.home, timeout=timeout, log=self.log)
        self.release()

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
        pids = {name: p["pid"] for name, p in self.info().items()}
        lines = [
            f"Airflow UI and API  {self.airflow_url}/  (user {self.config.admin_user}, password "
            f"{keys['admin_password']}; kept in {self.config.home / 'secrets.json'})",
            *(f"search server       {self.replica_url(n)}/  ({n})" for n in self.replicas),
            *([f"object store        {self._env['AWS_ENDPOINT_URL']}  DATA_DIR {self._env['DATA_DIR']}, "
               f"IMAGE_ROOT {self._env['IMAGE_ROOT']} (key {self._env['AWS_ACCESS_KEY_ID']})"]
              if self.config.object_store else []),
            f"Redis (Celery)      {self.config.redis_url}  queue {self.config.queue}",
            f"metadata database   {self._env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'].split('@')[-1]}"
            + ("  (the stack's own PostgreSQL)" if "postgres" in self.services else ""),
            f"image database      {self._env['DB_HOST']}:{self._env['DB_PORT']}/{self._env['DB_NAME']}",
            f"supervisord         {self.supervisord.conf}  (status: make stack-status)",
            "logs:",
        ]
        lines += [f"  {name:<14} {self.logs / name}.log  (pid {pids.get(name) or '-'})" for name in self.services]
        lines.append(f"  task logs      {self.config.home / 'airflow' / 'logs'}")
        return "\n".join(lines)

    def watch(self, every: float = 2.0) -> None:
        """Until supervisord is gone: log each service that exits and each that runs again."""
        last: dict[str, tuple[str, int]] = {}
        while self.supervisord.pid() is not None:
            try:
                info = self.info()
            except (OSError, xmlrpc.client.Error):
                time.sleep(every)
                continue
            for name, p in info.items():
                now, before = (p["statename"], int(p["pid"])), last.get(name)
                last[name] = now
                if before is None or now == before:
                    continue
                if now[0] == "RUNNING" and (before[0] != "RUNNING" or before[1] != now[1]):
                    self.log(f"{name} running again (pid {now[1]})")
                elif now[0] in ("EXITED", "BACKOFF", "FATAL", "STARTING") and before[0] == "RUNNING":
                    self.log(f"{name} exited (pid {before[1]}); supervisord restarts it; see {self.logs / name}.log")
                elif now[0] == "FATAL":
                    self.log(f"{name} failed to start {p['spawnerr'] or ''}; supervisord gave up: see "
                             f"{self.logs / name}.log, then `python -m stack ctl start {name}`")
            time.sleep(every)


def stop_running(home: Path, timeout: float = 180, log: Callable[[str], None] = print) -> bool:
    """`make stack-stop`: shut supervisord down (every service stopped as a process group, reverse start
    order), end whatever of the stack is still alive (supervisord killed earlier, leftovers), then tell a
    launcher still in the foreground. False when nothing of a stack ran in `home`."""
    found = False
    sup = Supervisord(home)
    if sup.pid() is not None:
        found = True
        if not sup.shutdown(timeout):
            log("supervisord did not stop in time: killing it")
            sup.kill()
    left = stack_processes(home)
    if left:
        found = True
        log(f"ending {len(left)} process(es) of the stack still running: {left}")
        still = end_processes(left)
        if still:
            log(f"could not end {still}")
    launcher = _read_pid(home / "run" / "launcher.pid")
    if launcher is not None and _is_launcher(launcher):
        found = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(launcher, signal.SIGTERM)
    for name in ("supervisord.pid", "launcher.pid"):
        (home / "run" / name).unlink(missing_ok=True)
    if not stack_processes(home):
        (home / "run" / "session").unlink(missing_ok=True)
    return found


def status(home: Path) -> int:
    """`make stack-status`: each service's state (supervisorctl status), or what is left of a stopped stack."""
    sup = Supervisord(home)
    if sup.pid() is not None:
        code = sup.ctl("status")
        return 0 if code in (0, 3) else code  # 3: some service is not running (shown in the table)
    left = stack_processes(home)
    if left:
        print(f"supervisord of {home} is not running, but {len(left)} of its processes are: {left}; "
              "make stack-stop ends them")
        return 1
    print(f"no stack running in {home}")
    return 0
