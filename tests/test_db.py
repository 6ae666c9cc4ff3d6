"""db.in_parallel: independent statements at once on cursors, the first on the caller's
connection (what only it sees stays usable), results in order, errors never swallowed."""

from __future__ import annotations

import time

import duckdb
import pytest

from simulator import db


def _connect(threads: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    return con


@pytest.mark.parametrize("threads", [1, 2])
def test_results_come_back_in_the_order_of_the_pieces(threads):
    con = _connect(threads)
    con.execute("CREATE TABLE t AS SELECT range AS x FROM range(10)")
    out = db.in_parallel(con, [
        lambda c: db.one(c, "SELECT sum(x) FROM t")[0],
        lambda c: db.one(c, "SELECT max(x) FROM t")[0],
        lambda c: db.one(c, "SELECT count(*) FROM t")[0],
    ])
    assert out == [45, 9, 10]


def test_the_first_piece_keeps_the_callers_temporary_tables_and_the_others_write_shared_ones():
    con = _connect(2)
    con.execute("CREATE TEMP TABLE mine AS SELECT 42 AS x")
    db.in_parallel(con, [
        lambda c: db.run(c, "CREATE TABLE a AS SELECT x FROM mine"),
        lambda c: db.run(c, "CREATE TABLE b AS SELECT 7 AS y"),
    ])
    # both tables are there for the caller once the call returns
    assert db.one(con, "SELECT (SELECT x FROM a), (SELECT y FROM b)") == (42, 7)


def test_a_cursor_cannot_see_the_callers_temporary_tables_and_says_so():
    con = _connect(2)
    con.execute("CREATE TEMP TABLE mine AS SELECT 1 AS x")
    with pytest.raises(duckdb.CatalogException):
        db.in_parallel(con, [lambda c: None, lambda c: db.run(c, "SELECT * FROM mine")])


def test_a_failing_first_piece_stops_the_others_and_raises():
    con = _connect(2)
    slow = "SELECT count(*) FROM range(30000000000) a WHERE a.range % 7 = 3"
    t0 = time.perf_counter()

    def fail_later(c: duckdb.DuckDBPyConnection) -> None:
        time.sleep(0.5)  # the slow statement is running by now
        db.run(c, "SELECT * FROM no_such_table")

    with pytest.raises(duckdb.Error, match="no_such_table"):
        db.in_parallel(con, [fail_later, lambda c: db.run(c, slow)])
    # the slow statement was interrupted, not waited for (it runs for minutes to its end)
    assert time.perf_counter() - t0 < 10


def test_work_started_in_the_background_is_seen_once_waited_for():
    con = _connect(2)
    job = db.start(con, lambda c: db.run(c, "CREATE TABLE bg AS SELECT 5 AS x") or "done")
    assert job.wait() == "done"
    assert db.one(con, "SELECT x FROM bg") == (5,)


def test_background_errors_are_raised_by_wait():
    con = _connect(2)
    job = db.start(con, lambda c: db.run(c, "SELECT * FROM no_such_table"))
    with pytest.raises(duckdb.CatalogException, match="no_such_table"):
        job.wait()


def test_stopping_background_work_interrupts_its_statement():
    con = _connect(2)
    job = db.start(con, lambda c: db.run(
        c, "SELECT count(*) FROM range(30000000000) a WHERE a.range % 7 = 3"))
    time.sleep(0.3)
    t0 = time.perf_counter()
    job.stop()
    assert time.perf_counter() - t0 < 10  # the statement alone would run for minutes
