"""Downloading the checkpoint: verified by sha256 against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from embeddings.weights import WeightsError, download


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on 127.0.0.1 (random port) serving tmp_path/www; stopped after the test."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www
    finally:
        server.shutdown()
        server.server_close()


def test_download_verifies_and_renames_into_place(http_dir: tuple[str, Path], tmp_path: Path) -> None:
    base, www = http_dir
    payload = b"checkpoint bytes " * 100_000
    (www / "w.pth.tar").write_bytes(payload)
    dest = tmp_path / "weights" / "w.pth.tar"
    seen: list[int] = []
    out = download(dest, url=f"{base}/w.pth.tar", sha256=hashlib.sha256(payload).hexdigest(),
                   progress=lambda done, total: seen.append(done))
    assert out == dest and dest.read_bytes() == payload
    assert seen[-1] == len(payload)
    assert list(dest.parent.iterdir()) == [dest]  # no temp file left
    # Already there and verified: no second download (the server file is gone).
    (www / "w.pth.tar").unlink()
    assert download(dest, url=f"{base}/w.pth.tar", sha256=hashlib.sha256(payload).hexdigest()) == dest


def test_a_hash_mismatch_is_refused_and_leaves_nothing(http_dir: tuple[str, Path], tmp_path: Path) -> None:
    base, www = http_dir
    (www / "w.pth.tar").write_bytes(b"tampered")
    dest = tmp_path / "weights" / "w.pth.tar"
    with pytest.raises(WeightsError, match="does not match"):
        download(dest, url=f"{base}/w.pth.tar", sha256="0" * 64)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_unreachable_url_is_a_clear_error(http_dir: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = http_dir
    dest = tmp_path / "w.pth.tar"
    with pytest.raises(WeightsError, match="cannot download"):
        download(dest, url=f"{base}/absent.pth.tar", sha256="0" * 64)
    assert not dest.exists() and list(tmp_path.glob(".w.pth.tar*")) == []
