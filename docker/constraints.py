"""Airflow's constraints for the Airflow image's pip install, and the check after it (docker/Dockerfile.airflow).

    python constraints.py merge CONSTRAINTS REQUIREMENTS...  > constraints.txt
    python constraints.py check REQUIREMENTS... [--also NAME...]

`merge`: Airflow's constraints file (a path, e.g. the image's own ${HOME}/constraints.txt, or the
https://raw.githubusercontent.com/apache/airflow/constraints-<version>/constraints-<python>.txt URL)
without the lines of the packages requirements.txt pins itself. Those pins win: they are the versions
this project's tests run against (numpy 2, pandas 3, our providers' releases...), where Airflow's
constraints, frozen at its release, name others, and pip would refuse both at once. Every other
package, including every dependency pulled in by ours (torch's among them), stays at the version
Airflow was released and tested with. The overridden lines are listed on stderr for the build log.

`check`: `pip check`, failing the build when a package Airflow or this project loads has a
requirement that is not met: apache-airflow, the requirements, the `--also` names (the providers
docker-compose.yaml configures, e.g. the FAB auth manager), and everything they require. A broken
requirement of a provider nothing here loads (the reference image ships many) is printed as a warning.
Standard library only: it runs in the image before anything is installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from importlib import metadata

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_REQ_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")


def canonical(name: str) -> str:
    """PEP 503 normalised name (Flask_SQLAlchemy == flask-sqlalchemy)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_text(source: str) -> str:
    if source.startswith(("https://", "http://")):
        with urllib.request.urlopen(source, timeout=60) as response:  # the constraints URL
            return response.read().decode("utf-8")
    with open(source, encoding="utf-8") as handle:
        return handle.read()


def pinned(requirements_text: str) -> dict[str, str]:
    """canonical name -> the requirement line, for each package a requirements file names."""
    out = {}
    for line in requirements_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _NAME.match(line)
        if match:
            out[canonical(match.group(1))] = line
    return out


def merge(constraints_text: str, requirements_texts: list[str]) -> tuple[str, list[str]]:
    """(the constraints without the lines of pinned packages, one note per dropped line)."""
    ours: dict[str, str] = {}
    for text in requirements_texts:
        ours.update(pinned(text))
    kept, notes = [], []
    for line in constraints_text.splitlines():
        match = _NAME.match(line)
        if match and not line.lstrip().startswith("#") and canonical(match.group(1)) in ours:
            name = canonical(match.group(1))
            if line.strip() != ours[name]:
                notes.append(f"{line.strip()} -> {ours[name]}")
            continue
        kept.append(line)
    return "\n".join(kept) + "\n", notes


def _requires(dist: metadata.Distribution, extras: set[str]) -> list[tuple[str, set[str]]]:
    """(name, extras) of what a distribution requires, markers evaluated for this interpreter."""
    try:
        from packaging.requirements import Requirement  # pip's and Airflow's dependency, in the image
    except ImportError:  # pragma: no cover - every image here has it
        Requirement = None  # type: ignore[assignment,misc]
    out = []
    for raw in dist.requires or []:
        if Requirement is not None:
            req = Requirement(raw)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            out.append((req.name, set(req.extras)))
        else:
            match = _REQ_NAME.match(raw)
            if match and "extra ==" not in raw:
                out.append((match.group(1), set()))
    return out


def closure(roots: list[str]) -> set[str]:
    """Canonical names of the installed roots and of everything they require, transitively."""
    seen: set[str] = set()
    done: set[tuple[str, frozenset[str]]] = set()
    todo: list[tuple[str, set[str]]] = [(root, set()) for root in roots]
    while todo:
        name, extras = todo.pop()
        key = canonical(name)
        if (key, frozenset(extras)) in done:
            continue
        done.add((key, frozenset(extras)))
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_requires(dist, extras))
    return seen


def _requirer(line: str) -> str | None:
    """The package a `pip check` line is about: '<name> <version> has requirement ...' / '... requires ...'."""
    match = _NAME.match(line)
    return canonical(match.group(1)) if match and (" has requirement " in line or " requires " in line
                                                   or " is not supported " in line) else None


def check(pip_check_output: str, ours: set[str]) -> tuple[list[str], list[str]]:
    """(problems of packages we load, problems of the others)."""
    fatal, other = [], []
    for line in pip_check_output.splitlines():
        if not line.strip() or line.startswith("No broken requirements"):
            continue
        (fatal if _requirer(line) in ours else other).append(line.strip())
    return fatal, other


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "merge":
        text, notes = merge(read_text(argv[1]), [read_text(p) for p in argv[2:]])
        sys.stdout.write(text)
        for note in notes:
            print(f"constraints: requirements.txt wins: {note}", file=sys.stderr)
        return 0
    if len(argv) >= 2 and argv[0] == "check":
        args = argv[1:]
        also = args[args.index("--also") + 1:] if "--also" in args else []
        files = args[: args.index("--also")] if "--also" in args else args
        roots = ["apache-airflow", *also]
        for path in files:
            roots += [re.split(r"[\[<>=!~;\s]", line, maxsplit=1)[0] for line in pinned(read_text(path)).values()]
        installed = {canonical(d.metadata["Name"]) for d in metadata.distributions()}
        missing = [r for r in also if canonical(r) not in installed]
        out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True).stdout
        fatal, other = check(out, closure(roots))
        for line in other:
            print(f"constraints: not loaded here, left as it is: {line}", file=sys.stderr)
        for name in missing:
            fatal.append(f"{name} is not installed")
        for line in fatal:
            print(f"constraints: BROKEN: {line}", file=sys.stderr)
        return 1 if fatal else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
