"""Every figure of issue 5 in one run: prints each with its target and PASS/FAIL.

    python benchmarks/all.py            # figures 1 (10M), 3, 4, 5, 6 and the equality check
    python benchmarks/all.py --full     # also 10^8 flows: figure 1 at 100M and figure 2

Figures (targets from the issue):

1. `simulate` end to end vs the floor (one bare DuckDB GROUP BY over the same Parquet, see
   run.py): <= 3x at 10M flows; <= 2x at 100M flows (--full)
2. peak RSS of `simulate` at 100M flows <= 2 GiB (--full)
3. 12,000 policies over 1,000 namespaces and 3,500 pods with ~1M distinct connections:
   evaluation (policy tables, evaluate, usage, diff) < 10 s; end to end reported
4. speed-up against the per-flow reference evaluator (tests/reference.py) on 1M flows >= 100x
5. `simulate --help` < 0.5 s
6. the HTML report for the 10M-flow run: written in < 2 s, < 20 MB (when `simulate --help`
   lists `--report`; "n/a" before)

plus the equality check: a seeded sample of the 1M run's connections re-evaluated by the
reference, 0 mismatches required.

Every measurement runs in a child process; this driver imports nothing heavy, so the peak
RSS the kernel reports for a child (wait4's ru_maxrss, which on Linux also counts the
parent's pages at fork time) is the child's own to within this driver's few MiB.
Data is generated into --data (git-ignored) when missing. Results go to OUT/all.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _child import compile_package, run_child, simulate_cmd

HERE = Path(__file__).resolve().parent
PY = sys.executable

TARGET_RATIO_10M = 3.0
TARGET_RATIO_100M = 2.0
TARGET_RSS = 2 * 2**30
TARGET_EVAL_S = 10.0
TARGET_SPEEDUP = 100.0
TARGET_HELP_S = 0.5
TARGET_REPORT_S = 2.0
TARGET_REPORT_BYTES = 20 * 10**6

# generate.py's POLICY_VERSION (not imported: it would load DuckDB into this small driver)
POLICY_VERSION = 2
# (flows, pods, namespaces, policies, connections) per workload; None: generate.py's default
WORKLOADS: dict[str, tuple[int, int, int, int, int | None]] = {
    "10m": (10_000_000, 5000, 100, 500, None),
    "1m": (1_000_000, 5000, 100, 500, None),
    "100m": (100_000_000, 5000, 100, 500, None),
    # records are drawn with a skewed popularity, so some connections never get one:
    # 1.1M generated over 6M records leave over 1M observed
    "scale": (6_000_000, 3500, 1000, 12000, 1_100_000),
}


def own_rss() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def say(msg: str) -> None:
    print(msg, flush=True)


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f} s"


def fmt_mib(x: float | None) -> str:
    return "-" if x is None else f"{x / 2**20:,.0f} MiB"


def ensure(data: Path, name: str, regenerate: bool) -> dict[str, Any]:
    flows, pods, namespaces, policies, conns = WORKLOADS[name]
    manifest = data / "manifest.json"
    info = json.loads(manifest.read_text()) if manifest.exists() else {}
    want = {"flows": flows, "pods_arg": pods, "namespaces_arg": namespaces,
            "policies_arg": policies, "connections_arg": conns}
    same = (info.get("flows") == flows and (data / "flows.parquet").exists()
            and all(info.get(k, v) == v for k, v in want.items() if k != "flows"))
    # manifests written by run.py (10M defaults) do not record the arguments
    if same and not regenerate:
        if info.get("policy_version") != POLICY_VERSION:
            say(f"rewriting the policy sets of workload {name} (version {POLICY_VERSION}) ...")
            r = run_child([PY, str(HERE / "generate.py"), "--out", str(data), "--pods",
                           str(pods), "--namespaces", str(namespaces), "--policies",
                           str(policies), "--policies-only"])
            if r["rc"] != 0:
                raise SystemExit("generate.py failed:\n" + r["stderr"][-3000:])
            info = json.loads(manifest.read_text())
        return info
    free = shutil.disk_usage(data.parent if data.parent.exists() else HERE).free
    need = flows * 16  # ~14 bytes per record in zstd Parquet, plus the temporary file
    if free < need:
        raise SystemExit(f"not enough disk for {flows:,} flows in {data}: "
                         f"{free / 1e9:.1f} GB free, ~{need / 1e9:.1f} GB needed")
    say(f"generating workload {name} ({flows:,} flows, {pods} pods, {namespaces} namespaces, "
        f"{policies} policies) into {data} ...")
    cmd = [PY, str(HERE / "generate.py"), "--out", str(data), "--flows", str(flows),
           "--pods", str(pods), "--namespaces", str(namespaces), "--policies", str(policies),
           "--quiet"]
    if conns:
        cmd += ["--connections", str(conns)]
    r = run_child(cmd)
    if r["rc"] != 0:
        raise SystemExit("generate.py failed:\n" + r["stderr"][-3000:])
    info = json.loads(manifest.read_text())
    info.update({k: v for k, v in want.items() if k != "flows"})
    manifest.write_text(json.dumps(info, indent=2) + "\n")
    say(f"  {r['seconds']:.0f} s; {info['connections']:,} connections generated, "
        f"{info['policies_current']:,} + {info['policies_candidate']:,} policies, "
        f"{info['flows_parquet_mb']} MB")
    return info


def floor(path: Path, repeat: int) -> dict[str, Any]:
    r = run_child([PY, str(HERE / "_floor.py"), str(path), str(repeat)])
    if r["rc"] != 0:
        raise SystemExit("floor failed:\n" + r["stderr"][-3000:])
    res = json.loads(r["stdout"].strip().splitlines()[-1])
    res["peak_rss"] = r["peak_rss"]
    say("  floor: " + ", ".join(f"{t:.2f}" for t in res["times"])
        + f" s ({res['groups']:,} groups)")
    return res


def sim_args(data: Path, out_file: Path, report: Path | None = None,
             sets: str = "") -> list[str]:
    """sets: '' for the workload's own policy sets, or 'cilium-'/'mixed-' for their Cilium
    rewrites (cilium_sets.py)."""
    a = ["--flows", str(data / "flows.parquet"), "--cluster", str(data / "cluster.json"),
         "--policies", str(data / f"{sets}candidate"), "--baseline",
         str(data / f"{sets}current"), "--out", str(out_file), "--quiet"]
    if report:
        a += ["--report", str(report)]
    return a


def simulate(cmd: list[str], args: list[str], repeat: int, label: str,
             timeout: float) -> dict[str, Any]:
    runs = []
    for i in range(repeat):
        say(f"  simulate {label} run {i + 1}/{repeat} ...")
        r = run_child([*cmd, *args], timeout=timeout)
        say(f"    {r['seconds']:.2f} s, peak RSS {fmt_mib(r['peak_rss'])}, rc {r['rc']}")
        runs.append(r)
        if r["rc"] != 0:
            say("    simulate failed: " + r["stderr"][-3000:])
            break
    ok = [r for r in runs if r["rc"] == 0]
    return {"runs": [{k: r[k] for k in ("seconds", "rc", "peak_rss")} for r in runs],
            "seconds": min(r["seconds"] for r in ok) if ok else None,
            "peak_rss": max(r["peak_rss"] for r in ok) if ok else None,
            "ok": len(ok) == len(runs)}


def merge_runs(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """simulate() results of single runs as one."""
    runs = [r for p in parts for r in p["runs"]]
    ok = [r for r in runs if r["rc"] == 0]
    return {"runs": runs, "seconds": min((r["seconds"] for r in ok), default=None),
            "peak_rss": max((r["peak_rss"] for r in ok), default=None),
            "ok": all(p["ok"] for p in parts)}


def check_output(path: Path) -> dict[str, Any]:
    code = ("import json, sys; from pathlib import Path; import run; "
            f"print(json.dumps(run.check_output(Path({str(path)!r})), default=str))")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, cwd=HERE)
    if r.returncode != 0:
        return {"ok": False, "error": r.stderr[-2000:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def help_lists_report(cmd: list[str]) -> bool:
    r = subprocess.run([*cmd, "--help"], capture_output=True, text=True)
    return r.returncode == 0 and "--report" in r.stdout


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=HERE / "data",
                    help="10M workload here (as run.py), the others in subdirectories")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--full", action="store_true", help="also the 100M-flow run (figs 1b, 2)")
    ap.add_argument("--repeat", type=int, default=5, help="simulate runs at 10M/1M, best of")
    ap.add_argument("--floor-repeat", type=int, default=3)
    ap.add_argument("--sample", type=int, default=2000, help="connections checked")
    ap.add_argument("--flow-sample", type=int, default=10000,
                    help="records timed with the per-flow reference")
    ap.add_argument("--skip-scale", action="store_true", help="skip figure 3")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--timeout", type=float, default=3600)
    args = ap.parse_args(argv)

    data10: Path = args.data.resolve()
    dirs = {"10m": data10, "1m": data10 / "1m", "100m": data10 / "100m",
            "scale": data10 / "scale"}
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    cmd = simulate_cmd()
    compile_package()
    res: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "command": cmd}
    mach = subprocess.run([PY, "-c", "import json, run; print(json.dumps(run.machine()))"],
                          capture_output=True, text=True, cwd=HERE)
    res["machine"] = json.loads(mach.stdout) if mach.returncode == 0 else {}
    m = res["machine"]
    say(f"machine: {m.get('cpus')} CPUs, {m.get('cpu_model')}, "
        f"{fmt_mib(m.get('mem_bytes'))} RAM; python {m.get('python')}, "
        f"duckdb {m.get('duckdb')}; simulate = {' '.join(cmd)}")
    load0 = os.getloadavg()[0]
    if load0 > 0.5:
        say(f"WARNING: load average {load0:.2f}: other processes compete for the CPUs")
    infos = {"10m": ensure(dirs["10m"], "10m", args.regenerate),
             "1m": ensure(dirs["1m"], "1m", args.regenerate)}
    if not args.skip_scale:
        infos["scale"] = ensure(dirs["scale"], "scale", args.regenerate)
    if args.full:
        infos["100m"] = ensure(dirs["100m"], "100m", args.regenerate)
    res["workloads"] = infos

    # ---- 5. start-up
    say("figure 5: simulate --help ...")
    helps = [run_child([*cmd, "--help"], timeout=60) for _ in range(5)]
    res["help_seconds"] = min(h["seconds"] for h in helps)
    has_report = help_lists_report(cmd)

    # ---- 1. 10M end to end vs floor (+ 6. the report, when the CLI has it)
    say("figure 1: 10M flows ...")
    flows10 = dirs["10m"] / "flows.parquet"
    conns10 = out / "conns-10m.parquet"
    # floor and simulate runs alternate (F S F S ... F), so that a slow spell of the
    # machine weighs on both sides of the ratio
    f10: dict[str, Any] = {"times": []}
    parts = []
    for i in range(max(args.repeat, args.floor_repeat - 1) + 1):
        f = floor(flows10, 1)
        f10.update(f, times=f10["times"] + f["times"])
        if i < args.repeat:
            parts.append(simulate(cmd, sim_args(dirs["10m"], conns10), 1,
                                  f"10M {i + 1}/{args.repeat}", args.timeout))
    s10 = merge_runs(parts)
    rep: dict[str, Any] = {"available": has_report}
    if has_report:
        say("figure 6: the HTML report of the 10M run ...")
        html = out / "report-10m.html"
        rj = out / "report-10m.json"
        best_rep: dict[str, Any] | None = None
        for _ in range(args.repeat):
            rr = run_child([PY, str(HERE / "_report.py"), str(dirs["10m"]), str(html),
                            str(rj)], timeout=args.timeout)
            if rr["rc"] != 0:
                break
            one = json.loads(rj.read_text())
            say(f"  report written in {one['seconds']:.2f} s, {one['bytes'] / 1e6:.1f} MB")
            if best_rep is None or one["seconds"] < best_rep["seconds"]:
                best_rep = one
        if rr["rc"] == 0 and best_rep is not None:
            rep.update(best_rep, how=f"in-process write_reports(), best of {args.repeat}")
        else:
            # no in-process API: the difference between runs with and without --report
            say("  in-process timing failed (" + rr["stderr"].strip()[-300:]
                + "); timing simulate --report instead")
            s10r = simulate(cmd, sim_args(dirs["10m"], out / "conns-10m-r.parquet", html),
                            args.repeat, "10M --report", args.timeout)
            rep.update(runs=s10r, bytes=html.stat().st_size if html.exists() else None,
                       how="best run with --report - best run without")
            if s10r["seconds"] is not None and s10["seconds"] is not None:
                rep["seconds"] = max(0.0, s10r["seconds"] - s10["seconds"])
    res["fig1_10m"] = {"floor": f10, "simulate": s10, "output": check_output(conns10)}

    # ---- 1c/1d. the same 10M flows under Cilium's policies, and under a mix
    r = run_child([PY, str(HERE / "cilium_sets.py"), str(dirs["10m"])])
    if r["rc"] != 0:
        raise SystemExit("cilium_sets.py failed:\n" + r["stderr"][-3000:])
    for key, sets, label in (("fig1_10m_cilium", "cilium-", "Cilium policies"),
                             ("fig1_10m_mixed", "mixed-", "NetworkPolicies and Cilium")):
        say(f"figure 1, {label}: 10M flows ...")
        fv: dict[str, Any] = {"times": []}
        parts = []
        conns = out / f"conns-10m-{sets.rstrip('-')}.parquet"
        for i in range(args.repeat + 1):
            f = floor(flows10, 1)
            fv.update(f, times=fv["times"] + f["times"])
            if i < args.repeat:
                parts.append(simulate(cmd, sim_args(dirs["10m"], conns, sets=sets), 1,
                                      f"10M {label} {i + 1}/{args.repeat}", args.timeout))
        res[key] = {"floor": fv, "simulate": merge_runs(parts),
                    "output": check_output(conns)}
    res["fig6_report"] = rep

    # ---- 4. speed-up vs the per-flow reference, and the equality check, on 1M flows
    say("figure 4: 1M flows, simulate vs the per-flow reference ...")
    conns1 = out / "conns-1m.parquet"
    s1 = simulate(cmd, sim_args(dirs["1m"], conns1), args.repeat, "1M", args.timeout)
    say(f"  reference: {args.sample} connections compared, {args.flow_sample} records timed ...")
    ref_json = out / "reference.json"
    r = run_child([PY, str(HERE / "reference_check.py"), "--data", str(dirs["1m"]),
                   "--conns", str(conns1), "--sample", str(args.sample),
                   "--flow-sample", str(args.flow_sample), "--slow-sample", "20",
                   "--json", str(ref_json)])
    ref = json.loads(ref_json.read_text()) if r["rc"] == 0 else {"error": r["stderr"][-3000:]}
    res["fig4_1m"] = {"simulate": s1, "reference": ref, "flows": infos["1m"]["flows"]}

    # ---- 3. policy scale
    if not args.skip_scale:
        say("figure 3: 12,000 policies, 1,000 namespaces, 3,500 pods ...")
        phases = out / "phases-scale.json"
        conns_s = out / "conns-scale.parquet"
        evals = ("policy_tables", "evaluate", "usage", "diff")
        best: dict[str, Any] | None = None
        for i in range(args.repeat):
            rs = run_child([PY, str(HERE / "_phases.py"), str(phases),
                            *sim_args(dirs["scale"], conns_s)], timeout=args.timeout)
            if rs["rc"] != 0:
                say("  failed: " + rs["stderr"][-3000:])
                best = {"seconds": rs["seconds"], "rc": rs["rc"], "peak_rss": rs["peak_rss"],
                        "phases": {}}
                break
            ph = json.loads(phases.read_text())["phases"]
            say(f"  run {i + 1}/{args.repeat}: {rs['seconds']:.2f} s end to end, peak RSS "
                f"{fmt_mib(rs['peak_rss'])}; phases "
                + ", ".join(f"{k} {v:.2f}" for k, v in ph.items()))
            run = {"seconds": rs["seconds"], "rc": 0, "peak_rss": rs["peak_rss"], "phases": ph}
            if best is None or (sum(ph.get(k, 0.0) for k in evals)
                                < sum(best["phases"].get(k, 0.0) for k in evals)):
                best = run
        assert best is not None
        best["output"] = check_output(conns_s)
        res["fig3_scale"] = best

    # ---- 1b, 2. 100M
    if args.full:
        say("figures 1 and 2: 100M flows ...")
        flows100 = dirs["100m"] / "flows.parquet"
        f100 = floor(flows100, 1)
        s100 = simulate(cmd, sim_args(dirs["100m"], out / "conns-100m.parquet"), 1, "100M",
                        args.timeout)
        f100b = floor(flows100, 1)
        f100["times"] += f100b["times"]
        res["fig1_100m"] = {"floor": f100, "simulate": s100,
                            "output": check_output(out / "conns-100m.parquet")}
    res["driver_rss"] = own_rss()
    res["loadavg_before_after"] = [load0, os.getloadavg()[0]]
    return report(res, args, out)


def report(res: dict[str, Any], args: argparse.Namespace, out: Path) -> int:
    rows: list[tuple[str, str, str, str]] = []
    failed = False

    def row(name: str, measured: str, target: str, ok: bool | None, extra: str = "") -> None:
        nonlocal failed
        failed |= ok is False
        rows.append((name, measured, target, verdict(ok) + (f"  {extra}" if extra else "")))

    def ratio_row(key: str, label: str, target: float) -> None:
        fig = res.get(key)
        if not fig:
            row(label, "not run (--full)", f"<= {target:.0f}x floor", None)
            return
        fl, sim = min(fig["floor"]["times"]), fig["simulate"]["seconds"]
        ok = sim is not None and fig["output"].get("ok", False) and sim / fl <= target
        ratio = "-" if sim is None else f"{sim / fl:.2f}x"
        row(label, f"{ratio} ({fmt_s(sim)} vs floor {fl:.2f} s)", f"<= {target:.0f}x floor", ok)

    ratio_row("fig1_10m", "1. end to end / floor, 10M flows", TARGET_RATIO_10M)
    ratio_row("fig1_10m_cilium", "1c. ... 10M, Cilium policies", TARGET_RATIO_10M)
    ratio_row("fig1_10m_mixed", "1d. ... 10M, NetworkPolicy + Cilium", TARGET_RATIO_10M)
    ratio_row("fig1_100m", "1. end to end / floor, 100M flows", TARGET_RATIO_100M)
    if res.get("fig1_100m"):
        rss = res["fig1_100m"]["simulate"]["peak_rss"]
        row("2. peak RSS, 100M flows", fmt_mib(rss), "<= 2,048 MiB",
            rss is not None and rss <= TARGET_RSS)
    else:
        row("2. peak RSS, 100M flows", "not run (--full)", "<= 2,048 MiB", None)
    sc = res.get("fig3_scale")
    if sc:
        ph = sc["phases"]
        ev = sum(ph.get(k, 0.0) for k in ("policy_tables", "evaluate", "usage", "diff"))
        conns = sc["output"].get("rows")
        row(f"3. 12k policies: evaluation (best of {args.repeat})",
            f"{ev:.2f} s (evaluate() {ph.get('evaluate', 0):.2f} s)",
            f"< {TARGET_EVAL_S:.0f} s", sc["rc"] == 0 and ev < TARGET_EVAL_S,
            f"end to end {sc['seconds']:.1f} s, {conns or 0:,} connections")
    else:
        row("3. 12k policies: evaluation", "skipped", f"< {TARGET_EVAL_S:.0f} s", None)
    f4 = res["fig4_1m"]
    fast = f4["reference"].get("per_flow_fast")
    slow = f4["reference"].get("per_flow_as_written")
    sim1 = f4["simulate"]["seconds"]
    if fast and sim1:
        ref_s = fast["per_record_s"] * f4["flows"]
        sp = ref_s / sim1
        extra = (f"reference {ref_s:,.0f} s = {fast['per_record_s'] * 1e3:.3f} ms/flow x "
                 f"{f4['flows']:,} (timed on {fast['records']:,} flows)")
        if slow:
            extra += (f"; as written {slow['per_record_s'] * 1e3:.1f} ms/flow: "
                      f"{slow['per_record_s'] * f4['flows'] / sim1:,.0f}x")
        row("4. speed-up vs per-flow Python, 1M", f"{sp:,.0f}x (simulate {sim1:.2f} s)",
            f">= {TARGET_SPEEDUP:.0f}x", sp >= TARGET_SPEEDUP, extra)
    else:
        row("4. speed-up vs per-flow Python, 1M", "failed", f">= {TARGET_SPEEDUP:.0f}x", False)
    h = res["help_seconds"]
    row("5. simulate --help", fmt_s(h), f"< {TARGET_HELP_S} s", h < TARGET_HELP_S)
    rep = res["fig6_report"]
    if not rep["available"]:
        row("6. HTML report, 10M flows", "n/a (report module not available)",
            "< 2 s, < 20 MB", None)
    else:
        secs, size = rep.get("seconds"), rep.get("bytes")
        ok = secs is not None and size is not None and secs < TARGET_REPORT_S \
            and size < TARGET_REPORT_BYTES
        row("6. HTML report, 10M flows",
            f"{fmt_s(secs)}, {'-' if size is None else f'{size / 1e6:.1f} MB'}",
            "< 2 s, < 20 MB", ok, f"time: {rep.get('how')}")
    eq = f4["reference"].get("equality", {})
    mism = eq.get("mismatches")
    row("equality vs reference (1M run)",
        "-" if mism is None else f"{mism} mismatches / {eq.get('compared', 0):,} connections",
        "0", mism == 0,
        f"{eq.get('fields_compared', 0):,} fields (verdicts, per direction, admitting and "
        f"denying policies), {eq.get('not_comparable', 0)} not comparable")

    say("")
    head = ("figure", "measured", "target", "result")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    for r in [head, tuple("-" * w for w in widths) + ("------",), *rows]:
        say("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    ld = res["loadavg_before_after"]
    say(f"\n(best of {args.repeat} simulate runs at 10M/1M, floor best of "
        f"{len(res['fig1_10m']['floor']['times'])} at 10M; "
        f"load average {ld[0]:.2f} before, {ld[1]:.2f} after; "
        f"driver RSS {fmt_mib(res['driver_rss'])})")
    for key in ("fig1_10m", "fig1_10m_cilium", "fig1_10m_mixed", "fig1_100m"):
        o = res.get(key, {}).get("output", {})
        if o.get("changes"):
            say(f"{key} output: {o['rows']:,} connections: " + ", ".join(
                f"{c['change']} {c['connections']:,}" for c in o["changes"]))
    if mism:
        say("mismatch examples: " + json.dumps(eq.get("mismatch_examples"), indent=1))
    (out / "all.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    say(f"results written to {out / 'all.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
