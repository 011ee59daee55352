"""Pages for people (issue 26): an event's copy groups and similar shots as thumbnails, and an upload's check.

Server-rendered HTML (plain templates, every value HTML-escaped; no script), from the same service
functions the JSON routes use (`serving.relations`, `serving.search`): the page shows what
GET /events/{code}/duplicates, GET /events/{code}/similar-shots and POST /events/{code}/duplicates/check
answer, plus, for each member, its relation to the group's reference and the rule that decided it
(duplicates/rules.py: `copy` when every copy rule held, else the first copy rule that failed for another
shot, or the first scene rule that failed for a related image).

Images appear only as thumbnails by image id (GET /pages/thumbnails/{image_id}), read through the
storage layer (`storage.images.ImageFiles`: IMAGE_ROOT's rules, size limits, object stores); no file path
is ever written into a page. Read-only like the JSON read routes: no API key.
"""

from __future__ import annotations

import asyncio
import base64
import html
import io
import logging
import re
import uuid
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from duplicates.groups import CANDIDATE_COSINE
from duplicates.relation import Relation, Verdict
from serving import relations
from serving import search as engine
from serving.database import DatabaseDown
from serving.deps import State, known_event
from serving.image_rows import find_image
from serving.schemas import MAX_TOP_K
from serving.served import ServedIndex
from serving.state import ServerState

log = logging.getLogger(__name__)
router = APIRouter(prefix="/pages", tags=["pages"], include_in_schema=False)

