"""The repository stands alone: no file sends a reader outside it, and every relative doc link resolves.

A user's clone has only the repository. The project's design and contracts are docs/design.md; the
one thing allowed to look beside the repository is the sample-data fallback (core/settings.py
`sample_data_dir`: SAMPLE_DATA_DIR, else `shared/data` next to the repository), and the few files
that implement, test or document it (ALLOWED below). clients/node/ (its own package) is left out.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Built from pieces so this file does not match itself. The last: absolute paths of a development machine.
_UP_SHARED = "../" + "shared"
_DESIGN = "DESIGN" + ".md"
OUTSIDE = (_UP_SHARED, "shared/" + "DESIGN", _DESIGN, "/work" + "/")
# Outside references a file may keep: (path, None) = the whole file, (path, prefix) = lines starting with
# prefix (after leading whitespace). Only the sample-data fallback; never the design file.
ALLOWED = (
    ("core/settings.py", None),  # implements the fallback (sample_data_dir) and documents SAMPLE_DATA_DIR
    ("Makefile", None),  # test-no-samples: turns the fallback off and asserts it is off
    (".env.example", None),  # documents SAMPLE_DATA_DIR and its default
    ("tests/duplicates/conftest.py", None),  # skip reasons name where the sample photos would be
    ("README.md", "| `SAMPLE_DATA_DIR` |"),  # the setting's row in the configuration table
)
NEVER_ALLOWED = (_DESIGN, "shared/" + "DESIGN", "/work" + "/")
SKIPPED_PREFIXES = ("clients/node/",)

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"(?<!\\)\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)


def _tracked(*, everything: bool = False) -> list[str]:
    """The files git tracks (what a clone has), clients/node/ left out unless `everything`."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"not a git checkout ({exc})")
    return [p for p in out.stdout.decode().split("\0") if p and (everything or not p.startswith(SKIPPED_PREFIXES))]


def _allowed(path: str, line: str) -> bool:
    if any(bad in line for bad in NEVER_ALLOWED):
        return False
    stripped = line.lstrip()
    return any(path == p and (prefix is None or stripped.startswith(prefix)) for p, prefix in ALLOWED)


def test_no_file_references_paths_outside_the_repository() -> None:
    found = []
    for path in _tracked():
        file = REPO / path
        try:
            data = file.read_bytes()
        except OSError:  # listed by git, deleted in the work tree
            continue
        if b"\0" in data[:8192]:
            continue
        text = data.decode("utf-8", errors="replace")
        if not any(word in text for word in OUTSIDE):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(word in line for word in OUTSIDE) and not _allowed(path, line):
                found.append(f"{path}:{number}: {line.strip()[:120]}")
    assert not found, ("references to paths outside the repository (a clone has none of them; "
                       "point at docs/design.md or the right docs page instead):\n" + "\n".join(found))


def _doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _link_targets(text: str) -> list[str]:
    text = _FENCE.sub("", text)
    text = _INLINE_CODE.sub("", text)
    return _LINK.findall(text) + _REF_LINK.findall(text)


def _anchors(markdown: str) -> set[str]:
    """The heading anchors GitHub makes: text lower-cased, punctuation dropped, spaces to '-', repeats -1, -2..."""
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", _FENCE.sub("", markdown), re.M):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
        slug = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen.setdefault(f"{slug}-{count}", 1)
    return set(seen)


def test_relative_markdown_links_resolve_to_repository_files() -> None:
    tracked = set(_tracked(everything=True))  # links may point into clients/node/
    folders = {parent.as_posix() for p in tracked for parent in Path(p).parents}
    broken = []
    for doc in _doc_files():
        for target in _link_targets(doc.read_text(encoding="utf-8")):
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue  # a URL (http:, mailto:)
            relative, _, anchor = target.split("?", 1)[0].partition("#")
            resolved = (doc.parent / relative).resolve() if relative else doc
            if anchor and resolved.suffix == ".md" and resolved.is_file() and \
                    anchor not in _anchors(resolved.read_text(encoding="utf-8")):
                broken.append(f"{doc.relative_to(REPO)}: {target} (no heading makes that anchor)")
            if not relative:
                continue
            try:
                inside = resolved.relative_to(REPO).as_posix()
            except ValueError:
                broken.append(f"{doc.relative_to(REPO)}: {target} (outside the repository)")
                continue
            if inside not in tracked and inside not in folders:
                broken.append(f"{doc.relative_to(REPO)}: {target} (no such file in the repository)")
    assert not broken, "relative links that do not resolve:\n" + "\n".join(broken)
