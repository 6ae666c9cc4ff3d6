"""Suggested fixes keep the traffic they are for, and their stated blast radius is what a
fresh replay with the fix applied finds.

The replay here is independent of the report's own: the fixed YAML is written into a copy
of the candidate policy directory (replacing the policy it edits) and `simulate` runs again
from the files. Random worlds come from the property-test strategies.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, note, settings

from simulator.cli import main
from simulator.report.fixes import ip_blocks, stable_labels

try:
    from tests import strategies
    from tests.test_property import describe, write_case
    from tests.worldfiles import write_policies
except ImportError:  # pragma: no cover
    import strategies
    from test_property import describe, write_case
    from worldfiles import write_policies

EXAMPLES = int(os.environ.get("NETPOL_FIX_EXAMPLES", "25"))
FIXES_PER_WORLD = 3
ROOT = Path(__file__).resolve().parent.parent


def simulate(*args: Any) -> None:
    result = CliRunner().invoke(main, [str(a) for a in args] + ["--quiet"])
    assert result.exit_code == 0, result.output


def conn_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["src_ip"], row["dst_ip"], row["dst_port"], row["protocol"])


def apply_fix(policies: list[dict[str, Any]], fix_yaml: str) -> list[dict[str, Any]]:
    """The policy set with each edited policy replaced by its fixed manifest."""
    fixed = {(d["metadata"].get("namespace", "default"), d["metadata"]["name"]): d
             for d in yaml.safe_load_all(fix_yaml)}
    out = []
    for p in policies:
        key = (p["metadata"].get("namespace", "default"), p["metadata"]["name"])
        out.append(fixed.pop(key, p))
    assert not fixed, f"the fix edits policies that are not in the set: {sorted(fixed)}"
    return out


def replay_with_fix(flows: Path, cluster: Path, policies: list[dict[str, Any]],
                    fix: dict[str, Any], workdir: Path) -> list[dict[str, Any]]:
    policy_dir = write_policies(workdir / "fixed-policies", apply_fix(policies, fix["yaml"]))
    out = workdir / "fixed.parquet"
    simulate("--flows", flows, "--cluster", cluster, "--policies", policy_dir, "--out", out)
    return pq.read_table(out).to_pylist()


def check_fix(group: dict[str, Any], before: list[dict[str, Any]],
              after: list[dict[str, Any]]) -> list[str]:
    """What the fix claims (restores its group, opens exactly its blast radius) against the
    fresh replay."""
    assert group["connections"] == len(group["connection_rows"]), "group listed in full"
    problems = []
    was = {conn_key(r): r["candidate"] for r in before}
    now = {conn_key(r): r["candidate"] for r in after}
    members = {conn_key(r) for r in group["connection_rows"]}
    for key in members:
        if now.get(key) != "allow":
            problems.append(f"{group['id']}: {key} still {now.get(key)} after the fix")
    opened = Counter()
    for r in before:
        key = conn_key(r)
        if key not in members and was[key] != "allow" and now.get(key) == "allow":
            opened[r["change"]] += 1
    blast = group["fix"]["blast_radius"]
    if sum(opened.values()) != blast["connections"]:
        problems.append(f"{group['id']}: blast radius says {blast['connections']} "
                        f"connections, the replay opens {sum(opened.values())} ({opened})")
    if opened["break"] != blast["restores_other_breaks"]:
        problems.append(f"{group['id']}: says it repairs {blast['restores_other_breaks']} "
                        f"other breaks, the replay repairs {opened['break']}")
    if group["fix"]["restores"] != {"connections": group["connections"],
                                    "of": group["connections"]}:
        problems.append(f"{group['id']}: restores {group['fix']['restores']}")
    return problems


def run_report(flows: Path, cluster: Path, policies: Path, workdir: Path,
               *extra: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out, report = workdir / "before.parquet", workdir / "report.json"
    simulate("--flows", flows, "--cluster", cluster, "--policies", policies, "--out", out,
             "--json", report, *extra)
    return json.loads(report.read_text())["report"], pq.read_table(out).to_pylist()


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(strategies.cases())
def test_fixes_restore_their_group_and_blast_radius_matches_a_fresh_replay(
        case: strategies.Case) -> None:
    note(describe(case))
    with tempfile.TemporaryDirectory(prefix="netpol-fix-") as tmp:
        work = Path(tmp)
        paths = write_case(case, work)
        # no baseline set: every flow was ACCEPTed, so each denied connection breaks
        report, before = run_report(paths["flows"], paths["cluster"], paths["policies"], work)
        groups = [g for g in report["breaks"]["groups"]
                  if g["connections"] == len(g["connection_rows"])]
        assume(groups)
        problems = []
        for g in groups[:FIXES_PER_WORLD]:
            note(f"fix for {g['id']}:\n{g['fix']['yaml']}")
            assert "problem" not in g["fix"], g["fix"]["problem"]
            after = replay_with_fix(paths["flows"], paths["cluster"],
                                    [dict(p) for p in case.world.policies], g["fix"], work)
            problems += check_fix(g, before, after)
        assert not problems, "\n".join(problems)


def test_demo_fixes_each_restore_their_group_and_state_their_blast_radius(tmp_path):
    flows, cluster = ROOT / "flows/demo-vpc.parquet", ROOT / "flows/demo-cluster.json"
    report, before = run_report(flows, cluster, ROOT / "policies/candidate", tmp_path,
                                "--baseline", ROOT / "policies/current")
    groups = report["breaks"]["groups"]
    assert len(groups) >= 3
    policies = [d for f in sorted((ROOT / "policies/candidate").glob("*.y*ml"))
                for d in yaml.safe_load_all(f.read_text()) if d]
    problems = []
    for g in groups:
        after = replay_with_fix(flows, cluster, policies, g["fix"], tmp_path)
        problems += check_fix(g, before, after)
    assert not problems, "\n".join(problems)
    # DNS breaks are fixed on the DNS policy's side, with the port CoreDNS declares
    dns = [g for g in groups if g["port"] == 53]
    assert dns and all(g["id"] in report["gotchas"]["dns_breaks"] for g in dns)
    rule = dns[0]["fix"]["edits"][0]["rule"]
    assert rule["ports"] == [{"protocol": "UDP", "port": "dns"}]
    assert rule["to"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}


def test_fix_names_workloads_by_stable_labels_only():
    pods = [{"app": "api", "pod-template-hash": "7c9f", "version": "v1", "team": "a"},
            {"app": "api", "pod-template-hash": "55d1", "version": "v1", "team": "a"}]
    assert stable_labels(pods) == {"app": "api"}
    sts = [{"role": "db", "controller-revision-hash": "db-1",
            "statefulset.kubernetes.io/pod-name": "db-0"},
           {"role": "db", "controller-revision-hash": "db-2",
            "statefulset.kubernetes.io/pod-name": "db-1"}]
    assert stable_labels(sts) == {"role": "db"}
    assert stable_labels([{"a": "1"}, {"b": "2"}]) == {}


def test_external_peers_become_exact_ip_blocks():
    assert ip_blocks(["52.1.2.3", "52.1.2.2", "2001:db8::1"]) == [
        "52.1.2.2/31", "2001:db8::1/128"]
    many = [f"52.1.{i // 256}.{i % 256}" for i in range(300)]
    assert ip_blocks(many) == ["52.1.0.0/23"]  # widened to /24s, then merged


@pytest.mark.parametrize("hostile", ["x`y", "```"])
def test_markdown_code_fences_cannot_be_closed_by_the_content(hostile):
    from simulator.report.markdown import fenced

    block = fenced(f"a: '{hostile}'")
    fence = block.splitlines()[0]
    assert block.count(fence) == 2 and fence not in f"a: '{hostile}'"
