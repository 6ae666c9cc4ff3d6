"""JSON that DuckDB writes escapes C0 controls but leaves C1 controls and bidirectional
overrides as raw UTF-8; this rewrites them as \\uXXXX escapes. Lossless: a JSON reader gets
the same strings back, and such characters can only stand inside JSON strings. And every
JSON output writes its timestamps one way: RFC 3339 in UTC with `Z`."""

from __future__ import annotations

import mmap
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# UTF-8 of U+0080-U+009F, U+061C, U+200E/F, U+2028/9, U+202A-E, U+2066-9
_RAW = re.compile(rb"\xc2[\x80-\x9f]|\xd8\x9c|\xe2\x80[\x8e\x8f\xa8\xa9\xaa-\xae]"
                  rb"|\xe2\x81[\xa6-\xa9]")


def _escape(m: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(m.group(0).decode("utf-8"))


# The lead bytes of those sequences: found at memchr speed, where the regular expression
# takes a second per 250 MB; almost every file has none of them.
_LEADS = (b"\xc2", b"\xd8\x9c", b"\xe2\x80", b"\xe2\x81")


def _has_raw(path: Path) -> bool:
    if path.stat().st_size == 0:
        return False
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        starts = [i for i in (mm.find(lead) for lead in _LEADS) if i >= 0]
        return bool(starts) and _RAW.search(mm, min(starts)) is not None


def escape_json_file(path: Path) -> None:
    """Rewrite `path` (a file we just wrote) with such characters escaped, if it has any."""
    if not _has_raw(path):
        return
    tmp = path.with_name(path.name + ".esc")
    with path.open("rb") as src, tmp.open("wb") as out:
        for line in src:  # the sequences never span a newline
            out.write(_RAW.sub(_escape, line))
    os.replace(tmp, path)


# RFC 3339 in UTC with `Z`, the one timestamp format of every JSON output; fractional
# seconds only where the time has them
def rfc3339(value: datetime) -> str:
    utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    spec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def json_default(value: Any) -> str:
    """json.dumps(default=...): timestamps as RFC 3339, anything else as text."""
    return rfc3339(value) if isinstance(value, datetime) else str(value)


def rfc3339_sql(column: str) -> str:
    """The same format in SQL, for a TIMESTAMPTZ column written by DuckDB."""
    utc = f"timezone('UTC', {column})"
    return (f"CASE WHEN {column} IS NULL THEN NULL WHEN microsecond({utc}) % 1000000 = 0 "
            f"THEN strftime({utc}, '%Y-%m-%dT%H:%M:%SZ') "
            f"ELSE strftime({utc}, '%Y-%m-%dT%H:%M:%S.%fZ') END")


def json_rows_sql(table: str) -> str:
    """The table's rows with their timestamps in RFC 3339 (JSON outputs)."""
    return (f"SELECT * REPLACE ({rfc3339_sql('first_seen')} AS first_seen, "
            f"{rfc3339_sql('last_seen')} AS last_seen) FROM {table}")