THUMB_SIDE = 200  # the thumbnail's longer side, in pixels (the default of ?size=)
MAX_THUMB_SIDE = 1024  # the largest one may ask for (a bigger view when a thumbnail is clicked)
THUMBS_AT_ONCE = 2  # thumbnails decoded at once per server (more wait their turn: a page asks for dozens)
EVENTS_LISTED = 1000  # events on the index page, the largest first
_RULE_IN_REASON = re.compile(r"\(not (?:a copy|the same scene): ([A-Za-z_][A-Za-z0-9_]*)\)")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2rem 1.5rem; color: #1f2933; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 1.8rem; }
a { color: #1d4f91; } code { background: #f0f4f8; padding: 0 .2rem; }
.meta { color: #52606d; font-size: .9rem; }
.group { display: flex; flex-wrap: wrap; gap: .8rem; align-items: flex-start; border: 1px solid #cbd2d9;
         border-radius: 6px; padding: .6rem; margin: .6rem 0; }
figure { margin: 0; width: 200px; }
figure img.thumb { display: block; width: 200px; height: 200px; object-fit: contain; background: #f0f4f8;
                   border-radius: 4px; }
figcaption { font-size: .78rem; line-height: 1.35; margin-top: .25rem; overflow-wrap: anywhere; }
.rel { display: inline-block; padding: 0 .35rem; border-radius: 3px; font-weight: 600; }
.rel.copy { background: #fde2e1; color: #8a1c1c; } .rel.same_scene { background: #fff1c2; color: #7a5a00; }
.rel.related { background: #e3f0ff; color: #1d4f91; } .rel.reference { background: #e6f4ea; color: #1e6b35; }
.rel.upload { background: #ede7f6; color: #4527a0; } figure[data-relation='upload'] img { outline: 3px solid #7e57c2; }
.reason { color: #52606d; } .copies img { width: 48px; height: 48px; object-fit: cover; margin: .15rem .15rem 0 0; }
.verdict { font-size: 1.1rem; font-weight: 600; } .verdict.dup { color: #8a1c1c; } .verdict.nodup { color: #1e6b35; }
form.check { border: 1px dashed #9aa5b1; border-radius: 6px; padding: .6rem; display: inline-block; }
.error { color: #b42318; } table { border-collapse: collapse; }
td, th { border: 1px solid #cbd2d9; padding: .25rem .5rem; text-align: left; } .num { text-align: right; }
"""

e = html.escape


# --- small helpers ------------------------------------------------------------------------------------

def _prefix(request: Request) -> str:
    """The prefix the server is mounted under (a proxy's root_path), so links work behind one."""
    return str(request.scope.get("root_path") or "").rstrip("/")


def _root(request: Request) -> str:
    """`_prefix` for an HTML attribute."""
    return e(_prefix(request), quote=True)


def _page(title: str, body: str, status: int = 200, headers: dict[str, str] | None = None,
          refresh: int | None = None) -> HTMLResponse:
    meta = f"<meta http-equiv='refresh' content='{int(refresh)}'>" if refresh else ""
    text = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"{meta}<title>{e(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>")
    return HTMLResponse(text, status_code=status, headers=headers)


def _error(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    retry = (headers or {}).get("Retry-After")
    again = f" <span class='meta'>(this page reloads in {e(retry)} s)</span>" if retry else ""
    body = (f"<h1>{status}</h1><p class='error'>{e(message)}{again}</p>"
            f"<p><a href='{_root(request)}/pages/events'>All events</a></p>")
    return _page(f"{status}", body, status, headers, refresh=int(retry) if retry and retry.isdigit() else None)


def _served(state: ServerState) -> ServedIndex:
    served = state.holder.current
    if served is None:
        raise HTTPException(503, f"no index loaded: {state.holder.reason or 'loading'}",
                            headers={"Retry-After": str(max(1, int(state.settings.swap_poll_seconds)))})
    return served


def rule_of(relation: str, verdict_rule: str, reason: str) -> str:
    """The rule that decided a verdict: its `rule` when the verdict carries one (computed now), else the name
    its reason gives ("... (not a copy: nothing_moved)"; verdicts read back from a version's stored relations
    and the upload check's carry the reason only); `copy` for a copy."""
    if verdict_rule:
        return verdict_rule
    found = _RULE_IN_REASON.search(reason or "")
    if found:
        return found.group(1)
    return "copy" if relation == Relation.COPY else ""


_RULE_MEANING = {
    "copy": "every copy rule held: the same photograph",
    "same_scene": "the first copy rule that failed (so not the same photograph); every scene rule held",
    "related": "the first scene rule that failed: similar content only",
}


def _thumb_url(request: Request, image_id: int, size: int | None = None) -> str:
    query = f"?size={size}" if size else ""
    return f"{_root(request)}/pages/thumbnails/{int(image_id)}{query}"


def _figure(request: Request, item: dict[str, Any], label: str, relation: str, rule: str = "", reason: str = "",
            score: float | None = None, extra: str = "") -> str:
    """One image: its thumbnail (a link to a bigger one), id, filename, relation, rule and reason."""
    image_id = int(item["id"])
    name = item.get("filename") or ""
    bits = [f"<b>#{image_id}</b> {e(str(name))}", f"<span class='rel {e(relation)}'>{e(label)}</span>"
            + (f" {score:.3f}" if score is not None else "")]
    if rule:
        meaning = _RULE_MEANING.get(relation, "")
        bits.append(f"rule <code class='rule' title='{e(meaning, quote=True)}'>{e(rule)}</code>")
    if reason:
        bits.append(f"<span class='reason'>{e(reason)}</span>")
    if extra:
        bits.append(extra)
    return (f"<figure data-image-id='{image_id}' data-relation='{e(relation, quote=True)}' "
            f"data-rule='{e(rule, quote=True)}'>"
            f"<a href='{_thumb_url(request, image_id, MAX_THUMB_SIDE)}'>"
            f"<img class='thumb' src='{_thumb_url(request, image_id)}' alt='image {image_id}' loading='lazy'></a>"
            f"<figcaption>{'<br>'.join(bits)}</figcaption></figure>")


def _form(request: Request, event: str) -> str:
    action = f"{_root(request)}/pages/events/{e(event, quote=True)}/check"
    return (f"<form class='check' method='post' action='{action}' enctype='multipart/form-data'>"
            "<label>Is this photo already in the event? <input type='file' name='file' accept='image/*' required>"
            "</label> <button type='submit'>Check</button></form>")


async def _event_name(state: ServerState, event: str) -> str | None:
    """The event's name in the EMS `events` table (best effort: a page without it is still a page)."""
    try:
        rows = await state.db.fetch("SELECT name FROM events WHERE code = %s::uuid", (event,))
    except Exception as exc:  # down, hung, or a table without `name`
        log.info("event name of %s unavailable: %s", event, exc)
        return None
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


async def _known(state: ServerState, event_code: str) -> tuple[ServedIndex, str]:
    """The served version and the event's canonical code; HTTPException (rendered as a page) otherwise."""
    served = _served(state)
    try:
        code = str(uuid.UUID(event_code))
    except ValueError:
        raise HTTPException(404, f"no event {event_code[:100]!r}: an event code is a UUID") from None
    return served, await known_event(code, state, served)


def _head(request: Request, event: str, name: str | None, served: ServedIndex, what: str) -> str:
    root = _root(request)
    title = f"{e(name)} " if name else ""
    return (f"<p class='meta'><a href='{root}/pages/events'>All events</a></p>"
            f"<h1>{title}<code>{e(event)}</code>: {e(what)}</h1>"
            f"<p class='meta'>index version v{served.version} · model {e(served.model_version)} · JSON: "
            f"<a href='{root}/events/{e(event)}/duplicates'>duplicates</a>, "
            f"<a href='{root}/events/{e(event)}/similar-shots'>similar shots</a></p>")


# --- the pages ----------------------------------------------------------------------------------------

@router.get("", response_class=RedirectResponse)
async def pages_root(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{_prefix(request)}/pages/events", status_code=307)


@router.get("/events", response_class=HTMLResponse)
async def events_page(request: Request, state: State) -> HTMLResponse:
    """The events of the served version, the largest first, each a link to its page."""
    try:
        served = _served(state)
    except HTTPException as exc:
        return _error(request, exc.status_code, str(exc.detail), exc.headers)
    counts = sorted(((len(served.loaded.event_ids(code)), code) for code in served.loaded.events()),
                    key=lambda t: (-t[0], t[1]))
    shown = counts[:EVENTS_LISTED]
    names: dict[str, str] = {}
    if shown:
        try:
            rows = await state.db.fetch("SELECT code::text, name FROM events WHERE code = ANY(%s::uuid[])",
                                        ([code for _, code in shown],))
            names = {str(c): str(n) for c, n in rows if n is not None}
        except Exception as exc:  # the page lists the codes anyway
            log.info("event names unavailable: %s", exc)
    root = _root(request)
    rows_html = "".join(
        f"<tr><td><a href='{root}/pages/events/{e(code)}'><code>{e(code)}</code></a></td>"
        f"<td>{e(names.get(code, ''))}</td><td class='num'>{n}</td></tr>" for n, code in shown)
    more = (f"<p class='meta'>{len(counts) - len(shown)} smaller events not listed; open "
            f"<code>{root}/pages/events/&lt;event code&gt;</code></p>" if len(counts) > len(shown) else "")
    body = (f"<h1>Events: copies and similar shots</h1><p class='meta'>index version v{served.version} · "
            f"{served.count} photos in {len(counts)} events</p>"
            + (f"<table><tr><th>event</th><th>name</th><th>photos</th></tr>{rows_html}</table>" if shown
               else "<p>No event has an indexed photo yet.</p>") + more)
    return _page("Events", body)


def _groups_count(groups: list[Any]) -> str:
    return f"{len(groups)} group{'' if len(groups) == 1 else 's'}"


def _verdict_between(pairs: relations.EventPairs, a: int, b: int) -> Verdict | None:
    return pairs.verdicts.get((a, b) if a < b else (b, a))


def _scene_link(pairs: relations.EventPairs, ref: int, member: int, copies: dict[int, list[int]]) -> Verdict | None:
    """The same-scene verdict that put `member` in `ref`'s group: the best one between them or copies of either
    (a similar-shots group shows each copy group once, by its reference)."""
    found = [v for a in (ref, *copies.get(ref, ())) for b in (member, *copies.get(member, ()))
             if (v := _verdict_between(pairs, a, b)) is not None and v.relation is Relation.SAME_SCENE]
    return max(found, key=lambda v: v.score) if found else _verdict_between(pairs, ref, member)


def _group_html(request: Request, served: ServedIndex, members: list[int], score: float,
                link: Any, copies: dict[int, list[int]] | None = None) -> str:
    described = served.describe_many(members)
    figures = []
    for n, item in enumerate(described):
        extra = ""
        if copies is not None and copies.get(item["id"]):
            ids: Iterable[int] = copies[item["id"]]
            thumbs = "".join(f"<a href='{_thumb_url(request, i, MAX_THUMB_SIDE)}'><img src='{_thumb_url(request, i)}'"
                             f" alt='image {int(i)}' title='#{int(i)}' loading='lazy'></a>" for i in ids)
            extra = f"<span class='copies'>and its copies:<br>{thumbs}</span>"
        if n == 0:
            figures.append(_figure(request, item, "reference", "reference", extra=extra))
            continue
        v: Verdict | None = link(members[0], item["id"])
        if v is None:
            figures.append(_figure(request, item, "member", "related", extra=extra))
            continue
        relation = str(v.relation)
        figures.append(_figure(request, item, relation, relation, rule_of(relation, v.rule, v.reason), v.reason,
                               float(v.score), extra))
    return (f"<div class='group' data-score='{score:.6f}'>{''.join(figures)}</div>")


@router.get("/events/{event_code}", response_class=HTMLResponse)
async def event_page(request: Request, event_code: str, state: State) -> HTMLResponse:
    """Copy groups and similar shots of one event, as GET /events/{code}/duplicates and /similar-shots answer."""
    try:
        served, event = await _known(state, event_code)
        try:
            pairs = await run_in_threadpool(relations.event_pairs, served, state.settings, event, state.metrics)
        except relations.RelationsBusy as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
    except HTTPException as exc:
        return _error(request, exc.status_code, str(exc.detail), exc.headers)
    verdict = await state.deleted.dead_among(served, pairs.ids.tolist())
    live = {int(i) for i in pairs.ids.tolist()} - verdict.dead if verdict.dead else None
    copy_found = relations.event_groups(pairs, live, "copies")
    scene_found = relations.event_groups(pairs, live, "scenes")
    copies = {g.members[0]: g.members[1:] for g in copy_found.groups}
    name = await _event_name(state, event)

    parts = [_head(request, event, name, served, "copies and similar shots"),
             f"<p class='meta'>{copy_found.checked} photos checked"
             + (f", {copy_found.unverifiable} without a fingerprint (never in a group: re-embed the event)"
                if copy_found.unverifiable else "") + "</p>",
             "" if verdict.checked else "<p class='error'>Deleted photos may still show: the database did not "
                                        "answer which were deleted.</p>",
             _form(request, event),
             f"<h2 id='copies'>Copies ({_groups_count(copy_found.groups)})</h2>"
             "<p class='meta'>The same photograph stored more than once (re-encoded, resized, cropped, turned, "
             "captioned...): each member is verified as a copy of the group's first image, the reference.</p>"]
    parts += [_group_html(request, served, g.members, g.score, lambda a, b: _verdict_between(pairs, a, b))
              for g in copy_found.groups] or ["<p>No copies in this event.</p>"]
    parts.append(f"<h2 id='similar-shots'>Similar shots ({_groups_count(scene_found.groups)})</h2>"
                 "<p class='meta'>Other shots of the same scene (not copies: keep the best one); each member is "
                 "another shot of the reference; a photo with copies is shown once, its copies beside it.</p>")
    parts += [_group_html(request, served, g.members, g.score, lambda a, b: _scene_link(pairs, a, b, copies), copies)
              for g in scene_found.groups] or ["<p>No similar shots in this event.</p>"]
    return _page(f"Event {event}", "".join(parts))


@router.get("/events/{event_code}/check", response_class=RedirectResponse)
async def check_page_get(request: Request, event_code: str) -> Response:
    """A reload or a link of the check's address: back to the event's page (the form is there)."""
    try:
        code = str(uuid.UUID(event_code))
    except ValueError:
        return _error(request, 404, f"no event {event_code[:100]!r}: an event code is a UUID")
    return RedirectResponse(f"{_prefix(request)}/pages/events/{code}", status_code=303)


def _preview(state: ServerState, data: bytes) -> str:
    """The upload as a small JPEG data URI (the page shows it beside its matches; nothing is stored)."""
    from serving.uploads import decode

    image = decode(data, {"draft_side": None, "draft_long_side": THUMB_SIDE},
                   int(state.settings.upload_decode_mb * 2**20))
    return "data:image/jpeg;base64," + base64.b64encode(_jpeg(image, THUMB_SIDE)).decode()


@router.post("/events/{event_code}/check", response_class=HTMLResponse)
async def check_page(
    request: Request,
    event_code: str,
    state: State,
    file: Annotated[UploadFile | None, File()] = None,
    top_k: Annotated[int, Form(ge=1, le=MAX_TOP_K)] = 10,
) -> HTMLResponse:
    """The duplicate check of an uploaded photo, as POST /events/{code}/duplicates/check answers it."""
    from serving.uploads import process_upload

    try:
        served, event = await _known(state, event_code)
        if file is None:
            raise HTTPException(422, "choose a photo to check")
        query = await relations.read_query(state, file)
        result = await engine.search(served, state.deleted, query.vectors, top_k=relations.search_depth(top_k),
                                     event_code=event, min_score=CANDIDATE_COSINE)
        matches = await run_in_threadpool(relations.verify_hits, served, state.settings, query, result.hits, top_k)
    except HTTPException as exc:
        return _error(request, exc.status_code, str(exc.detail), exc.headers)
    preview = None
    try:
        await file.seek(0)
        preview = await process_upload(state, file, _preview)
    except Exception as exc:  # every upload slot busy again, say: the verdict is shown without the preview
        log.info("no preview of the upload: %s", exc)
    name = await _event_name(state, event)
    copies = [m for m in matches if m["relation"] == Relation.COPY]
    if copies:
        headline = ("<p class='verdict dup' data-duplicate='true'>Duplicate: a copy of "
                    + ", ".join(f"#{int(m['id'])}" for m in copies) + " is already in the event.</p>")
    else:
        shots = sum(1 for m in matches if m["relation"] == Relation.SAME_SCENE)
        headline = ("<p class='verdict nodup' data-duplicate='false'>Not a duplicate: no copy of this photo in the "
                    "event" + (f"; {shots} other shot{'' if shots == 1 else 's'} of its scene beside it."
                               if shots else ".") + "</p>")
    upload_name = e(re.split(r"[/\\]", file.filename or "")[-1][:200] or "upload")  # a name, never a path
    you = ("<figure data-image-id='upload' data-relation='upload' data-rule=''>"
           + (f"<img class='thumb' src='{preview}' alt='your photo'>" if preview else "")
           + f"<figcaption><span class='rel upload'>your photo</span><br>{upload_name}</figcaption></figure>")
    close, related = [], []
    for m in matches:  # copies first, then other shots, then related ones (verify_hits' order)
        relation = str(m["relation"])
        reason = str(m["verdict"]["reason"])
        (related if relation == Relation.RELATED else close).append(
            _figure(request, m, relation, relation, rule_of(relation, "", reason), reason,
                    float(m["verdict"]["score"]), f"cosine {float(m['similarity_score']):.3f}"))
    if not close:
        close.append("<p class='meta'>No copy of it and no other shot of its scene in the event.</p>")
    parts = [_head(request, event, name, served, "duplicate check"), headline,
             f"<div class='group check'>{you}{''.join(close)}</div>",
             f"<h2>Related photos ({len(related)})</h2><p class='meta'>Similar content only: neither a copy nor "
             "another shot of the same scene.</p>"
             + (f"<div class='group related'>{''.join(related)}</div>" if related else "<p>None.</p>"),
             "" if result.filtered else "<p class='error'>Deleted photos may still show: the database did not "
                                        "answer which were deleted.</p>",
             "<p class='meta'>Matches are the event's photos most alike (cosine above "
             f"{CANDIDATE_COSINE:.2f}), verified: copies first, then other shots of the same scene, then related "
             "ones.</p>",
             f"<h2>Check another photo</h2>{_form(request, event)}",
             f"<p><a href='{_root(request)}/pages/events/{e(event)}'>Copies and similar shots of this event</a></p>"]
    return _page(f"Check in {event}", "".join(parts))


# --- thumbnails ---------------------------------------------------------------------------------------

def _jpeg(image: Any, side: int) -> bytes:
    from PIL import Image

    image = image.copy() if image.width > side or image.height > side else image
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=82, optimize=True)
    return out.getvalue()


def _thumbnail(state: ServerState, file_path: str, side: int) -> bytes:
    """The file under IMAGE_ROOT (ImageFiles: its rules and limits), decoded small, as a JPEG."""
    from embeddings.loading import load_image
    from storage.images import ImageFiles

    data = ImageFiles(state.settings).read(file_path)
    image = load_image(data, draft_side=None, draft_long_side=side,
                       max_decode_bytes=int(state.settings.upload_decode_mb * 2**20))
    return _jpeg(image, side)


def _gate(state: ServerState) -> asyncio.Semaphore:
    gate = state.__dict__.get("thumbnail_gate")
    if gate is None:
        gate = state.__dict__.setdefault("thumbnail_gate", asyncio.Semaphore(THUMBS_AT_ONCE))
    return gate  # type: ignore[no-any-return]


@router.get("/thumbnails/{image_id}", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}})
async def thumbnail(image_id: str, state: State,
                    size: Annotated[int, Query(ge=16, le=MAX_THUMB_SIDE)] = THUMB_SIDE) -> Response:
    """A small JPEG of an indexed image, by its id: 404 (with a message) for any id that is not one."""
    from embeddings.loading import ImageLoadError
    from storage.objects import StorageUnavailable

    served = _served(state)
    text = image_id.strip()
    if not (text.isdigit() and len(text) <= 12):
        raise HTTPException(404, f"no image {image_id[:64]!r}: a thumbnail is asked for by image id (an integer)")
    wanted = int(text)
    if not served.has(wanted):
        raise HTTPException(404, f"image {wanted} is not in index version {served.version}")
    try:
        row = await find_image(state.db, wanted)
    except DatabaseDown as exc:
        raise HTTPException(503, f"database unavailable: {exc}", headers={"Retry-After": "1"}) from None
    if row is None:
        raise HTTPException(404, f"image {wanted} was deleted from the database")
    try:
        async with _gate(state):
            data = await run_in_threadpool(_thumbnail, state, row.file_path, size)
    except ImageLoadError as exc:  # the reason only: its detail may name the path
        raise HTTPException(404, f"image {wanted}: its file cannot be shown ({exc.reason})") from None
    except StorageUnavailable:
        raise HTTPException(503, "the image store (IMAGE_ROOT) is not answering", headers={"Retry-After": "1"}) \
            from None
    except (OSError, ValueError) as exc:  # a decoder's own complaint about a damaged file
        log.info("thumbnail of image %s: %s", wanted, type(exc).__name__)
        raise HTTPException(404, f"image {wanted}: its file cannot be shown (unreadable)") from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})
