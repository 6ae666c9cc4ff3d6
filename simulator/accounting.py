"""Where every record went, per flow file: read, and skipped by reason, with the first
few skipped records named (file: line or record)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from .connections import LATE_SKIPS_SQL
from .ingest.sources import FlowSource

EXAMPLES_PER_REASON = 3


def _late_skips(con: duckdb.DuckDBPyConnection, src_id: int) -> dict[str, int]:
    rows = con.execute(f"""
        SELECT reason, sum(records) FROM ({LATE_SKIPS_SQL}) WHERE src_id = {src_id}
        GROUP BY 1""").fetchall()
    return {r: int(n) for r, n in rows}


def _scan(con: duckdb.DuckDBPyConnection, source: FlowSource,
          server_ports: Sequence[int]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """One pass over the source's records with their place: per-file counts and examples."""
    rows = con.execute(f"""
        WITH r AS ({source.examples_sql(server_ports)})
        SELECT filename, reason, count(*) AS n,
               list(place ORDER BY TRY_CAST(regexp_extract(place, '[0-9]+') AS BIGINT))
                   FILTER (WHERE reason IS NOT NULL)[1:{EXAMPLES_PER_REASON}] AS places
        FROM r GROUP BY ALL""").fetchall()
    per_file: dict[str, dict[str, Any]] = {}
    examples: list[str] = []
    for filename, reason, n, places in sorted(rows, key=lambda r: (r[0], r[1] or "")):
        entry = per_file.setdefault(filename, {"records": 0, "skipped": {}})
        entry["records"] += int(n)
        if reason is not None:
            entry["skipped"][reason] = int(n)
            examples += [f"{filename}: {p}: {reason}" for p in places]
    return per_file, examples


def account(con: duckdb.DuckDBPyConnection, sources: Sequence[FlowSource],
            server_ports: Sequence[int]) -> tuple[list[dict[str, Any]], list[str]]:
    """[{file, format, records, skipped: {reason: n}}], examples of skipped records."""
    files: list[dict[str, Any]] = []
    examples: list[str] = []
    for i, s in enumerate(sources):
        totals = dict(con.execute(f"""
            SELECT coalesce(skip_reason, ''), sum(records)::BIGINT FROM tuples
            WHERE src_id = {i} GROUP BY 1""").fetchall())
        late = _late_skips(con, i)
        early = {r: int(n) for r, n in totals.items() if r}
        if early or len(s.files) > 1:
            per_file, ex = _scan(con, s, server_ports)
            examples += ex
        else:
            per_file = {s.files[0]: {"records": int(sum(totals.values())), "skipped": {}}}
        for f in s.files:
            entry = per_file.get(f, {"records": 0, "skipped": {}})
            if len(s.files) == 1:
                entry["skipped"] = {**early, **late}
            files.append({"file": f, "format": s.format, **entry})
        if late and len(s.files) > 1:
            # found after grouping, so known per source, not per file
            files.append({"file": f"({len(s.files)} {s.format} files)", "format": s.format,
                          "records": 0, "skipped": late})
    return files, examples
