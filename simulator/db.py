"""DuckDB connection helpers."""

from __future__ import annotations

from typing import Any

import duckdb


def run(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> None:
    """Execute statements whose result we don't need, and drain it: DuckDB refuses further
    work on a connection that holds an unfinished result."""
    con.execute(sql, params).fetchall()


def one(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> tuple[Any, ...]:
    """The single row of a query (drained, see run())."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else ()
