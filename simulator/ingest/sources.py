"""Find flow files, detect their format from their columns, and build, per group of
same-shaped files, the SQL that reads their records and groups them into tuples.

A format module gives three things: raw_columns (cheap per-record expressions to group
on), measures (per-record numbers to aggregate) and post_columns (the pipeline's
normalized tuple columns, computed once per group from the raw ones). Everything costly
(string clean-up, verdict mapping, skip reasons) is therefore paid per group, not per
record.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import duckdb

from ..errors import InputError
from . import normalized, vpc
from .schema import IDENTITY_COLUMNS

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz")
FORMATS: dict[str, ModuleType] = {"vpc-parquet": vpc, "normalized": normalized}
EPHEMERAL_MIN = 32768

# Columns every source's tuple query yields, in this order.
TUPLE_COLUMNS = ("skip_reason", "src_ip", "dst_ip", "sp", "dp", "proto", "observed",
                 "is_reply", "syn_ack") + IDENTITY_COLUMNS + (
                 "records", "packets", "bytes", "t_first", "t_last_start", "t_last")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def reader_sql(kind: str, files: Iterable[str], extra: str = "") -> str:
    listed = "[" + ", ".join(_sql_str(f) for f in files) + "]"
    if kind == "parquet":
        return f"read_parquet({listed}, union_by_name = true{extra})"
    return f"read_csv({listed}, header = true, union_by_name = true{extra})"


def fold_sql(server_ports: Sequence[int]) -> str:
    """Fold an ephemeral client port to -1, so that a connection's records collapse into
    one tuple per direction whatever ports its clients used. Declared container ports in
    the ephemeral range are servers, never folded; neither is a port whose record says
    (by flag or TCP flags) that it is the server's side."""
    keep = ", ".join(str(p) for p in sorted(set(server_ports))) or "-1"
    return f"""
        CASE WHEN src_port >= {EPHEMERAL_MIN} AND dst_port < {EPHEMERAL_MIN}
                  AND is_reply IS DISTINCT FROM true AND coalesce(tcp_flags & 18, 0) <> 18
                  AND src_port NOT IN ({keep})
             THEN -1 ELSE src_port END AS sp,
        CASE WHEN dst_port >= {EPHEMERAL_MIN} AND src_port < {EPHEMERAL_MIN}
                  AND is_reply IS DISTINCT FROM false AND coalesce(tcp_flags & 18, 0) <> 2
                  AND dst_port NOT IN ({keep})
             THEN -1 ELSE dst_port END AS dp,
        tcp_flags & 18 AS syn_ack"""


@dataclass(frozen=True)
class FlowSource:
    format: str
    kind: str  # parquet | csv
    files: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]

    @property
    def module(self) -> ModuleType:
        return FORMATS[self.format]

    def _rows_sql(self, server_ports: Sequence[int], extra_reader: str = "",
                  extra_cols: str = "") -> str:
        cols = dict(self.columns)
        raw = ",\n            ".join(f"{e} AS {n}" for n, e in {
            **self.module.raw_columns(cols), **self.module.measures(cols)}.items())
        return f"""
        SELECT *, {fold_sql(server_ports)} FROM (
            SELECT {raw}{extra_cols}
            FROM {reader_sql(self.kind, self.files, extra_reader)})"""

    def tuples_sql(self, server_ports: Sequence[int], *, by_time: bool = False,
                   row_filter: str | None = None) -> str:
        """Records grouped into tuples (TUPLE_COLUMNS, plus t_start when by_time)."""
        cols = dict(self.columns)
        raw_names = [n for n in self.module.raw_columns(cols)
                     if n not in ("src_port", "dst_port", "tcp_flags")]
        post = self.module.post_columns()
        keys = raw_names + ["sp", "dp", "syn_ack"] + (["t_start"] if by_time else [])
        where = ""
        if row_filter:
            where = "WHERE " + row_filter.format(src_ip=post["src_ip"], dst_ip=post["dst_ip"])
        select = []
        for c in TUPLE_COLUMNS:
            if c in post:
                select.append(f"{post[c]} AS {c}")
            elif c in ("sp", "dp"):
                select.append(f"coalesce({c}, 0) AS {c}")
            elif c in IDENTITY_COLUMNS:
                select.append(f"NULL::VARCHAR AS {c}")
            else:
                select.append(c)
        if by_time:
            select.append("t_start")
        return f"""
        SELECT {', '.join(select)}
        FROM (
            SELECT {', '.join(keys)},
                count(*) AS records, sum(packets) AS packets, sum(bytes) AS bytes,
                min(t_start) AS t_first, max(t_start) AS t_last_start,
                max(coalesce(t_end, t_start)) AS t_last
            FROM ({self._rows_sql(server_ports)}) rows
            {where}
            GROUP BY {', '.join(keys)})"""

    def examples_sql(self, server_ports: Sequence[int]) -> str:
        """(filename, place, reason) of every record, for naming skipped ones. Parquet has
        no lines: a record is named by its 1-based row number; a CSV record by its line
        (the header is line 1)."""
        if self.kind == "parquet":
            extra, place = ", filename = true, file_row_number = true", \
                "'record ' || (file_row_number + 1)"
            cols = ", filename, file_row_number"
        else:
            extra, place = ", filename = true", \
                "'line ' || (row_number() OVER (PARTITION BY filename) + 1)"
            cols = ", filename"
        reason = self.module.post_columns()["skip_reason"]
        return (f"SELECT filename, {place} AS place, {reason} AS reason "
                f"FROM ({self._rows_sql(server_ports, extra, cols)})")


def _expand(paths: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file()
                           and f.name.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES))
            if not found:
                raise InputError(p, "--flows: directory holds no .parquet or .csv files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif any(ch in raw for ch in "*?["):
            matched = sorted(Path(m) for m in glob.glob(raw, recursive=True))
            if not matched:
                raise InputError(raw, "--flows: pattern matches no file")
            files.extend(m for m in matched if m.is_file())
        else:
            raise InputError(p, "--flows: no such file or directory")
    return files


def _describe(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[str, dict[str, str]]:
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        kind = "parquet"
    elif name.endswith(CSV_SUFFIXES):
        kind = "csv"
    else:
        with path.open("rb") as fh:
            kind = "parquet" if fh.read(4) == b"PAR1" else "unknown"
    if kind == "unknown":
        raise InputError(path, "unknown flow file format: expected AWS VPC flow logs in "
                               "Parquet or a normalized flow table (.parquet or .csv)")
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {reader_sql(kind, [str(path)])}").fetchall()
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise InputError(path, f"not a readable {kind.upper()} file: {first}") from None
    return kind, {str(r[0]).lower(): str(r[1]) for r in rows}


def detect(path: Path, columns: dict[str, str]) -> str:
    for name, module in FORMATS.items():
        if module.matches(columns):
            return name
    expected = "; ".join(f"{n}: {', '.join(m.REQUIRED)}" for n, m in FORMATS.items())
    raise InputError(path, f"unknown flow schema (columns: {', '.join(sorted(columns))}); "
                           f"expected the columns of one of — {expected}")


def open_flow_sources(con: duckdb.DuckDBPyConnection, paths: Iterable[str]) -> list[FlowSource]:
    groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[str]] = {}
    for path in _expand(paths):
        kind, columns = _describe(con, path)
        fmt = detect(path, columns)
        groups.setdefault((fmt, kind, tuple(sorted(columns.items()))), []).append(str(path))
    return [FlowSource(fmt, kind, tuple(files), cols)
            for (fmt, kind, cols), files in groups.items()]
