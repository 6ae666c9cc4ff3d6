"""What the user named as inputs: flow paths expanded to files (directories, globs,
standard input, named pipes), and every input file of a run, so that no output is ever
written over one (output.files.check_outputs)."""

from __future__ import annotations

import glob
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .documents import expand_paths
from .errors import InputError

_GLOB = "*?["


@dataclass(frozen=True)
class FlowPath:
    path: Path    # the file read (a spooled copy for standard input and pipes)
    label: str    # what the user called it, for every message
    named: bool   # named on its own (judged strictly), not found in a directory or glob
    problem: str | None = None  # why it cannot be read at all (listed as a skipped file)


def _not_a_file(p: Path) -> str:
    """Why a directory entry that is not a regular file is not read."""
    if p.is_symlink() and not p.exists():
        return "a dangling symbolic link"
    return "not a regular file (a device, pipe or socket in a directory is not read)"


def _is_stream(p: Path) -> bool:
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


# What a binary flow stream may open with: Parquet, gzip, pcap (either byte order and
# resolution) and pcapng.
_BINARY_MAGIC = (b"PAR1", b"\x1f\x8b", b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4",
                 b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")
_HEAD = 64 * 1024


def _garbage(head: bytes) -> bool:
    """A stream's first bytes that are neither a binary flow format nor text: an endless
    device (/dev/zero, /dev/urandom) is refused before it fills the disk."""
    if not head or head.startswith(_BINARY_MAGIC):
        return False
    text = head.decode("utf-8", errors="replace")
    bad = text.count("\x00") + text.count("\ufffd")
    return bad > len(text) // 100


def _spool(source: str, label: str, spool_dir: str | None) -> Path:
    """Standard input and named pipes can be read once: the stream is copied to a file
    (one sequential read; detection and the SQL readers then read the copy). Its head is
    looked at first, without seeking."""
    fd, name = tempfile.mkstemp(prefix="stream-", suffix=".flows", dir=spool_dir)
    try:
        with open(fd, "wb") as out:
            src = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115
            try:
                head = src.read(_HEAD)
                if _garbage(head):
                    raise InputError(label, "unknown flow file format: the stream is "
                                            "neither text nor a binary flow format")
                out.write(head)
                shutil.copyfileobj(src, out, 1 << 20)
            finally:
                if src is not sys.stdin.buffer:
                    src.close()
    except OSError as e:
        os.unlink(name)
        raise InputError(label, f"cannot read: {e.strerror or e}") from None
    except InputError:
        os.unlink(name)
        raise
    return Path(name)


def expand_flow_paths(paths: Iterable[str], spool_dir: str | None = None,
                      dry: bool = False) -> list[FlowPath]:
    """Every flow file the paths name. dry: list the files only, without reading a
    stream (standard input stands as /dev/stdin, a pipe as its own path)."""
    files: list[FlowPath] = []
    for raw in paths:
        p = Path(raw)
        if not raw.strip():  # Path("") is the current directory: never what was meant
            raise InputError("--flows", "an empty path")
        if raw == "-":
            if dry:  # what standard input is: a file redirected into it is an input file
                files.append(FlowPath(Path("/dev/stdin"), "(standard input)", True))
            else:
                files.append(FlowPath(_spool("-", "(standard input)", spool_dir),
                                      "(standard input)", True))
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if not f.name.startswith(".")
                           and not f.is_dir())
            if not found:
                raise InputError(raw, "--flows: the directory holds no files")
            files.extend(FlowPath(f, str(f), False, None if f.is_file() else _not_a_file(f))
                         for f in found)
        elif raw.endswith(("/", os.sep)) and p.exists():
            raise InputError(raw, "--flows: not a directory (a file path given with a "
                                  "trailing slash)")
        elif p.is_file():
            files.append(FlowPath(p, raw, True))
        elif _is_stream(p):
            files.append(FlowPath(p if dry else _spool(raw, raw, spool_dir), raw, True))
        elif any(ch in raw for ch in _GLOB):
            matched = sorted(Path(m) for m in glob.glob(raw, recursive=True))
            found = [m for m in matched if m.is_file() and not m.name.startswith(".")]
            if not found:
                raise InputError(raw, "--flows: the pattern matches no file")
            files.extend(FlowPath(m, str(m), False) for m in found)
        elif p.exists():
            raise InputError(raw, "--flows: not a regular file")
        else:
            raise InputError(raw, "--flows: no such file or directory")
    return files


def input_files(flows: Iterable[str], cluster: Iterable[str], policies: Iterable[str],
                baseline: Iterable[str]) -> list[Path]:
    """Every input file of a run (what exists of it now)."""
    out = [f.path for f in expand_flow_paths(flows, dry=True)]
    for what, paths in (("--cluster", cluster), ("--policies", policies),
                        ("--baseline", baseline)):
        out += expand_paths(paths, what)
    return out
