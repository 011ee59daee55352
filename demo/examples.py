"""Real requests against the running server, printed as curl command lines with the JSON they got."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from demo.photos import Planted

MAX_GROUPS_SHOWN = 5


@dataclass
class Example:
    title: str
    curl: str
    status: int
    answer: Any
    verdict: str = ""
    ok: bool = True


@dataclass
class ExampleRun:
    examples: list[Example] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.examples)


def _curl(method: str, url: str, *, files: dict[str, Path] | None = None, form: dict[str, str] | None = None) -> str:
    parts = ["curl", "-s"]
    if method != "GET":
        parts += ["-X", method]
    parts.append(url)
    for name, path in (files or {}).items():
        parts += ["-F", f"{name}=@{path}"]
    for name, value in (form or {}).items():
        parts += ["-F", f"{name}={value}"]
    return " ".join(shlex.quote(p) for p in parts)


def _shown(answer: Any) -> Any:
    """The answer as printed: long duplicate-group lists cut to the first few."""
    if isinstance(answer, dict) and isinstance(answer.get("groups"), list) and len(answer["groups"]) > MAX_GROUPS_SHOWN:
        more = len(answer["groups"]) - MAX_GROUPS_SHOWN
        return {**answer, "groups": [*answer["groups"][:MAX_GROUPS_SHOWN], f"... {more} more group(s)"]}
    return answer


def dumps(value: Any, indent: int = 0, width: int = 120) -> str:
    """JSON like `indent=2`, except that any object or list short enough stays on one line (easier to scan)."""
    flat = json.dumps(value, ensure_ascii=False)
    if len(flat) + indent <= width or not isinstance(value, dict | list) or not value:
        return flat
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 2, width)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [f"{inner}{dumps(v, indent + 2, width)}" for v in value]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"


def format_example(example: Example) -> str:
    body = dumps(_shown(example.answer))
    lines = [f"# {example.title}", f"$ {example.curl}", body]
    if example.verdict:
        lines.append(f"=> {example.verdict}")
    return "\n".join(lines)


def _names(group: dict[str, Any]) -> frozenset[str]:
    return frozenset(str(img.get("filename")) for img in group.get("images", []))


def compare_groups(found: list[frozenset[str]], truth: list[frozenset[str]], *, strict: bool,
                   planted: frozenset[str] = frozenset()) -> tuple[bool, str]:
    """Every group against the truth: (ok, verdict). `strict`: nothing but the truth may appear (photos
    known to hold no other copies or scenes); otherwise groups of other files are reported, not failed,
    but a group holding a planted file (`planted`, and every file of the truth) that is not in the truth
    still fails."""
    planted = planted.union(*truth)
    missing = [t for t in truth if t not in found]
    wrong = [g for g in found if g not in truth and (strict or g & planted)]
    extra = [g for g in found if g not in truth and g not in wrong]
    parts = [f"{len(found)} group(s): {len(truth) - len(missing)} of the {len(truth)} planted found exactly"]
    if missing:
        parts.append("missing " + "; ".join(" + ".join(sorted(t)) for t in missing))
    if wrong:
        parts.append("WRONG " + "; ".join(" + ".join(sorted(g)) for g in wrong))
    if extra:
        parts.append(f"{len(extra)} more among your own photos (not planted, not checked)")
    return not missing and not wrong, ", ".join(parts)


def run_examples(base_url: str, *, event_code: str, planted: Planted, strict: bool,
                 similar_id: int | None, similar_name: str | None, similar_expect: str | None,
                 top_k: int = 3) -> ExampleRun:
    """Ask the server what a newcomer would ask; each answer is compared with what was planted."""
    run = ExampleRun()
    query, original_name = planted.query, planted.query_original.name
    mine = frozenset(p.name for p in planted.registered).union(*(planted.same_file(o) for o, _ in planted.copies))
    with httpx.Client(base_url=base_url, timeout=120.0) as client:
        # 1. A transformed copy of a photo finds its original, verified as a copy.
        form = {"top_k": str(top_k), "event_code": event_code}
        with query.open("rb") as fh:
            resp = client.post("/search/image", files={"file": (query.name, fh, "image/jpeg")}, data=form)
        answer = _json(resp)
        top = answer[0] if resp.status_code == 200 and isinstance(answer, list) and answer else None
        originals = planted.same_file(planted.query_original)  # the original or a byte-identical twin of it
        found = bool(top and top.get("filename") in originals and top.get("relation") == "copy")
        verdict = (f"found its original {original_name} first, verified as a copy" if found
                   else f"expected {original_name} first as a copy, got "
                        f"{(top.get('filename'), top.get('relation')) if top else 'nothing'}")
        run.examples.append(Example(
            f"Search by photo: {query.name} (the photo {original_name} rotated 5 degrees, cropped, recompressed)",
            _curl("POST", f"{base_url}/search/image", files={"file": query}, form=form),
            resp.status_code, answer, verdict, found))

        # 2. Images similar to an indexed one, within the demo event (an earlier run's event may hold the same
        # photo): its planted copy, or a byte-identical twin of it in the folder, comes first.
        if similar_id is not None:
            url = f"/images/{similar_id}/similar?top_k={top_k}&event_code={event_code}"
            resp = client.get(url)
            answer = _json(resp)
            hits = answer if resp.status_code == 200 and isinstance(answer, list) else []
            first = hits[0].get("filename") if hits else None
            expected = {similar_expect, *(planted.twins.get(similar_name or "", ()))} - {similar_name}
            ok = similar_expect is None or first in expected
            run.examples.append(Example(
                f"Images similar to image {similar_id} ({similar_name}), itself excluded",
                _curl("GET", base_url + url), resp.status_code, answer,
                f"most similar: {first}" + ("" if ok else f" (expected {similar_expect})"), ok))

        # 3. The event's duplicate groups: exactly the planted copies.
        url = f"/events/{event_code}/duplicates"
        resp = client.get(url)
        answer = _json(resp)
        groups = answer.get("groups", []) if resp.status_code == 200 and isinstance(answer, dict) else []
        truth = planted.copy_groups
        ok, verdict = compare_groups([_names(g) for g in groups], truth, strict=strict, planted=mine)
        run.examples.append(Example("Duplicate groups (copies of one photograph) in the demo event",
                                    _curl("GET", base_url + url), resp.status_code, answer,
                                    "copies: " + verdict, resp.status_code == 200 and ok))

        # 4. Similar shots: the planted pair of shots of one scene, and nothing wrong.
        url = f"/events/{event_code}/similar-shots"
        resp = client.get(url)
        answer = _json(resp)
        groups = answer.get("groups", []) if resp.status_code == 200 and isinstance(answer, dict) else []
        ok, verdict = compare_groups([_names(g) for g in groups], [frozenset(p.name for p in planted.scene_pair)],
                                     strict=strict, planted=mine)
        run.examples.append(Example("Similar shots (same scene, another exposure) in the demo event",
                                    _curl("GET", base_url + url), resp.status_code, answer,
                                    "same scene: " + verdict, resp.status_code == 200 and ok))

        # 5. Upload checks: another shot of a scene in the event is not a duplicate; a copy is.
        url = f"/events/{event_code}/duplicates/check"
        for upload, expect_dup, expect_name, expect_rel, what in (
                (planted.scene_upload, False, planted.scene_probe.name, "same_scene",
                 f"another shot of the scene of {planted.scene_probe.name}"),
                (query, True, original_name, "copy", f"the transformed copy of {original_name}")):
            with upload.open("rb") as fh:
                resp = client.post(url, files={"file": (upload.name, fh, "image/jpeg")}, data={"top_k": "3"})
            answer = _json(resp)
            body = answer if resp.status_code == 200 and isinstance(answer, dict) else {}
            relation = {m.get("filename"): m.get("relation") for m in body.get("matches", [])}
            # The expected file, or a byte-identical twin of it in the folder.
            expect_name = next((n for n in sorted(planted.twins.get(expect_name, ())) if n in relation), expect_name)
            ok = body.get("duplicate") is expect_dup and relation.get(expect_name) == expect_rel
            verdict = (f"duplicate {str(body.get('duplicate')).lower()}, {expect_name}: {relation.get(expect_name)}"
                       + ("" if ok else f" (expected duplicate {str(expect_dup).lower()}, {expect_rel})"))
            run.examples.append(Example(f"Duplicate check of {upload.name} ({what})",
                                        _curl("POST", base_url + url, files={"file": upload}, form={"top_k": "3"}),
                                        resp.status_code, answer, verdict, ok))
    return run


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return {"status": resp.status_code, "body": resp.text[:500]}
