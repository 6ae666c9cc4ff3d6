"""The connections table as Parquet, CSV or JSON Lines (chosen by file extension)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .. import db
from ..errors import UsageError
from ..untrusted import HOSTILE_SQL_CLASS, INERT_MACRO_SQL
from .files import atomic_output
from .jsonsafe import escape_json_file, json_rows_sql

PARQUET_ROW_GROUP = 65536
FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".ndjson": "json"}


def _hostile_columns(con: duckdb.DuckDBPyConnection, text: list[str], lists: list[str]
                     ) -> set[str]:
    """The text columns holding a control or bidi character somewhere: checked on their
    distinct values (names and reasons are ENUMs: a few thousand), so that the escape is
    paid only where it is needed."""
    parts = [f"""SELECT '{n}' AS col FROM (SELECT DISTINCT CAST("{n}" AS VARCHAR) AS v
                 FROM result_public) WHERE regexp_matches(v, '{HOSTILE_SQL_CLASS}')"""
             for n in text]
    parts += [f"""SELECT '{n}' AS col FROM (SELECT DISTINCT CAST(unnest("{n}") AS VARCHAR)
                  AS v FROM result_public) WHERE regexp_matches(v, '{HOSTILE_SQL_CLASS}')"""
              for n in lists]
    if not parts:
        return set()
    return {r[0] for r in con.execute(
        "SELECT DISTINCT col FROM (" + " UNION ALL ".join(parts) + ")").fetchall()}


def _csv_safe_select(con: duckdb.DuckDBPyConnection) -> str:
    """Text cells are made inert (control and bidi characters escaped: no NUL, no ESC
    reaches the file), and a cell that a spreadsheet would run as a formula gets a
    leading quote; lists become JSON text."""
    db.run(con, INERT_MACRO_SQL)
    cols = con.execute("DESCRIBE result_public").fetchall()
    text = [n for n, t, *_ in cols if t == "VARCHAR" or t.startswith("ENUM(")]
    lists = [n for n, t, *_ in cols if t.endswith("[]")]
    hostile = _hostile_columns(con, text, lists)
    exprs = []
    for name, _type, *_ in cols:
        if name in lists:
            value = f'CAST(to_json("{name}") AS VARCHAR)'
            exprs.append(f'{"inert(" + value + ")" if name in hostile else value} AS "{name}"')
        elif name in text:  # names and reasons are ENUMs
            value = f'CAST("{name}" AS VARCHAR)'
            if name in hostile:
                value = f"inert({value})"
            exprs.append(f"CASE WHEN regexp_matches(\"{name}\", '^[=+\\-@\\t\\r]') "
                         f"THEN '''' || {value} ELSE {value} END AS \"{name}\"")
        else:
            exprs.append(f'"{name}"')
    return "SELECT " + ", ".join(exprs) + " FROM result_public"


def check_extension(path: str | Path) -> str:
    """The table format the file name asks for; checked before the run starts."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UsageError(f"--out {path}: unknown extension; use .parquet, .csv or .jsonl")
    return fmt


def write_connections(con: duckdb.DuckDBPyConnection, path: str | Path) -> None:
    fmt = check_extension(path)
    with atomic_output(path) as tmp:
        target = str(tmp).replace("'", "''")
        if fmt == "csv":
            db.run(con, f"COPY ({_csv_safe_select(con)}) TO '{target}' (FORMAT csv, HEADER)")
        elif fmt == "json":
            db.run(con, f"COPY ({json_rows_sql('result_public')}) TO '{target}' "
                        "(FORMAT json)")
            escape_json_file(tmp)
        else:
            # row groups of 64Ki rows: the writer encodes row groups in parallel, and at
            # DuckDB's default (122,880) a few hundred thousand connections keep one core idle
            db.run(con, f"COPY (SELECT * FROM result_public) TO '{target}' "
                        f"(FORMAT parquet, ROW_GROUP_SIZE {PARQUET_ROW_GROUP})")
