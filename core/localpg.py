"""A private PostgreSQL server for tests and the demo when none is configured.

It uses the system's PostgreSQL binaries (pg_config, /usr/lib/postgresql/*/bin)
or those shipped by the `pgserver` PyPI package. initdb refuses to run as root,
so as root the server runs as an unprivileged user (postgres, else nobody).
It listens on 127.0.0.1 and a Unix socket in its own directory, trust auth.

Durable by default: PostgreSQL's own fsync, synchronous_commit and full_page_writes (on), and an
initdb that syncs its files, because `make stack` and `make demo` keep images, the embedding ledger
and Airflow's metadata in it. `durable=False` turns the three off (and initdb's sync) for throwaway
clusters that a test makes and deletes; nothing that keeps data uses it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class LocalPostgresError(RuntimeError):
    """No PostgreSQL binaries, or the private server would not start."""


def find_bindir() -> Path | None:
    """A directory holding initdb, pg_ctl and postgres, or None."""
    candidates: list[Path] = []
    if exe := shutil.which("pg_config"):
        try:
            out = subprocess.run([exe, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.CalledProcessError):
            pass
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    candidates += [Path(p) for p in versions]
    try:
        import pgserver  # type: ignore[import-untyped]

        candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin")
    except ImportError:
        pass
    for cand in candidates:
        if all((cand / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return cand
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _run_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run as when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise LocalPostgresError("running as root and neither a 'postgres' nor a 'nobody' user exists for initdb")


@dataclass
class LocalPostgres:
    """One private cluster in `datadir`. `start()` is idempotent; a second run reuses the cluster."""

    datadir: Path
    port: int = 0
    bindir: Path | None = None
    durable: bool = True  # False: fsync, synchronous_commit, full_page_writes off (throwaway test clusters only)
    _user: pwd.struct_passwd | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.datadir = Path(self.datadir).resolve()
        self.bindir = self.bindir or find_bindir()
        if self.bindir is None:
            raise LocalPostgresError(
                "no PostgreSQL server binaries found: install PostgreSQL (apt-get install postgresql) "
                "or `pip install pgserver`, or point DB_HOST/DB_PORT at a running server"
            )
        self._user = _run_user()
        port_file = self.datadir / "port"
        if not self.port:
            self.port = int(port_file.read_text()) if port_file.exists() else free_port()

    @property
    def socket_dir(self) -> Path:
        return self.datadir / "socket"

    @property
    def pgdata(self) -> Path:
        return self.datadir / "pgdata"

    def _cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True, check=check,
            cwd="/", **kwargs,  # type: ignore[arg-type]
        )

    def _prepare_dirs(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self._user is None:
            return
        # The unprivileged user must reach the data dir: every parent traversable.
        for parent in [self.datadir, *self.datadir.parents]:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
        for path in [self.datadir, self.socket_dir, *([self.pgdata] if self.pgdata.exists() else [])]:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)
        (self.datadir / "port").touch()
        os.chown(self.datadir / "port", self._user.pw_uid, self._user.pw_gid)

    @property
    def user(self) -> str | None:
        """The account the server runs as when we are root (else None: as ourselves)."""
        return self._user.pw_name if self._user is not None else None

    def init(self) -> LocalPostgres:
        """Create the cluster if it does not exist yet (and the folders the server needs)."""
        self._prepare_dirs()
        if not (self.pgdata / "PG_VERSION").exists():
            if self.pgdata.exists():
                shutil.rmtree(self.pgdata)
            res = self._cmd("initdb", "-D", str(self.pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                            *([] if self.durable else ["--no-sync"]), check=False)
            if res.returncode != 0:
                raise LocalPostgresError(f"initdb failed: {res.stderr.strip() or res.stdout.strip()}")
        (self.datadir / "port").write_text(str(self.port))
        return self

    def server_options(self) -> list[str]:
        """The postgres command-line options: port, socket folder, 127.0.0.1 only (and the fast settings
        when not durable; durable leaves PostgreSQL's defaults, all on)."""
        opts = ["-p", str(self.port), "-k", str(self.socket_dir), "-c", "listen_addresses=127.0.0.1"]
        if not self.durable:
            opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return opts

    def argv(self) -> list[str]:
        """The server in the foreground (how a process supervisor runs it: `make stack`)."""
        return [str(self.bindir / "postgres"), "-D", str(self.pgdata), *self.server_options()]

    def start(self) -> LocalPostgres:
        """Create the cluster if needed and start it (pg_ctl); returns self once it accepts connections."""
        self.init()
        if self.running():
            return self
        opts = " ".join(self.server_options())
        res = self._cmd("pg_ctl", "-D", str(self.pgdata), "-o", opts, "-l", str(self.datadir / "server.log"),
                        "-w", "-t", "60", "start", check=False)
        if res.returncode != 0:
            log = (self.datadir / "server.log").read_text()[-2000:] if (self.datadir / "server.log").exists() else ""
            raise LocalPostgresError(f"pg_ctl start failed: {res.stderr.strip()} {log}")
        deadline = time.monotonic() + 30
        while not port_answers("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise LocalPostgresError(f"private PostgreSQL did not open port {self.port}")
            time.sleep(0.1)
        return self

    def running(self) -> bool:
        return self._cmd("pg_ctl", "-D", str(self.pgdata), "status", check=False).returncode == 0

    def stop(self) -> None:
        if self.pgdata.exists():
            self._cmd("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop", check=False)

    def env(self) -> dict[str, str]:
        """Settings that point the pipeline at this server."""
        return {"DB_HOST": "127.0.0.1", "DB_PORT": str(self.port), "DB_USER": "postgres", "DB_PASS": ""}


def configured_server(log: Callable[[str], None] = print) -> str | None:
    """A conninfo to the `postgres` database of the server DB_* names when it answers and lets us in."""
    import psycopg

    host = os.environ.get("DB_HOST", "127.0.0.1")
    port = int(os.environ.get("DB_PORT", "5432"))
    if not port_answers(host, port):
        return None
    info = psycopg.conninfo.make_conninfo(host=host, port=port, user=os.environ.get("DB_USER", "postgres"),
                                          password=os.environ.get("DB_PASS") or None, dbname="postgres",
                                          connect_timeout=5)
    try:
        psycopg.connect(info).close()
        return info
    except psycopg.OperationalError as exc:
        log(f"configured PostgreSQL refused us ({exc}); starting a private one")
        return None


def configured_or_private(workdir: Path, log: Callable[[str], None] = print,
                          durable: bool = True) -> tuple[str, LocalPostgres | None]:
    """A conninfo to the `postgres` database of the server DB_* names when it lets us in, else of a
    private server started in `workdir/pg` (returned so the caller stops it). Used by the test
    harness and the Node client's live server (`make stack` runs its private server under its
    process supervisor instead: stack/local.py)."""
    import psycopg

    if (info := configured_server(log)) is not None:
        return info, None
    server = LocalPostgres(workdir / "pg", durable=durable).start()
    os.environ.update(server.env())
    info = psycopg.conninfo.make_conninfo(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres")
    return info, server
