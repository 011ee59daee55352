"""IMAGE_ROOT as a folder or as s3://bucket/prefix (storage/images.py): the same paths refused, the same
reasons for the same damaged files, whole reads, and an outage that fails the task, never the images.

The object store is a real S3 server (stack/objectstore.py); its bucket is a folder on disk, so objects are
planted, damaged and replaced directly. Each case runs on both kinds of root and compares reasons.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core.sample_data import generate_photos, sample_photos
from embeddings.dataset import read_vectors
from embeddings.loading import (
    INVALID_PATH,
    MAX_FILE_BYTES,
    MISSING,
    NOT_A_FILE,
    NOT_AN_IMAGE,
    OUTSIDE_ROOT,
    TOO_LARGE,
    TRUNCATED,
    ImageLoadError,
    load_image_info,
)
from storage.images import ImageFiles
from storage.objects import StorageUnavailable
from tests.embeddings.helpers import add_event, register
from tests.selection import reads_samples

MODEL = "efficientnet-lite0+plain"  # EMBEDDING_MODEL=efficientnet-lite0 without the 4x rotation variant
REPO = Path(__file__).resolve().parents[2]


Request = tuple[str, str | None, str | None]  # an S3 call: method, key, range


@dataclass
class Root:
    """One IMAGE_ROOT under test: `folder` is where its files are on disk (the local root itself, or the
    bucket folder's prefix the S3 server serves); `above` is a folder an escape would reach."""

    kind: str
    folder: Path
    above: Path
    server: Any = None
    bucket: str | None = None
    spy: list[Request] = field(default_factory=list)

    @cached_property
    def settings(self) -> Any:  # built on first use, after every fixture has set the environment
        from core.settings import get_settings

        get_settings.cache_clear()
        return get_settings()

    @cached_property
    def files(self) -> ImageFiles:
        return ImageFiles(self.settings)

    def plant(self, rel: str, data: bytes) -> Path:
        """A file under the root; on S3 through the API (a PUT), as objects really arrive."""
        path = self.folder / rel
        if self.kind == "s3":
            self._put(path, data)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def replace(self, rel: str, data: bytes) -> None:
        """Replace the file whole, as an object PUT does (write aside, rename over). On S3 this happens on
        the server's disk (it may be called from inside a request, where the API cannot be), then waits until
        the server's listing cache shows it."""
        tmp = self.folder / f".{Path(rel).name}.swap"
        tmp.write_bytes(data)
        os.replace(tmp, self.folder / rel)
        if self.kind == "s3":
            self.server.settle()

    def put(self, rel: str, data: bytes) -> None:
        """Replace the file whole the way a writer does: on S3 a PUT through the API (the server's listing
        and ETags follow at once), locally written aside and renamed over."""
        if self.kind == "s3":
            self._put(self.folder / rel, data)
        else:
            self.replace(rel, data)

    def _put(self, path: Path, data: bytes) -> None:
        from storage.filesystems import filesystem

        fs = filesystem(self.settings.image_location, self.settings)
        fs.pipe_file(path.relative_to(self.server.root).as_posix(), data)

    def watch(self, monkeypatch: pytest.MonkeyPatch, before_get: Any = None) -> list[Request]:
        """Record every S3 request (method, key, range) of this root's filesystem, and each read of a GET's
        body as ("body", key, bytes read); `before_get(key)` runs just before each GetObject is sent (to
        change the object under the read)."""
        if self.kind != "s3":
            return self.spy
        from storage.filesystems import filesystem

        fs = filesystem(self.settings.image_location, self.settings)
        original = fs._call_s3

        async def spying(method: str, *args: Any, **kwargs: Any) -> Any:
            self.spy.append((method, kwargs.get("Key"), kwargs.get("Range")))
            if method == "get_object" and before_get is not None:
                before_get(kwargs.get("Key"))
            resp = await original(method, *args, **kwargs)
            if method == "get_object":
                body, key = resp["Body"], kwargs.get("Key")
                read = body.read

                async def counted(*a: Any, **k: Any) -> bytes:
                    data = await read(*a, **k)
                    self.spy.append(("body", key, str(len(data))))
                    return data

                body.read = counted
            return resp

        monkeypatch.setattr(fs, "_call_s3", spying)
        return self.spy


def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, weights: Path, image_root: str) -> None:
    monkeypatch.setenv("IMAGE_ROOT", image_root)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMBEDDING_MODEL", MODEL)
    monkeypatch.setenv("MODEL_WEIGHTS", str(weights))  # one embedder for every test (efficientnet has no file)
    monkeypatch.setenv("STORAGE_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("EMBED_DECODE_WORKERS", "2")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weights") / "unused.pth.tar"


