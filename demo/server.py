"""The search server as a child process (`python -m serving`), started, waited for, and stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.localpg import free_port, port_answers

REPO = Path(__file__).resolve().parent.parent


class ServerError(RuntimeError):
    """The server would not start or never became ready; the message names its log."""


def choose_port(requested: int | None, default: int, host: str = "127.0.0.1") -> tuple[int, str | None]:
    """The port to serve on, and a note when the default was busy and another one was picked.

    An explicitly requested busy port is an error rather than a silent change.
    """
    if requested is not None:
        if port_answers(host, requested, timeout=0.3):
            raise ServerError(f"port {requested} is already in use; pick another with --port")
        return requested, None
    if port_answers(host, default, timeout=0.3):
        port = free_port()
        return port, f"port {default} is busy; serving on {port} instead (choose with --port)"
    return default, None


class SearchServer:
    """`python -m serving` on 127.0.0.1:port with the demo's settings; output to a log file."""

    def __init__(self, port: int, env: dict[str, str], log: Path, host: str = "127.0.0.1") -> None:
        self.host, self.port, self.log = host, port, log
        self.env = {**os.environ, **env, "API_HOST": host, "API_PORT": str(port), "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 180.0) -> dict:
        """Start the server and wait until GET / says an index version is served; returns that answer."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "serving"], env=self.env, cwd=REPO,
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ServerError(f"the search server exited with {self.proc.returncode}; see {self.log}\n"
                                      + self._tail())
                try:
                    answer = client.get("/")
                    if answer.status_code == 200:
                        return answer.json()
                    last = f"{answer.status_code} {answer.text[:200]}"
                except httpx.HTTPError as exc:
                    last = str(exc) or type(exc).__name__
                time.sleep(0.3)
        self.stop()
        raise ServerError(f"the search server was not ready after {timeout:.0f}s ({last}); see {self.log}")

    def _tail(self, lines: int = 15) -> str:
        try:
            return "".join(self.log.read_text(errors="replace").splitlines(keepends=True)[-lines:])
        except OSError:
            return ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
