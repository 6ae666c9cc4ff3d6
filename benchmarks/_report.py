"""Child process of all.py: the time to write the HTML report of one run, in-process.

    python benchmarks/_report.py DATA_DIR REPORT.html RESULT.json

Runs the pipeline (simulator.pipeline.run) on DATA_DIR's workload, then times
simulator.report.outputs.write_reports(result, html=REPORT.html): building the report model
from the run's tables (groups, reasons, suggested fixes replayed for their blast radius)
and rendering and writing the page. Writes {"seconds", "bytes", "pipeline_seconds"} to
RESULT.json. Exits 3 when the report API is not there (all.py then falls back to the
difference between `simulate` runs with and without --report).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> int:
    data, html, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    try:
        from simulator.pipeline import Options, run
        from simulator.report.outputs import write_reports
    except ImportError as e:
        print(f"report API not available: {e}", file=sys.stderr)
        return 3
    t0 = time.perf_counter()
    result = run(Options(flows=[str(data / "flows.parquet")],
                         policies=[str(data / "candidate")], baseline=[str(data / "current")],
                         cluster=[str(data / "cluster.json")], quiet=True,
                         reports=True))  # as `simulate --report` runs it
    t1 = time.perf_counter()
    try:
        write_reports(result, html=str(html))
        t2 = time.perf_counter()
    finally:
        result.close()
    out.write_text(json.dumps({"seconds": t2 - t1, "bytes": html.stat().st_size,
                               "pipeline_seconds": t1 - t0}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
