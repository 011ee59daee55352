"""The pages for people (serving/routes/pages.py) over real HTTP, and in a real headless browser.

HTTP: a scenario of the shared corpus (real database, published version, uvicorn) whose event name and
one filename are hostile HTML: the event page shows exactly the JSON routes' groups with each member's
relation and rule, the upload check shows its verdict, everything from the database is escaped, no file
path is ever in a page, thumbnails are small JPEGs read through IMAGE_ROOT's rules, bad ids are 404.

Browser (slow): Debian's Chromium driven by playwright on an event of generated photos (no sample data):
the groups render with their thumbnails loaded, a photo uploaded through the form gets its verdict;
screenshots go to the test's tmp_path (printed). Without /usr/bin/chromium or playwright it skips,
except under CI or REQUIRE_BROWSER=1, where it fails.
"""

from __future__ import annotations

import html
import io
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.serving.conftest import API_KEY, MODEL, LiveServer, _create_db, _drop_db, settings_for

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
EVENT_NAME = '<script>alert("event")</script> Gala & co'
HOSTILE_FILENAME = "<img src=x onerror=alert(1)>.jpg"

_FIGURE = re.compile(r"<figure data-image-id='([^']*)' data-relation='([^']*)' data-rule='([^']*)'")


def _groups(page: str, section: str) -> list[list[tuple[str, str, str]]]:
    """The (image id, relation, rule) of each group's figures in one section of the event page."""
    start = page.index(f"id='{section}'")
    end = page.find("<h2", start)
    part = page[start:end if end > 0 else len(page)]
    return [_FIGURE.findall(g) for g in part.split("<div class='group'")[1:]]


@pytest.fixture(scope="module")
def pages(scenario, base) -> Iterator[tuple[Any, LiveServer]]:  # type: ignore[no-untyped-def]
    """A server of its own (it renames things): event A's name and one copy's filename are HTML."""
    scn = scenario("pages", api_key=API_KEY)
    scn.execute("UPDATE events SET name = %s WHERE code = %s", (EVENT_NAME, base.event_a))
    scn.execute("UPDATE images SET filename = %s WHERE id = %s", (HOSTILE_FILENAME, base.dup_pairs[0][1]))
    scn.publish()
    server = LiveServer(scn.settings)
    server.wait_ready()
    yield scn, server
    server.stop()


@pytest.fixture(scope="module")
def srv(pages) -> LiveServer:  # type: ignore[no-untyped-def]
    return pages[1]


def _no_paths(text: str, base: Any) -> None:
    assert "/uploads/" not in text and str(base.image_root) not in text and str(base.root) not in text


