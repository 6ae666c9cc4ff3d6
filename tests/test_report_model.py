"""What the impact report says about a small world we know by heart: groups and their
reasons, fixes with named ports and stable labels, gotchas, trust and the matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
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

WEB1, WEB2, API, DB, DNS, STRAY = ("10.0.1.10", "10.0.1.11", "10.0.1.20", "10.0.2.10",
                                   "10.0.3.10", "10.0.2.99")
EXT = "203.0.113.7"


def cluster() -> list[dict[str, Any]]:
    web = {"app": "web", "pod-template-hash": "5d8f"}
    return [
        namespace("shop", {"team": "shop"}), namespace("data"), namespace("kube-system"),
        node("node-1", "192.168.0.10", ["10.0.0.0/16"]),
        pod("shop", "web-5d8f-aaaaa", WEB1, web, owner=("ReplicaSet", "web-5d8f")),
        # mid-rollout: the second pod belongs to the next ReplicaSet
        pod("shop", "web-77aa-bbbbb", WEB2, {**web, "pod-template-hash": "77aa"},
            owner=("ReplicaSet", "web-77aa")),
        pod("shop", "api-0", API, {"app": "api"}, [("http", 8080, "TCP")]),
        pod("data", "db-0", DB, {"app": "db", "controller-revision-hash": "db-6c"},
            [("postgres", 5432, "TCP")], owner=("StatefulSet", "db")),
        pod("kube-system", "coredns-1", DNS, {"k8s-app": "kube-dns"}, [("dns", 53, "UDP")]),
    ]


def policies() -> list[dict[str, Any]]:
    return [
        # data locks ingress down and forgets the API
        netpol("data", "db-ingress", {
            "podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "backup"}}}],
                         "ports": [{"port": 5432}]}]}),
        # shop locks egress down: web may reach the api, nothing else
        netpol("shop", "web-egress", {
            "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                        "ports": [{"port": "http"}]}]}),
        netpol("shop", "nobody-home", {"podSelector": {"matchLabels": {"app": "ghost"}}}),
    ]


def records() -> list[dict[str, Any]]:
    flows = [(WEB1, API, 8080, "TCP"), (WEB2, API, 8080, "TCP"), (API, DB, 5432, "TCP"),
             (WEB1, DNS, 53, "UDP"), (WEB2, DNS, 53, "UDP"), (WEB1, EXT, 443, "TCP"),
             (API, STRAY, 80, "TCP")]
    return [vpc_record(s, d, p, proto, src_port=40000 + i, start=1_717_000_000 + i)
            for i, (s, d, p, proto) in enumerate(flows)]


def build(tmp_path: Path, extra_pods: list[dict[str, Any]] | None = None,
          extra_records: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = tmp_path / "report.json"
    md = tmp_path / "pr.md"
    r = CliRunner().invoke(main, [
        "--flows", str(write_vpc_parquet(tmp_path / "flows.parquet",
                                         records() + (extra_records or []))),
        "--cluster", str(write_cluster(tmp_path / "cluster.json",
                                       cluster() + (extra_pods or []))),
        "--policies", str(write_policies(tmp_path / "candidate", policies())),
        "--baseline", str(write_policies(tmp_path / "current", [])),
        "--pod-cidr", "10.0.0.0/16", "--json", str(out), "--markdown", str(md), "-q"])
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())["report"]


def test_report_groups_reasons_and_fixes(tmp_path):
    report = build(tmp_path)
    groups = {(g["source"]["label"], g["destination"]["label"], g["port"]): g
              for g in report["breaks"]["groups"]}
    assert set(groups) == {("shop/web", "kube-system/coredns-1", 53),
                           ("shop/web", "(external)", 443),
                           ("shop/api-0", "data/db", 5432)}
    assert report["headline"].startswith("3 workload pairs would break")

    dns = groups[("shop/web", "kube-system/coredns-1", 53)]
    assert dns["connections"] == 2 and dns["source"]["pods"] == 2
    assert dns["reason"] == ("shop/web is isolated for egress by shop/web-egress; no "
                             "egress rule admits UDP/53 to kube-system/coredns-1")
    assert dns["id"] in report["gotchas"]["dns_breaks"]
    [edit] = dns["fix"]["edits"]
    assert edit["policy"] == "shop/web-egress" and edit["direction"] == "egress"
    assert edit["rule"] == {
        "to": [{"podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": "kube-system"}}}],
        "ports": [{"protocol": "UDP", "port": "dns"}]}
    fixed = yaml.safe_load(dns["fix"]["yaml"])
    assert fixed["metadata"] == {"name": "web-egress", "namespace": "shop"}
    assert fixed["spec"]["egress"][-1] == edit["rule"]
    assert len(fixed["spec"]["egress"]) == 2  # the existing rule is kept

    ext = groups[("shop/web", "(external)", 443)]
    assert ext["fix"]["edits"][0]["rule"]["to"] == [{"ipBlock": {"cidr": f"{EXT}/32"}}]

    db = groups[("shop/api-0", "data/db", 5432)]
    assert "data/db is isolated for ingress by data/db-ingress" in db["reason"]
    # db-ingress' only rule admits 5432 from another peer: the near miss, and the fix
    # repairs that rule instead of adding one beside it
    best = db["near_misses"][0]
    assert (best["policy"], best["rule"], best["direction"]) == ("data/db-ingress", 0,
                                                                 "ingress")
    assert "podSelector requires `app: backup`; shop/api-0 has `app: api`" in best["detail"]
    [edit] = db["fix"]["edits"]
    assert edit["repair_of"] == 0 and edit["policy"] == "data/db-ingress"
    rule = edit["rule"]
    # the StatefulSet's revision hash is not a stable label; the api pod has only `app`
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app": "backup"}}},
                            {"podSelector": {"matchLabels": {"app": "api"}},
                             "namespaceSelector": {"matchLabels": {
                                 "kubernetes.io/metadata.name": "shop"}}}]
    assert rule["ports"] == [{"port": 5432}]
    for g in groups.values():
        # the sample is the group's first connection, ties (dns: one flow each) included,
        # so that the same input gives the same report
        first = g["connection_rows"][0]
        assert (g["sample"]["src_ip"], g["sample"]["dst_ip"]) == (first["src_ip"],
                                                                  first["dst_ip"])
        assert g["fix"]["restores"] == {"connections": g["connections"],
                                        "of": g["connections"], "other_breaks": 0}
        assert g["fix"]["also_opens"]["connections"] == 0
        assert g["fix"]["blast_radius"]["connections"] == 0


def test_report_gotchas_trust_and_matrix(tmp_path):
    report = build(tmp_path)
    got = report["gotchas"]
    assert got["policies_selecting_nothing"] == ["shop/nobody-home"]
    # db-ingress' rule (from app=backup) admitted nothing; web-egress' rule did
    assert [(r["policy"], r["direction"], r["index"]) for r in got["dead_rules"]["rules"]] \
        == [("data/db-ingress", "ingress", 0)]
    assert {r["namespace"]: r["pods"] for r in got["unselected_pods"]} == {
        "shop": 1, "kube-system": 1}
    un = report["trust"]["unresolved"]
    assert un["addresses"] == 1 and un["top"][0]["ip"] == STRAY
    assert un["connections"] == 1 and 0 < un["share_of_flows"] < 1
    cells = {(c["source"], c["destination"]): c["state"] for c in report["matrix"]["cells"]}
    assert cells[("shop", "shop")] == "unchanged"
    assert cells[("shop", "data")] == "break"
    assert cells[("shop", "(external)")] == "break"
    assert cells[("shop", "(unresolved)")] == "unresolved"
    [flows] = report["inputs"]["flows"]
    assert flows["records"] == 7 and flows["first_seen"] < flows["last_seen"]


def test_fix_says_when_the_peer_has_no_stable_label(tmp_path):
    # an unlabelled pod of shop calls the db: the ingress rule can only name its namespace
    batch = pod("shop", "batch-0", "10.0.1.30", {})
    report = build(tmp_path, [batch], [vpc_record("10.0.1.30", DB, 5432, src_port=41000)])
    [g] = [g for g in report["breaks"]["groups"] if g["source"]["label"] == "shop/batch-0"]
    # the rule that admits 5432 from another peer is repaired with the namespace's pods
    assert g["fix"]["edits"][0]["repair_of"] == 0
    assert g["fix"]["edits"][0]["rule"]["from"][-1]["podSelector"] == {}
    assert g["fix"]["notes"] == ["the source pods share no stable label: the rule admits "
                                 "every pod of namespace shop"]
    # the api pod of shop (also denied today) is inside that radius
    assert g["fix"]["blast_radius"]["restores_other_breaks"] == 1
    others = {g["source"]["label"]: g for g in report["breaks"]["groups"]}
    assert others["shop/web"]["fix"]["notes"] == []  # egress: the peer is labelled
