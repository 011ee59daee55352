"""Fixtures for the search server: real embeddings, real published versions, real uvicorn over HTTP.

Once per session: shared photos (generated when absent) are copied into a
private IMAGE_ROOT, registered in a private database as two events, and
embedded with efficientnet-lite0 through `embeddings.runner.embed_batch`.
Each scenario then gets its own database (a template copy of that one) and its
own DATA_DIR (a copy of the Parquet dataset) and publishes versions through
`indexing.pipeline`, so scenarios that delete rows or publish never disturb
each other. Servers are uvicorn.Server instances in threads on free ports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.selection import reads_samples

MODEL = "efficientnet-lite0"
N_PHOTOS = 24


@dataclass
class Base:
    """The session's embedded corpus: a template database, a Parquet dataset, the image files."""

    admin: str
    dbname: str
    root: Path
    data_dir: Path
    image_root: Path
    model_version: str
    event_a: str
    event_b: str
    ids: list[int]  # image ids, in photo order (then the dup copies, then the scene shots)
    codes: dict[int, str]
    files: dict[int, Path]
    dup_pairs: list[tuple[int, int]]  # (original, copy) both in event A: the only copies planted
    scene_pair: tuple[int, int]  # two shots of one scene in event A (the first has a copy too): never duplicates
    scene_probe: int  # one shot of another scene in event A; `scene_upload` is its other shot
    scene_upload: Path  # another shot of scene_probe's scene, not in the index
    rotated_upload: Path  # photo of ids[2] turned 90 degrees, not in the index
    unrelated_upload: Path  # a photo that is not in the index at all
    created: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Images indexed by the pipeline."""
        return len(self.ids)


def _create_db(admin: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        if template:
            # A template must have no other sessions; the pipeline's connections are closed by now.
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(admin, dbname=name)


def _drop_db(admin: str, name: str) -> None:
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass


def settings_for(conninfo: str, data_dir: Path, image_root: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    from core.settings import load_settings

    p = conninfo_to_dict(conninfo)
    values: dict[str, Any] = dict(
        db_host=p["host"], db_port=int(p.get("port") or 5432), db_name=p["dbname"], db_user=p.get("user", "postgres"),
        db_pass=p.get("password") or "", data_dir=data_dir, image_root=image_root, embedding_model=MODEL,
        swap_poll_seconds=0.3, torch_threads=0,
        relations_wait_seconds=60,  # a loaded CI machine: routes wait for a computation (one test sets 0.5)
    )
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture(scope="session")
@reads_samples
def base(pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    import torch
    from PIL import Image

    from core.sample_data import sample_photos, sample_scene_pairs
    from embeddings.models import get_embedder
    from embeddings.runner import embed_batch
    from tests.ems_schema import prepare_test_database

    torch.set_num_threads(2)
    admin = make_conninfo(pg_database, dbname="postgres")
    root = tmp_path_factory.mktemp("serving")
    dbname = f"imgsim_srv_{uuid.uuid4().hex[:10]}"
    info = _create_db(admin, dbname)
    with psycopg.connect(info) as conn:
        prepare_test_database(conn)
    image_root = root / "images"
    (image_root / "uploads").mkdir(parents=True)
    photos = sample_photos(N_PHOTOS + 1, out_dir=root / "generated")
    assert len(photos) >= N_PHOTOS + 1
    files: list[Path] = []
    for p in photos[:N_PHOTOS]:
        dest = image_root / "uploads" / p.name
        shutil.copyfile(p, dest)
        files.append(dest)
    # Two transformed copies stored in event A: the duplicates the event groups must find.
    with Image.open(files[0]) as im:
        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(image_root / "uploads" / "copy_small.jpg")
    with Image.open(files[1]) as im:
        im.convert("RGB").save(image_root / "uploads" / "copy_q30.jpg", quality=30)
    with Image.open(files[2]) as im:
        im.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(root / "rotated.jpg", quality=92)
    files += [image_root / "uploads" / "copy_small.jpg", image_root / "uploads" / "copy_q30.jpg"]
    # Same-scene shots (real ones from the sample scenes, else generated): one pair indexed whole, and one
    # pair whose second shot is kept aside as an upload.
    (pair_a, pair_b), (probe, probe_other) = sample_scene_pairs(2, out_dir=root / "scenes")
    for n, src in enumerate((pair_a, pair_b, probe)):
        dest = image_root / "uploads" / f"scene_{n}{src.suffix}"
        shutil.copyfile(src, dest)
        files.append(dest)
    with Image.open(files[N_PHOTOS + 2]) as im:  # a copy of a shot: one member of its similar-shots group
        im.convert("RGB").resize((im.width * 7 // 10, im.height * 7 // 10)).save(
            image_root / "uploads" / "scene_0_copy.jpg", quality=85)
    files.append(image_root / "uploads" / "scene_0_copy.jpg")

    with psycopg.connect(info, autocommit=True) as conn:
        event_a = str(conn.execute("INSERT INTO events (name) VALUES ('A') RETURNING code").fetchone()[0])
        event_b = str(conn.execute("INSERT INTO events (name) VALUES ('B') RETURNING code").fetchone()[0])
        ids, codes, by_id = [], {}, {}
        for n, path in enumerate(files):
            event = event_b if 14 <= n < N_PHOTOS else event_a  # copies and scene shots: event A
            image_id, code = conn.execute(
                "INSERT INTO images (event_code, filename, file_path) VALUES (%s, %s, %s) RETURNING id, code",
                (event, path.name, f"/uploads/{path.name}")).fetchone()
            ids.append(int(image_id))
            codes[int(image_id)] = str(code)
            by_id[int(image_id)] = path
    data_dir = root / "base-data"
    settings = settings_for(info, data_dir, image_root)
    result = embed_batch(info, ids, model_name=MODEL, run_id="serving-tests", settings=settings)
    assert result["embedded"] == len(ids), result
    base = Base(admin=admin, dbname=dbname, root=root, data_dir=data_dir, image_root=image_root,
                model_version=get_embedder(MODEL, settings).model_version, event_a=event_a, event_b=event_b,
                ids=ids, codes=codes, files=by_id,
                dup_pairs=[(ids[0], ids[N_PHOTOS]), (ids[1], ids[N_PHOTOS + 1]),
                           (ids[N_PHOTOS + 2], ids[N_PHOTOS + 5])],
                scene_pair=(ids[N_PHOTOS + 2], ids[N_PHOTOS + 3]), scene_probe=ids[N_PHOTOS + 4],
                scene_upload=probe_other, rotated_upload=root / "rotated.jpg", unrelated_upload=photos[N_PHOTOS])
    yield base
    for name in base.created:
        _drop_db(admin, name)
    _drop_db(admin, dbname)


class Scenario:
    """A private database (template copy) and DATA_DIR (dataset copy) that publish their own versions."""

    def __init__(self, base: Base, name: str, **overrides: Any) -> None:
        self.base = base
        self.dbname = f"{base.dbname}_{name}_{uuid.uuid4().hex[:6]}"
        self.conninfo = _create_db(base.admin, self.dbname, template=base.dbname)
        base.created.append(self.dbname)
        self.data_dir = base.root / self.dbname
        shutil.copytree(base.data_dir, self.data_dir)
        self.settings = settings_for(self.conninfo, self.data_dir, base.image_root, **overrides)

    def publish(self, mode: str = "rebuild") -> int:
        from indexing import pipeline

        built = pipeline.build(self.conninfo, self.settings, self.base.model_version, mode=mode)
        pipeline.publish(self.conninfo, self.settings, self.base.model_version, built["version"])
        return int(built["version"])

    def store(self):  # type: ignore[no-untyped-def]
        from indexing.store.layout import IndexStore

        return IndexStore(self.settings, self.base.model_version)

    def execute(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []


class LiveServer:
    """`serving.app.create_app(settings)` under a real uvicorn in a thread, on a free loopback port."""

    def __init__(self, settings: Any) -> None:
        import uvicorn

        from core.localpg import free_port
        from serving.app import create_app

        self.app = create_app(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    @property
    def state(self) -> Any:
        return self.app.state.server

    def wait_ready(self, timeout: float = 60, version: int | None = None) -> dict[str, Any]:
        """Poll GET / until it answers 200 (and names `version`, if given)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            r = self.client.get("/")
            last = r.json()
            if r.status_code == 200 and (version is None or last.get("index_version") == version):
                return last
            time.sleep(0.05)
        raise AssertionError(f"server not ready (version {version}): {last}")

    def wait_filter_fresh(self, timeout: float = 15) -> dict[str, Any]:
        """Poll /stats until the set of deleted images is built for the served version and fresh."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            body = self.client.get("/stats").json()
            last = body.get("deleted_filter")
            if last and last["fresh"] and last["version"] == body["index_version"]:
                return last
            time.sleep(0.05)
        raise AssertionError(f"deleted-image set not fresh: {last}")

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(15)


@pytest.fixture(scope="session")
def scenario(base: Base):  # type: ignore[no-untyped-def]
    """Factory: scenario(name, **settings overrides) -> Scenario."""

    def make(name: str, **overrides: Any) -> Scenario:
        return Scenario(base, name, **overrides)

    return make


@pytest.fixture
def live_server() -> Iterator[Any]:
    """Factory for servers that stop with the test."""
    servers: list[LiveServer] = []

    def start(settings: Any) -> LiveServer:
        server = LiveServer(settings)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


API_KEY = "test-key-123"


@pytest.fixture(scope="session")
def main(scenario) -> Iterator[tuple[Scenario, LiveServer]]:  # type: ignore[no-untyped-def]
    """The read-only server most route tests share: one published version, an API key, a 1 MB upload limit."""
    scn = scenario("main", api_key=API_KEY, max_upload_mb=1.0)
    scn.publish()
    server = LiveServer(scn.settings)
    server.wait_ready()
    yield scn, server
    server.stop()


# --- a private PostgreSQL a test may stop (SIGSTOP) or hang, never the machine's shared one ----------

@pytest.fixture
def stoppable_pg(pg_folder: Path) -> Iterator:  # type: ignore[type-arg]
    """In its own folder (pg_folder: outside pytest's temp root, which the postgres user may not traverse)."""
    from core.localpg import LocalPostgres

    server = LocalPostgres(pg_folder / "pg").start()
    yield server
    resume(server)
    server.stop()


def postgres_pids(server) -> list[int]:  # type: ignore[no-untyped-def]
    """The private server's postmaster and every process it started (backends, checkpointer, ...)."""
    postmaster = int((server.pgdata / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry))
    return [postmaster, *children]


def hang(server) -> list[int]:  # type: ignore[no-untyped-def]
    pids = postgres_pids(server)
    for pid in pids:  # the postmaster first: it starts nothing new while its children stop
        os.kill(pid, signal.SIGSTOP)
    return pids


def resume(server) -> None:  # type: ignore[no-untyped-def]
    try:
        pids = postgres_pids(server)
    except (OSError, ValueError, IndexError):
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def copy_corpus(src_conninfo: str, dst_conninfo: str) -> None:
    """The scenario's events and images into the private server (same ids and codes)."""
    from core.migrate import apply_migrations

    with psycopg.connect(dst_conninfo) as conn:
        apply_migrations(conn)
    with psycopg.connect(src_conninfo) as src, psycopg.connect(dst_conninfo) as dst:
        for code, name in src.execute("SELECT code, name FROM events"):
            dst.execute("INSERT INTO events (code, name) VALUES (%s, %s)", (code, name))
        for row in src.execute("SELECT id, code, event_code, filename, file_path FROM images"):
            dst.execute("INSERT INTO images (id, code, event_code, filename, file_path) VALUES (%s,%s,%s,%s,%s)", row)
