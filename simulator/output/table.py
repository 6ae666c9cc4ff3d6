"""The connections table as Parquet, CSV or JSON Lines (chosen by file extension)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .. import db
from ..errors import UsageError
from ..untrusted import INERT_MACRO_SQL
from .files import atomic_output
from .jsonsafe import escape_json_file

FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".ndjson": "json"}


def _csv_safe_select(con: duckdb.DuckDBPyConnection) -> str:
    """Text cells are made inert (control and bidi characters escaped: no NUL, no ESC
    reaches the file), and a cell that a spreadsheet would run as a formula gets a
    leading quote; lists become JSON text."""
    db.run(con, INERT_MACRO_SQL)
    cols = con.execute("DESCRIBE result_public").fetchall()
    exprs = []
    for name, type_, *_ in cols:
        if type_.endswith("[]"):
            exprs.append(f'inert(CAST(to_json("{name}") AS VARCHAR)) AS "{name}"')
        elif type_ == "VARCHAR" or type_.startswith("ENUM("):  # names and reasons are ENUMs
            text = f'inert(CAST("{name}" AS VARCHAR))'
            exprs.append(f"""CASE WHEN regexp_matches("{name}", '^[=+\\-@\\t\\r]')
                             THEN '''' || {text} ELSE {text} END AS "{name}\"""")
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
            db.run(con, f"COPY (SELECT * FROM result_public) TO '{target}' (FORMAT json)")
            escape_json_file(tmp)
        else:
            db.run(con, f"COPY (SELECT * FROM result_public) TO '{target}' (FORMAT parquet)")
