"""Every bad input is JSON with a message and the right 4xx; schemathesis fuzzes the schema for 500s."""

from __future__ import annotations

import io
import json
import socket
import uuid

import pytest

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
    assert "less than or equal to 1000000" in _error(_search(srv, {"vector": [1e39] + [0.1] * 1279}), 422)
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
    assert "an image id (integer) or an image code (UUID)" in _error(srv.client.get("/images/not-an-id/similar"),
                                                                     422)
    assert "image id" in _error(srv.client.get("/images/1234567890123/similar"), 422)  # 13 digits
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


def test_numbers_are_strict(srv) -> None:
    """A number is a JSON number: "0.5", true and "5" are refused; 5.0 is the integer 5 (as JSON Schema says)."""
    vec = [0.1] * 1280
    assert "min_score" in _error(_search(srv, {"vector": vec, "min_score": "0.5"}), 422)
    assert "min_score" in _error(_search(srv, {"vector": vec, "min_score": True}), 422)
    assert "top_k" in _error(_search(srv, {"vector": vec, "top_k": "5"}), 422)
    assert "top_k" in _error(_search(srv, {"vector": vec, "top_k": True}), 422)
    assert "vector" in _error(_search(srv, {"vector": ["0.1"] * 1280}), 422)
    assert "vector" in _error(_search(srv, {"vector": [True] * 1280}), 422)
    assert "event_code" in _error(_search(srv, {"vector": vec, "filters": {"event_code": 5}}), 422)
    assert "UUID" in _error(_search(srv, {"vector": vec, "filters": {"event_code": "0" * 32}}), 422)  # no dashes
    assert "colour" in _error(_search(srv, {"vector": vec, "colour": "red"}), 422)
    r = _search(srv, {"vector": vec, "top_k": 5.0, "min_score": -1})
    assert r.status_code == 200 and len(r.json()) == 5


def test_malformed_bodies_are_422(srv, base) -> None:
    r = srv.client.post("/search", content=b'{"vector": "\xff\xfe not utf-8"}',
                        headers={"Content-Type": "application/json"})
    assert "cannot be parsed" in _error(r, 422)
    r = srv.client.post("/search/image", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"})
    assert r.status_code == 422, r.text
    r = srv.client.post(f"/events/{base.event_a}/duplicates/check", content=b"garbage",
                        headers={"Content-Type": "multipart/form-data; boundary=zzz"})
    assert r.status_code == 422, r.text


def test_hostile_paths_are_422_without_server_paths(main, base) -> None:
    """A 300-character path segment (ENAMETOOLONG deep in stat) is a 422 and the connection stays usable;
    no message shows where the server keeps its files."""
    _, srv = main
    key = {"X-API-Key": API_KEY}
    good = {"filename": "x.jpg", "file_path": f"/uploads/{base.files[base.ids[0]].name}", "event_code": base.event_a}
    for bad, words in ((f"/uploads/{'n' * 300}.jpg", "name too long"), ("/uploads/" + "a/" * 300, "at most 500"),
                       ("/uploads/missing.jpg", "no file"), ("../../etc/passwd", "outside image root"),
                       ("/uploads/\udc80.jpg", "unicode")):
        body = json.dumps({**good, "file_path": bad})  # ASCII-escaped: a lone surrogate travels as \\udc80
        r = srv.client.post("/add_image", content=body, headers={**key, "Content-Type": "application/json"})
        message = _error(r, 422)
        assert words in message, message
        for secret in (str(base.root), str(base.image_root), "/tmp/"):
            assert secret not in message, message
    assert srv.client.get("/").status_code == 200  # same keep-alive client: not reset


def test_errors_name_no_server_folder(main, base) -> None:
    from serving.errors import redact

    settings = main[0].settings
    text = redact(f"cannot open {settings.resolved_data_dir}/indexes/m/v000001/index.faiss and "
                  f"{base.image_root}/uploads/a.jpg or /usr/lib/x.so; the client sent '/uploads/b.jpg'", settings)
    assert text == ("cannot open <DATA_DIR>/indexes/m/v000001/index.faiss and <IMAGE_ROOT>/uploads/a.jpg or "
                    "…/x.so; the client sent '/uploads/b.jpg'")


def test_schema_says_what_is_accepted(srv) -> None:
    schema = srv.client.get("/openapi.json").json()
    comps = schema["components"]["schemas"]
    vector = comps["SearchRequest"]["properties"]["vector"]
    assert vector["minItems"] == vector["maxItems"] == 1280 and "contains" in vector
    assert comps["SearchRequest"]["additionalProperties"] is False
    event = comps["SearchFilters"]["properties"]["event_code"]["anyOf"][0]
    assert event["format"] == "uuid" and event["pattern"].startswith("^[0-9a-fA-F]{8}-")
    upload = comps["Body_search_image_search_image_post"]["properties"]["file"]
    assert upload["format"] == "binary" and upload["minLength"] == 1
    similar = schema["paths"]["/images/{id_or_code}/similar"]["get"]
    assert similar["parameters"][0]["schema"]["pattern"].startswith("^(?:[0-9]{1,12}|")
    add = schema["paths"]["/add_image"]["post"]
    assert add["security"] == [{"APIKeyHeader": []}] and {"401", "403", "413", "422", "503"} <= set(add["responses"])
    busy = schema["paths"]["/search/image"]["post"]["responses"]["503"]
    assert "Retry-After" in busy["headers"] and "UPLOAD_CONCURRENCY" in busy["description"]


def test_faults_are_json_and_keep_the_connection(main, live_server) -> None:
    """Fault injection on a real server: an OS error is a 503 with Retry-After, a bug a JSON 500 (logged), and
    the same keep-alive connection serves the next request (uvicorn resets it when an exception escapes)."""
    import errno

    srv = live_server(main[0].settings)

    async def os_fault() -> None:
        raise OSError(errno.EMFILE, "Too many open files", "/srv/secret/place")

    async def bug() -> None:
        raise RuntimeError("a bug at /srv/secret/place")

    srv.app.add_api_route("/fault/os", os_fault)
    srv.app.add_api_route("/fault/bug", bug)
    srv.wait_ready()
    r = srv.client.get("/fault/os")
    assert "Too many open files" in _error(r, 503) and r.headers["retry-after"] == "1"
    assert "secret" not in r.text
    r = srv.client.get("/fault/bug")
    assert "internal error" in _error(r, 500) and "secret" not in r.text
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:  # one connection, two requests
        stream = sock.makefile("rb")
        for path, status in (("/fault/bug", b" 500 "), ("/fault/os", b" 503 "), ("/", b" 200 ")):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            assert status in stream.readline()
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            stream.read(length)
