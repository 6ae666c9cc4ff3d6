"""Where outputs go: checked against every input before any work, and written so that a
failed run never leaves a half-written file that looks complete.

An output may not be, or reach through a symlink or a hard link, any input file or
another output. Each output is written to a temporary file in its target directory and
renamed into place once complete; a failure removes the temporary file and leaves
whatever was at the target untouched."""

from __future__ import annotations

import errno
import os
import stat
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


def _mode_for(target: Path) -> int:
    """The mode the output gets: the replaced file's, else what the umask gives a new file
    (a temporary file is made 0600)."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _failure(path: Path, e: BaseException) -> InputError:
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return InputError(path, "cannot write: no space left on device")
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "No space left" in text:
        return InputError(path, "cannot write: no space left on device")
    if isinstance(e, OSError):
        return InputError(path, f"cannot write: {e.strerror or text}")
    return InputError(path, f"cannot write: {text}")


def _special(target: Path) -> bool:
    """An existing target that is not a regular file (/dev/stdout, /dev/null, a pipe):
    written straight through, never replaced by a rename."""
    try:
        return not stat.S_ISREG(target.stat().st_mode)
    except OSError:
        return False


def _write_error(target: Path, e: Exception) -> Exception:
    duckdb = sys.modules.get("duckdb")  # imported by the run, not by this module
    if isinstance(e, OSError) or (duckdb is not None and isinstance(e, duckdb.IOException)):
        return _failure(target, e)
    return e


# Outputs written while a run stages them: (temporary file, target), renamed together.
_STAGED: list[list[tuple[Path, Path]]] = []


@contextmanager
def staged_outputs() -> Iterator[None]:
    """Within the block, each output is complete in its temporary file but renamed into
    place only when the block ends without error: a run that fails (a full disk on its
    third output, an input refused late) leaves no output at all, not some of them."""
    pending: list[tuple[Path, Path]] = []
    _STAGED.append(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _STAGED.remove(pending)
    for i, (tmp, target) in enumerate(pending):
        try:
            os.replace(tmp, target)
        except OSError as e:
            for rest, _ in pending[i:]:
                rest.unlink(missing_ok=True)
            raise _failure(target, e) from None


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside `path`; once written it is renamed to `path`, with
    the permissions the file had (or a new file gets), at once or, in staged_outputs(),
    with the run's other outputs."""
    target = Path(path)
    if _special(target):  # /dev/stdout and the like: written straight through
        try:
            yield target
        except Exception as e:
            raise _write_error(target, e) from None
        return
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
        os.chmod(tmp_path, _mode_for(target))
        if _STAGED:
            _STAGED[-1].append((tmp_path, target))
        else:
            os.replace(tmp_path, target)
    except InputError:
        tmp_path.unlink(missing_ok=True)
        raise
    except Exception as e:
        tmp_path.unlink(missing_ok=True)
        raise _write_error(target, e) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
