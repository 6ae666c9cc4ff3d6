"""Benchmark `simulate` against the bare DuckDB floor on one synthetic workload.

    python benchmarks/run.py [--flows N] [--data DIR]

Generates the workload with benchmarks/generate.py if DIR has none (or one of another
size), then measures, on the same flows.parquet:

* floor      -- one bare DuckDB query grouping the records into distinct connections
                (best of 3, in this process, query time only; two runs before the simulate
                runs and one after, so a change in background load biases the ratio less)
* simulate   -- the full `simulate ... --quiet` run as a child process, from process start
                to exit (best of --repeat), with the child's peak RSS
* --help     -- `simulate --help` wall time (best of 5): the CLI's start-up cost

and prints a table of figure, measured, target and ratio. It also checks the output
Parquet (non-empty, has `change` and `candidate`) and prints the count per change class.
Results are written to OUT/results.json as well.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402
from _child import compile_package, run_child, simulate_cmd  # noqa: E402

TARGET_RATIO = 3.0  # simulate wall time / floor at 10M flows
TARGET_HELP_S = 0.5

FLOOR_SQL = """
CREATE OR REPLACE TEMP TABLE floor_conns AS
SELECT srcaddr, dstaddr, dstport, protocol, action,
       count(*) AS flows, sum(bytes) AS bytes, sum(packets) AS packets,
       min(start) AS first_seen, max("end") AS last_seen
FROM read_parquet('{path}')
GROUP BY srcaddr, dstaddr, dstport, protocol, action
"""


# ----------------------------------------------------------------------------- helpers


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def fmt_mb(x: int | None) -> str:
    return "-" if x is None else f"{x / 2**20:,.0f} MiB"


def machine() -> dict[str, Any]:
    model = platform.processor() or "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) * 1024
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_bytes": mem,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
    }


def ensure_data(data: Path, flows: int, regenerate: bool) -> dict[str, Any]:
    manifest = data / "manifest.json"
    have = (data / "flows.parquet").exists() and (data / "cluster.json").exists()
    info: dict[str, Any] = {}
    if manifest.exists():
        info = json.loads(manifest.read_text())
    if have and not regenerate and (not info or info.get("flows") == flows):
        return info
    print(f"generating {flows:,} flows into {data} ...", flush=True)
    t0 = time.perf_counter()
    info = generate.generate(data, flows, 5000, 100, 500, quiet=True)
    print(
        f"  generated in {time.perf_counter() - t0:.1f} s "
        f"({info['connections']:,} connections, {info['flows_parquet_mb']} MB)",
        flush=True,
    )
    return info


# --------------------------------------------------------------------------------- main


def time_floor(path: Path, repeat: int) -> list[float]:
    """Query time of the floor, best of `repeat`, in a child process (_floor.py): DuckDB's
    memory in this process would count in every later child's peak RSS (Linux charges the
    parent's pages at fork to the child's ru_maxrss)."""
    r = subprocess.run([sys.executable, str(HERE / "_floor.py"), str(path), str(repeat)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("floor failed:\n" + r.stderr[-3000:])
    res = json.loads(r.stdout.strip().splitlines()[-1])
    times = res["times"]
    print(f"  floor: {res['groups']:,} groups; runs " + ", ".join(f"{t:.2f}" for t in times),
          flush=True)
    return times


def floor_child_rss(path: Path) -> int:
    """Peak RSS of a fresh Python process that runs the floor query once."""
    script = (
        "import duckdb; con = duckdb.connect(); con.execute('SET enable_progress_bar = false'); "
        f"con.execute({FLOOR_SQL.format(path=str(path).replace(chr(39), chr(39) * 2))!r})"
        ".fetchall()"
    )
    r = run_child([sys.executable, "-c", script], timeout=600)
    if r["rc"] != 0:
        print("  floor child failed: " + r["stderr"][-500:], file=sys.stderr)
        return 0
    return r["peak_rss"]


PROFILE_SCRIPT = """
import cProfile, pstats, sys, time

STEPS = []
try:  # time every statement the pipeline sends through simulator.db, by calling function
    import simulator.db as _db

    def _wrap(fn):
        def timed(con, sql, *a, **k):
            t0 = time.perf_counter()
            try:
                return fn(con, sql, *a, **k)
            finally:
                f = sys._getframe(1)
                where = f"{{f.f_code.co_filename.rsplit('/', 1)[-1]}}:{{f.f_code.co_name}}"
                head = " ".join(str(sql).split())[:90]
                STEPS.append((time.perf_counter() - t0, where, head))
        return timed

    _db.run = _wrap(_db.run)
    _db.one = _wrap(_db.one)
except ImportError:
    pass

pr = cProfile.Profile()
pr.enable()
from simulator.cli import main
sys.argv = {argv!r}
try:
    main()
except SystemExit:
    pass
pr.disable()
pr.dump_stats({prof!r})
print("== SQL statements via simulator.db, slowest first ==")
total = sum(s[0] for s in STEPS)
print(f"{{len(STEPS)}} statements, {{total:.2f}} s")
for secs, where, head in sorted(STEPS, reverse=True)[:25]:
    print(f"{{secs:8.2f}} s  {{where:<40}} {{head}}")
