"""Damage on disk against a real server: it never dies, never serves a version that does not verify,
falls back to the newest good copy (BACKUP_DIR, older versions) and says so everywhere.

The truncation test runs `python -m serving` as a separate process: a SIGBUS there would show as
the process's death, not take pytest down with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from core.localpg import free_port
from core.settings import REPO_ROOT
from tests.helpers import overwrite


def _wait(predicate, timeout: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _backup(scn) -> None:  # type: ignore[no-untyped-def]
    from indexing import pipeline

    report = pipeline.backup(scn.conninfo, scn.settings, scn.base.model_version)
    # publish already made each version's copy: the run verifies it
    assert report.verified and not report.copied and not report.damaged and not report.skipped, report


def _cli(scn, *args: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    s = scn.settings
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "DB_HOST": s.db_host, "DB_PORT": str(s.db_port),
           "DB_NAME": s.db_name, "DB_USER": s.db_user, "DATA_DIR": str(s.data_dir),
           "EMBEDDING_MODEL": "efficientnet-lite0"}
    return subprocess.run([sys.executable, "-m", "indexing", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


def _one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


class ServerProcess:
    """`python -m serving` configured by the environment, as an operator runs it."""

    def __init__(self, settings, **env_extra: str) -> None:  # type: ignore[no-untyped-def]
        s = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DB_HOST": s.db_host, "DB_PORT": str(s.db_port), "DB_NAME": s.db_name,
               "DB_USER": s.db_user, "DATA_DIR": str(s.data_dir), "IMAGE_ROOT": str(s.image_root),
               "EMBEDDING_MODEL": "efficientnet-lite0", "API_HOST": "127.0.0.1", "API_PORT": str(self.port),
               "SWAP_POLL_SECONDS": "0.3", "TORCH_THREADS": "1", **env_extra}
        self.log = Path(s.data_dir) / f"server-{self.port}.log"
        self._log = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "serving", "--log-level", "info"], cwd=REPO_ROOT,
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def get(self, path: str) -> httpx.Response:
        assert self.alive(), f"server died with exit code {self.proc.returncode}: {self.log.read_text()[-2000:]}"
        return self.client.get(path)

    def post(self, path: str, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
        assert self.alive(), f"server died with exit code {self.proc.returncode}: {self.log.read_text()[-2000:]}"
        return self.client.post(path, **kw)

    def wait_ready(self, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), self.log.read_text()[-2000:]
            try:
                r = self.client.get("/")
                if r.status_code == 200:
                    return r.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server not ready: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.client.close()
        if self.alive():
            self.proc.terminate()
            self.proc.wait(20)
        self._log.close()


def test_truncating_the_served_file_does_not_kill_the_server(scenario, base) -> None:
    scn = scenario("truncate")
    v1 = scn.publish()
    _backup(scn)
    srv = ServerProcess(scn.settings, INDEX_RECHECK_SECONDS="3600")
    try:
        assert srv.wait_ready()["index_version"] == v1
        similar = srv.get(f"/images/{base.ids[3]}/similar?top_k=3").json()
        query = {"vector": [0.1] * 1280, "top_k": 5}
        before = srv.post("/search", json=query).json()
        served_file = scn.store().version_dir(v1) / "index.faiss"
        os.chmod(served_file, 0o644)  # segments are read-only; root (the probe's user) ignores that anyway
        os.truncate(served_file, 1000)  # the probe that used to SIGBUS
        for _ in range(20):  # requests over the whole index keep working: what is served is a private copy
            assert srv.post("/search", json=query).json() == before
        assert srv.get(f"/images/{base.ids[3]}/similar?top_k=3").json() == similar
        # The on-demand re-check finds it; the server swaps to the backup copy of the same version.
        check = srv.post("/versions/check").json()
        assert check["failures"] == 1 and "index.faiss: is 1000 bytes" in check["last_problem"]
        _wait(lambda: srv.get("/stats").json()["served_from"] == "backup", what="the swap to the backup copy")
        stats = srv.get("/stats").json()
        assert stats["index_version"] == v1 and "store's copy of v000001 is damaged" in stats["degraded"]
        assert stats["integrity"]["failures"] == 1 and "index.faiss" in stats["integrity"]["last_problem"]
        health = srv.get("/").json()
        assert health["status"] == "ready" and "backup" in health["degraded"]
        metrics = srv.get("/metrics").text
        for line in ("imgsim_index_served_from_backup 1.0", "imgsim_index_degraded 1.0",
                     "imgsim_index_integrity_failures_total 1.0", "imgsim_index_integrity_ok 0.0"):
            assert line in metrics, line
        assert srv.post("/search", json=query).json() == before
        assert srv.alive()
        # The operator's repair: rollback restores the version from the backup; the server goes back to it.
        _one_line_error(_cli(scn, "verify", "v1"), "v000001/index.faiss", "1000 bytes")
        repaired = _cli(scn, "rollback", "--to", "v1")
        assert repaired.returncode == 0, repaired.stderr
        assert _cli(scn, "verify", "v1").returncode == 0
        _wait(lambda: srv.get("/stats").json()["served_from"] == "store", what="back to the store's copy")
        assert srv.get("/stats").json()["degraded"] is None
        assert "index_version" in srv.get("/").json() and srv.alive()
    finally:
        srv.stop()
    log = srv.log.read_text()
    assert "re-check of v000001 (store) failed" in log and "degraded" in log


def test_overwriting_a_shared_base_is_caught_and_the_backup_serves(scenario, live_server, base) -> None:
    """Merges share the base by hard links: damage to it hits every version that links it."""
    scn = scenario("shared", swap_poll_seconds=0.2, index_recheck_seconds=0.5)
    v1 = scn.publish()
    scn.execute("DELETE FROM images WHERE id = %s", (base.ids[20],))
    v2 = scn.publish(mode="merge")
    store = scn.store()
    shared = (store.version_dir(v2) / "index.faiss").stat().st_ino
    assert shared == (store.version_dir(v1) / "index.faiss").stat().st_ino
    _backup(scn)  # both published versions, as full copies sharing no file with the store
    backup = scn.settings.resolved_backup_dir
    inodes = {p.stat().st_ino for p in backup.rglob("*") if p.is_file()}
    assert not inodes & {p.stat().st_ino for p in store.root.rglob("*") if p.is_file()}
    srv = live_server(scn.settings)
    srv.wait_ready(version=v2)
    query = srv.state.holder.current.vector(base.ids[5]).tolist()
    before = srv.client.post("/search", json={"vector": query, "top_k": 8}).json()
    base_file = store.version_dir(v1) / "index.faiss"
    data = bytearray(base_file.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = os.urandom(4096)  # same size: only checksums can tell
    overwrite(base_file, bytes(data))
    # The periodic re-check (0.5 s here) finds it and the server moves to the backup copy of v2.
    _wait(lambda: srv.client.get("/stats").json()["served_from"] == "backup", what="the swap to the backup")
    assert srv.client.get("/").json()["index_version"] == v2
    assert srv.client.post("/search", json={"vector": query, "top_k": 8}).json() == before  # answers unchanged
    stats = srv.client.get("/stats").json()  # the backup copy re-checks sound; the damage stays on record
    assert stats["integrity"]["failures"] >= 1 and "checksum mismatch" in stats["degraded"]
    versions = srv.client.get("/versions").json()
    assert versions["served_from"] == "backup" and all(v["backup"] for v in versions["versions"])
    # The operator's tools: verify names the file; rollback restores v1 from the backup and serves it.
    _one_line_error(_cli(scn, "verify", "v1"), "v000001/index.faiss: checksum mismatch")
    back = _cli(scn, "rollback")
    assert back.returncode == 0 and "now v000001" in back.stdout, back.stderr
    assert srv.wait_ready(version=v1)["index_version"] == v1
    _wait(lambda: srv.client.get("/stats").json()["served_from"] == "store", what="v1 from the store")
    assert _cli(scn, "verify", "v1").returncode == 0


def test_garbage_in_current_serves_the_newest_good_version_and_every_command_works(scenario, live_server,
                                                                                    base) -> None:
    from indexing import pipeline

    scn = scenario("current")
    v1 = scn.publish()
    scn.execute("DELETE FROM images WHERE id = %s", (base.ids[21],))
    v2 = scn.publish(mode="merge")
    scn.execute("DELETE FROM images WHERE id = %s", (base.ids[22],))
    v3 = int(pipeline.build(scn.conninfo, scn.settings, base.model_version, mode="rebuild")["version"])  # unpublished
    current = scn.store().root / "CURRENT"
    current.write_bytes(b"\xff\xfe\x00garbage\x81")
    srv = live_server(scn.settings)
    assert srv.wait_ready(version=v2)["index_version"] == v2  # the newest *published* version, not v3
    health = srv.client.get("/").json()
    assert "CURRENT is damaged" in health["degraded"] and "<DATA_DIR>/" in health["degraded"]
    stats = srv.client.get("/stats").json()
    assert stats["current_on_disk"] is None and "binary data" in stats["current_problem"]
    versions = srv.client.get("/versions").json()
    assert versions["served"] == v2 and versions["current"] is None and "binary" in versions["current_problem"]
    # No absolute path of the server in what anyone may read (they used to show the store's folder).
    for answer in (health, stats, versions):
        assert str(scn.data_dir) not in json.dumps(answer) and str(base.root) not in json.dumps(answer), answer
    assert "imgsim_index_current_readable 0.0" in srv.client.get("/metrics").text

    # Every command works with the damaged CURRENT.
    listing = _cli(scn, "versions")
    assert listing.returncode == 0 and "CURRENT is damaged" in listing.stdout, listing.stderr
    assert _cli(scn, "verify", "v2").returncode == 0
    assert _cli(scn, "prune", "--keep", "5").returncode == 0
    built = _cli(scn, "--json", "build")
    assert built.returncode == 0, built.stderr
    assert _cli(scn, "backup").returncode == 0
    assert scn.store().versions()[-1] > v3
    # rollback repairs CURRENT: the newest published version that is intact.
    repaired = _cli(scn, "rollback")
    assert repaired.returncode == 0 and "now v000002" in repaired.stdout, repaired.stdout + repaired.stderr
    assert current.read_text().strip() == "v000002"
    _wait(lambda: srv.client.get("/").json().get("degraded") is None, what="CURRENT served again")

    # A missing CURRENT: the newest published version, said so; publish and rollback --to still work.
    current.unlink()
    srv2 = live_server(scn.settings)
    assert srv2.wait_ready(version=v2)["index_version"] == v2
    assert "CURRENT is missing" in srv2.client.get("/").json()["degraded"]
    assert _cli(scn, "rollback", "--to", "v1").returncode == 0
    assert srv2.wait_ready(version=v1)["index_version"] == v1
    assert srv2.client.get("/").json()["degraded"] is None


def test_a_version_verify_rejects_is_never_served(scenario, live_server, base) -> None:
    """Not L2-normalised, checksums fixed up to match: the load runs verify's checks and refuses it."""
    import faiss

    from indexing.store.integrity import sha256_file
    from indexing.store.layout import Manifest, version_name
    from indexing.store.segments import flat_view

    scn = scenario("unnormalised", swap_poll_seconds=0.2)
    v1 = scn.publish()
    srv = live_server(scn.settings)
    srv.wait_ready(version=v1)
    store = scn.store()
    src, dst = store.version_dir(v1), store.version_dir(v1 + 1)
    dst.mkdir()
    index = faiss.read_index(str(src / "index.faiss"))
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    scaled = faiss.IndexIDMap2(faiss.IndexFlatIP(index.d))
    scaled.add_with_ids(np.ascontiguousarray(flat_view(index) * 3.0), ids)
    faiss.write_index(scaled, str(dst / "index.faiss"))
    (dst / "meta.parquet").write_bytes((src / "meta.parquet").read_bytes())
    old = store.read_manifest(v1)
    files = ("index.faiss", "meta.parquet")
    fixed = Manifest(**{**old.__dict__, "version": v1 + 1, "sha256": {f: sha256_file(dst / f) for f in files},
                        "sizes": {f: (dst / f).stat().st_size for f in files}})
    (dst / "manifest.json").write_bytes(fixed.to_json())
    store.set_current(v1 + 1)
    _wait(lambda: srv.state.holder.stats.failures >= 1, what="the refusal")
    r = srv.client.get("/")
    assert r.json()["index_version"] == v1 and "not L2-normalised" in r.json()["degraded"]
    assert "not L2-normalised" in srv.client.get("/stats").json()["swap"]["failed_versions"][str(v1 + 1)]
    _one_line_error(_cli(scn, "verify", version_name(v1 + 1)), "not L2-normalised")


