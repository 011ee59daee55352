"""Every bad input is JSON with a message and the right 4xx; schemathesis fuzzes the schema for 500s."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from hypothesis import HealthCheck, settings

from tests.serving.conftest import API_KEY


@pytest.fixture(scope="module")
def srv(main):  # type: ignore[no-untyped-def]
    return main[1]


def _error(r, status: int) -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"] and body["message"] == body["detail"]
    return body["detail"]


def _search(srv, body) -> object:  # type: ignore[no-untyped-def]
    return srv.client.post("/search", content=body if isinstance(body, str) else json.dumps(body),
                           headers={"Content-Type": "application/json"})


def test_vector_errors(srv) -> None:
    assert "expects 1280" in _error(_search(srv, {"vector": [0.1, 0.2, 0.3]}), 422)
    nan = '{"vector": [NaN' + ", 0.1" * 1279 + "]}"
    assert "finite" in _error(_search(srv, nan), 422)
    inf = '{"vector": [Infinity' + ", 0.1" * 1279 + "]}"
    assert "finite" in _error(_search(srv, inf), 422)
    assert "finite" in _error(_search(srv, {"vector": [1e39] + [0.1] * 1279}), 422)
    assert "zero length" in _error(_search(srv, {"vector": [0.0] * 1280}), 422)
    assert "vector" in _error(_search(srv, {"vector": []}), 422)
    assert "vector" in _error(_search(srv, {"vector": "abc"}), 422)
    assert "vector" in _error(_search(srv, {"top_k": 3}), 422)
    assert "JSON" in _error(_search(srv, '{"vector": [0.1,'), 422)


def test_top_k_and_filters(srv) -> None:
    vec = [0.1] * 1280
    for bad in (0, -1, 1001, "ten", 2.5):
        assert "top_k" in _error(_search(srv, {"vector": vec, "top_k": bad}), 422)
    assert "event_code" in _error(_search(srv, {"vector": vec, "filters": {"event_code": "not-a-uuid"}}), 422)
    assert "filters" in _error(_search(srv, {"vector": vec, "filters": {"colour": "red"}}), 422)
    assert "min_score" in _error(_search(srv, {"vector": vec, "min_score": 2}), 422)
    assert "top_k" in _error(srv.client.get("/images/1/similar", params={"top_k": 0}), 422)


def test_image_ids(srv, base) -> None:
    assert "neither" in _error(srv.client.get("/images/not-an-id/similar"), 422)
    assert "not in index" in _error(srv.client.get("/images/999999/similar"), 404)
    assert "not in index" in _error(srv.client.get(f"/images/{uuid.uuid4()}/similar"), 404)
    assert "UUID" in _error(srv.client.get(f"/images/{base.ids[0]}/similar", params={"event_code": "x"}), 422)
    assert "UUID" in _error(srv.client.get("/events/xyz/duplicates"), 422)
    assert "UUID" in _error(srv.client.get("/events/xyz/similar-shots"), 422)


def _bomb_png() -> bytes:
    """A tiny file that claims 12000 x 12000 pixels (over the loader's bomb limit)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("route", ["/search/image", "/extract_features", "/events/{event}/duplicates/check"])
def test_upload_errors(srv, base, route: str) -> None:
    url = route.format(event=base.event_a)
    jpeg = base.files[base.ids[0]].read_bytes()
    assert "not an image" in _error(srv.client.post(url, files={"file": ("a.jpg", b"hello, world" * 10)}), 415)
    assert "cannot be decoded" in _error(srv.client.post(url, files={"file": ("a.jpg", jpeg[: len(jpeg) // 3])}),
                                         422)
    assert "decompression" in _error(srv.client.post(url, files={"file": ("b.png", _bomb_png())}), 413)
    assert "empty" in _error(srv.client.post(url, files={"file": ("e.jpg", b"")}), 422)
    assert "MAX_UPLOAD_MB" in _error(srv.client.post(url, files={"file": ("big.jpg", b"\xff" * 1_200_000)}), 413)
    assert "file" in _error(srv.client.post(url, data={"top_k": "3"}), 422)


def test_chunked_body_over_limit(srv) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 100_000

    r = srv.client.post("/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert "MAX_UPLOAD_MB" in _error(r, 413)


def test_search_image_form_errors(srv, base) -> None:
    jpeg = base.files[base.ids[0]].read_bytes()
    for data, field in (({"top_k": "0"}, "top_k"), ({"event_code": "nope"}, "UUID"), ({"min_score": "inf"},
                                                                                       "min_score")):
        assert field in _error(srv.client.post("/search/image", files={"file": ("a.jpg", jpeg)}, data=data), 422)


def test_add_image_errors(main, base) -> None:
    _, srv = main
    good = {"filename": "x.jpg", "file_path": f"/uploads/{base.files[base.ids[0]].name}", "event_code": base.event_a}
    key = {"X-API-Key": API_KEY}
    assert "X-API-Key" in _error(srv.client.post("/add_image", json=good), 401)
    assert "wrong" in _error(srv.client.post("/add_image", json=good, headers={"X-API-Key": "nope"}), 403)
    assert "outside image root" in _error(
        srv.client.post("/add_image", json={**good, "file_path": "../../etc/passwd"}, headers=key), 422)
    assert "no file" in _error(
        srv.client.post("/add_image", json={**good, "file_path": "/uploads/missing.jpg"}, headers=key), 422)
    assert "not an event" in _error(
        srv.client.post("/add_image", json={**good, "event_code": str(uuid.uuid4())}, headers=key), 422)
    assert "event_code" in _error(srv.client.post("/add_image", json={**good, "event_code": "x"}, headers=key), 422)
    assert "expects 1280" in _error(srv.client.post("/add_image", json={**good, "vector": [0.1, 0.2]}, headers=key),
                                    422)
    assert "filename" in _error(srv.client.post("/add_image", json={**good, "filename": ""}, headers=key), 422)
    assert "width" in _error(srv.client.post("/add_image", json={**good, "metadata": {"width": -3}}, headers=key),
                             422)


def test_unknown_route_and_method(srv) -> None:
    assert "Not Found" in _error(srv.client.get("/nope"), 404)
    assert "Method Not Allowed" in _error(srv.client.get("/search"), 405)


# --- fuzzing the OpenAPI schema: no input may produce a 500 ------------------------------------------------

def _schema():  # type: ignore[no-untyped-def]
    import schemathesis

    from core.settings import load_settings
    from serving.app import create_app

    return schemathesis.openapi.from_dict(create_app(load_settings(embedding_model="efficientnet-lite0")).openapi())


schema = _schema()


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
def test_fuzz_no_server_errors(case, main) -> None:  # type: ignore[no-untyped-def]
    """Bounded (12 examples per operation, ~25 s) so the suite stays quick; derandomised to be repeatable."""
    from schemathesis.checks import not_a_server_error

    case.call_and_validate(base_url=main[1].url, checks=[not_a_server_error])
