"""Inputs for the HTML report tests: the demo run through the CLI, a hostile cluster whose
names carry markup, and large synthetic reports built from a real demo group."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from worldfiles import (
    namespace,
    netpol,
    node,
    pod,
    vpc_record,
    write_cluster,
    write_policies,
    write_vpc_parquet,
)

from simulator.cli import main

ROOT = Path(__file__).resolve().parent.parent
DEMO_ARGS = ["--flows", str(ROOT / "flows" / "demo-vpc.parquet"),
             "--cluster", str(ROOT / "flows" / "demo-cluster.json"),
             "--policies", str(ROOT / "policies" / "candidate"),
             "--baseline", str(ROOT / "policies" / "current")]

# What an attacker who controls a pod spec or a flow log could put in front of a reader.
SCRIPT = "<script>window.__pwned=1;alert(1)</script>"
IMG = '"><img src=x onerror="window.__pwned=1;alert(1)">'
HOSTILE = (SCRIPT, IMG)


def simulate(tmp: Path, args: list[str]) -> Path:
    """Run `simulate` in-process with --report (and --json) into tmp; the report's path."""
    tmp.mkdir(parents=True, exist_ok=True)
    report = tmp / "impact.html"
    result = CliRunner().invoke(main, args + ["--report", str(report),
                                              "--json", str(tmp / "report.json"), "--quiet"])
    assert result.exit_code == 0, result.output
    return report


def demo_report(tmp: Path) -> Path:
    return simulate(tmp, DEMO_ARGS)


def hostile_report(tmp: Path) -> Path:
    """A small world whose namespace, pod, owner and label values are markup; one
    connection breaks, one is newly allowed, one address is unresolved."""
    tmp.mkdir(parents=True, exist_ok=True)
    objects = [
        namespace(SCRIPT, {"team": IMG}),
        namespace("y", {"note": SCRIPT}),
        node("node-1", "10.9.0.1", ["10.0.0.0/16"]),
        pod(SCRIPT, f"web-{SCRIPT}", "10.0.1.10", {"app": IMG}, [],
            owner=("Deployment", f"api{IMG}")),
        pod("y", f"db{IMG}", "10.0.2.10", {"app": "db"}, [(None, 80, "TCP")],
            owner=("StatefulSet", SCRIPT)),
        pod("y", f"cache{SCRIPT}", "10.0.2.11", {"app": "cache"}, [(None, 6379, "TCP")]),
    ]
    records = [vpc_record("10.0.1.10", "10.0.2.10", 80, src_port=40000 + i) for i in range(3)]
    records += [vpc_record("10.0.1.10", "10.0.2.11", 6379, action="REJECT"),
                vpc_record("10.0.1.10", "10.0.9.99", 443)]
    candidate = [netpol("y", "deny", {"podSelector": {"matchLabels": {"app": "db"}}})]
    baseline = [netpol("y", "cache-deny", {"podSelector": {"matchLabels": {"app": "cache"}}})]
    return simulate(tmp, [
        "--flows", str(write_vpc_parquet(tmp / "flows.parquet", records)),
        "--cluster", str(write_cluster(tmp / "cluster.json", objects)),
        "--policies", str(write_policies(tmp / "candidate", candidate)),
        "--baseline", str(write_policies(tmp / "baseline", baseline)),
    ])


@cache
def demo_report_dict() -> dict[str, Any]:
    """The model's report dict for the demo (real datetimes), built once per session."""
    from simulator.pipeline import Options, run
    from simulator.report import build_report

    r = run(Options(flows=[str(ROOT / "flows" / "demo-vpc.parquet")],
                    cluster=[str(ROOT / "flows" / "demo-cluster.json")],
                    policies=[str(ROOT / "policies" / "candidate")],
                    baseline=[str(ROOT / "policies" / "current")]))
    return build_report(r.con, r.summary, r.candidate, r.baseline)


def synthetic_report(breaks: int, newly_allowed: int = 0, per_group: int = 20,
                     name_len: int = 0, fixes: bool = True) -> dict[str, Any]:
    """The demo report with its groups multiplied: copies of a real group, each with its
    own id, workload, namespace and `per_group` connections. `name_len` pads pod names;
    without `fixes` the break groups carry none (a lighter page)."""
    rep = copy.deepcopy(demo_report_dict())
    pad = "x" * name_len
    for key, prefix, n in (("breaks", "B", breaks), ("newly_allowed", "N", newly_allowed)):
        base = rep[key]["groups"][0]
        row = base["connection_rows"][0]
        groups = []
        for i in range(n):
            g = dict(base)
            g["id"] = f"{prefix}{i + 1}"
            ns = f"team-{i % 40}"
            g["source"] = dict(base["source"], namespace=ns, workload=f"Deployment/app-{i}",
                               label=f"{ns}/app-{i}")
            g["port"] = 1000 + i % 500
            g["flows"] = 10 * (n - i)
            g["connections"] = per_group
            if not fixes:
                g["fix"] = None
            g["connection_rows"] = [
                dict(row, src_pod=f"app-{i}-{pad}{j:05d}-abcde", src_ip=f"10.{i % 250}.{j}.7",
                     flows=per_group - j)
                for j in range(per_group)]
            groups.append(g)
        rep[key] = {"total": n, "shown": n, "groups": groups}
    return rep
