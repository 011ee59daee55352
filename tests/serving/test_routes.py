"""Every route over real HTTP against a real published version: the seed's shapes and the added routes."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from tests.serving.conftest import API_KEY


@pytest.fixture(scope="module")
def srv(main):  # type: ignore[no-untyped-def]
    return main[1]


@pytest.fixture(scope="module")
def vectors(main, base):  # type: ignore[no-untyped-def]
    """The indexed vector of each image, read from the served version (what the pipeline stored)."""
    served = main[1].state.holder.current
    return {i: served.vector(i) for i in base.ids}


def test_health_seed_shape(srv, base) -> None:
    r = srv.client.get("/")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready" and body["total_vectors"] == base.total
    assert body["index_version"] == 1 and body["model_version"].startswith("efficientnet-lite0")


def test_search_seed_shape_best_first(srv, base, vectors) -> None:
    target = base.ids[5]
    r = srv.client.post("/search", json={"vector": vectors[target].tolist(), "top_k": 10})
    assert r.status_code == 200
    hits = r.json()
    assert isinstance(hits, list) and len(hits) == 10
    assert set(hits[0]) >= {"id", "filename", "similarity_score", "event_code", "code"}
    assert hits[0]["id"] == target and hits[0]["similarity_score"] == pytest.approx(1.0, abs=1e-4)
    assert hits[0]["code"] == base.codes[target] and hits[0]["filename"] == base.files[target].name
    scores = [h["similarity_score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_search_is_normalised_server_side(srv, base, vectors) -> None:
    target = base.ids[3]
    r = srv.client.post("/search", json={"vector": (vectors[target] * 37.5).tolist(), "top_k": 1})
    assert r.json()[0]["id"] == target and r.json()[0]["similarity_score"] == pytest.approx(1.0, abs=1e-4)


def test_search_event_filter_and_min_score(srv, base, vectors) -> None:
    query = vectors[base.ids[0]].tolist()
    r = srv.client.post("/search", json={"vector": query, "top_k": 50, "filters": {"event_code": base.event_b}})
    hits = r.json()
    assert len(hits) == 10 and {h["event_code"] for h in hits} == {base.event_b}
    r = srv.client.post("/search", json={"vector": query, "top_k": 50, "min_score": 0.8})
    # Exactly the images whose stored vectors score >= 0.8 (whatever the photos are), the copy among them.
    expected = {i for i, v in vectors.items() if float(v @ vectors[base.ids[0]]) >= 0.8 - 1e-5}
    assert {h["id"] for h in r.json()} == expected and {base.ids[0], base.dup_pairs[0][1]} <= expected
    assert all(h["similarity_score"] >= 0.8 for h in r.json())
    # An event nobody indexed: an empty list, not an error.
    r = srv.client.post("/search", json={"vector": query, "filters": {"event_code": str(uuid.uuid4())}})
    assert r.status_code == 200 and r.json() == []
    r = srv.client.post("/search", json={"vector": query, "filters": None})
    assert r.status_code == 200 and len(r.json()) == 10


def test_similar_by_id_and_by_code_excludes_itself(srv, base, vectors) -> None:
    original, copy = base.dup_pairs[0]
    by_id = srv.client.get(f"/images/{original}/similar", params={"top_k": 3}).json()
    by_code = srv.client.get(f"/images/{base.codes[original]}/similar", params={"top_k": 3}).json()
    assert by_id == by_code
    assert original not in {h["id"] for h in by_id}
    assert by_id[0]["id"] == copy and by_id[0]["similarity_score"] > 0.8
    within = srv.client.get(f"/images/{original}/similar", params={"event_code": base.event_b, "top_k": 100}).json()
    assert len(within) == 10 and {h["event_code"] for h in within} == {base.event_b}
    high = srv.client.get(f"/images/{original}/similar", params={"min_score": 0.8, "top_k": 100}).json()
    expected = {i for i, v in vectors.items() if i != original and float(v @ vectors[original]) >= 0.8 - 1e-5}
    assert {h["id"] for h in high} == expected and high[0]["id"] == copy


def test_search_by_image_finds_original_even_rotated(srv, base) -> None:
    with open(base.files[base.ids[4]], "rb") as fh:
        r = srv.client.post("/search/image", files={"file": ("x.jpg", fh, "image/jpeg")}, data={"top_k": "3"})
    assert r.status_code == 200 and r.json()[0]["id"] == base.ids[4]
    assert len(r.json()) == 3 and r.json()[0]["relation"] == "copy" and r.json()[0]["verdict"]["reason"]
    with open(base.rotated_upload, "rb") as fh:
        r = srv.client.post("/search/image", files={"file": fh},
                            data={"event_code": base.event_a, "min_score": "0.5"})
    hits = r.json()
    assert hits[0]["id"] == base.ids[2] and hits[0]["similarity_score"] > 0.95 and hits[0]["relation"] == "copy"
    assert all(h["relation"] != "copy" for h in hits[1:])
    assert all(h["similarity_score"] >= 0.5 and h["event_code"] == base.event_a for h in hits)


def test_extract_features_matches_indexed_vector(srv, base, vectors) -> None:
    target = base.ids[7]
    with open(base.files[target], "rb") as fh:
        r = srv.client.post("/extract_features", files={"file": fh})
    assert r.status_code == 200
    body = r.json()
    assert body["dim"] == 1280 == len(body["vector"]) and body["model"] == "efficientnet-lite0"
    assert 0 < body["processing_time"] < 30
    vec = np.asarray(body["vector"], dtype=np.float32)
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-4)
    assert float(vec @ vectors[target]) > 0.999  # the same file through the same pipeline


def _upload(srv, path, url, **data):  # type: ignore[no-untyped-def]
    with open(path, "rb") as fh:
        r = srv.client.post(url, files={"file": (path.name, fh, "image/jpeg")}, data=data)
    assert r.status_code == 200, r.text
    return r.json()


def test_event_duplicates_are_exactly_the_planted_copies(srv, base) -> None:
    r = srv.client.get(f"/events/{base.event_a}/duplicates")
    assert r.status_code == 200
    body = r.json()
    assert body["event_code"] == base.event_a and body["index_version"] == 1
    assert body["images_unverifiable"] == 0 and body["images_checked"] == base.total - 10  # event B holds 10
    # Every group is one planted copy pair, its original first; no other group (different photos, the
    # same-scene shots) ever appears.
    assert sorted([img["id"] for img in g["images"]] for g in body["groups"]) == sorted(map(list, base.dup_pairs))
    assert all(0 < g["score"] <= 1 and set(g["images"][0]) == {"id", "code", "filename"} for g in body["groups"])
    assert srv.client.get(f"/events/{base.event_b}/duplicates").json()["groups"] == []


def test_similar_shots_are_exactly_the_planted_scene(srv, base) -> None:
    r = srv.client.get(f"/events/{base.event_a}/similar-shots")
    assert r.status_code == 200
    body = r.json()
    assert body["event_code"] == base.event_a and body["images_unverifiable"] == 0
    # The sample photos are all different scenes and a copy is never a "shot" of its original: the one group
    # is the planted pair of shots (the probe's scene is another one).
    groups = [sorted(img["id"] for img in g["images"]) for g in body["groups"]]
    assert groups == [sorted(base.scene_pair)], body["groups"]
    shot, shot_copy = base.dup_pairs[2]  # the first shot and its copy: one member, the copy collapsed into it
    assert {img["id"]: img["copies"] for img in body["groups"][0]["images"]} == {
        shot: [shot_copy], base.scene_pair[1]: []}


def test_duplicate_check_copy(srv, base) -> None:
    url = f"/events/{base.event_a}/duplicates/check"
    body = _upload(srv, base.rotated_upload, url)  # a phone's sideways copy of an image of event A
    assert body["duplicate"] is True and body["index_version"] == 1
    top = body["matches"][0]
    assert top["id"] == base.ids[2] and top["relation"] == "copy" and top["verdict"]["reason"]
    assert all(m["relation"] != "copy" for m in body["matches"][1:])
    body = _upload(srv, base.files[base.ids[5]], url)  # the same file again
    assert body["duplicate"] is True and body["matches"][0]["id"] == base.ids[5]
    assert body["matches"][0]["relation"] == "copy"
    # Not in event B: nothing there is a copy of it.
    body = _upload(srv, base.rotated_upload, f"/events/{base.event_b}/duplicates/check")
    assert body["duplicate"] is False and all(m["relation"] != "copy" for m in body["matches"])
    assert all(m["event_code"] == base.event_b for m in body["matches"])


def test_duplicate_check_same_scene_is_not_a_duplicate(srv, base) -> None:
    body = _upload(srv, base.scene_upload, f"/events/{base.event_a}/duplicates/check")
    assert body["duplicate"] is False
    relation = {m["id"]: m["relation"] for m in body["matches"]}
    assert relation.get(base.scene_probe) == "same_scene", body["matches"][:3]
    assert "copy" not in relation.values()


def test_duplicate_check_unrelated_photo(srv, base) -> None:
    body = _upload(srv, base.unrelated_upload, f"/events/{base.event_a}/duplicates/check", top_k="5")
    assert body["duplicate"] is False and len(body["matches"]) <= 5
    assert all(m["similarity_score"] >= 0.3 for m in body["matches"])  # the candidate floor (may leave none)
    body = _upload(srv, base.unrelated_upload, f"/events/{base.event_a}/duplicates/check", top_k="5",
                   min_score="-1")
    assert body["duplicate"] is False and len(body["matches"]) == 5
    assert {m["relation"] for m in body["matches"]} == {"related"}, body["matches"]
    body = _upload(srv, base.unrelated_upload, f"/events/{base.event_a}/duplicates/check", min_score="0.999")
    assert body == {"duplicate": False, "matches": [], "event_code": base.event_a, "index_version": 1}


def test_stats_and_versions(srv, base) -> None:
    s = srv.client.get("/stats").json()
    assert s["total_vectors_faiss"] == base.total and s["total_images_db"] >= base.total and s["index_size_mb"] > 0
    assert s["index_version"] == 1 and s["index_type"] == "flat" and s["embedded"] == base.total and s["failed"] == 0
    assert s["database"] == "up" and s["swap"]["failures"] == 0
    v = srv.client.get("/versions").json()
    assert v["current"] == 1 and v["served"] == 1
    assert v["versions"][0]["count"] == base.total and v["versions"][0]["status"] == "published"


def test_metrics(srv) -> None:
    srv.client.get("/")
    text = srv.client.get("/metrics").text
    assert "imgsim_index_version 1.0" in text
    assert 'imgsim_http_requests_total{method="GET",route="/",status="200"}' in text
    assert "imgsim_http_request_seconds_bucket" in text and "imgsim_index_swap_failures_total 0.0" in text


def test_openapi_docs(srv) -> None:
    paths = srv.client.get("/openapi.json").json()["paths"]
    assert {"/", "/add_image", "/search", "/extract_features", "/stats", "/search/image",
            "/images/{id_or_code}", "/images/{id_or_code}/similar", "/events/{event_code}/duplicates",
            "/events/{event_code}/duplicates/check", "/events/{event_code}/similar-shots", "/versions",
            "/metrics"} <= set(paths)
    # The interactive docs work offline: every script and stylesheet the pages load is served by this server.
    import re

    for page in ("/docs", "/redoc"):
        html = srv.client.get(page)
        assert html.status_code == 200, page
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html.text)
        assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))], (page, assets)
        for asset in assets:
            r = srv.client.get(asset)
            assert r.status_code == 200 and len(r.content) > 10_000, (asset, r.status_code)
    swagger = srv.client.get("/docs-static/swagger-ui-bundle.js").text
    assert re.search(r'"5\.\d+\.\d+"', swagger), "Swagger UI 5 (renders OpenAPI 3.1, which FastAPI writes)"


def test_add_image_registers_row(main, base) -> None:
    scn, srv = main
    body = {"filename": "cat.jpg", "file_path": f"/uploads/{base.files[base.ids[0]].name}",
            "event_code": base.event_b, "metadata": {"width": 800, "height": 600}}
    r = srv.client.post("/add_image", json=body, headers={"X-API-Key": API_KEY})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["faiss_index"] is None and out["message"] == "success" and out["status"] == "queued"
    row = scn.execute("SELECT event_code::text, filename, width, height, file_size, mime_type, faiss_index "
                      "FROM images WHERE id = %s", (out["id"],))[0]
    assert row[:4] == (base.event_b, "cat.jpg", 800, 600)
    assert row[4] == base.files[base.ids[0]].stat().st_size and row[5] == "image/jpeg" and row[6] is None
    # A client vector (the seed sent one) is validated, then left to the pipeline.
    r = srv.client.post("/add_image", json={**body, "vector": [0.1] * 1280}, headers={"X-API-Key": API_KEY})
    assert r.status_code == 200 and r.json()["vector_ignored"] is True
    # The served index is never written.
    assert srv.client.get("/").json()["total_vectors"] == base.total
    scn.execute("DELETE FROM images WHERE filename = 'cat.jpg'")


def test_an_unknown_event_is_404_on_every_event_route(main, base, live_server) -> None:  # type: ignore[no-untyped-def]
    """The event routes answer 404 for an event nobody knows (they answered 200 with nothing found), 200 for an
    EMS event with no photo indexed yet, and 503 when the database cannot say."""
    scn, srv = main
    unknown = str(uuid.uuid4())
    photo = base.unrelated_upload.read_bytes()

    def answers(event: str, server=srv) -> list[int]:  # type: ignore[no-untyped-def]
        got = [server.client.get(f"/events/{event}/duplicates"), server.client.get(f"/events/{event}/similar-shots"),
               server.client.post(f"/events/{event}/duplicates/check", files={"file": ("p.jpg", photo)})]
        return [r.status_code for r in got]

    assert answers(unknown) == [404, 404, 404]
    r = srv.client.get(f"/events/{unknown.upper()}/duplicates")
    assert r.json()["detail"] == f"no event {unknown}"
    (new,) = scn.execute("INSERT INTO events (name) VALUES ('no photos yet') RETURNING code::text")[0]
    assert answers(new) == [200, 200, 200]
    assert srv.client.get(f"/events/{new}/duplicates").json()["groups"] == []
    assert answers(base.event_a) == [200, 200, 200]

    # No database: an event of the served version still answers; another cannot be told apart: 503.
    from tests.serving.conftest import settings_for

    blind = live_server(settings_for("host=127.0.0.1 port=1 dbname=x user=x connect_timeout=1", scn.data_dir,
                                     base.image_root))
    blind.wait_ready()
    assert answers(base.event_a, blind)[:2] == [200, 200]
    r = blind.client.get(f"/events/{new}/duplicates")
    assert r.status_code == 503 and r.headers["Retry-After"] and "cannot tell whether event" in r.json()["detail"]