def test_event_page_shows_the_json_routes_groups_with_relation_and_rule(srv, base) -> None:  # type: ignore[no-untyped-def]
    from duplicates.rules import COPY_RULES

    r = srv.client.get(f"/pages/events/{base.event_a}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    copies = _groups(page, "copies")
    scenes = _groups(page, "similar-shots")
    # The same groups, members and order as the JSON routes answer.
    dup = srv.client.get(f"/events/{base.event_a}/duplicates").json()["groups"]
    shots = srv.client.get(f"/events/{base.event_a}/similar-shots").json()["groups"]
    assert [[int(i) for i, _, _ in g] for g in copies] == [[m["id"] for m in g["images"]] for g in dup]
    assert [[int(i) for i, _, _ in g] for g in scenes] == [[m["id"] for m in g["images"]] for g in shots]
    assert sorted([int(i) for i, _, _ in g] for g in copies) == sorted(map(list, base.dup_pairs))
    # Each member: its relation to the reference and the rule that decided it.
    for g in copies:
        assert g[0][1:] == ("reference", "")
        assert all(rel == "copy" and rule == "copy" for _, rel, rule in g[1:]), g
    (scene,) = scenes
    assert scene[0][1] == "reference"
    assert [(int(i), rel) for i, rel, _ in scene[1:]] == [(base.scene_pair[1], "same_scene")]
    assert scene[1][2] in {r.name for r in COPY_RULES}, scene  # the first copy rule another shot failed
    assert "(not a copy: " + scene[1][2] + ")" in page  # its reason names it too
    # The copy the scene's reference stands for is shown beside it, as a thumbnail.
    shot, shot_copy = base.dup_pairs[2]
    assert int(scene[0][0]) == shot and f"/pages/thumbnails/{shot_copy}'" in page
    for image_id in {i for g in copies + scenes for i, _, _ in g}:
        assert f"src='/pages/thumbnails/{image_id}'" in page
    assert f"action='/pages/events/{base.event_a}/check'" in page and "type='file'" in page
    assert "<script" not in page  # no script at all (and the hostile name escaped)
    _no_paths(page, base)


def test_database_text_and_hostile_codes_are_escaped(srv, base) -> None:  # type: ignore[no-untyped-def]
    page = srv.client.get(f"/pages/events/{base.event_a}").text
    assert EVENT_NAME not in page and "&lt;script&gt;alert(&quot;event&quot;)&lt;/script&gt; Gala &amp; co" in page
    assert HOSTILE_FILENAME not in page and "&lt;img src=x onerror=alert(1)&gt;.jpg" in page
    listing = srv.client.get("/pages/events")
    assert listing.status_code == 200 and EVENT_NAME not in listing.text and "Gala &amp; co" in listing.text
    for code in ("<script>alert(1)", "x' onmouseover='alert(1)", '"><svg onload=alert(1)>', "1 OR 1=1"):
        for url in (f"/pages/events/{code}", f"/pages/events/{code}/check"):
            r = srv.client.get(url)
            assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), (url, r.text)
            assert html.escape(code) in r.text and "<script" not in r.text and "onmouseover='" not in r.text
            assert code == html.escape(code) or code not in r.text
            assert "an event code is a UUID" in r.text
        r = srv.client.post(f"/pages/events/{code}/check", files={"file": ("a.jpg", b"x", "image/jpeg")})
        assert r.status_code == 404 and html.escape(code) in r.text and "<script" not in r.text
    unknown = str(uuid.uuid4())
    r = srv.client.get(f"/pages/events/{unknown}")
    assert r.status_code == 404 and f"no event {unknown}" in r.text


def test_events_page_lists_the_served_events(srv, base) -> None:  # type: ignore[no-untyped-def]
    assert srv.client.get("/pages", follow_redirects=False).headers["location"] == "/pages/events"
    r = srv.client.get("/pages/events")
    assert r.status_code == 200
    counts = {code: int(n) for code, n in re.findall(
        r"<a href='/pages/events/([0-9a-f-]{36})'><code>[^<]*</code></a></td><td>[^<]*</td><td class='num'>(\d+)<",
        r.text)}
    assert counts == {base.event_a: base.total - 10, base.event_b: 10}
    _no_paths(r.text, base)


def test_thumbnail_is_a_small_jpeg(srv, base) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    for image_id, size, side in ((base.ids[0], None, 200), (base.scene_probe, 64, 64), (base.ids[3], 1024, 1024)):
        r = srv.client.get(f"/pages/thumbnails/{image_id}", params={"size": size} if size else None)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert r.content[:3] == b"\xff\xd8\xff"
        with Image.open(io.BytesIO(r.content)) as im:
            assert im.format == "JPEG" and 0 < max(im.size) <= side
            with Image.open(base.files[image_id]) as original:
                assert max(im.size) == min(side, max(original.size))  # a thumbnail, never upscaled
        assert len(r.content) < (60_000 if side <= 200 else 400_000)
    for size in ("0", "15", "1025", "big"):
        assert srv.client.get(f"/pages/thumbnails/{base.ids[0]}", params={"size": size}).status_code == 422


def _check(srv: LiveServer, event: str, path: Path | None, data: bytes | None = None) -> Any:
    payload = data if data is not None else path.read_bytes()  # type: ignore[union-attr]
    return srv.client.post(f"/pages/events/{event}/check", files={"file": ("photo.jpg", payload, "image/jpeg")})