def test_vector_routes_work_while_the_model_is_unavailable(scenario, live_server, base) -> None:
    """The index of places365-resnet50 is served with its weights file missing: only image routes need it."""
    import shutil

    from embeddings.dataset import dataset_dir
    from embeddings.models import parse_name

    places = parse_name("places365-resnet50").model_version
    scn = scenario("nomodel", embedding_model="places365-resnet50", model_weights=Path("/nonexistent/places.pth"))
    shutil.move(dataset_dir(scn.settings, base.model_version), dataset_dir(scn.settings, places))
    scn.execute("UPDATE image_embeddings SET model_version = %s", (places,))
    from indexing import pipeline

    built = pipeline.build(scn.conninfo, scn.settings, places, mode="rebuild")
    pipeline.publish(scn.conninfo, scn.settings, places, built["version"])
    srv = live_server(scn.settings)
    assert srv.wait_ready()["model_version"] == places
    hits = srv.client.post("/search", json={"vector": [0.1] * 1280, "top_k": 3})
    assert hits.status_code == 200 and len(hits.json()) == 3
    assert srv.client.get(f"/images/{base.ids[0]}/similar", params={"top_k": 1}).status_code == 200
    with open(base.files[base.ids[0]], "rb") as fh:
        r = srv.client.post("/search/image", files={"file": ("a.jpg", fh.read(), "image/jpeg")})
    assert r.status_code == 503 and "model" in r.json()["message"] and "places" in r.json()["message"].lower()


def test_garbage_in_current_after_a_rollback_serves_the_rolled_back_version(scenario, live_server, base) -> None:  # type: ignore[no-untyped-def]
    """The fallback honours what the operator chose last (recorded by the rollback), not the highest version
    that verifies; `rollback`'s repair picks the same one."""
    from indexing import pipeline

    scn = scenario("rolledback")
    v1 = scn.publish()
    scn.execute("DELETE FROM images WHERE id = %s", (base.ids[21],))
    v2 = scn.publish(mode="merge")
    assert v2 > v1 and pipeline.rollback(scn.conninfo, scn.settings, base.model_version, to=v1) == v1
    (scn.store().root / "CURRENT").write_bytes(b"\xff\xfe\x00garbage\x81")
    srv = live_server(scn.settings)
    assert srv.wait_ready(version=v1, timeout=30)["index_version"] == v1
    assert "CURRENT is damaged" in srv.client.get("/").json()["degraded"]
    assert pipeline.rollback(scn.conninfo, scn.settings, base.model_version) == v1  # the repair
    assert scn.store().current_version() == v1
