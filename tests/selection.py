"""Which tests the second passes of CI run again, and why (a pytest plugin, loaded by tests/conftest.py).

CI runs some tests twice on purpose, and only those (Makefile):
- `make test-no-samples` runs the tests marked `samples` as a user's clone runs them, without the sample-data
  folder: their input is the real photos when the folder is there and generated ones when not. A test is marked
  `samples` when it says so, or when it uses a fixture decorated with `reads_samples`.
- `make pytest-ems` runs the tests marked `db` on a database made the way an Event Management System made it:
  every test that uses the test database (the `pg_database` fixture, directly or through another fixture).

A test cannot forget its mark: while the sample folder is there, every file opened or listed under it is seen
(a Python audit hook); a test that read it (itself or through one of its fixtures) without the `samples` mark
fails and says what to add. Reads in a child process (the demo's) are not seen: such tests carry the mark.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])
_READ_EVENTS = frozenset({"open", "os.listdir", "os.scandir"})


def reads_samples(fixture_function: F) -> F:
    """Mark a fixture function (under `@pytest.fixture`) whose value comes from the sample-data folder."""
    fixture_function.reads_samples = True  # type: ignore[attr-defined]
    return fixture_function


class _SampleReads:
    """The reads under the sample-data folder since the last `take()`, for the test or fixture being run."""

    def __init__(self) -> None:
        self.roots: tuple[str, ...] = ()  # the folder as configured and as resolved
        self.read: str | None = None  # the first path read
        self.fixtures: dict[str, str] = {}  # fixture name -> a path it read while being set up

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.roots or self.read is not None or event not in _READ_EVENTS or not args:
            return
        path = args[0]
        if isinstance(path, str | bytes | os.PathLike):
            text = os.fsdecode(path)
            if any(text == root or text.startswith(root + os.sep) for root in self.roots):
                self.read = text

    def take(self) -> str | None:
        read, self.read = self.read, None
        return read


_READS = _SampleReads()


def pytest_configure(config: pytest.Config) -> None:
    """Watch the sample-data folder, if there is one (the markers are declared in pyproject.toml)."""
    from core.settings import load_settings, sample_data_dir

    root = sample_data_dir(load_settings())  # (not get_settings(): conftest has not yet set this run's environment)
    _READS.roots = tuple({os.path.abspath(root), os.path.realpath(root)}) if root is not None else ()
    if _READS.roots and not getattr(sys, "_imgsim_sample_audit", False):
        sys.addaudithook(_READS.audit)  # (an audit hook cannot be removed: one per interpreter)
        sys._imgsim_sample_audit = True  # type: ignore[attr-defined]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        defs = [d for ds in (info.name2fixturedefs.values() if info else ()) for d in ds]
        if any(getattr(d.func, "reads_samples", False) for d in defs):
            item.add_marker(pytest.mark.samples)
        if "pg_database" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    before = _READS.take()
    try:
        return (yield)
    finally:
        read = _READS.take()
        if read is not None:
            _READS.fixtures.setdefault(fixturedef.argname, read)
        _READS.read = before


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    if call.when == "setup":
        _READS.take()  # what fixtures read is counted per fixture, below
    if call.when != "call" or item.get_closest_marker("samples") is not None:
        return report
    read = _READS.take()
    via = ""
    if read is None:
        used = [name for name in getattr(item, "fixturenames", ()) if name in _READS.fixtures]
        if used:
            read, via = _READS.fixtures[used[0]], f" through the fixture {used[0]!r}"
    if read is not None and report.outcome != "skipped":
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid} read the sample-data folder{via} ({read}) but is not marked `samples`: "
                           "add @pytest.mark.samples to the test (or tests.selection.reads_samples to its fixture), "
                           "so make test-no-samples runs it without that folder")
    return report