def test_check_page_shows_the_verdict_with_thumbnails(srv, base) -> None:  # type: ignore[no-untyped-def]
    r = _check(srv, base.event_a, base.rotated_upload)  # a sideways copy of ids[2]
    assert r.status_code == 200, r.text
    page = r.text
    assert "data-duplicate='true'" in page and f"a copy of #{base.ids[2]} " in page
    found = _FIGURE.findall(page)
    assert found[0] == ("upload", "upload", "") and "src='data:image/jpeg;base64," in page
    assert found[1] == (str(base.ids[2]), "copy", "copy") and f"src='/pages/thumbnails/{base.ids[2]}'" in page
    assert all(rel != "copy" for _, rel, _ in found[2:])
    # The JSON route's verdicts, in its order.
    with base.rotated_upload.open("rb") as fh:
        body = srv.client.post(f"/events/{base.event_a}/duplicates/check", files={"file": fh}).json()
    assert [int(i) for i, _, _ in found[1:]] == [m["id"] for m in body["matches"]]
    assert [rel for _, rel, _ in found[1:]] == [m["relation"] for m in body["matches"]]
    _no_paths(page, base)

    page = _check(srv, base.event_a, base.scene_upload).text  # another shot of scene_probe: not a duplicate
    assert "data-duplicate='false'" in page
    relation = {int(i): (rel, rule) for i, rel, rule in _FIGURE.findall(page) if i.isdigit()}
    assert relation[base.scene_probe][0] == "same_scene" and relation[base.scene_probe][1], relation
    assert all(rel != "copy" for rel, _ in relation.values())
    page = _check(srv, base.event_b, base.rotated_upload).text  # not in event B
    assert "data-duplicate='false'" in page
    related = [rule for _, rel, rule in _FIGURE.findall(page) if rel == "related"]
    assert all(related), page  # each names the first scene rule that failed


