"""The stack's process supervisor: supervisord (PyPI `supervisor`), one [program] per service.

`write_config` lays out `HOME/run/supervisord.conf`: every service is a program started by
`python -m stack.service` (stack/service.py), restarted on its own when it exits (autorestart, with
supervisord's backoff between failed starts: startsecs, startretries), stopped as a process group
(stopasgroup, killasgroup: no child left behind), its output in `HOME/logs/<name>.log`. Programs do
not start with supervisord (autostart=false): stack/local.py starts them in order once the one-time
preparation is done. `Supervisord` runs the daemon and talks to it over its Unix socket (XML-RPC,
what supervisorctl uses).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A program that exits before running this long counts as a failed start: supervisord waits 1 s, 2 s,
# 3 s ... between tries and gives up (state FATAL) after START_RETRIES of them in a row (about 15 min
# of tries: a database down that long). A program that ran longer is restarted at once when it exits.
START_RETRIES = 40
STOP_WAIT = 30  # seconds between the stop signal and SIGKILL to the program's process group


@dataclass
class Program:
    name: str
    priority: int  # start order; supervisord stops in reverse order on shutdown
    startsecs: int = 10
    stopsignal: str = "TERM"


def _quote(value: str) -> str:
    """A value for supervisord.conf: its parser expands %(name)s, so a literal % is written %%."""
    return value.replace("%", "%%")


def socket_path(home: Path) -> Path:
    """HOME/run/supervisor.sock, or a short path in the temp folder when that is too long for AF_UNIX."""
    path = home / "run" / "supervisor.sock"
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha256(str(home).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"imgsim-stack-{digest}.sock"


def write_config(home: Path, programs: list[Program]) -> Path:
    run, logs = home / "run", home / "logs"
    run.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    sock = socket_path(home)
    repo = Path(__file__).resolve().parent.parent
    lines = [
        "; Written by stack/supervisord.py at each `make stack`; edits are overwritten.",
        "[unix_http_server]", f"file={_quote(str(sock))}", "chmod=0700", "",
        "[supervisord]", f"logfile={_quote(str(logs / 'supervisord.log'))}", "logfile_maxbytes=10MB",
        "logfile_backups=2", "loglevel=info", f"pidfile={_quote(str(run / 'supervisord.pid'))}",
        "nodaemon=true", f"childlogdir={_quote(str(logs))}", "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
        "[supervisorctl]", f"serverurl=unix://{_quote(str(sock))}", "",
    ]
    for p in programs:
        command = shlex.join([sys.executable, "-m", "stack.service", "--home", str(home), p.name])
        lines += [
            f"[program:{p.name}]",
            f"command={_quote(command)}",
            f"directory={_quote(str(repo))}",
            f"priority={p.priority}",
            "autostart=false",
            "autorestart=true",
            f"startsecs={p.startsecs}",
            f"startretries={START_RETRIES}",
            f"stopsignal={p.stopsignal}",
            f"stopwaitsecs={STOP_WAIT}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={_quote(str(logs / f'{p.name}.log'))}",
            "stdout_logfile_maxbytes=50MB",
            "stdout_logfile_backups=3",
            "",
        ]
    conf = run / "supervisord.conf"
    conf.write_text("\n".join(lines))
    return conf


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@dataclass
class Supervisord:
    home: Path

    @property
    def conf(self) -> Path:
        return self.home / "run" / "supervisord.conf"

    @property
    def pidfile(self) -> Path:
        return self.home / "run" / "supervisord.pid"

    def pid(self) -> int | None:
        """The pid of this home's supervisord when it runs (checked against its command line), else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        cmd = _cmdline(pid)
        return pid if b"supervisord" in cmd and str(self.conf).encode() in cmd else None

    def start(self, timeout: float = 30) -> int:
        """Run supervisord in its own session (Ctrl-C in the launcher's terminal does not reach it)."""
        self.pidfile.unlink(missing_ok=True)
        out = (self.home / "logs" / "supervisord.out").open("ab")
        from stack.service import MARK_HOME, MARK_SERVICE

        env = {**os.environ, MARK_HOME: str(self.home), MARK_SERVICE: "supervisord"}
        proc = subprocess.Popen([str(Path(sys.executable).with_name("supervisord")), "-n", "-c", str(self.conf)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=self.home, env=env)
        out.close()
        # Its session (start_new_session: its pid) holds every program: stack.service.stack_processes finds
        # what is left of them by it, even after supervisord itself is gone.
        (self.home / "run" / "session").write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"supervisord exited with {proc.returncode}; see {self.home / 'logs'}")
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                if self.rpc().supervisor.getState()["statename"] == "RUNNING":
                    return proc.pid
            time.sleep(0.1)
        raise RuntimeError(f"supervisord did not answer on {socket_path(self.home)} within {timeout:.0f} s")

    def rpc(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{socket_path(self.home)}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def info(self) -> dict[str, dict[str, Any]]:
        """Every program's state (statename, pid, description, exitstatus, ...), by name."""
        return {p["name"]: p for p in self.rpc().supervisor.getAllProcessInfo()}

    def ctl(self, *args: str) -> int:
        """supervisorctl with this home's configuration (its output goes to ours)."""
        return subprocess.call([str(Path(sys.executable).with_name("supervisorctl")), "-c", str(self.conf), *args])

    def shutdown(self, timeout: float = 180) -> bool:
        """Stop every program (reverse priority, each as a group) and supervisord; True once it is gone."""
        pid = self.pid()
        if pid is None:
            return True
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            self.rpc().supervisor.shutdown()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _cmdline(pid):
                self.pidfile.unlink(missing_ok=True)
                return True
            time.sleep(0.2)
        return False

    def kill(self) -> None:
        """SIGKILL supervisord itself (its programs are then ended by the caller: stack.service.stack_processes)."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
