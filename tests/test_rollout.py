"""Rollout readiness: per namespace, safest first; a break counts where the denying policy
lives, and a namespace is ready only when the fixes repair every one of its breaks."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from simulator.cli import main

ROOT = Path(__file__).resolve().parent.parent


def rollout(tmp_path: Path, flows: str, cluster: str, candidate: str,
            current: str) -> tuple[dict, str]:
    out, md = tmp_path / "r.json", tmp_path / "pr.md"
    r = CliRunner().invoke(main, ["--flows", str(ROOT / flows), "--cluster", str(ROOT / cluster),
                                  "--policies", str(ROOT / candidate),
                                  "--baseline", str(ROOT / current), "--json", str(out),
                                  "--markdown", str(md), "--quiet"])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())["report"], md.read_text()


def test_demo_rollout_goes_safest_first(tmp_path):
    report, md = rollout(tmp_path, "flows/demo-vpc.parquet", "flows/demo-cluster.json",
                         "policies/candidate", "policies/current")
    rows = report["rollout"]["namespaces"]
    assert [(r["namespace"], r["status"]) for r in rows] == [
        ("payments", "safe"), ("(cluster-scoped)", "ready with fixes"),
        ("shop", "ready with fixes")]
    shop = rows[2]
    # the shop breaks: prometheus's ingress to the frontend and the four DNS egress groups
    assert shop["fixes"] == ["B1", "B2", "B3", "B4", "B5"] and shop["unfixed"] == []
    assert shop["breaks"]["connections"] == sum(
        g["connections"] for g in report["breaks"]["groups"] if g["id"] in shop["fixes"])
    # the admin-tier and baseline-tier breaks belong to the cluster's policies
    assert rows[1]["fixes"] == ["B6", "B7"]
    assert report["rollout"]["complete"] is True
    table = md[md.index("#### Rollout readiness"):]
    assert table.index("| 1 | payments | safe |") < table.index("| 3 | shop | ready with fixes")


def test_a_cluster_wide_deny_rule_blocks_the_cluster_row(tmp_path):
    report, _ = rollout(tmp_path, "flows/demo-hubble.jsonl.gz", "flows/demo-cilium-cluster.json",
                        "policies/cilium-candidate", "policies/cilium-current")
    rows = {r["namespace"]: r for r in report["rollout"]["namespaces"]}
    # CiliumClusterwideNetworkPolicy pci-no-internet's egressDeny: no allow overrides it
    assert rows["(cluster-scoped)"]["status"] == "blocked"
    assert rows["(cluster-scoped)"]["unfixed"] == ["B3"]
    assert [r["status"] for r in report["rollout"]["namespaces"]][-1] == "blocked"
    assert rows["payments"]["status"] == "ready with fixes"
