"""Where every record went, per flow file: read, evaluated, and skipped by reason, with the
first few skipped records named (file: line or record). For every file,
records = evaluated + the sum of its skipped counts.

Most reasons are known per record while grouping (early). Two are found only when
endpoints are resolved (late): an address that does not parse, and a flow's label text
that is not a JSON object. With one file they are its own; with several, the files are
scanned again at record granularity to put each skipped record in its file (only when
there is something to name)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from . import db
from .connections import LATE_SKIPS_SQL
from .ingest.sources import FlowSource

EXAMPLES_PER_REASON = 3
INVALID_IP = "invalid IP address"
BAD_LABELS = "labels are not a JSON object"


def _late_skips(con: duckdb.DuckDBPyConnection, src_id: int) -> dict[str, int]:
    rows = con.execute(f"""
        SELECT reason, sum(records) FROM ({LATE_SKIPS_SQL}) WHERE src_id = {src_id}
        GROUP BY 1""").fetchall()
    return {r: int(n) for r, n in rows}


def _late_reason_sql(source: FlowSource) -> str:
    """Per record: the late reason, from the addresses and flow pods found bad."""
    post = source.module.post_columns()

    def side(p: str) -> str:
        ns, pod = post.get(f"{p}_namespace"), post.get(f"{p}_pod")
        labels, kind = post.get(f"{p}_labels"), post.get(f"{p}_kind")
        if not (pod and labels):
            return "false"
        named = f"(({pod}) IS NOT NULL OR lower({kind or 'NULL'}) = 'pod')"
        return f"""({named} AND EXISTS (
            SELECT 1 FROM flow_pod fp WHERE fp.ident_id IS NULL
              AND fp.namespace = coalesce({ns or 'NULL'}, 'default')
              AND fp.pod IS NOT DISTINCT FROM ({pod})
              AND fp.labels IS NOT DISTINCT FROM ({labels})))"""

    return f"""CASE
        WHEN ({post['src_ip']}) IN (SELECT ip_raw FROM ip_info WHERE ip IS NULL)
             OR ({post['dst_ip']}) IN (SELECT ip_raw FROM ip_info WHERE ip IS NULL)
            THEN '{INVALID_IP}'
        WHEN {side('src')} OR {side('dst')} THEN '{BAD_LABELS}' END"""


def _scan(con: duckdb.DuckDBPyConnection, source: FlowSource, server_ports: Sequence[int],
          late: bool) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """One pass over the source's records with their place: per-file counts and examples."""
    reason = "reason"
    if late:
        reason = f"coalesce(reason, {_late_reason_sql(source)})"
    with db.without_statistics(con, source.has_float_columns):
        rows = con.execute(f"""
            WITH r AS ({source.examples_sql(server_ports, with_rows=late)}),
            why AS (SELECT filename, place, {reason} AS reason FROM r),
            -- the first few places of each reason, kept as they come (bounded memory
            -- however many records a reason has)
            numbered AS (
                SELECT filename, reason, place,
                    CASE WHEN reason IS NOT NULL
                         THEN TRY_CAST(regexp_extract(place, '[0-9]+') AS BIGINT) END AS pos
                FROM why)
            SELECT filename, reason, count(*) AS n,
                   arg_min(place, pos, {EXAMPLES_PER_REASON})
                       FILTER (WHERE reason IS NOT NULL) AS places
            FROM numbered GROUP BY ALL""").fetchall()
    per_file: dict[str, dict[str, Any]] = {}
    examples: list[str] = []
    for filename, why, n, places in sorted(rows, key=lambda r: (r[0], r[1] or "")):
        entry = per_file.setdefault(filename, {"records": 0, "skipped": {}})
        entry["records"] += int(n)
        if why is not None:
            entry["skipped"][why] = int(n)
            examples += [f"{source.label(filename)}: {p}: {why}" for p in places]
    return per_file, examples


def account(con: duckdb.DuckDBPyConnection, sources: Sequence[FlowSource],
            server_ports: Sequence[int]) -> tuple[list[dict[str, Any]], list[str]]:
    """[{file, format, records, evaluated, skipped: {reason: n}}], examples of skipped
    records."""
    files: list[dict[str, Any]] = []
    examples: list[str] = []
    for i, s in enumerate(sources):
        totals = dict(con.execute(f"""
            SELECT coalesce(skip_reason, ''), sum(records)::BIGINT FROM tuples
            WHERE src_id = {i} GROUP BY 1""").fetchall())
        late = _late_skips(con, i)
        early = {r: int(n) for r, n in totals.items() if r}
        one = {s.files[0]: {"records": int(sum(totals.values())), "skipped": {**early, **late}}}
        if early or late or len(s.files) > 1:
            per_file, ex = _scan(con, s, server_ports, late=bool(late))
            examples += ex
            if len(s.files) == 1:
                # the tuples' counts are exact (a row of a capture's skipped packets stands
                # for several); the scan names the places
                per_file = one
        else:
            per_file = one
        # lines a line reader could not take at all: read, and skipped
        for filename, reason, n, places in con.execute(f"""
                SELECT filename, reason, count(*), arg_min('line ' || line, line,
                                                           {EXAMPLES_PER_REASON})
                FROM line_rejects WHERE src_id = {i} GROUP BY ALL ORDER BY ALL""").fetchall():
            entry = per_file.setdefault(filename, {"records": 0, "skipped": {}})
            entry["records"] += int(n)
            entry["skipped"][reason] = entry["skipped"].get(reason, 0) + int(n)
            examples += [f"{s.label(filename)}: {p}: {reason}" for p in places]
        for f in s.files:
            entry = per_file.get(f, {"records": 0, "skipped": {}})
            skipped = dict(sorted(entry["skipped"].items()))
            files.append({"file": s.label(f), "format": s.format,
                          "records": entry["records"],
                          "evaluated": entry["records"] - sum(skipped.values()),
                          "skipped": skipped})
    return files, examples


def evaluated_records(con: duckdb.DuckDBPyConnection) -> int:
    """Records that reached a connection (every one not skipped)."""
    return int(db.one(con, "SELECT coalesce(sum(flows), 0) FROM conns")[0])
