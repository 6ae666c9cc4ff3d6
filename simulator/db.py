"""DuckDB connection helpers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

T = TypeVar("T")


def run(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> None:
    """Execute statements whose result we don't need, and drain it: DuckDB refuses further
    work on a connection that holds an unfinished result."""
    con.execute(sql, params).fetchall()


def one(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> tuple[Any, ...]:
    """The single row of a query (drained, see run())."""
    rows = con.execute(sql, params).fetchall()
    return rows[0] if rows else ()


def arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """A query's result as an Arrow table (the method's name differs across DuckDB
    versions)."""
    relation = con.sql(sql)
    fetch = getattr(relation, "to_arrow_table", None) or relation.arrow
    return fetch()


def rows(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """A query's rows as dicts keyed by column name."""
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def threads(con: duckdb.DuckDBPyConnection) -> int:
    """The threads DuckDB runs queries on."""
    return int(one(con, "SELECT current_setting('threads')")[0])


def in_parallel(con: duckdb.DuckDBPyConnection,
                works: Sequence[Callable[[duckdb.DuckDBPyConnection], T]]) -> list[T]:
    """Run independent pieces of work at once, each given a connection: the first this
    one (what only it sees, its registered Arrow tables and temporary tables, stays
    usable), the others a cursor of their own in another thread (start()). Worth it where
    each piece runs on one core (statements over small tables, one row group each: DuckDB
    scans a row group on one thread). With DuckDB on one thread, one after the other. A
    failing piece (or a signal) stops the others' statements before it is raised."""
    if len(works) < 2 or threads(con) < 2:
        return [work(con) for work in works]
    others = [start(con, work) for work in works[1:]]
    try:
        first = works[0](con)
        return [first, *[other.wait() for other in others]]
    except BaseException:
        for other in others:
            other.stop()
        raise


class Background:
    """A piece of work running on a cursor of its own in another thread (see start())."""

    def __init__(self, con: duckdb.DuckDBPyConnection,
                 work: Callable[[duckdb.DuckDBPyConnection], T]) -> None:
        self._cur = con.cursor()
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers=1)
        run(self._cur, "SET enable_progress_bar = false")
        self._future = self._pool.submit(work, self._cur)

    def wait(self) -> Any:
        """The work's result; its exception is raised here."""
        try:
            return self._future.result()
        finally:
            self._close()

    def stop(self) -> None:
        """Interrupt the work's statement and wait for it to end; its outcome is dropped.
        (After wait(), nothing is left to stop.)"""
        if self._closed:
            return
        with contextlib.suppress(duckdb.Error):
            self._cur.interrupt()
        with contextlib.suppress(BaseException):
            self._future.result()
        self._close()

    def _close(self) -> None:
        self._closed = True
        self._pool.shutdown()
        self._cur.close()


def start(con: duckdb.DuckDBPyConnection,
          work: Callable[[duckdb.DuckDBPyConnection], T]) -> Background:
    """Start work(cursor) in another thread while this one goes on (DuckDB releases the
    GIL while it runs a statement). What work creates is seen by `con` once it ends."""
    return Background(con, work)


def enum_type(con: duckdb.DuckDBPyConnection, name: str, values_sql: str) -> None:
    """(Re)create ENUM type `name` from a query of its distinct, non-NULL text values.

    ENUMs compare, concatenate and fetch as text. Parquet writes them as the same
    dictionary-encoded strings, without hashing each row's string, and joins carry them
    as small integers."""
    run(con, f"DROP TYPE IF EXISTS {name}")
    run(con, f"CREATE TYPE {name} AS ENUM ({values_sql})")


BIGINT_MAX = 2**63 - 1


def saturated_sum(col: str) -> str:
    """SQL: sum(col) as BIGINT, capped at its largest value instead of failing the run
    (least() would turn a NULL sum, unknown bytes, into the cap)."""
    return f"CASE WHEN sum({col}) > {BIGINT_MAX} THEN {BIGINT_MAX} ELSE sum({col}) END::BIGINT"


@contextmanager
def without_statistics(con: duckdb.DuckDBPyConnection, when: bool) -> Iterator[None]:
    """Run the block with DuckDB's statistics propagation off (when `when`). Parquet's
    column statistics leave NaN out, and with them DuckDB folds a range test on a float
    column to a constant: a NaN would pass every check. Off only where a float column is
    read, since the statistics speed up the grouping of integer keys."""
    if not when:
        yield
        return
    run(con, "SET disabled_optimizers = 'statistics_propagation'")
    try:
        yield
    finally:
        run(con, "RESET disabled_optimizers")
