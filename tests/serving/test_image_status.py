"""POST /add_image is idempotent per (event_code, file_path); GET /images/{id_or_code} follows the pipeline."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.ems_schema import THREE_GB, insert_odd_rows
from tests.serving.conftest import API_KEY

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def status_server(scenario) -> Iterator[tuple[Any, Any]]:  # type: ignore[no-untyped-def]
    """A scenario of its own (rows are added and failed here), one published version, a live server."""
    from tests.serving.conftest import LiveServer

    scn = scenario("status", api_key=API_KEY)
    scn.publish()
    server = LiveServer(scn.settings)
    server.wait_ready()
    yield scn, server
    server.stop()


def _new_file(base: Any, name: str) -> str:
    """A file under IMAGE_ROOT no row names yet; returns its file_path."""
    dest = base.image_root / "uploads" / "status" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(base.files[base.ids[3]], dest)
    return f"/uploads/status/{name}"


def test_same_request_twice_returns_the_first_row(status_server, base) -> None:
    scn, srv = status_server
    body = {"filename": "again.jpg", "file_path": _new_file(base, "again.jpg"), "event_code": base.event_a}
    first = srv.client.post("/add_image", json=body, headers=KEY)
    assert first.status_code == 200, first.text
    again = srv.client.post("/add_image", json={**body, "metadata": {"width": 10}}, headers=KEY)
    assert again.status_code == 200, again.text
    a, b = first.json(), again.json()
    assert a["created"] is True and b["created"] is False
    assert (a["id"], a["code"]) == (b["id"], b["code"]) and b["status"] == "queued"
    assert scn.execute("SELECT count(*) FROM images WHERE file_path = %s", (body["file_path"],)) == [(1,)]
    # Another event is another key: a new row.
    other = srv.client.post("/add_image", json={**body, "event_code": base.event_b}, headers=KEY).json()
    assert other["created"] is True and other["id"] != a["id"]
    # The same key under another filename is a conflict, not a silent second row.
    r = srv.client.post("/add_image", json={**body, "filename": "renamed.jpg"}, headers=KEY)
    assert r.status_code == 409 and str(a["id"]) in r.json()["message"]


def test_concurrent_identical_requests_make_one_row(status_server, base) -> None:
    scn, srv = status_server
    body = {"filename": "race.jpg", "file_path": _new_file(base, "race.jpg"), "event_code": base.event_a}
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(8)

    def post() -> None:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            barrier.wait()
            answers.append(client.post("/add_image", json=body, headers=KEY))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert sum(r.json()["created"] for r in answers) == 1
    assert scn.execute("SELECT count(*) FROM images WHERE file_path = %s", (body["file_path"],)) == [(1,)]


def test_duplicates_already_in_the_database_answer_the_oldest(status_server, base) -> None:
    scn, srv = status_server
    path = _new_file(base, "legacy.jpg")
    ids = [scn.execute("INSERT INTO images (event_code, filename, file_path) VALUES (%s, 'legacy.jpg', %s) "
                       "RETURNING id", (base.event_a, path))[0][0] for _ in range(2)]
    r = srv.client.post("/add_image", json={"filename": "legacy.jpg", "file_path": path, "event_code": base.event_a},
                        headers=KEY)
    assert r.status_code == 200 and r.json()["id"] == min(ids) and r.json()["created"] is False


def test_status_queued_embedded_indexed_failed(status_server, base) -> None:
    scn, srv = status_server
    indexed = srv.client.get(f"/images/{base.ids[0]}")
    assert indexed.status_code == 200, indexed.text
    body = indexed.json()
    assert body["status"] == "indexed" and body["index_version"] == 1
    assert body["model_version"] == base.model_version and body["error"] is None
    assert (body["id"], body["code"], body["event_code"]) == (base.ids[0], base.codes[base.ids[0]], base.event_a)
    assert srv.client.get(f"/images/{base.codes[base.ids[0]]}").json() == body
    assert srv.client.get(f"/images/{base.codes[base.ids[0]].upper()}").json()["id"] == base.ids[0]
    # An indexed image shows what the ledger says of it (attempts, embedded_at), not nulls.
    scn.execute("INSERT INTO image_embeddings (image_id, model_version, status, parquet_part, attempts) "
                "VALUES (%s, %s, 'embedded', 'part-0.parquet', 2) ON CONFLICT (image_id, model_version) "
                "DO UPDATE SET attempts = 2", (base.ids[0], base.model_version))
    ledger = srv.client.get(f"/images/{base.ids[0]}").json()
    assert ledger["status"] == "indexed" and ledger["attempts"] == 2 and ledger["embedded_at"], ledger

    added = srv.client.post("/add_image", json={"filename": "st.jpg", "file_path": _new_file(base, "st.jpg"),
                                                "event_code": base.event_b}, headers=KEY).json()
    queued = srv.client.get(f"/images/{added['id']}").json()
    assert queued["status"] == "queued" and queued["index_version"] is None and queued["filename"] == "st.jpg"

    scn.execute("INSERT INTO image_embeddings (image_id, model_version, status, parquet_part) "
                "VALUES (%s, %s, 'embedded', 'part-x.parquet')", (added["id"], base.model_version))
    embedded = srv.client.get(f"/images/{added['code']}").json()
    assert embedded["status"] == "embedded" and embedded["embedded_at"] and embedded["index_version"] is None

    scn.execute("UPDATE image_embeddings SET status = 'failed', error = 'cannot identify image file', "
                "parquet_part = NULL, attempts = 3 WHERE image_id = %s", (added["id"],))
    failed = srv.client.get(f"/images/{added['id']}").json()
    assert failed["status"] == "failed" and failed["error"] == "cannot identify image file" and failed["attempts"] == 3
    # A retried add_image says where the pipeline is with the row.
    again = srv.client.post("/add_image", json={"filename": "st.jpg", "file_path": queued["file_path"],
                                                "event_code": base.event_b}, headers=KEY).json()
    assert again["status"] == "failed" and again["created"] is False


def test_status_errors(status_server) -> None:
    _, srv = status_server
    for path, status in ((f"/images/{10**9}", 404), (f"/images/{uuid.uuid4()}", 404), ("/images/cat.jpg", 422),
                         ("/images/-1", 422), (f"/images/{'9' * 40}", 422)):
        r = srv.client.get(path)
        assert r.status_code == status, (path, r.text)
        assert r.json()["message"], path


def test_ems_rows_null_code_and_3gb(status_server, base) -> None:
    """Rows the original DDL allows come back as they are; a 3 GB size registers too (BIGINT)."""
    scn, srv = status_server
    import psycopg

    with psycopg.connect(scn.conninfo, autocommit=True) as conn:
        odd = {r.why: r for r in insert_odd_rows(conn, base.event_a)}
    null_code = srv.client.get(f"/images/{odd['NULL code'].id}").json()
    assert null_code["code"] is None and null_code["status"] == "queued"
    huge = srv.client.get(f"/images/{odd['3 GB file_size'].id}").json()
    assert huge["file_size"] == THREE_GB
    long_path = srv.client.get(f"/images/{odd['path of 500+ characters'].id}").json()
    assert len(long_path["file_path"]) >= 500
    r = srv.client.post("/add_image", json={"filename": "big.jpg", "file_path": _new_file(base, "big.jpg"),
                                            "event_code": base.event_a, "metadata": {"file_size": THREE_GB}},
                        headers=KEY)
    assert r.status_code == 200, r.text
    assert srv.client.get(f"/images/{r.json()['id']}").json()["file_size"] == THREE_GB


def test_ems_odd_rows_through_the_pipeline(scenario, base, live_server) -> None:
    """NULL code, 3 GB size, 500+-char path: embedded, indexed, searched and reported like any row."""
    import psycopg

    from embeddings.runner import embed_batch
    from tests.serving.conftest import MODEL

    scn = scenario("emsrows", api_key=API_KEY)
    with psycopg.connect(scn.conninfo, autocommit=True) as conn:
        odd = {r.why: r for r in insert_odd_rows(conn, base.event_a, base.image_root, base.files[base.ids[7]])}
    ids = [r.id for r in odd.values()]
    result = embed_batch(scn.conninfo, ids, model_name=MODEL, run_id="ems-rows", settings=scn.settings)
    assert result["embedded"] == len(ids), result
    version = scn.publish()
    srv = live_server(scn.settings)
    srv.wait_ready(version=version)
    for row in odd.values():
        status = srv.client.get(f"/images/{row.id}").json()
        assert (status["status"], status["index_version"], status["code"]) == ("indexed", version, row.code), row.why
    null_id = odd["NULL code"].id
    hits = srv.client.get(f"/images/{base.ids[7]}/similar", params={"top_k": 5}).json()
    by_id = {h["id"]: h for h in hits}
    assert set(ids) <= set(by_id), hits  # three copies of the same photo
    assert by_id[null_id]["code"] is None
    assert srv.client.get(f"/images/{null_id}/similar", params={"top_k": 3}).status_code == 200
