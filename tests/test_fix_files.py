"""--fixes-dir and trying its files: one file per distinct fix plus all.yaml, written
without touching an input; a policy given again in a later file replaces the earlier one,
as `kubectl apply` would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from worldfiles import (
    cluster_policy,
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

WEB, API = "10.0.1.10", "10.0.1.20"


def inputs(tmp: Path, policies: list[dict[str, Any]]) -> list[str]:
    return [
        "--flows", str(write_vpc_parquet(tmp / "f.parquet", [vpc_record(WEB, API, 8080)])),
        "--cluster", str(write_cluster(tmp / "cluster.json", [
            namespace("shop"), node("node-1", "192.168.0.10", ["10.0.0.0/16"]),
            pod("shop", "web-0", WEB, {"app": "web"}),
            pod("shop", "api-0", API, {"app": "api"}, [("http", 8080, "TCP")])])),
        "--policies", str(write_policies(tmp / "candidate", policies))]


DENY = netpol("shop", "api-ingress", {"podSelector": {"matchLabels": {"app": "api"}},
                                      "policyTypes": ["Ingress"]})
ALLOW = netpol("shop", "api-ingress", {
    "podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]})


def test_a_policy_given_again_in_a_later_file_replaces_the_earlier(tmp_path):
    later = write_policies(tmp_path / "later", [ALLOW])
    out = tmp_path / "s.json"
    r = CliRunner().invoke(main, inputs(tmp_path, [DENY]) + [
        "--policies", str(later), "--json", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["inputs"]["candidate"]["policies"] == 1
    [replaced] = summary["inputs"]["candidate"]["replaced"]
    assert replaced.startswith("shop/api-ingress (from ") and str(later) in replaced
    assert summary["connections"]["by_change"]["break"]["connections"] == 0
    assert "replaced in candidate" in r.output
    # the other order: the deny comes last and wins
    r = CliRunner().invoke(main, [
        "--flows", str(tmp_path / "f.parquet"), "--cluster", str(tmp_path / "cluster.json"),
        "--policies", str(later), "--policies", str(tmp_path / "candidate"),
        "--json", str(out)])
    assert json.loads(out.read_text())["summary"]["connections"]["by_change"]["break"][
        "connections"] == 1


def test_a_second_baseline_admin_policy_in_one_file_is_refused(tmp_path):
    banp = cluster_policy("BaselineAdminNetworkPolicy", "default", {
        "subject": {"namespaces": {}}, "ingress": []})
    one = tmp_path / "banp.yaml"
    one.write_text(json.dumps(banp) + "\n---\n" + json.dumps(banp) + "\n")
    args = inputs(tmp_path, [])
    args[args.index("--policies") + 1] = str(one)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2
    assert "a second BaselineAdminNetworkPolicy" in r.output and "banp.yaml" in r.output


def test_fixes_dir_is_written_and_rerun_clean(tmp_path):
    fixes = tmp_path / "fixes"
    fixes.mkdir()
    (fixes / "07-old-fix.yaml").write_text("# netpol-simulator fix for B7: ...\nstale\n")
    (fixes / "05-mine.yaml").write_text("kind: Deployment\n")   # the user's: kept
    (fixes / "notes.txt").write_text("mine\n")
    r = CliRunner().invoke(main, inputs(tmp_path, [DENY]) + ["--fixes-dir", str(fixes)])
    assert r.exit_code == 0, r.output
    assert "Fixes: " in r.output and "(1 fix file and all.yaml)" in r.output
    names = sorted(p.name for p in fixes.iterdir())
    # the earlier run's fix file is gone, the user's own files stay
    assert names == ["01-shop-api-ingress.yaml", "05-mine.yaml", "all.yaml", "notes.txt"]
    text = (fixes / "01-shop-api-ingress.yaml").read_text()
    assert text.startswith("# netpol-simulator fix for B1: shop/web-0 -> shop/api-0 TCP/8080")
    out = tmp_path / "again.json"
    r = CliRunner().invoke(main, inputs(tmp_path, [DENY]) + [
        "--policies", str(fixes / "all.yaml"), "--json", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["connections"]["by_change"]["break"]["connections"] == 0


def test_fixes_dir_never_overwrites_an_input(tmp_path):
    args = inputs(tmp_path, [DENY])
    policy_dir = tmp_path / "candidate"
    before = {p.name: p.read_text() for p in policy_dir.iterdir()}
    r = CliRunner().invoke(main, args + ["--fixes-dir", str(policy_dir)])
    assert r.exit_code == 2
    assert "--fixes-dir" in r.output and "holds the input file" in r.output
    assert {p.name: p.read_text() for p in policy_dir.iterdir()} == before
    (tmp_path / "afile").write_text("x")
    r = CliRunner().invoke(main, args + ["--fixes-dir", str(tmp_path / "afile")])
    assert r.exit_code == 2 and "is not a directory" in r.output


def test_two_repairs_of_one_rule_never_admit_more_than_each():
    # one fix adds a port to rule 0, another a peer: together they must not admit the
    # new peer on the new port (neither fix did)
    from simulator.policy.loader import PolicySet
    from simulator.report.fixes import _combine

    rule = {"from": [{"podSelector": {"matchLabels": {"app": "a"}}}],
            "ports": [{"protocol": "TCP", "port": 80}]}
    pset = PolicySet("candidate", manifests={"shop/api": netpol("shop", "api", {
        "podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
        "ingress": [rule]})})
    b_peer = {"podSelector": {"matchLabels": {"app": "b"}}}
    edits = [
        {"policy": "shop/api", "direction": "ingress", "repair_of": 0, "at": None,
         "change": {"add_port": {"protocol": "TCP", "port": 81}}},
        {"policy": "shop/api", "direction": "ingress", "repair_of": 0, "at": None,
         "change": {"add_peers": [b_peer]}},
        # the same port again (a second group's fix): made once
        {"policy": "shop/api", "direction": "ingress", "repair_of": 0, "at": None,
         "change": {"add_port": {"protocol": "TCP", "port": 81}}},
    ]
    [manifest] = _combine(edits, pset).values()
    assert manifest["spec"]["ingress"] == [
        {"from": rule["from"], "ports": [{"protocol": "TCP", "port": 80},
                                         {"protocol": "TCP", "port": 81}]},
        {"from": rule["from"] + [b_peer], "ports": rule["ports"]}]
    # the candidate's own manifest is untouched
    assert pset.manifests["shop/api"]["spec"]["ingress"] == [rule]
