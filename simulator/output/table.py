"""The connections table as Parquet, CSV or JSON Lines (chosen by file extension)."""

from __future__ import annotations

from pathlib import Path

import duckdb

from .. import db
from ..errors import UsageError

FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".ndjson": "json"}


def _csv_safe_select(con: duckdb.DuckDBPyConnection) -> str:
    """Text cells that a spreadsheet would run as a formula get a leading quote; lists
    become JSON text."""
    cols = con.execute("DESCRIBE result_public").fetchall()
    exprs = []
    for name, type_, *_ in cols:
        if type_.endswith("[]"):
            exprs.append(f'CAST(to_json("{name}") AS VARCHAR) AS "{name}"')
        elif type_ == "VARCHAR" or type_.startswith("ENUM("):  # names and reasons are ENUMs
            exprs.append(f"""CASE WHEN regexp_matches("{name}", '^[=+\\-@\\t\\r]')
                             THEN '''' || "{name}" ELSE "{name}" END AS "{name}\"""")
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
    path = Path(path)
    fmt = check_extension(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    target = str(path).replace("'", "''")
    if fmt == "csv":
        db.run(con, f"COPY ({_csv_safe_select(con)}) TO '{target}' (FORMAT csv, HEADER)")
    elif fmt == "json":
        db.run(con, f"COPY (SELECT * FROM result_public) TO '{target}' (FORMAT json)")
    else:
        db.run(con, f"COPY (SELECT * FROM result_public) TO '{target}' (FORMAT parquet)")
