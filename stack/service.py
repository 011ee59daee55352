"""What supervisord runs for each service of the stack: `python -m stack.service --home HOME NAME`.

It reads the service's command line and environment from `HOME/run/services.json` (written by
stack/local.py; kept out of supervisord.conf, whose value syntax cannot hold JSON or secrets
safely), ends whatever a previous run of the same service left behind, drops to the service's user
when it has one (the private PostgreSQL as root), and exec()s the service: the pid supervisord
watches is the service itself, no wrapper stays in between.

Leftovers: a service killed with SIGKILL leaves its children behind (a Celery worker's pool
processes, its `serve-logs` and the running task; a postmaster's backends, which keep the shared
memory the next postmaster needs). `stack_processes` finds them whatever their parent became (the
environment variables IMGSIM_STACK and IMGSIM_STACK_SERVICE every process of the stack inherits,
supervisord's session, the service's previous process group, the private PostgreSQL's data folder),
for a service before it starts again and for the whole stack at `stack stop`. This module imports
only the standard library (it runs before every start).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MARK_HOME = "IMGSIM_STACK"
MARK_SERVICE = "IMGSIM_STACK_SERVICE"


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key in (MARK_HOME.encode(), MARK_SERVICE.encode()):
            env[key.decode()] = value.decode(errors="replace")
    return env


@dataclass
class _Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str


def _stat(pid: int) -> _Proc | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return _Proc(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0])


def _alive(pid: int) -> bool:
    """Running (a zombie is not: it holds nothing and only waits for its parent to reap it)."""
    proc = _stat(pid)
    return proc is not None and proc.state not in ("Z", "X")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _session(home: Path) -> int | None:
    """The session of the stack's supervisord (every program runs in it), while it can still be ours: its
    leader is our supervisord, or gone (a session id is not reused while a process of the session lives)."""
    try:
        sid = int((home / "run" / "session").read_text())
    except (OSError, ValueError):
        return None
    leader = _cmdline(sid)
    if not leader or (b"supervisord" in leader and str(home / "run" / "supervisord.conf").encode() in leader):
        return sid
    return None


def _is_postgres_of(pid: int, pgdata: Path) -> bool:
    """A server process of the stack's own PostgreSQL (its backends call setsid(): not in the session)."""
    try:
        return (os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "postgres"
                and os.readlink(f"/proc/{pid}/cwd") == str(pgdata))
    except OSError:
        return False


def stack_processes(home: Path | str, service: str | None = None) -> list[int]:
    """Pids of the live processes of the stack in `home`, or of one of its services (what a previous run
    of it left behind), each with every descendant.

    A process is the stack's when its environment carries IMGSIM_STACK=home (and IMGSIM_STACK_SERVICE);
    when it is in the session of the stack's supervisord (for the whole stack) or in the process group of
    the service's previous run (`run/pids/<service>`); or when it is a server process of the stack's own
    PostgreSQL. The environment alone is not enough: a process that sets its title (setproctitle: Celery's
    pool, `airflow serve-logs`, the api-server, PostgreSQL) overwrites it.
    """
    home = Path(home)
    skip = {os.getpid()}
    parent = os.getppid()
    while parent > 1 and parent not in skip:  # never this process or what runs it
        skip.add(parent)
        parent = (_stat(parent) or _Proc(0, 0, 0, 0, "X")).ppid
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in skip and (proc := _stat(int(entry))) and proc.state not in "ZX":
            procs[proc.pid] = proc
    sid = _session(home)
    try:
        previous = int((home / "run" / "pids" / service).read_text()) if service else None
    except (OSError, ValueError):
        previous = None
    pgdata = home / "pg" / "pgdata"

    def ours(proc: _Proc) -> bool:
        env = _environ(proc.pid)
        if env.get(MARK_HOME) == str(home) and service in (None, env.get(MARK_SERVICE)):
            return True
        if sid is not None and proc.sid == sid and (service is None or proc.pgid == previous):
            return True
        return service in (None, "postgres") and _is_postgres_of(proc.pid, pgdata)

    found = {pid for pid, proc in procs.items() if ours(proc)}
    while True:  # and their descendants (a task process has a process group of its own)
        more = {pid for pid, proc in procs.items() if proc.ppid in found and pid not in found}
        if not more:
            return sorted(found)
        found |= more


def end_processes(pids: list[int], grace: float = 10.0) -> list[int]:
    """SIGTERM `pids`, SIGKILL whatever is left after `grace` seconds; returns those still alive after that."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        pids = [p for p in pids if _alive(p)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            if pids:
                time.sleep(0.1)
        if not pids:
            return []
    return [p for p in pids if _alive(p)]


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] != "--home":
        sys.exit("usage: python -m stack.service --home HOME NAME")
    home, name = Path(argv[1]), argv[2]
    layout = json.loads((home / "run" / "services.json").read_text())
    spec = layout["services"][name]
    leftovers = stack_processes(home, name)
    if leftovers:
        print(f"[stack] ending {len(leftovers)} process(es) a previous {name} left behind: {leftovers}", flush=True)
        end_processes(leftovers, grace=0)  # SIGKILL: they belong to a service that is already gone
    pids = home / "run" / "pids"
    pids.mkdir(exist_ok=True)
    (pids / name).write_text(str(os.getpid()))  # exec keeps the pid: the service's pid and process group
    env = {**layout["env"], **spec["env"]}
    env[MARK_HOME], env[MARK_SERVICE] = str(home), name
    user = spec.get("user")
    if user is not None and os.geteuid() == 0:  # the private PostgreSQL refuses to run as root
        import pwd

        entry = pwd.getpwnam(user)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
        env.update(HOME=entry.pw_dir, USER=user, LOGNAME=user)
    os.chdir(spec.get("cwd") or "/")
    os.execvpe(spec["argv"][0], spec["argv"], env)


if __name__ == "__main__":
    main(sys.argv[1:])