def _local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights: Path) -> Root:
    folder = tmp_path / "images"
    folder.mkdir()
    _environment(monkeypatch, tmp_path, weights, str(folder))
    return Root("local", folder, tmp_path)


def _s3_root(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights: Path) -> Root:
    server, bucket, bucket_dir = request.getfixturevalue("s3")
    folder = bucket_dir / "photos"
    folder.mkdir()
    _environment(monkeypatch, tmp_path, weights, f"s3://{bucket}/photos")
    return Root("s3", folder, bucket_dir, server=server, bucket=bucket)


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         weights: Path) -> Iterator[Root]:
    from core.settings import get_settings

    made = _local_root(tmp_path, monkeypatch, weights) if request.param == "local" else \
        _s3_root(request, tmp_path, monkeypatch, weights)
    yield made
    get_settings.cache_clear()


@pytest.fixture
def s3_root(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            weights: Path) -> Iterator[Root]:
    from core.settings import get_settings

    yield _s3_root(request, tmp_path, monkeypatch, weights)
    get_settings.cache_clear()


@pytest.fixture(scope="module")
@reads_samples
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return sample_photos(3, out_dir=tmp_path_factory.mktemp("photos"))


def _reason(fn: Any, *args: Any) -> str:
    with pytest.raises(ImageLoadError) as caught:
        fn(*args)
    return caught.value.reason


def _ledger(db) -> dict[int, tuple]:  # type: ignore[no-untyped-def]
    rows = db.execute("SELECT image_id, status, error, attempts FROM image_embeddings").fetchall()
    return {r[0]: r[1:] for r in rows}


def _vector_of(settings: Any, raw: bytes) -> np.ndarray:
    """What the runner computes for these bytes (same decode, same model)."""
    from embeddings.models import get_embedder

    embedder = get_embedder(MODEL, settings)
    info = load_image_info(raw, **embedder.load_kwargs())
    return embedder.forward(np.stack([embedder.prepare(info.image)]))[0]


# --- a good photo, and damaged files, through embed_batch --------------------------------------------

