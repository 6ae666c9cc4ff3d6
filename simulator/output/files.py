"""Where outputs go: checked against every input before any work, and written so that a
failed run never leaves a half-written file that looks complete.

An output may not be, or reach through a symlink or a hard link, any input file or
another output. Each output is written to a temporary file in its target directory and
renamed into place once complete; a failure removes the temporary file and leaves
whatever was at the target untouched."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError, UsageError


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()  # follows symlinks: a link to an input is that input
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_outputs(outputs: dict[str, str | None], inputs: Iterable[Path]) -> None:
    """outputs: option -> path (None when not asked for). Raises UsageError naming the
    option when a path is an input, another output, or a directory."""
    by_identity: dict[tuple[int, int], str] = {}
    by_path: dict[str, str] = {}
    for path in inputs:
        ident = _identity(path)
        if ident is not None:
            by_identity.setdefault(ident, str(path))
        by_path.setdefault(os.path.realpath(path), str(path))
    seen: dict[str, str] = {}
    seen_ids: dict[tuple[int, int], str] = {}
    for option, raw in outputs.items():
        if raw is None:
            continue
        if not raw.strip():
            raise UsageError(f"{option}: an empty path; name a file")
        if raw == "-":
            raise UsageError(f"{option} -: outputs are written to files; name one")
        path = Path(raw)
        if raw.endswith(("/", os.sep)) or path.is_dir():
            raise UsageError(f"{option} {raw}: is a directory; name a file")
        real = os.path.realpath(path)
        ident = _identity(path)
        clash = by_path.get(real) or (by_identity.get(ident) if ident else None)
        if clash is not None:
            raise UsageError(f"{option} {raw}: is the input file {clash}; the inputs are "
                             "never overwritten")
        other = seen.get(real) or (seen_ids.get(ident) if ident else None)
        if other is not None:
            raise UsageError(f"{option} {raw}: is also the {other} output; give each "
                             "output its own file")
        seen[real] = option
        if ident is not None:
            seen_ids[ident] = option


def _failure(path: Path, e: BaseException) -> InputError:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return InputError(path, "cannot write: no space left on device")
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "No space left" in text:
        return InputError(path, "cannot write: no space left on device")
    if isinstance(e, OSError):
        return InputError(path, f"cannot write: {e.strerror or text}")
    return InputError(path, f"cannot write: {text}")


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it is renamed to `path`."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:100]}.", suffix=".partial",
                                   dir=target.parent)
        os.close(fd)
    except OSError as e:
        raise _failure(target, e) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except InputError:
        tmp_path.unlink(missing_ok=True)
        raise
    except Exception as e:
        tmp_path.unlink(missing_ok=True)
        duckdb = sys.modules.get("duckdb")  # imported by the run, not by this module
        if isinstance(e, OSError) or (duckdb is not None and isinstance(e, duckdb.IOException)):
            raise _failure(target, e) from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
