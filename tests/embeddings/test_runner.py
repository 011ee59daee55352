"""Batch embedding against the real test database: Parquet parts, the ledger, bad files, planning scopes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core.sample_data import sample_formats_dir, sample_photos
from embeddings.dataset import compact, dataset_dir, list_parts, read_latest, read_vectors, schema
from embeddings.loading import load_image
from embeddings.planning import Selection, plan
from embeddings.runner import embed_batch
from tests.embeddings.helpers import add_event, add_files, register

MODEL = "efficientnet-lite0"  # the default (plain) version


def _ledger(db) -> dict[int, tuple]:  # type: ignore[no-untyped-def]
    rows = db.execute("SELECT image_id, model_version, status, error, attempts, parquet_part FROM image_embeddings")
    return {r[0]: r[1:] for r in rows.fetchall()}


@pytest.mark.samples
def test_pending_batch_writes_a_part_and_the_ledger_idempotently(db, settings, lite0, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photos = sample_photos(6, out_dir=tmp_path / "gen")
    event = add_event(db)
    ids = add_files(db, event, settings.resolved_image_root, photos)
    mv = lite0.model_version
    batches = plan(settings.conninfo(), mv, Selection("pending"), run_id="t1", images_per_part=4)
    assert batches == [ids[:4], ids[4:]]

    res = embed_batch(settings.conninfo(), ids, model_name=MODEL, run_id="scheduled__2024-01-01T00:00:00+00:00",
                      batch_no=3, settings=settings)
    assert res["embedded"] == 6 and res["failed"] == 0 and res["model_version"] == mv
    part = Path(res["part"])
    assert part.parent == dataset_dir(settings, mv) and part.name.startswith("part-") and part.name.endswith(
        "-00003.parquet")
    assert part.parent.name == f"model_version={mv}"
    assert [p.name for p in part.parent.iterdir()] == [part.name]  # no temp file left behind

    table = pq.read_table(part)
    # The contract's columns exactly, then the extension columns (the duplicate fingerprint).
    contract = schema(1280)
    assert table.schema.names == [*contract.names, "fingerprint", "fingerprint_version"], table.schema
    assert table.select(contract.names).schema.equals(contract), table.schema
    assert table["image_id"].to_pylist() == ids
    vecs = read_vectors(table)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert set(table["model_version"].to_pylist()) == {mv}
    assert set(table["event_code"].to_pylist()) == {event}
    codes = dict(db.execute("SELECT id, code::text FROM images").fetchall())
    assert table["image_code"].to_pylist() == [codes[i] for i in ids]
    with Image.open(photos[0]) as im:
        assert (table["width"][0].as_py(), table["height"][0].as_py()) == im.size

    ledger = _ledger(db)
    assert sorted(ledger) == ids
    rel = str(part.relative_to(settings.resolved_data_dir))
    assert all(v == (mv, "embedded", None, 1, rel) for v in ledger.values())
    assert plan(settings.conninfo(), mv, Selection("pending"), run_id="t2") == []

    # The same batch again (an Airflow retry): same part replaced, same ledger rows, attempts 2.
    again = embed_batch(settings.conninfo(), ids, model_name=MODEL, run_id="scheduled__2024-01-01T00:00:00+00:00",
                        batch_no=3, settings=settings)
    assert again["part"] == res["part"]
    assert db.execute("SELECT count(*) FROM image_embeddings").fetchone()[0] == 6
    assert {v[3] for v in _ledger(db).values()} == {2}
    latest = read_latest(settings, mv)
    assert latest["image_id"].to_pylist() == ids
    assert np.allclose(read_vectors(latest), vecs, atol=1e-5)


@pytest.mark.samples
def test_reembedding_keeps_the_latest_row_per_image(db, settings, lite0, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photos = sample_photos(3, out_dir=tmp_path / "gen")
    event = add_event(db)
    ids = add_files(db, event, settings.resolved_image_root, photos)
    first = embed_batch(settings.conninfo(), ids, model_name=MODEL, run_id="manual", settings=settings)
    # The file of ids[0] is replaced by another photo; a second manual run (same run id!) must not lose ids[1:].
    other = sample_photos(4, out_dir=tmp_path / "gen")[3]
    (settings.resolved_image_root / "uploads" / photos[0].name).write_bytes(other.read_bytes())
    second = embed_batch(settings.conninfo(), ids[:1], model_name=MODEL, run_id="manual", settings=settings)
    assert second["part"] != first["part"]  # a different batch under the same name gets its own part
    latest = read_latest(settings, lite0.model_version, columns=["image_id", "vector"])
    assert latest.column_names == ["image_id", "vector"]
    assert latest["image_id"].to_pylist() == ids
    new_vec = read_vectors(latest)[0]
    old_vec = read_vectors(pq.read_table(first["part"]))[0]
    assert float(new_vec @ old_vec) < 0.95
    assert float(new_vec @ lite0.embed_images([load_image(other)])[0]) > 0.9999
    assert len(read_latest(settings, "efficientnet-lite0@never-written")) == 0

    # Compaction: one part with the same latest rows; the ledger follows; old parts are gone.
    before = read_latest(settings, lite0.model_version)
    res = compact(settings, lite0.model_version, conninfo=settings.conninfo())
    assert res["merged"] == 2 and res["rows"] == 3
    assert list_parts(settings, lite0.model_version) == [Path(res["part"])]
    assert not Path(first["part"]).exists() and not Path(second["part"]).exists()
    after = read_latest(settings, lite0.model_version)
    assert after["image_id"].to_pylist() == ids and np.array_equal(read_vectors(after), read_vectors(before))
    rel = str(Path(res["part"]).relative_to(settings.resolved_data_dir))
    assert {v[4] for v in _ledger(db).values()} == {rel}


@pytest.mark.samples
def test_every_format_file_is_embedded_or_failed_while_the_rest_embeds(db, settings, lite0, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = settings.resolved_image_root
    event = add_event(db)
    formats = sample_formats_dir()
    files = sorted(formats.iterdir()) if formats else []
    # Generated stand-ins so the test means something without the shared data too.
    gen = tmp_path / "gen"
    gen.mkdir()
    Image.new("RGBA", (50, 40), (0, 128, 0, 128)).save(gen / "alpha.png")
    (gen / "notes.jpg").write_bytes(b"definitely not a jpeg")
    good = sample_photos(1, out_dir=tmp_path / "photos")[0]
    (gen / "cut.jpg").write_bytes(good.read_bytes()[:2000])
    files += [*sorted(gen.iterdir()), good]
    ids = add_files(db, event, root, files)
    missing = register(db, event, "/uploads/gone.jpg")
    escape = register(db, event, "../../etc/passwd")
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (30, 30)).save(outside)
    os.symlink(outside, root / "uploads" / "link.jpg")
    linked = register(db, event, "/uploads/link.jpg")
    all_ids = [*ids, missing, escape, linked]

    res = embed_batch(settings.conninfo(), all_ids, model_name=MODEL, settings=settings)
    ledger = _ledger(db)
    assert sorted(ledger) == sorted(all_ids)  # every image accounted for
    by_name = dict(zip([f.name for f in files], ids, strict=True))
    reasons = {i: v[2] for i, v in ledger.items() if v[1] == "failed"}
    assert reasons[missing] == "missing"
    assert reasons[escape] == "outside image root"
    assert reasons[linked] == "outside image root"
    assert reasons[by_name["notes.jpg"]] == "not an image"
    assert reasons[by_name["cut.jpg"]] == "truncated"
    if formats:
        assert reasons[by_name["ukbench09268_corrupt.jpg"]] == "not an image"
    allowed = {"missing", "not a file", "unreadable", "truncated", "too large", "not an image", "outside image root"}
    assert set(reasons.values()) <= allowed
    embedded = [i for i, v in ledger.items() if v[1] == "embedded"]
    assert by_name[good.name] in embedded and by_name["alpha.png"] in embedded
    expected_failures = 6 if formats else 5
    assert res["failed"] == len(reasons) == expected_failures
    assert res["embedded"] == len(embedded) == len(all_ids) - expected_failures
    assert sorted(pq.read_table(res["part"])["image_id"].to_pylist()) == sorted(embedded)
    assert all(v[3] == 1 for v in ledger.values())

    # A retry of the failures bumps attempts and still adds no rows.
    retry = plan(settings.conninfo(), lite0.model_version, Selection("failed"), run_id="t3")
    assert sorted(retry[0]) == sorted(reasons)
    embed_batch(settings.conninfo(), retry[0], model_name=MODEL, settings=settings)
    after = _ledger(db)
    assert len(after) == len(all_ids)
    assert all(after[i][3] == 2 and after[i][1] == "failed" for i in reasons)


def test_read_latest_of_nothing_has_the_schema(settings) -> None:  # type: ignore[no-untyped-def]
    table = read_latest(settings, "efficientnet-lite0@crop224")
    assert len(table) == 0 and table.schema.field("vector").type == pa.list_(pa.float32(), 1280)


@pytest.mark.samples
def test_parts_written_before_fingerprints_read_and_compact(db, settings, lite0, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The extension columns: new parts carry each image's duplicate fingerprint; parts written before
    them read as nulls (unverifiable images) and compact together with new ones."""
    from duplicates.fingerprint import FINGERPRINT_VERSION, Fingerprint
    from embeddings.writer import build_table, write_part

    photos = sample_photos(2, out_dir=tmp_path / "gen")
    ids = add_files(db, add_event(db), settings.resolved_image_root, photos)
    embed_batch(settings.conninfo(), ids, model_name=MODEL, run_id="fp", settings=settings)
    mv = lite0.model_version
    old = build_table(dim=lite0.dim, model_version=mv, image_ids=[10_000], image_codes=["c"], event_codes=["e"],
                      vectors=np.ones((1, lite0.dim), np.float32) / np.sqrt(lite0.dim), widths=[1], heights=[1])
    assert "fingerprint" not in old.column_names  # what a part of an older release holds
    write_part(old, dataset_dir(settings, mv), "old-release", 0)
    for table in (read_latest(settings, mv, columns=["image_id", "fingerprint", "fingerprint_version"]),
                  pq.read_table(compact(settings, mv)["part"])):
        rows = {r["image_id"]: r for r in table.to_pylist()}
        assert set(rows) == {*ids, 10_000}
        assert rows[10_000]["fingerprint"] is None and rows[10_000]["fingerprint_version"] is None
        for image_id, path in zip(ids, photos, strict=True):
            assert rows[image_id]["fingerprint_version"] == FINGERPRINT_VERSION
            fp = Fingerprint.from_bytes(rows[image_id]["fingerprint"])
            assert fp.sha256 == hashlib.sha256(path.read_bytes()).digest()