def test_good_photo_is_read_and_embedded(root: Root, db, photos: list[Path], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from embeddings.runner import embed_batch

    raw = photos[0].read_bytes()
    root.plant("uploads/cat.jpg", raw)
    assert root.files.read("/uploads/cat.jpg") == raw
    assert root.files.read("uploads/cat.jpg") == raw
    assert root.files.read("/uploads/./x/../cat.jpg") == raw  # '..' inside the root is fine, as locally
    assert root.files.exists("/uploads/cat.jpg") and not root.files.exists("/uploads/dog.jpg")
    assert not root.files.exists("/uploads")  # a folder is not a file
    if root.kind == "s3":  # a full URL inside IMAGE_ROOT is accepted, like an absolute path inside a local root
        assert root.files.read(f"s3://{root.bucket}/photos/uploads/cat.jpg") == raw
        assert root.files.key("/uploads/cat.jpg") == f"{root.bucket}/photos/uploads/cat.jpg"
    else:
        assert root.files.key("/uploads/cat.jpg") == str(root.folder.resolve() / "uploads" / "cat.jpg")

    event = add_event(db)
    image_id = register(db, event, "/uploads/cat.jpg")
    spy = root.watch(monkeypatch)
    res = embed_batch(root.settings.conninfo(), [image_id], model_name=MODEL, run_id="good", settings=root.settings)
    assert res["embedded"] == 1 and res["failed"] == 0, res
    assert _ledger(db) == {image_id: ("embedded", None, 1)}
    table = pq.read_table(res["part"])
    with Image.open(photos[0]) as im:
        assert (table["width"][0].as_py(), table["height"][0].as_py()) == im.size
    assert float(read_vectors(table)[0] @ _vector_of(root.settings, raw)) > 0.9999
    if root.kind == "s3":  # one request per photo: a GET capped at the limit (no size lookup)
        assert [s[0] for s in spy] == ["get_object", "body"], spy
        assert spy[0][2] == f"bytes=0-{MAX_FILE_BYTES}" and spy[1][2] == str(len(raw)), spy


def _sparse(path: Path, size: int, server: Any = None) -> None:
    """A huge file made on disk (sparse: instant); on S3 it shows once the server's listing cache expires."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(size)
    if server is not None:
        server.settle()


def test_damaged_files_fail_with_the_local_reasons(root: Root, db, photos: list[Path], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The same bad files give the same reasons on both roots; the rest of the batch embeds."""
    from embeddings.runner import embed_batch

    good = photos[1].read_bytes()
    root.plant("uploads/good.jpg", good)
    root.plant("uploads/empty.jpg", b"")
    root.plant("uploads/cut.jpg", good[:2000])
    root.plant("uploads/notes.jpg", b"definitely not a jpeg")
    root.plant("uploads/folder.jpg/inside.jpg", good)
    _sparse(root.folder / "uploads" / "huge.jpg", MAX_FILE_BYTES + 1, root.server)
    (root.above / "x.jpg").write_bytes(good)  # what an escape would read
    expected = {
        "/uploads/good.jpg": None,
        "/uploads/empty.jpg": NOT_AN_IMAGE,
        "/uploads/cut.jpg": TRUNCATED,
        "/uploads/notes.jpg": NOT_AN_IMAGE,
        "/uploads/folder.jpg": NOT_A_FILE,
        "/uploads/gone.jpg": MISSING,
        "/uploads/huge.jpg": TOO_LARGE,
        "../x.jpg": OUTSIDE_ROOT,
        "/../../x.jpg": OUTSIDE_ROOT,
    }
    event = add_event(db)
    ids = {register(db, event, path, f"f{n}.jpg"): path for n, path in enumerate(expected)}
    spy = root.watch(monkeypatch)
    res = embed_batch(root.settings.conninfo(), list(ids), model_name=MODEL, run_id="bad", settings=root.settings)
    ledger = _ledger(db)
    got = {ids[i]: (None if status == "embedded" else error) for i, (status, error, _) in ledger.items()}
    assert got == expected
    assert res["embedded"] == 1 and res["failed"] == len(expected) - 1
    # The huge object was refused from its size (the GET's headers): its body never read.
    assert not [s for s in spy if s[0] == "body" and s[1] and s[1].endswith("huge.jpg")], spy
    for path, reason in expected.items():  # the reasons a read gives itself (the rest come from decoding)
        if reason in (MISSING, NOT_A_FILE, TOO_LARGE, OUTSIDE_ROOT):
            assert _reason(root.files.read, path) == reason, path


def test_a_huge_object_is_refused_without_downloading_it(root: Root, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _sparse(root.folder / "big.jpg", 3 * MAX_FILE_BYTES, root.server)
    spy = root.watch(monkeypatch)
    started = time.monotonic()
    with pytest.raises(ImageLoadError) as caught:
        root.files.read("big.jpg")
    assert caught.value.reason == TOO_LARGE and str(3 * MAX_FILE_BYTES) in str(caught.value)
    if root.kind == "s3":  # one GET, its body left unread
        assert [s[0] for s in spy] == ["get_object"], spy
    assert time.monotonic() - started < 20  # 768 MB were not moved (the server hashes the file for its ETag)


# --- hostile paths ---------------------------------------------------------------------------------

LONG_NAME = "a" * 2000 + ".jpg"
LONG_PATH = "/" + "/".join(["d" * 250] * 17) + "/x.jpg"  # parts within 255 bytes, over 4,095 in all
LONG_KEY = "d/" * 600 + "x.jpg"  # a fine local path; over S3's 1,024-byte key
# (file_path, reason with a local root, reason with an s3 root). Where they differ the local root reads
# the text as a literal file name that is not there; an object key refuses what an S3 server or proxy
# could decode into a separator or a '..'.
HOSTILE = [
    ("../x.jpg", OUTSIDE_ROOT, OUTSIDE_ROOT),
    ("/../../other-bucket/x.jpg", OUTSIDE_ROOT, OUTSIDE_ROOT),
    ("/../x.jpg", OUTSIDE_ROOT, OUTSIDE_ROOT),
    ("uploads/../../x.jpg", OUTSIDE_ROOT, OUTSIDE_ROOT),
    ("/uploads/./../../x.jpg", OUTSIDE_ROOT, OUTSIDE_ROOT),
    ("%2e%2e/x.jpg", MISSING, INVALID_PATH),
    ("%2E%2E%2Fx.jpg", MISSING, INVALID_PATH),
    ("a/%2F../x", MISSING, INVALID_PATH),
    ("%252e%252e/x.jpg", MISSING, INVALID_PATH),
    ("..%5cx.jpg", MISSING, INVALID_PATH),
    ("..\\x.jpg", MISSING, INVALID_PATH),
    ("uploads\\..\\..\\x.jpg", MISSING, INVALID_PATH),
    ("x\x00.jpg", INVALID_PATH, INVALID_PATH),
    ("\x00", INVALID_PATH, INVALID_PATH),
    ("", INVALID_PATH, INVALID_PATH),
    (LONG_NAME, INVALID_PATH, INVALID_PATH),
    (LONG_PATH, INVALID_PATH, INVALID_PATH),
    (LONG_KEY, MISSING, INVALID_PATH),
    ("bad\udcffname.jpg", MISSING, INVALID_PATH),  # not UTF-8: no object key can name it
    ("s3://other-bucket/x.jpg", MISSING, OUTSIDE_ROOT),
    ("s3://{bucket}/x.jpg", MISSING, OUTSIDE_ROOT),  # this bucket, above the prefix
    ("s3://{bucket}/photos/../x.jpg", MISSING, OUTSIDE_ROOT),
    ("gs://{bucket}/photos/x.jpg", MISSING, OUTSIDE_ROOT),
]


@pytest.mark.parametrize(("file_path", "local", "remote"), HOSTILE,
                         ids=[repr(h[0])[:40] for h in HOSTILE])
def test_hostile_paths_are_refused(root: Root, file_path: str, local: str, remote: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Each path is refused by rule with the same reason as before (a local root) or a stricter one (an
    object key), and an S3 root sends no request for it at all. Decoys sit where an escape would land."""
    file_path = file_path.replace("{bucket}", root.bucket or "nobucket")
    secret = b"the decoy: an escape read this"
    (root.above / "x.jpg").write_bytes(secret)
    (root.folder / "x.jpg").write_bytes(b"inside")  # what a decoder would turn '..%2fx.jpg' into
    if root.server is not None:
        root.server.bucket("other-bucket")
        (root.server.root / "other-bucket" / "x.jpg").write_bytes(secret)
    expected = local if root.kind == "local" else remote
    spy = root.watch(monkeypatch)
    assert _reason(root.files.read, file_path) == expected
    if expected != MISSING:
        assert _reason(root.files.key, file_path) == expected
        assert _reason(root.files.exists, file_path) == expected
    else:
        assert root.files.exists(file_path) is False
    assert spy == [], spy  # refused before asking the store


# --- an object replaced while it is read -----------------------------------------------------------

def test_an_object_replaced_before_the_read_is_read_whole(s3_root: Root, photos: list[Path],  # type: ignore[no-untyped-def]
                                                          monkeypatch) -> None:
    """The object is replaced just before the GET goes out: the read is the new object whole (never the old
    size's worth of the new one), empty, or too large; never a mix."""
    root = s3_root
    small, big = generate_photos(root.above / "gen", 2, size=(120, 90))[0], photos[2]
    swaps: list[bytes] = []

    def swap(key: str | None) -> None:
        if swaps:
            root.replace("uploads/p.jpg", swaps.pop(0))

    spy = root.watch(monkeypatch, before_get=swap)
    cases = [(small.read_bytes(), big.read_bytes()), (big.read_bytes(), small.read_bytes()),
             (big.read_bytes(), b"")]
    for old, new in cases:
        root.plant("uploads/p.jpg", old)
        swaps.append(new)
        spy.clear()
        assert root.files.read("/uploads/p.jpg") == new
        assert [s[0] for s in spy][:1] == ["get_object"], spy

    # Grown past the limit just before the read: refused, its body unread.
    monkeypatch.setattr("storage.images.MAX_FILE_BYTES", len(small.read_bytes()) + 10)
    root.plant("uploads/p.jpg", small.read_bytes())
    swaps.append(big.read_bytes())
    spy.clear()
    assert _reason(root.files.read, "/uploads/p.jpg") == TOO_LARGE
    assert [s[0] for s in spy] == ["get_object"], spy


def test_replaced_during_embedding_the_vector_and_size_are_the_new_photo(s3_root: Root, db, photos: list[Path],  # type: ignore[no-untyped-def]
                                                                         monkeypatch) -> None:
    from embeddings.runner import embed_batch

    root = s3_root
    old = generate_photos(root.above / "gen", 1, size=(160, 120))[0].read_bytes()
    new = photos[2].read_bytes()
    root.plant("uploads/p.jpg", old)
    done: list[bool] = []

    def swap(key: str | None) -> None:
        if not done:
            done.append(True)
            root.replace("uploads/p.jpg", new)

    root.watch(monkeypatch, before_get=swap)
    image_id = register(db, add_event(db), "/uploads/p.jpg")
    res = embed_batch(root.settings.conninfo(), [image_id], model_name=MODEL, run_id="swap", settings=root.settings)
    assert res["embedded"] == 1, res
    table = pq.read_table(res["part"])
    info = load_image_info(new)
    assert (table["width"][0].as_py(), table["height"][0].as_py()) == (info.width, info.height)
    assert float(read_vectors(table)[0] @ _vector_of(root.settings, new)) > 0.9999


def test_reads_during_replacements_are_one_version_or_the_other(root: Root, photos: list[Path]) -> None:
    """A writer replaces the file over and over (whole, as a PUT does); every read is one version whole, or gives
    up (StorageUnavailable) when the object changed under every attempt: never a mixture of two. Reads go on
    until the writer has replaced the file ten times, so both versions are read whatever the machine's speed
    (a torn GET itself is test_a_read_that_does_not_match_its_etag_is_read_again)."""
    versions = [photos[0].read_bytes(), photos[1].read_bytes()[: len(photos[1].read_bytes()) // 2] + b"tail"]
    root.plant("uploads/p.jpg", versions[0])
    assert root.files.read("/uploads/p.jpg") == versions[0]  # a first read (an S3 root learns its ETags are MD5s)
    stop = threading.Event()
    replaced: list[int] = []

    def writer() -> None:
        while not stop.wait(0.02):  # dozens of replacements a second, as no uploader does
            root.put("uploads/p.jpg", versions[(len(replaced) + 1) % 2])
            replaced.append(1)

    def read() -> bytes | None:
        """The bytes, or None when the object kept changing through every attempt (StorageUnavailable: a task
        retries it later) -- never a torn mixture."""
        try:
            return root.files.read("/uploads/p.jpg")
        except StorageUnavailable as exc:
            assert "kept changing" in str(exc)
            return None

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    seen: list[bytes | None] = []
    try:
        deadline = time.monotonic() + 60
        while (len(replaced) < 10 or len(seen) < 40) and time.monotonic() < deadline:
            seen.append(read())
    finally:
        stop.set()
        thread.join()
    assert len(replaced) >= 10, f"the writer replaced the file {len(replaced)} times in 60 s"
    whole = [s for s in seen if s is not None]
    assert all(s in versions for s in whole), {len(s) for s in whole}
    assert {versions.index(s) for s in whole} == {0, 1}, "every read saw the same version"
    assert len(whole) >= len(seen) // 2, f"{len(seen) - len(whole)} of {len(seen)} reads gave up"


def test_a_read_that_does_not_match_its_etag_is_read_again(s3_root: Root, photos: list[Path],  # type: ignore[no-untyped-def]
                                                            monkeypatch) -> None:
    """A GET whose bytes are not the MD5 its ETag says (torn by the server, damaged on the way) is not used."""
    import storage.images

    root = s3_root
    raw = photos[0].read_bytes()
    root.plant("a.jpg", raw)
    root.plant("b.jpg", raw[::-1])
    assert root.files.read("a.jpg") == raw
    real = storage.images._get
    damaged: list[int] = []

    def damaging(fs: Any, key: str, limit: int) -> tuple[bytes, str, str | None, int]:
        data, etag, digest, total = real(fs, key, limit)
        if len(damaged) < 2:  # the first two GETs come back damaged
            damaged.append(1)
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            return data, etag, storage.images.hashlib.md5(data).hexdigest(), total
        return data, etag, digest, total

    monkeypatch.setattr(storage.images, "_get", damaging)
    spy = root.watch(monkeypatch)
    assert root.files.read("b.jpg") == raw[::-1]
    assert [s[0] for s in spy] == ["get_object", "body"] * 3, spy


def test_a_store_whose_etags_are_not_md5s_is_read_unverified(s3_root: Root, photos: list[Path],  # type: ignore[no-untyped-def]
                                                             monkeypatch) -> None:
    import storage.images

    root = s3_root
    raw = photos[0].read_bytes()
    root.plant("a.jpg", raw)
    root.plant("b.jpg", raw[::-1])
    real = storage.images._get

    def own_etags(fs: Any, key: str, limit: int) -> tuple[bytes, str, str | None, int]:
        data, _, digest, total = real(fs, key, limit)
        return data, "0" * 32, digest, total  # looks like an MD5, never is one

    monkeypatch.setattr(storage.images, "_get", own_etags)
    spy = root.watch(monkeypatch)
    assert root.files.read("a.jpg") == raw  # the same bytes twice under one ETag: accepted
    assert [s[0] for s in spy] == ["get_object", "body"] * 2, spy
    spy.clear()
    assert root.files.read("b.jpg") == raw[::-1]  # and from then on read once
    assert [s[0] for s in spy] == ["get_object", "body"], spy


# --- the store stops answering ---------------------------------------------------------------------

def test_an_outage_fails_the_task_and_no_image_then_the_retry_embeds(s3_root: Root, db, photos: list[Path]) -> None:  # type: ignore[no-untyped-def]
    from embeddings import planning
    from embeddings.models import parse_name
    from embeddings.runner import embed_claimed

    root = s3_root
    event = add_event(db)
    ids = []
    for n, photo in enumerate(photos):
        root.plant(f"uploads/{n}.jpg", photo.read_bytes())
        ids.append(register(db, event, f"/uploads/{n}.jpg"))
    conninfo = root.settings.conninfo()
    mv = parse_name(MODEL).model_version
    batches = planning.plan(conninfo, mv, planning.Selection("pending"), run_id="outage")
    assert batches == [ids]
    assert root.files.exists("/uploads/0.jpg")  # the client is warm: the outage hits a live filesystem
    root.server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as caught:
            embed_claimed(conninfo, ids, model_name=MODEL, run_id="outage", batch_no=0, settings=root.settings)
        assert time.monotonic() - started < 30
        message = str(caught.value)
        assert "\n" not in message and root.server.env()["AWS_SECRET_ACCESS_KEY"] not in message
        assert _ledger(db) == {}  # nothing recorded as failed (nor embedded)
        assert planning.claimed_by_run(conninfo) == {"outage": len(ids)}  # still this run's to retry
        with pytest.raises(StorageUnavailable):
            root.files.exists("/uploads/0.jpg")  # not "missing": the store did not answer
    finally:
        root.server.start()
    retry = embed_claimed(conninfo, ids, model_name=MODEL, run_id="outage", batch_no=0, settings=root.settings)
    assert retry["embedded"] == len(ids) and retry["failed"] == 0, retry
    assert {v[:2] for v in _ledger(db).values()} == {("embedded", None)}


# --- POST /add_image ---------------------------------------------------------------------------------

def _padded(photo: Path, size: int) -> bytes:
    """The photo with junk after its end: a big file whose header is at the start."""
    raw = photo.read_bytes()
    return raw + os.urandom(max(0, size - len(raw)))


def test_add_image_checks_the_file_and_reads_its_facts(root: Root, db, photos: list[Path], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from serving.app import create_app

    raw = _padded(photos[0], 3 << 20)
    root.plant("uploads/cat.jpg", raw)
    root.plant("uploads/sub/x.jpg", raw)
    event = add_event(db)
    spy = root.watch(monkeypatch)
    client = TestClient(create_app(root.settings))
    body = {"event_code": event, "filename": "cat.jpg", "file_path": "/uploads/cat.jpg"}
    r = client.post("/add_image", json=body)
    assert r.status_code == 200, r.text
    row = db.execute("SELECT file_size, mime_type, width, height FROM images WHERE id = %s",
                     (r.json()["id"],)).fetchone()
    with Image.open(photos[0]) as im:
        assert row == (len(raw), "image/jpeg", *im.size)
    if root.kind == "s3":  # the header came from ranged reads, not the 3 MB object
        fetched = sum(int(rng.split("-")[1]) - int(rng.split("=")[1].split("-")[0]) + 1
                      for method, _, rng in spy if method == "get_object" and rng)
        assert 0 < fetched <= 1 << 20 and all(rng for method, _, rng in spy if method == "get_object"), spy

    for file_path, words in [("/uploads/gone.jpg", "no file there"), ("/uploads/sub", "no file there"),
                             ("../x.jpg", OUTSIDE_ROOT), ("/../../other-bucket/x.jpg", OUTSIDE_ROOT)]:
        r = client.post("/add_image", json={**body, "file_path": file_path, "filename": "y.jpg"})
        assert r.status_code == 422 and words in r.json()["detail"], (file_path, r.text)

    if root.kind == "s3":
        root.server.stop()
        try:
            r = client.post("/add_image", json={**body, "file_path": "/uploads/sub/x.jpg", "filename": "x.jpg"})
        finally:
            root.server.start()
        assert r.status_code == 503 and r.headers.get("Retry-After"), r.text
        detail = r.json()["detail"]
        assert "IMAGE_ROOT" in detail and root.bucket not in detail and "127.0.0.1" not in detail, detail
        assert db.execute("SELECT count(*) FROM images").fetchone()[0] == 1  # nothing registered


# --- messages and the local-only tools -----------------------------------------------------------------

def test_redact_names_a_remote_image_root_and_hides_credentials(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from core.settings import load_settings
    from serving.errors import redact

    settings = load_settings(image_root="s3://photos-bkt/events/2024", data_dir="/srv/imgsim",
                             aws_access_key_id="AKIATESTKEY123", aws_secret_access_key="s3cr3t/Value+xyz")
    text = redact("read of s3://photos-bkt/events/2024/uploads/a.jpg failed: GET "
                  "http://minio:9000/photos-bkt/events/2024/uploads/a.jpg (key AKIATESTKEY123, "
                  "signature from s3cr3t/Value+xyz); photos-bkt/events/2024-old/b.jpg; /srv/imgsim/indexes/x",
                  settings)
    assert text == ("read of <IMAGE_ROOT>/uploads/a.jpg failed: GET http://minio:9000/<IMAGE_ROOT>/uploads/a.jpg "
                    "(key <redacted>, signature from <redacted>); photos-bkt/events/2024-old/b.jpg; "
                    "<DATA_DIR>/indexes/x")


def test_the_demo_refuses_a_remote_image_root_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "IMAGE_ROOT": "s3://some-bucket/photos", "DATA_DIR": str(tmp_path / "data")}
    res = subprocess.run([sys.executable, "-m", "demo", "--no-serve"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "IMAGE_ROOT s3://some-bucket/photos is an object store" in lines[0], res.stderr


def test_requests_name_the_pipeline(s3_root) -> None:  # type: ignore[no-untyped-def]
    """The fixed User-Agent goes on the wire (the store's access log names the pipeline)."""
    from storage.filesystems import USER_AGENT, filesystem

    root = s3_root
    fs = filesystem(root.settings.image_location, root.settings)
    sent: list[str] = []

    def record(request, **_):  # type: ignore[no-untyped-def]
        ua = request.headers.get("User-Agent")
        sent.append(ua.decode() if isinstance(ua, bytes) else str(ua))

    async def client():  # type: ignore[no-untyped-def]
        return await fs.set_session()

    from fsspec.asyn import sync

    sync(fs.loop, client).meta.events.register("before-send.s3", record)
    root.plant("ua.jpg", b"x")
    assert root.files.read("ua.jpg") == b"x"
    assert sent and all(ua.startswith(USER_AGENT) for ua in sent), sent