print()
st = pstats.Stats({prof!r}, stream=sys.stdout)
st.sort_stats("cumulative").print_stats(45)
st.sort_stats("tottime").print_stats(20)
"""


def profile_simulate(sim_args: list[str], out: Path) -> Path:
    """One simulate run under cProfile, with per-SQL-statement timings. The script is run
    from a file: DuckDB turns its progress bar on for `python -c` (no __main__.__file__)."""
    prof = out / "simulate.prof"
    script = out / "_profile_simulate.py"
    script.write_text(PROFILE_SCRIPT.format(argv=["simulate", *sim_args], prof=str(prof)))
    r = run_child([sys.executable, str(script)])
    report = out / "simulate_profile.txt"
    report.write_text(r["stdout"] + "\n" + r["stderr"])
    print(f"  profiled run: {r['seconds']:.2f} s (rc {r['rc']}); report in {report}", flush=True)
    lines = r["stdout"].splitlines()
    for line in lines[:12]:
        print("    " + line)
    return report


def check_output(path: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"exists": path.exists()}
    if not path.exists():
        return res
    con = duckdb.connect()
    src = f"read_parquet('{str(path).replace(chr(39), chr(39) * 2)}')"
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
    res["columns"] = cols
    res["rows"] = con.execute(f"SELECT count(*) FROM {src}").fetchall()[0][0]
    res["missing"] = [c for c in ("change", "candidate") if c not in cols]
    if "change" in cols:
        extra = ", sum(flows)" if "flows" in cols else ", NULL"
        res["changes"] = [
            {"change": c, "connections": n, "flows": f}
            for c, n, f in con.execute(
                f"SELECT change, count(*){extra} FROM {src} GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
        ]
    if "src_kind" in cols and "dst_kind" in cols:
        res["kinds"] = con.execute(
            f"SELECT src_kind, dst_kind, count(*) FROM {src} GROUP BY 1, 2 ORDER BY 3 DESC"
        ).fetchall()
    con.close()
    res["ok"] = res["rows"] > 0 and not res["missing"]
    return res


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    head = ("figure", "measured", "target", "ratio / status")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "  ".join("-" * w for w in widths)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print(line)
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="simulate vs. DuckDB floor benchmark")
    ap.add_argument("--flows", type=int, default=10_000_000)
    ap.add_argument("--data", type=Path, default=HERE / "data")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--repeat", type=int, default=2, help="simulate runs (best of)")
    ap.add_argument("--floor-repeat", type=int, default=3)
    ap.add_argument("--help-repeat", type=int, default=5)
    ap.add_argument("--regenerate", action="store_true", help="regenerate the data")
    ap.add_argument("--timeout", type=float, default=3600, help="per simulate run, seconds")
    ap.add_argument(
        "--cmd", default=None, help="command to run instead of `simulate` (shell-quoted string)"
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also run simulate once under cProfile (OUT/simulate_profile.txt)",
    )
    ap.add_argument("--skip-simulate", action="store_true", help="only generate + floor")
    args = ap.parse_args(argv)

    data: Path = args.data.resolve()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    info = ensure_data(data, args.flows, args.regenerate)
    flows_path = data / "flows.parquet"
    n_flows = (
        info.get("flows")
        or duckdb.sql(f"SELECT count(*) FROM read_parquet('{flows_path}')").fetchall()[0][0]
    )
    mach = machine()
    print(
        f"machine: {mach['cpus']} CPUs, {mach['cpu_model']}, "
        f"{fmt_mb(mach['mem_bytes'])} RAM; duckdb {mach['duckdb']}",
        flush=True,
    )
    print(f"workload: {n_flows:,} flow records in {flows_path}", flush=True)

    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    if load0 and load0[0] > 0.5:
        print(
            f"WARNING: load average {load0[0]:.2f} before starting: other processes compete "
            "for the CPUs, absolute times will be inflated",
            flush=True,
        )
    results: dict[str, Any] = {
        "machine": mach,
        "workload": info,
        "flows": n_flows,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

    print("timing floor ...", flush=True)
    # floor runs are split around the simulate runs (all before with --skip-simulate), so a
    # change in background load between the phases biases the ratio less
    n_after = 0 if args.skip_simulate else args.floor_repeat // 3
    floor_runs = time_floor(flows_path, args.floor_repeat - n_after)
    floor = min(floor_runs)
    floor_rss = floor_child_rss(flows_path)
    results["floor_peak_rss_bytes"] = floor_rss
    print(f"  floor process peak RSS: {fmt_mb(floor_rss)}", flush=True)

    sim = None
    help_s = None
    check: dict[str, Any] = {}
    if not args.skip_simulate:
        cmd = shlex.split(args.cmd) if args.cmd else simulate_cmd()
        compile_package()
        print(f"simulate command: {' '.join(cmd)}", flush=True)
        print("timing simulate --help ...", flush=True)
        helps = [run_child([*cmd, "--help"], timeout=60) for _ in range(args.help_repeat)]
        if any(h["rc"] != 0 for h in helps):
            print(helps[0]["stderr"][-2000:], file=sys.stderr)
        help_s = min(h["seconds"] for h in helps)
        results["help_seconds"] = help_s

        conns = out / "conns.parquet"
        sim_args = [
            "--flows",
            str(flows_path),
            "--cluster",
            str(data / "cluster.json"),
            "--policies",
            str(data / "candidate"),
            "--baseline",
            str(data / "current"),
            "--out",
            str(conns),
            "--quiet",
        ]
        sim_cmd = [*cmd, *sim_args]
        runs = []
        for i in range(args.repeat):
            if conns.exists():
                conns.unlink()
            print(f"timing simulate run {i + 1}/{args.repeat} ...", flush=True)
            r = run_child(sim_cmd, timeout=args.timeout)
            print(
                f"  {r['seconds']:.2f} s, peak RSS {fmt_mb(r['peak_rss'])}, rc {r['rc']}",
                flush=True,
            )
            runs.append(r)
            if r["rc"] != 0:
                print("simulate failed:\n" + r["stderr"][-4000:], file=sys.stderr)
                break
        ok_runs = [r for r in runs if r["rc"] == 0]
        results["simulate_runs"] = [{k: r[k] for k in ("seconds", "rc", "peak_rss")} for r in runs]
        if ok_runs:
            best = min(ok_runs, key=lambda r: r["seconds"])
            sim = best["seconds"]
            results["simulate_seconds"] = sim
            results["peak_rss_bytes"] = max(r["peak_rss"] for r in ok_runs)
            if best["stderr"].strip():
                results["simulate_stderr_tail"] = best["stderr"][-2000:]
        if n_after:
            print("timing floor again ...", flush=True)
            floor_runs += time_floor(flows_path, n_after)
            floor = min(floor_runs)
        check = check_output(conns)
        if args.profile and ok_runs:
            print("profiling simulate (cProfile) ...", flush=True)
            prof_args = [*sim_args[:-3], "--out", str(out / "conns_profiled.parquet"), "--quiet"]
            profile_simulate(prof_args, out)
        results["output"] = {k: v for k, v in check.items() if k != "kinds"}

    results["floor_seconds"] = floor
    results["floor_runs"] = floor_runs
    load1 = os.getloadavg() if hasattr(os, "getloadavg") else None
    results["loadavg_before_after"] = [load0, load1]
    ratio = sim / floor if sim and floor else None
    results["ratio"] = ratio
    print()
    rows = [
        (f"floor (DuckDB group-by, best of {args.floor_repeat})", fmt_s(floor), "-", "1.00x"),
        (
            f"simulate end-to-end (best of {args.repeat})",
            fmt_s(sim),
            f"<= {TARGET_RATIO:.0f}x floor",
            "-" if ratio is None else f"{ratio:.2f}x  {'OK' if ratio <= TARGET_RATIO else 'OVER'}",
        ),
        ("floor process peak RSS", fmt_mb(floor_rss), "-", "1.00x"),
        (
            "simulate peak RSS",
            fmt_mb(results.get("peak_rss_bytes")),
            "(report)",
            "-"
            if not (results.get("peak_rss_bytes") and floor_rss)
            else f"{results['peak_rss_bytes'] / floor_rss:.2f}x floor process",
        ),
        (
            "simulate --help start-up",
            fmt_s(help_s),
            f"< {TARGET_HELP_S} s",
            "-"
            if help_s is None
            else f"{help_s / TARGET_HELP_S:.2f}x  {'OK' if help_s < TARGET_HELP_S else 'OVER'}",
        ),
    ]
    print_table(rows)
    if load0 and load1:
        print(
            f"(1-min load average before {load0[0]:.2f}, after {load1[0]:.2f}; "
            f"{os.cpu_count()} CPUs)"
        )
    if ratio is not None:
        print(f"\nRATIO simulate/floor = {ratio:.2f}x (target <= {TARGET_RATIO:.0f}x at 10M flows)")
    if check:
        print()
        if not check.get("exists"):
            print("OUTPUT CHECK FAILED: no output parquet")
        else:
            print(
                f"output: {check['rows']:,} connections, "
                f"{'OK' if check.get('ok') else 'CHECK FAILED'}"
                + (f" (missing columns {check['missing']})" if check.get("missing") else "")
            )
            for c in check.get("changes", []):
                flows_s = "" if c["flows"] is None else f"  {c['flows']:>12,} flows"
                print(f"  {str(c['change']):<24} {c['connections']:>10,} connections{flows_s}")
            if check.get("kinds"):
                print(
                    "  by (src_kind, dst_kind): "
                    + ", ".join(f"{s}->{d}: {n:,}" for s, d, n in check["kinds"][:10])
                )
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults written to {out / 'results.json'}")
    failed = (not args.skip_simulate) and (sim is None or not check.get("ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
