"""Near misses: a denied connection names the rule that almost admitted it and the one
condition that failed, in words and as data (`candidate_near_miss` in the connections
table and --json), the smallest change first; the fix repairs that rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
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
WEB, API, DB, DNS, PAY = "10.0.1.10", "10.0.1.20", "10.0.2.10", "10.0.3.10", "10.0.4.10"
EXT = "203.0.113.7"


def world() -> list[dict[str, Any]]:
    return [
        namespace("shop", {"team": "shop"}), namespace("data", {"team": "data"}),
        namespace("kube-system"), namespace("pay", {"team": "payments"}),
        node("node-1", "192.168.0.10", ["10.0.0.0/16"]),
        pod("shop", "web-0", WEB, {"app": "web"}),
        pod("shop", "api-0", API, {"app": "api"}, [("http", 8080, "TCP")]),
        pod("data", "db-0", DB, {"app": "db"}, [("postgres", 5432, "TCP")]),
        pod("kube-system", "coredns-0", DNS, {"k8s-app": "kube-dns"}, [("dns", 53, "UDP")]),
        pod("pay", "ledger-0", PAY, {"app": "ledger"}, [("grpc", 7070, "UDP")]),
    ]


def policies() -> list[dict[str, Any]]:
    return [
        netpol("shop", "web-egress", {
            "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
            "egress": [
                # DNS without a protocol: TCP only
                {"to": [{"namespaceSelector": {}, "podSelector": {
                    "matchLabels": {"k8s-app": "kube-dns"}}}], "ports": [{"port": 53}]},
                # the api on other ports
                {"to": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                 "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 443}]},
                # the ledger by a port name it declares for UDP only
                {"to": [{"namespaceSelector": {"matchLabels": {"team": "payments"}}}],
                 "ports": [{"protocol": "TCP", "port": "grpc"}]},
                # the internet, but not the documentation range the EXT address is in
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["203.0.113.0/24"]}}],
                 "ports": [{"protocol": "TCP", "port": 443}]},
            ]}),
        netpol("data", "db-ingress", {
            "podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "payments"}},
                                   "podSelector": {"matchLabels": {"app": "api"}}}],
                         "ports": [{"port": 5432}]}]}),
        netpol("shop", "api-deny-egress", {"podSelector": {"matchLabels": {"app": "api"}},
                                           "policyTypes": ["Egress"]}),
    ]


def run(tmp_path: Path, *extra: str, out_name: str = "c.parquet"
        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    flows = [(WEB, DNS, 53, "UDP"), (WEB, API, 8080, "TCP"), (WEB, PAY, 7070, "UDP"),
             (WEB, EXT, 443, "TCP"), (API, DB, 5432, "TCP")]
    out, report = tmp_path / out_name, tmp_path / "r.json"
    r = CliRunner().invoke(main, [
        "--flows", str(write_vpc_parquet(tmp_path / "f.parquet", [
            vpc_record(s, d, p, proto, src_port=40000 + i) for i, (s, d, p, proto)
            in enumerate(flows)])),
        "--cluster", str(write_cluster(tmp_path / "cluster.json", world())),
        "--policies", str(write_policies(tmp_path / "candidate", policies())),
        "--out", str(out), "--json", str(report), "--quiet", *extra])
    assert r.exit_code == 0, r.output
    rows = pq.read_table(out).to_pylist() if out.suffix == ".parquet" else []
    return json.loads(report.read_text()), rows


def misses(rows: list[dict[str, Any]], dst: str, port: int) -> list[dict[str, Any]]:
    [row] = [r for r in rows if r["dst_ip"] == dst and r["dst_port"] == port]
    return row["candidate_near_miss"] or []


def test_each_condition_is_named_with_the_rule_and_the_data(tmp_path):
    _, rows = run(tmp_path)
    [dns, *_] = misses(rows, DNS, 53)
    assert (dns["policy"], dns["rule"], dns["direction"], dns["condition"]) == (
        "shop/web-egress", 0, "egress", "protocol")
    assert dns["detail"] == ("`shop/web-egress` egress rule 0 matches kube-system/coredns-0 on "
                             "port 53 but only for TCP: `port: 53` without `protocol` means "
                             "TCP; add `protocol: UDP` (as a second entry, `{protocol: UDP, "
                             "port: 53}`, to keep TCP)")

    [api, *_] = misses(rows, API, 8080)
    assert (api["rule"], api["condition"]) == (1, "port")
    assert "but only on TCP/80, TCP/443, not TCP/8080" in api["detail"]

    [pay, *_] = misses(rows, PAY, 7070)
    assert (pay["rule"], pay["condition"]) == (2, "protocol")
    # the named port resolves on the ledger pod to 7070, but the rule says TCP
    assert "only for TCP" in pay["detail"] and "protocol: UDP" in pay["detail"]

    [ext, *_] = misses(rows, EXT, 443)
    assert (ext["rule"], ext["condition"]) == (3, "ipblock_except")
    assert "ipBlock 0.0.0.0/0 excepts 203.0.113.0/24, which holds 203.0.113.7" in ext["detail"]

    # ingress: the namespace label fails (and the AND of the two selectors is named)
    [db, *_] = misses(rows, DB, 5432)
    assert (db["policy"], db["direction"], db["condition"]) == ("data/db-ingress", "ingress",
                                                                "namespace_selector")
    assert ("namespaceSelector requires `team: payments`; namespace shop has `team: shop`"
            in db["detail"])
    assert "must both match (AND)" in db["detail"]
    # and the egress side of the same connection: a policyTypes-only isolation
    types = [m for m in misses(rows, DB, 5432) if m["condition"] == "policy_types"]
    assert types and types[0]["policy"] == "shop/api-deny-egress"
    assert "`policyTypes` lists Egress, with no egress rule" in types[0]["detail"]


def test_allowed_connections_have_none_and_the_json_carries_the_same(tmp_path):
    doc, rows = run(tmp_path)
    by_key = {(r["dst_ip"], r["dst_port"]): r["candidate_near_miss"] for r in rows}
    assert all(r["candidate_near_miss"] is None for r in rows if r["candidate"] == "allow")
    for c in doc["connections"]:
        assert c["candidate_near_miss"] == by_key[(c["dst_ip"], c["dst_port"])]
    # the report's groups show them, the smallest change first
    [g] = [g for g in doc["report"]["breaks"]["groups"] if g["port"] == 53]
    assert g["near_misses"][0]["condition"] == "protocol"
    costs = [m["cost"] for m in g["near_misses"]]
    assert costs == sorted(costs)


def test_the_fix_repairs_the_rule_the_near_miss_names(tmp_path):
    doc, _ = run(tmp_path)
    groups = {g["port"]: g for g in doc["report"]["breaks"]["groups"]}
    [edit] = groups[53]["fix"]["edits"]
    assert (edit["policy"], edit["repair_of"]) == ("shop/web-egress", 0)
    assert edit["rule"]["ports"] == [{"port": 53}, {"protocol": "UDP", "port": 53}]
    [edit] = groups[8080]["fix"]["edits"]
    assert edit["repair_of"] == 1
    assert edit["rule"]["ports"][-1] == {"protocol": "TCP", "port": 8080}


def test_csv_and_markdown_render_the_near_miss(tmp_path):
    csv, md = tmp_path / "c.csv", tmp_path / "pr.md"
    run(tmp_path, "--markdown", str(md), out_name="c.csv")
    text = md.read_text()
    assert ("**Closest rule:** `shop/web-egress` egress rule 0 matches kube-system/coredns-0 "
            "on port 53 but only for TCP") in text
    assert "candidate_near_miss" in csv.read_text().splitlines()[0]


def test_demo_dns_break_is_explained_by_its_near_miss(tmp_path):
    out = tmp_path / "demo.json"
    r = CliRunner().invoke(main, [
        "--flows", str(ROOT / "flows/demo-vpc.parquet"),
        "--cluster", str(ROOT / "flows/demo-cluster.json"),
        "--policies", str(ROOT / "policies/candidate"),
        "--baseline", str(ROOT / "policies/current"), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert ("closest: `shop/allow-dns-egress` egress rule 0 matches kube-system/coredns on "
            "port 53 but only for TCP: `port: 53` without `protocol` means TCP; add "
            "`protocol: UDP`") in r.output
    doc = json.loads(out.read_text())
    dns = [g for g in doc["report"]["breaks"]["groups"] if g["port"] == 53]
    assert len(dns) == 4
    for g in dns:
        [edit] = g["fix"]["edits"]
        assert (edit["policy"], edit["repair_of"]) == ("shop/allow-dns-egress", 0)
    # the admin tier's deny: the Allow rule before it that almost matched, by its name
    [b6] = [g for g in doc["report"]["breaks"]["groups"] if g["port"] == 7070]
    [miss] = b6["near_misses"]
    assert (miss["policy"], miss["rule"], miss["condition"]) == (
        "AdminNetworkPolicy/pci-ingress-guardrail", 0, "namespace_selector")
    assert miss["detail"] == (
        '`AdminNetworkPolicy/pci-ingress-guardrail` ingress rule 0 "allow-monitoring" (Allow) '
        "admits TCP/7070 but the namespace selector requires "
        "`kubernetes.io/metadata.name: monitoring`; namespace shop has "
        "`kubernetes.io/metadata.name: shop`")
    # its Pass rule is no near miss: the payments NetworkPolicies below would deny it too;
    # and the fix stays an Allow before the deciding rule (an explanation repairs nothing)
    assert miss["repair"] is None
    assert b6["fix"]["edits"][0]["at"] == 2


def test_an_ip_block_names_pods_only_where_the_dataplane_matches_them(tmp_path):
    # db-0 admits 5432 from the pod range; web calls 5433. Under the API's semantics the
    # ipBlock matches the pod (a port near miss); under Cilium's, it never selects a pod
    pols = [netpol("data", "db-ingress", {
        "podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16"}}],
                     "ports": [{"protocol": "TCP", "port": 5432}]}]})]
    args = ["--flows", str(write_vpc_parquet(tmp_path / "f.parquet",
                                             [vpc_record(WEB, DB, 5433)])),
            "--cluster", str(write_cluster(tmp_path / "cluster.json", world())),
            "--policies", str(write_policies(tmp_path / "candidate", pols)), "--quiet"]
    found = {}
    for cni in ("kubernetes", "cilium"):
        out = tmp_path / f"{cni}.parquet"
        r = CliRunner().invoke(main, [*args, "--cni", cni, "--out", str(out)])
        assert r.exit_code == 0, r.output
        [row] = pq.read_table(out).to_pylist()
        found[cni] = [m["condition"] for m in row["candidate_near_miss"] or []]
    assert found == {"kubernetes": ["port"], "cilium": []}
