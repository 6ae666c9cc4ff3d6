"""Child process of all.py: run `simulate` with its arguments, timing the pipeline's phases.

    python benchmarks/_phases.py PHASES.json SIMULATE-ARGS...

Wraps, by module attribute, the functions simulator.pipeline calls, and writes their wall
times to PHASES.json:

* parse_manifests   -- the policy sets and the cluster snapshot: what is left of their
                       parsing when the run asks for them (worker processes start on them
                       while DuckDB is imported)
* read_flows        -- the scan of the flow records into tuples
* resolve           -- endpoint resolution, endpoints, orienting tuples into connections
* policy_tables     -- policy IR -> relational tables
* evaluate          -- simulator.evaluate.evaluate: selectors, CIDRs, rule hits, verdicts
* usage             -- simulator.evaluate.record_usage (which a run writing no report
                       leaves to the reports: called here as a report would)
* diff              -- simulator.diff.build_result: baseline vs candidate, the result table
* total             -- the whole CLI main(), output writing included

The process's own wall time (what all.py measures from outside) adds interpreter start-up
and imports. Must run from a file, not `python -c` (DuckDB shows its progress bar for -c).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any

TIMES: dict[str, float] = {}


def wrap(owner: Any, attr: str, phase: str) -> None:
    fn = getattr(owner, attr)

    @functools.wraps(fn)
    def timed(*a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            TIMES[phase] = TIMES.get(phase, 0.0) + time.perf_counter() - t0

    setattr(owner, attr, timed)


def main() -> int:
    out, args = sys.argv[1], sys.argv[2:]
    t0 = time.perf_counter()
    from simulator import connections, diff, evaluate, manifests, pipeline
    from simulator.cli import main as cli_main

    wrap(manifests.PendingManifests, "result", "parse_manifests")
    wrap(connections, "build_tuples", "read_flows")
    wrap(pipeline, "register_policy_tables", "policy_tables")
    wrap(evaluate, "evaluate", "evaluate")
    wrap(evaluate, "record_usage", "usage")
    wrap(diff, "build_result", "diff")
    # resolve: from the catalog of flow pods to `conns`, timed as the span from the end of
    # build_tuples to the records' accounting that follows orient()
    marks: dict[str, float] = {}
    orig_build, orig_account = connections.build_tuples, pipeline.account

    def after_build(*a: Any, **k: Any) -> Any:
        try:
            return orig_build(*a, **k)
        finally:
            marks["resolve_start"] = time.perf_counter()

    def before_account(*a: Any, **k: Any) -> Any:
        marks.setdefault("resolve_end", time.perf_counter())
        return orig_account(*a, **k)

    connections.build_tuples = after_build
    pipeline.account = before_account
    # a run that writes no report leaves the rule usage to the reports (ensure_usage):
    # done here as a report would, so that evaluation counts it as it always did
    orig_run = pipeline.run

    def run_with_usage(*a: Any, **k: Any) -> Any:
        result = orig_run(*a, **k)
        evaluate.ensure_usage(result.con)
        return result

    pipeline.run = run_with_usage
    sys.argv = ["simulate", *args]
    rc = 0
    try:
        cli_main()
    except SystemExit as e:
        rc = int(e.code or 0) if not isinstance(e.code, str) else 1
    TIMES["total"] = time.perf_counter() - t0
    if "resolve_start" in marks and "resolve_end" in marks:
        TIMES["resolve"] = marks["resolve_end"] - marks["resolve_start"]
    with open(out, "w") as fh:
        json.dump({"rc": rc, "phases": TIMES}, fh, indent=2)
    return rc


if __name__ == "__main__":
    sys.exit(main())
