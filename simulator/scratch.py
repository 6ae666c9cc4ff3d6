"""Temporary directories that never outlive the process.

Each is registered under its name before it exists, so a signal that lands between its
creation and the caller's next step cannot leak it; `remove_all()` removes whatever is
left. The CLI calls it on its way out: it ends with os._exit, which skips atexit (kept
for library use, where the interpreter ends normally)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_LIVE: list[str] = []


def make(prefix: str, parent: str | None = None) -> str:
    """A new private directory `parent/prefix<random>` (parent: the system's temporary
    directory). OSError when it cannot be made."""
    base = os.path.abspath(parent or tempfile.gettempdir())
    while True:
        path = os.path.join(base, prefix + os.urandom(8).hex())
        _LIVE.append(path)
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:  # someone else's: never ours to remove
            _LIVE.remove(path)
        except OSError:
            _LIVE.remove(path)
            raise


def remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if path in _LIVE:
        _LIVE.remove(path)


def remove_all() -> None:
    while _LIVE:
        remove(_LIVE[-1])


atexit.register(remove_all)