@pytest.mark.samples
def test_a_run_that_lost_its_images_records_none_of_them(db, settings, lite0, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A run whose claims ended mid-batch (its connection dropped, another run took the images over and
    embedded them) writes its part but records nothing: each image has one ledger outcome, the other run's."""
    from embeddings.planning import take
    from embeddings.runner import embed_claimed
    from embeddings.writer import part_name

    info = settings.conninfo()
    ids = add_files(db, add_event(db), settings.resolved_image_root, sample_photos(4, out_dir=tmp_path / "gen"))
    assert plan(info, lite0.model_version, Selection("pending"), run_id="slow") == [ids]
    assert take(info, lite0.model_version, "slow", ids, part_name("slow", 0)).todo == ids
    db.execute("UPDATE embedding_claims SET expires_at = now() - interval '1 second'")  # "slow" looks dead
    assert plan(info, lite0.model_version, Selection("pending"), run_id="fast") == [ids]
    assert embed_claimed(info, ids, model_name=MODEL, run_id="fast", settings=settings)["embedded"] == 4

    late = embed_batch(info, ids, model_name=MODEL, run_id="slow", settings=settings, claimed_by="slow")
    assert (late["embedded"], late["failed"], late["lost"]) == (0, 0, 4)
    rows = db.execute("SELECT status, attempts, parquet_part FROM image_embeddings").fetchall()
    assert len(rows) == 4 and {(r[0], r[1]) for r in rows} == {("embedded", 1)}
    assert all("fast" in r[2] for r in rows)


def test_reads_overlap_the_decoding_within_a_bounded_window(lite0, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A store's latency is hidden: reads run `read_ahead` at a time ahead of the decoders, never more files
    read and not yet decoded than the window; an outage mid-stream ends it (StorageUnavailable), no read left
    waiting."""
    import threading
    import time

    from core.sample_data import generate_photos
    from embeddings.runner import embed_stream
    from storage.objects import StorageUnavailable

    raw = [p.read_bytes() for p in generate_photos(tmp_path / "gen", 4, size=(96, 64))]
    lock = threading.Lock()
    state = {"in_flight": 0, "most_in_flight": 0, "read": 0}

    def source(i: int, fail_at: int | None = None):  # type: ignore[no-untyped-def]
        def read() -> bytes:
            with lock:
                state["in_flight"] += 1
                state["most_in_flight"] = max(state["most_in_flight"], state["in_flight"])
            time.sleep(0.03)  # an object GET's latency
            with lock:
                state["in_flight"] -= 1
                state["read"] += 1
            if i == fail_at:
                raise StorageUnavailable("the store stopped answering")
            return raw[i % len(raw)]
        return read

    decoded: list[int] = []
    real_prepare = lite0.prepare
    held: list[int] = []

    def prepare(image):  # type: ignore[no-untyped-def]
        with lock:
            held.append(state["read"] - len(decoded))  # files read and not yet decoded, this one included
            decoded.append(1)
        time.sleep(0.02)  # decoding slower than the reads: only the window keeps them from running ahead
        return real_prepare(image)

    lite0.prepare = prepare
    try:
        chunks = list(embed_stream(lite0, [(i, source(i)) for i in range(48)], batch_size=8, workers=1,
                                   read_ahead=6))
    finally:
        del lite0.prepare
    assert sum(len(c.items) for c in chunks) == 48 and not any(c.failures for c in chunks)
    assert state["most_in_flight"] >= 4, state  # one decoder, yet reads overlapped
    assert max(held) <= 6 + 1, max(held)  # the window: read_ahead + workers

    state.update(in_flight=0, most_in_flight=0, read=0)
    with pytest.raises(StorageUnavailable):
        list(embed_stream(lite0, [(i, source(i, fail_at=20)) for i in range(200)], batch_size=8, workers=1,
                          read_ahead=6))
    assert state["in_flight"] == 0 and state["read"] < 60, state  # stopped soon after, nothing left running