def test_check_page_errors_are_pages(srv, base) -> None:  # type: ignore[no-untyped-def]
    r = _check(srv, base.event_a, None, b"not an image at all")
    assert r.status_code == 415 and r.headers["content-type"].startswith("text/html") and "not an image" in r.text
    r = _check(srv, base.event_a, None, b"")
    assert r.status_code == 422 and "empty" in r.text
    r = srv.client.post(f"/pages/events/{base.event_a}/check", data={"top_k": "3"})
    assert r.status_code == 422 and "choose a photo" in r.text
    r = _check(srv, str(uuid.uuid4()), base.rotated_upload)
    assert r.status_code == 404 and "no event" in r.text
    r = srv.client.get(f"/pages/events/{base.event_a}/check", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/pages/events/{base.event_a}"


def test_pages_are_read_routes_and_not_in_the_api_schema(srv, base) -> None:  # type: ignore[no-untyped-def]
    # The server has an API key: like GET /events/... and POST .../duplicates/check, the pages need none.
    assert srv.client.post("/add_image", json={}).status_code == 401
    assert srv.client.get(f"/pages/events/{base.event_a}").status_code == 200
    assert srv.client.get(f"/pages/thumbnails/{base.ids[0]}").status_code == 200
    assert not [p for p in srv.client.get("/openapi.json").json()["paths"] if p.startswith("/pages")]


def test_airflow_plugin_links_to_the_events_page(srv, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The plugin's status page (plugins/image_similarity_view) links to this server's events page."""
    monkeypatch.syspath_prepend(str(REPO / "plugins"))
    from image_similarity_view.app import render
    from image_similarity_view.status import Status

    for configured in (srv.url + "/", srv.url):
        text = render(Status(images_total=1, events_total=1, models=[], search_server_url=configured))
        (link,) = re.findall(r"<a href='([^']*)'[^>]*>copies and similar shots", text)
        assert link == f"{srv.url}/pages/events"
        assert srv.client.get(link).status_code == 200


def test_thumbnail_bad_ids_are_404_with_a_message(pages, base) -> None:  # type: ignore[no-untyped-def]
    """Last of the HTTP tests: it deletes and breaks rows (of event B)."""
    scn, srv = pages
    for bad in ("abc", "-1", "1.5", "1e3", "0x10", "9" * 13, "999999999", "%20", "..%2F..%2Fetc%2Fpasswd",
                "%00", "<script>"):
        r = srv.client.get(f"/pages/thumbnails/{bad}")
        assert r.status_code == 404, (bad, r.status_code, r.text)
        if r.headers["content-type"].startswith("application/json") and r.json().get("detail") != "Not Found":
            assert r.json()["message"], bad
    # A row deleted since the version was built, and a row whose path leaves IMAGE_ROOT (or names nothing):
    # 404 naming the reason, never the path.
    gone, escaping, missing = base.ids[20], base.ids[21], base.ids[22]
    scn.execute("DELETE FROM images WHERE id = %s", (gone,))
    scn.execute("UPDATE images SET file_path = %s WHERE id = %s", ("/uploads/../../../etc/passwd", escaping))
    scn.execute("UPDATE images SET file_path = %s WHERE id = %s", ("/uploads/not-there.jpg", missing))
    r = srv.client.get(f"/pages/thumbnails/{gone}")
    assert r.status_code == 404 and "deleted" in r.json()["message"]
    r = srv.client.get(f"/pages/thumbnails/{escaping}")
    assert r.status_code == 404 and "outside image root" in r.json()["message"]
    assert "passwd" not in r.text and "/uploads" not in r.text
    r = srv.client.get(f"/pages/thumbnails/{missing}")
    assert r.status_code == 404 and "missing" in r.json()["message"] and "not-there" not in r.text
    r = srv.client.get(f"/pages/thumbnails/{base.ids[0]}")
    assert r.status_code == 200  # the others still answer


# --- a real browser ------------------------------------------------------------------------------------

def _browser_required() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no") or os.environ.get("REQUIRE_BROWSER") == "1"


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium for playwright (never `playwright install`: no browser downloads here)."""
    missing = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} (apt-get install chromium, or make setup-browser)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (requirements-dev.txt)")
    if missing:
        why = "the browser test needs " + " and ".join(missing)
        if _browser_required():
            pytest.fail(why + " (required: CI or REQUIRE_BROWSER=1)")
        pytest.skip(why)
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def generated_event(chromium, pg_database, tmp_path_factory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """An event of generated photos (core.sample_data's generators, never the sample folder): two copies of
    two photos, two shots of one scene, other photos; embedded, published, served."""
    import torch
    from PIL import Image

    from core.sample_data import generate_photos, generate_scene_shots
    from embeddings.models import get_embedder
    from embeddings.runner import embed_batch
    from indexing import pipeline
    from tests.ems_schema import prepare_test_database

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("pages-browser")
    admin = make_conninfo(pg_database, dbname="postgres")
    dbname = f"imgsim_pages_{uuid.uuid4().hex[:10]}"
    info = _create_db(admin, dbname)
    server = None
    try:
        with psycopg.connect(info) as conn:
            prepare_test_database(conn)
        uploads = root / "images" / "uploads"
        uploads.mkdir(parents=True)
        photos = generate_photos(root / "generated", 7, seed=26)
        files = []
        for p in photos[:6]:
            shutil.copyfile(p, uploads / p.name)
            files.append(uploads / p.name)
        with Image.open(files[0]) as im:
            im.convert("RGB").resize((im.width // 2, im.height // 2)).save(uploads / "copy_small.jpg", quality=90)
        with Image.open(files[1]) as im:
            im.convert("RGB").save(uploads / "copy_q30.jpg", quality=30)
        with Image.open(files[2]) as im:  # the upload: a sideways copy of files[2], not indexed
            im.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(root / "upload.jpg", quality=92)
        shot_a, shot_b = generate_scene_shots(root / "scenes", seed=2600)
        for src in (shot_a, shot_b):
            shutil.copyfile(src, uploads / src.name)
        files += [uploads / "copy_small.jpg", uploads / "copy_q30.jpg", uploads / shot_a.name, uploads / shot_b.name]
        with psycopg.connect(info, autocommit=True) as conn:
            event = str(conn.execute("INSERT INTO events (name) VALUES (%s) RETURNING code",
                                     ("Browser <b>test</b>",)).fetchone()[0])
            ids = [int(conn.execute("INSERT INTO images (event_code, filename, file_path) VALUES (%s, %s, %s) "
                                    "RETURNING id", (event, f.name, f"/uploads/{f.name}")).fetchone()[0])
                   for f in files]
        settings = settings_for(info, root / "data", root / "images")
        result = embed_batch(info, ids, model_name=MODEL, run_id="pages-browser", settings=settings)
        assert result["embedded"] == len(ids), result
        model_version = get_embedder(MODEL, settings).model_version
        built = pipeline.build(info, settings, model_version, mode="rebuild")
        pipeline.publish(info, settings, model_version, built["version"])
        server = LiveServer(settings)
        server.wait_ready()
        yield {"server": server, "event": event, "ids": ids, "upload": root / "upload.jpg",
               "copies": [(ids[0], ids[6]), (ids[1], ids[7])], "shots": (ids[8], ids[9]),
               "unrelated": photos[6]}
    finally:
        if server is not None:
            server.stop()
        _drop_db(admin, dbname)


_ALL_IMAGES_LOADED = """() => {
  const imgs = Array.from(document.images);
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def _load_every_image(page: Any) -> dict[str, int]:
    """Scroll each image into view (they load lazily), wait until all have loaded; their natural widths."""
    for img in page.locator("img").all():
        img.scroll_into_view_if_needed()
    page.wait_for_function(_ALL_IMAGES_LOADED, timeout=30_000)
    return page.evaluate("() => Object.fromEntries(Array.from(document.images).map("
                         "(i, n) => [n + ':' + i.getAttribute('src').slice(0, 40), i.naturalWidth]))")


@pytest.mark.slow
def test_browser_event_page_and_upload_check(chromium, generated_event, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    srv, event = generated_event["server"], generated_event["event"]
    started = time.monotonic()
    shots_dir = tmp_path / "screenshots"
    shots_dir.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # The events list links to the event.
            page.goto(f"{srv.url}/pages/events")
            page.click(f"a[href='/pages/events/{event}']")
            page.wait_for_url(f"{srv.url}/pages/events/{event}")
            assert "Browser <b>test</b>" in page.inner_text("h1")  # escaped: shown as text, not markup
            groups = [[int(x) for x in g.locator("figure").evaluate_all("fs => fs.map(f => f.dataset.imageId)")]
                      for g in page.locator("div.group").all()]
            # Copies first (two groups: each photo and its copy), then the similar shots (the scene's two shots).
            assert len(groups) == 3, groups
            assert sorted(sorted(g) for g in groups[:2]) == sorted(map(sorted, generated_event["copies"])), groups
            assert sorted(groups[2]) == sorted(generated_event["shots"]), groups
            assert page.locator("figure[data-relation='copy'][data-rule='copy']").count() == 2
            shot = page.locator("figure[data-relation='same_scene']")
            assert shot.count() == 1 and shot.get_attribute("data-rule")
            assert "not a copy: " + str(shot.get_attribute("data-rule")) in shot.inner_text()
            widths = _load_every_image(page)
            assert len(widths) == 6 and all(w > 0 for w in widths.values()), widths
            page.screenshot(path=str(shots_dir / "event.png"), full_page=True)

            # Upload a sideways copy of one of the event's photos through the form.
            page.set_input_files("input[name='file']", str(generated_event["upload"]))
            with page.expect_navigation():
                page.click("form.check button[type='submit']")
            assert page.url == f"{srv.url}/pages/events/{event}/check"
            verdict = page.locator(".verdict")
            assert verdict.get_attribute("data-duplicate") == "true", verdict.inner_text()
            assert f"#{generated_event['ids'][2]}" in verdict.inner_text()
            first = page.locator("div.group figure").nth(1)
            assert first.get_attribute("data-image-id") == str(generated_event["ids"][2])
            assert first.get_attribute("data-relation") == "copy" and first.get_attribute("data-rule") == "copy"
            widths = _load_every_image(page)
            assert all(w > 0 for w in widths.values()) and any(k.split(":", 1)[1].startswith("data:image/jpeg")
                                                               for k in widths), widths
            page.screenshot(path=str(shots_dir / "check-copy.png"), full_page=True)

            # A photo that is not in the event: no duplicate.
            page.set_input_files("input[name='file']", str(generated_event["unrelated"]))
            with page.expect_navigation():
                page.click("form.check button[type='submit']")
            assert page.locator(".verdict").get_attribute("data-duplicate") == "false"
            assert page.locator("figure[data-relation='copy']").count() == 0
            _load_every_image(page)
            page.screenshot(path=str(shots_dir / "check-not-a-copy.png"), full_page=True)
        finally:
            browser.close()
    print(f"\nbrowser test: {time.monotonic() - started:.1f} s; screenshots in {shots_dir}")
    assert sorted(p.name for p in shots_dir.iterdir()) == ["check-copy.png", "check-not-a-copy.png", "event.png"]


def test_without_an_index_the_pages_say_so_and_reload(scenario, base) -> None:  # type: ignore[no-untyped-def]
    """Nothing published yet: a 503 page with the reason and Retry-After, which reloads itself; never a 500."""
    scn = scenario("pages-empty", swap_poll_seconds=2)
    server = LiveServer(scn.settings)
    try:
        deadline = time.monotonic() + 30
        while "no published index" not in server.client.get("/").text and time.monotonic() < deadline:
            time.sleep(0.1)
        for path in ("/pages/events", f"/pages/events/{base.event_a}"):
            r = server.client.get(path)
            assert r.status_code == 503 and r.headers["content-type"].startswith("text/html"), (path, r.text[:200])
            assert r.headers["retry-after"] == "2" and "no index loaded" in r.text
            assert "http-equiv='refresh' content='2'" in r.text
        r = server.client.get(f"/pages/thumbnails/{base.ids[0]}")
        assert r.status_code == 503 and "no index loaded" in r.json()["detail"]  # thumbnails answer as the API does
    finally:
        server.stop()


def test_while_relations_are_computed_the_event_page_says_so_and_reloads(scenario, base, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A version without relations of the current rules: the server computes the event's in the background; the
    page meanwhile is a 503 page saying so, with Retry-After and a self-reload, then the groups once they are in."""
    import threading

    from serving import relations

    scn = scenario("pages-busy", relations_concurrency=1, relations_wait_seconds=0.5)
    scn.publish()
    monkeypatch.setattr("duplicates.verify.RULES_VERSION", "pages-busy")  # the version's relations: other rules
    gate = threading.Event()
    real = relations.event_verdicts

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        gate.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(relations, "event_verdicts", slow)
    server = LiveServer(scn.settings)
    try:
        server.wait_ready()
        r = server.client.get(f"/pages/events/{base.event_a}")
        assert r.status_code == 503 and r.headers["content-type"].startswith("text/html"), r.text[:300]
        assert "being computed" in r.text and 1 <= int(r.headers["retry-after"]) <= 60
        assert "http-equiv='refresh'" in r.text and "Traceback" not in r.text
        gate.set()
        deadline = time.monotonic() + 30
        while (r := server.client.get(f"/pages/events/{base.event_a}")).status_code == 503 \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r.status_code == 200 and "data-relation='copy'" in r.text, r.text[:300]
    finally:
        gate.set()
        server.stop()
