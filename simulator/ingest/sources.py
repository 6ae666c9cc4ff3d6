"""Find flow files, detect their format from their columns, and build one SQL SELECT per
group of same-shaped files that yields pipeline records (schema.RECORD_COLUMNS)."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ..errors import InputError
from . import normalized, vpc

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz")
FORMATS = {"vpc-parquet": vpc, "normalized": normalized}


@dataclass(frozen=True)
class FlowSource:
    format: str
    files: tuple[str, ...]
    select_sql: str  # yields RECORD_COLUMNS
    examples_sql: str  # yields (file, row, skip_reason) for skipped records


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


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def reader_sql(kind: str, files: Iterable[str], extra: str = "") -> str:
    listed = "[" + ", ".join(_sql_str(f) for f in files) + "]"
    if kind == "parquet":
        return f"read_parquet({listed}, union_by_name = true{extra})"
    return f"read_csv({listed}, header = true, union_by_name = true{extra})"


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


def _examples_sql(kind: str, files: list[str], reason_sql: str) -> str:
    """Where skipped records are: Parquet has no lines, so a record is named by its
    1-based row number; a CSV record by its line (the header is line 1)."""
    if kind == "parquet":
        reader = reader_sql(kind, files, ", filename = true, file_row_number = true")
        place = "'record ' || (file_row_number + 1)"
    else:
        reader = reader_sql(kind, files, ", filename = true")
        place = "'line ' || (row_number() OVER (PARTITION BY filename) + 1)"
    return f"SELECT filename, {place} AS place, {reason_sql} AS reason FROM {reader}"


def open_flow_sources(con: duckdb.DuckDBPyConnection, paths: Iterable[str]) -> list[FlowSource]:
    groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[str]] = {}
    for path in _expand(paths):
        kind, columns = _describe(con, path)
        fmt = detect(path, columns)
        groups.setdefault((fmt, kind, tuple(sorted(columns.items()))), []).append(str(path))
    sources = []
    for (fmt, kind, cols), files in groups.items():
        module = FORMATS[fmt]
        columns = dict(cols)
        sources.append(FlowSource(
            format=fmt, files=tuple(files),
            select_sql=module.select(reader_sql(kind, files), columns),
            examples_sql=_examples_sql(kind, files, module.skip_reason(columns)),
        ))
    return sources
