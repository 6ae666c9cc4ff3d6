"""Phase progress on a terminal: one line per phase with its duration and counts.
Silent when stderr is not a TTY or with --quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        """Yields a dict the phase may fill: "done" (a short result note) and "count" (items
        processed, for a rate)."""
        note: dict[str, Any] = {}
        start = time.perf_counter()
        if self.enabled:
            sys.stderr.write(f"\r\033[K{name}…")
            sys.stderr.flush()
        yield note
        if self.enabled:
            took = time.perf_counter() - start
            extra = f" — {note['done']}" if note.get("done") else ""
            if note.get("count") and took > 0:
                extra += f" ({note['count'] / took:,.0f}/s)"
            sys.stderr.write(f"\r\033[K{name}: {took:.2f}s{extra}\n")
            sys.stderr.flush()
