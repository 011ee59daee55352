"""One line per step on stdout, so a newcomer sees where the demo is and how long each part took."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Numbered steps (`[3/8] embeddings: ...`) with their durations, plus indented detail lines."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream or sys.stdout
        self.number = 0
        self._started = time.monotonic()
        self._step_started = self._started

    def step(self, title: str) -> None:
        self.number += 1
        self._step_started = time.monotonic()
        self._print(f"[{self.number}/{self.total}] {title}")

    def detail(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self._print(f"      {line}")

    def done(self, text: str) -> None:
        """The step's outcome with its duration."""
        self.detail(f"{text} ({time.monotonic() - self._step_started:.1f}s)")

    def raw(self, text: str = "") -> None:
        self._print(text)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
