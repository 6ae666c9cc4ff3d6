"""CNI enforcement profiles (--cni): what the wire does differs from the API's verdict
where a CNI enforces no policy (flannel), leaves a policy kind out, or never lets a CIDR
rule select cluster endpoints (Cilium). Through the CLI on real-format files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
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
from simulator.cni import PROFILES, profiles_table

WEB, API = "10.0.1.10", "10.0.2.10"


def world() -> list[dict[str, Any]]:
    return [namespace("shop", {"team": "shop"}), namespace("api", {"team": "api"}),
            node("node-1", "192.168.0.10", ["10.0.0.0/16"]),
            node("node-2", "192.168.0.11", ["10.1.0.0/16"]),
            pod("shop", "web", WEB, {"app": "web"}),
            pod("api", "api", API, {"app": "api"}, [("http", 8080, "TCP")], node="node-2")]


DENY_API = netpol("api", "default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
BY_CIDR = netpol("api", "by-cidr", {"podSelector": {}, "policyTypes": ["Ingress"],
                                    "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]})
ADMIN_DENY = cluster_policy("AdminNetworkPolicy", "deny-shop-to-api", {
    "priority": 10, "subject": {"namespaces": {"matchLabels": {"team": "api"}}},
    "ingress": [{"name": "no-shop", "action": "Deny",
                 "from": [{"namespaces": {"matchLabels": {"team": "shop"}}}]}]})


def run(tmp: Path, policies: list[dict[str, Any]], *extra: str) -> tuple[Any, dict, dict]:
    args = ["--flows", str(write_vpc_parquet(tmp / "f.parquet",
                                            [vpc_record(WEB, API, 8080)])),
            "--cluster", str(write_cluster(tmp / "c.json", world())),
            "--policies", str(write_policies(tmp / "p", policies)),
            "--out", str(tmp / "o.jsonl"), "--json", str(tmp / "o.json"), *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    row = json.loads((tmp / "o.jsonl").read_text().splitlines()[0])
    return result, row, json.loads((tmp / "o.json").read_text())["summary"]


def test_default_profile_is_the_api_and_says_so(tmp_path):
    result, row, summary = run(tmp_path, [DENY_API])
    assert row["candidate"] == "deny"
    assert summary["dataplane"]["cni"] == "kubernetes"
    assert summary["dataplane"]["inferred"] is False
    assert "Dataplane: kubernetes" in result.output


def test_flannel_enforces_nothing(tmp_path):
    result, row, summary = run(tmp_path, [DENY_API], "--cni", "flannel")
    assert row["candidate"] == "allow"
    assert row["change"] != "break"
    assert row["candidate_reason"].startswith("not enforced by flannel")
    assert "would be deny" in row["candidate_reason"]  # the API's verdict is kept in words
    assert "changes nothing on the wire" in result.output
    assert any(w["code"] == "not_enforced_by_cni" for w in summary["warnings"])


@pytest.mark.parametrize("cni", ["cilium", "aws-vpc-cni", "azure", "gke-dataplane-v2"])
def test_admin_policies_are_not_enforced_where_the_cni_does_not(tmp_path, cni):
    _, row, summary = run(tmp_path, [ADMIN_DENY], "--cni", cni)
    assert row["candidate"] == "allow"
    assert summary["inputs"]["candidate"]["not_enforced"] == {"AdminNetworkPolicy": 1}
    assert any(w["code"] == "not_enforced_kinds" for w in summary["warnings"])


@pytest.mark.parametrize("cni", ["kubernetes", "calico", "antrea", "ovn-kubernetes"])
def test_admin_policies_are_enforced_where_the_cni_does(tmp_path, cni):
    _, row, _ = run(tmp_path, [ADMIN_DENY], "--cni", cni)
    assert row["candidate"] == "deny"
    assert row["candidate_tier"] == "admin"


@pytest.mark.parametrize("cni,verdict", [("kubernetes", "allow"), ("calico", "allow"),
                                         ("cilium", "deny"), ("azure", "deny")])
def test_cidr_rules_select_pods_only_where_the_cni_matches_addresses(tmp_path, cni, verdict):
    # 10.0.0.0/8 holds web's address; Cilium's CIDR rules never select cluster endpoints
    _, row, _ = run(tmp_path, [BY_CIDR], "--cni", cni)
    assert row["candidate"] == verdict


def test_profile_holds_for_the_baseline_set_too(tmp_path):
    # with two sets the evaluation runs on cursors of its own: the profile reaches them
    _, row, _ = run(tmp_path, [BY_CIDR], "--cni", "cilium", "--baseline",
                    str(write_policies(tmp_path / "base", [BY_CIDR])))
    assert (row["baseline"], row["candidate"]) == ("deny", "deny")


def test_every_profile_cites_a_source_or_says_not_documented():
    docs = (Path(__file__).parent.parent / "docs" / "cni-profiles.md").read_text()
    assert docs.endswith(profiles_table()), "docs/cni-profiles.md is behind simulator/cni.py"
    for p in PROFILES.values():
        for entry in ("enforces", "protocols", "cidr_matches_cluster", "own_node_allowed",
                      "nodeport_source"):
            source = p.sources[entry]
            assert source.startswith(("http", "not documented", "not applicable")), (p, entry)


def test_unknown_cni_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(main, ["--flows", "x", "--policies", "y", "--cni", "weave"])
    assert result.exit_code == 2
    assert "weave" in result.output


CNP_DENY = cluster_policy("ClusterNetworkPolicy", "deny-shop-to-api", {
    "tier": "Admin", "priority": 10,
    "subject": {"namespaces": {"matchLabels": {"team": "api"}}},
    "ingress": [{"name": "no-shop", "action": "Deny",
                 "from": [{"namespaces": {"matchLabels": {"team": "shop"}}}]}]})


@pytest.mark.parametrize("cni,verdict", [("kubernetes", "deny"), ("calico", "deny"),
                                         ("antrea", "allow"), ("ovn-kubernetes", "allow"),
                                         ("cilium", "allow")])
def test_cluster_network_policy_only_where_the_cni_enforces_it(tmp_path, cni, verdict):
    _, row, summary = run(tmp_path, [CNP_DENY], "--cni", cni)
    assert row["candidate"] == verdict
    dropped = summary["inputs"]["candidate"]["not_enforced"]
    assert dropped == ({} if verdict == "deny" else {"ClusterNetworkPolicy": 1})


def test_profile_inferred_from_hubble_flows_is_said(tmp_path):
    line = json.dumps({"flow": {
        "time": "2024-06-01T12:00:00Z", "verdict": "FORWARDED",
        "IP": {"source": WEB, "destination": API, "ipVersion": "IPv4"},
        "l4": {"TCP": {"source_port": 40000, "destination_port": 8080,
                       "flags": {"SYN": True}}},
        "source": {"namespace": "shop", "pod_name": "web", "labels": ["k8s:app=web"]},
        "destination": {"namespace": "api", "pod_name": "api", "labels": ["k8s:app=api"]},
        "Type": "L3_L4", "is_reply": False}})
    (tmp_path / "f.json").write_text(line + "\n")
    result = CliRunner().invoke(main, [
        "--flows", str(tmp_path / "f.json"),
        "--cluster", str(write_cluster(tmp_path / "c.json", world())),
        "--policies", str(write_policies(tmp_path / "p", [BY_CIDR])),
        "--json", str(tmp_path / "o.json"), "--markdown", str(tmp_path / "o.md")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o.json").read_text())["summary"]
    assert (summary["dataplane"]["cni"], summary["dataplane"]["inferred_from"]) == \
        ("cilium", "hubble flows")
    assert "inferred from hubble flows" in result.output
    assert "inferred from hubble flows" in (tmp_path / "o.md").read_text()
    # Cilium's CIDR rules never select a pod: web is not admitted by 10.0.0.0/8
    assert summary["connections"]["by_change"]["break"]["connections"] == 1


def test_profile_inferred_from_the_snapshots_cilium_config(tmp_path):
    """VPC flows say nothing of the dataplane; a cluster whose snapshot holds Cilium's agent
    configuration runs Cilium, so its semantics apply to the NetworkPolicies too."""
    objects = world() + [{"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"namespace": "kube-system", "name": "cilium-config"},
                          "data": {"cluster-name": "prod"}}]
    write_cluster(tmp_path / "c.json", objects)

    def judged(policies: list[dict[str, Any]], *extra: str) -> tuple[str, dict[str, Any]]:
        out = tmp_path / f"o{len(extra)}.json"
        result = CliRunner().invoke(main, [
            "--flows", str(write_vpc_parquet(tmp_path / "f.parquet",
                                             [vpc_record(WEB, API, 8080)])),
            "--cluster", str(tmp_path / "c.json"),
            "--policies", str(write_policies(tmp_path / f"p{len(extra)}", policies)),
            "--out", str(tmp_path / "o.jsonl"), "--json", str(out), *extra])
        assert result.exit_code == 0, result.output
        row = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])
        return row["candidate"], {**json.loads(out.read_text())["summary"],
                                  "output": result.output}

    verdict, summary = judged([BY_CIDR, ADMIN_DENY])
    assert (summary["dataplane"]["cni"], summary["dataplane"]["inferred_from"]) == \
        ("cilium", "the snapshot's kube-system/cilium-config ConfigMap")
    assert "inferred from the snapshot's kube-system/cilium-config" in summary["output"]
    # the ipBlock does not select the web pod, and Cilium enforces no AdminNetworkPolicy
    assert verdict == "deny"
    assert summary["inputs"]["candidate"]["not_enforced"] == {"AdminNetworkPolicy": 1}
    # --cni still decides: under the API's semantics the ipBlock selects the web pod
    verdict, summary = judged([BY_CIDR], "--cni", "kubernetes")
    assert summary["dataplane"]["cni"] == "kubernetes" and verdict == "allow"
