"""Phase progress on a terminal: one line per phase with its duration and counts.
Silent when stderr is not a TTY or with --quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, str]]:
        """Yields a dict the phase may fill with a short result note."""
        note: dict[str, str] = {}
        start = time.perf_counter()
        if self.enabled:
            sys.stderr.write(f"\r\033[K{name}…")
            sys.stderr.flush()
        yield note
        if self.enabled:
            took = time.perf_counter() - start
            extra = f" — {note['done']}" if note.get("done") else ""
            sys.stderr.write(f"\r\033[K{name}: {took:.2f}s{extra}\n")
            sys.stderr.flush()
