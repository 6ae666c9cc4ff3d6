"""Child process of all.py: time the floor query (run.FLOOR_SQL) on one Parquet file.

    python benchmarks/_floor.py FLOWS.parquet REPEAT

Prints one JSON line: {"times": [...], "groups": N}. Query time only (connect and import
excluded), as run.py measures it in-process.
"""

from __future__ import annotations

import json
import sys
import time

import duckdb
from run import FLOOR_SQL


def main() -> int:
    path, repeat = sys.argv[1], int(sys.argv[2])
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    sql = FLOOR_SQL.format(path=path.replace("'", "''"))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - t0)
    groups = con.execute("SELECT count(*) FROM floor_conns").fetchall()[0][0]
    print(json.dumps({"times": times, "groups": groups}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
