"""NetworkPolicy v1 semantics, one test per rule and per trap in design.md, through the CLI
on real-format files (kubectl JSON, policy YAML, VPC Parquet)."""

from __future__ import annotations

from typing import Any

import pytest
from worldfiles import namespace, netpol, node, pod, vpc_record

XA, XB, YA, YB, ZA = "10.0.1.10", "10.0.1.11", "10.0.2.10", "10.0.2.11", "10.0.3.10"
NODE1, NODE2 = "192.168.0.10", "192.168.0.11"
EXT = "203.0.113.7"
PORTS = [("serve-80-tcp", 80, "TCP"), ("serve-81-tcp", 81, "TCP"), ("serve-80-udp", 80, "UDP"),
         ("serve-80-sctp", 80, "SCTP"), ("dns", 53, "UDP")]


def world(**pod_overrides: Any) -> list[dict[str, Any]]:
    return [
        namespace("x", {"ns": "x", "env": "prod"}),
        namespace("y", {"ns": "y", "env": "dev"}),
        namespace("z", {"ns": "z"}),
        node("node-1", NODE1, ["10.0.0.0/16"]),
        node("node-2", NODE2, ["10.1.0.0/16"]),
        pod("x", "a", XA, {"pod": "a", "tier": "web"}, PORTS),
        pod("x", "b", XB, {"pod": "b"}, PORTS),
        pod("y", "a", YA, {"pod": "a", "tier": "db"}, PORTS),
        pod("y", "b", YB, {"pod": "b"}, [("serve-80-tcp", 8080, "TCP")]),
        pod("z", "a", ZA, {"pod": "a"}, PORTS, node="node-2"),
    ]


def deny_all_ingress(ns: str) -> dict[str, Any]:
    return netpol(ns, "deny-ingress", {"podSelector": {}})


def probes(*pairs: tuple[str, str], port: int = 80, proto: str = "TCP") -> list[dict[str, Any]]:
    return [vpc_record(s, d, port, proto, src_port=40000 + i) for i, (s, d) in enumerate(pairs)]


# --- isolation and policyTypes defaulting ---------------------------------------------

def test_no_policy_means_allow_all(simulate_world):
    run = simulate_world(world(), [], probes((XA, YA), (YA, XA)))
    assert run.verdict(XA, YA, 80) == "allow"
    assert run.conn(XA, YA, 80)["candidate_reason"].startswith("egress: not isolated")


def test_policy_without_types_and_rules_isolates_ingress_only(simulate_world):
    run = simulate_world(world(), [deny_all_ingress("y")], probes((XA, YA), (YA, XA)))
    assert run.verdict(XA, YA, 80) == "deny"
    assert run.verdict(YA, XA, 80) == "allow"  # egress of y/a not isolated
    row = run.conn(XA, YA, 80)
    assert row["candidate_ingress_isolated_by"] == ["y/deny-ingress"]
    assert row["candidate_ingress_allowed_by"] == []


def test_egress_rules_without_policy_types_isolate_egress_too(simulate_world):
    pol = netpol("x", "egress-only-to-y", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})
    run = simulate_world(world(), [pol], probes((XA, YA), (XA, ZA), (XB, XA)))
    assert run.verdict(XA, YA, 80) == "allow"
    assert run.verdict(XA, ZA, 80) == "deny"  # egress isolated by the defaulting
    assert run.verdict(XB, XA, 80) == "deny"  # ingress isolated too (Ingress always)


def test_empty_egress_list_without_policy_types_does_not_isolate_egress(simulate_world):
    pol = netpol("x", "p", {"podSelector": {}, "egress": [], "ingress": [{}]})
    run = simulate_world(world(), [pol], probes((XA, ZA)))
    assert run.verdict(XA, ZA, 80) == "allow"
    assert run.conn(XA, ZA, 80)["candidate_egress_isolated_by"] == []


def test_ingress_empty_list_vs_empty_rule_vs_absent(simulate_world):
    empty_list = netpol("y", "p", {"podSelector": {"matchLabels": {"pod": "a"}},
                                   "policyTypes": ["Ingress"], "ingress": []})
    empty_rule = netpol("y", "q", {"podSelector": {"matchLabels": {"pod": "b"}},
                                   "policyTypes": ["Ingress"], "ingress": [{}]})
    absent = netpol("x", "r", {"podSelector": {"matchLabels": {"pod": "a"}},
                               "policyTypes": ["Ingress"]})
    run = simulate_world(world(), [empty_list, empty_rule, absent],
                         probes((ZA, YA), (ZA, YB), (ZA, XA), (EXT, YB)))
    assert run.verdict(ZA, YA, 80) == "deny"
    assert run.verdict(ZA, YB, 80) == "allow"
    assert run.verdict(EXT, YB, 80) == "allow"  # [{}] admits every source, external too
    assert run.verdict(ZA, XA, 80) == "deny"


def test_empty_policy_types_list_is_defaulted(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "policyTypes": []})
    run = simulate_world(world(), [pol], probes((XA, YA), (YA, XA)))
    assert run.verdict(XA, YA, 80) == "deny"  # Ingress, as if policyTypes were absent
    assert run.verdict(YA, XA, 80) == "allow"


def test_explicit_egress_type_ignores_ingress_rules(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "policyTypes": ["Egress"],
                            "ingress": [{"from": [{"podSelector": {}}]}]})
    run = simulate_world(world(), [pol], probes((XA, YA), (YA, XA)))
    assert run.verdict(XA, YA, 80) == "allow"  # ingress not isolated
    assert run.verdict(YA, XA, 80) == "deny"


def test_union_of_policies_selecting_a_pod(simulate_world):
    p1 = netpol("y", "from-x", {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}]})
    p2 = netpol("y", "from-z", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]})
    run = simulate_world(world(), [p1, p2], probes((XA, YA), (ZA, YA), (ZA, YB)))
    assert run.verdict(XA, YA, 80) == "allow"
    assert run.verdict(ZA, YA, 80) == "allow"
    assert run.verdict(ZA, YB, 80) == "deny"
    assert run.conn(ZA, YA, 80)["candidate_ingress_isolated_by"] == ["y/from-x", "y/from-z"]
    assert run.conn(ZA, YA, 80)["candidate_ingress_allowed_by"] == ["y/from-z ingress[0]"]


# --- peers -------------------------------------------------------------------------------

def test_namespace_and_pod_selector_in_one_peer_is_and(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "x"}},
         "podSelector": {"matchLabels": {"pod": "a"}}}]}]})
    run = simulate_world(world(), [pol], probes((XA, YA), (XB, YA), (ZA, YA)))
    assert run.verdict(XA, YA, 80) == "allow"
    assert run.verdict(XB, YA, 80) == "deny"
    assert run.verdict(ZA, YA, 80) == "deny"  # z/a has pod=a but the namespace is wrong


def test_separate_peers_are_or(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "x"}}},
        {"podSelector": {"matchLabels": {"pod": "a"}}}]}]})
    run = simulate_world(world(), [pol], probes((XB, YA), (ZA, YB), (YA, YB)))
    assert run.verdict(XB, YA, 80) == "allow"  # any pod in x
    assert run.verdict(ZA, YB, 80) == "deny"  # pod=a but not in the policy's namespace
    assert run.verdict(YA, YB, 80) == "allow"  # pod=a in y


def test_pod_selector_only_peer_means_the_policy_namespace(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
    run = simulate_world(world(), [pol], probes((YB, YA), (XA, YA)))
    assert run.verdict(YB, YA, 80) == "allow"
    assert run.verdict(XA, YA, 80) == "deny"


def test_empty_namespace_selector_means_all_namespaces_but_no_external(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {}}]}]})
    run = simulate_world(world(), [pol], probes((ZA, YA), (EXT, YA), (NODE2, YA)))
    assert run.verdict(ZA, YA, 80) == "allow"
    assert run.verdict(EXT, YA, 80) == "deny"
    assert run.verdict(NODE2, YA, 80) == "deny"  # a node is not a pod


def test_namespace_selector_matches_implied_metadata_name_label(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "z"}}}]}]})
    run = simulate_world(world(), [pol], probes((ZA, YA), (XA, YA)))
    assert run.verdict(ZA, YA, 80) == "allow"
    assert run.verdict(XA, YA, 80) == "deny"


@pytest.mark.parametrize("expr,allowed", [
    ({"key": "pod", "operator": "In", "values": ["a", "c"]}, {XA, ZA}),
    ({"key": "pod", "operator": "NotIn", "values": ["a"]}, {XB}),
    ({"key": "tier", "operator": "Exists"}, {XA}),
    ({"key": "tier", "operator": "DoesNotExist"}, {XB, ZA}),
])
def test_match_expressions(simulate_world, expr, allowed):
    pol = netpol("y", "p", {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [expr]}}]}]})
    run = simulate_world(world(), [pol], probes((XA, YA), (XB, YA), (ZA, YA)))
    got = {src for src in (XA, XB, ZA) if run.verdict(src, YA, 80) == "allow"}
    assert got == allowed


def test_not_in_matches_pods_without_the_key(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [{"from": [{
        "namespaceSelector": {"matchExpressions": [
            {"key": "env", "operator": "NotIn", "values": ["prod"]}]}}]}]})
    run = simulate_world(world(), [pol], probes((XA, YA), (ZA, YA), (YB, YA)))
    assert run.verdict(XA, YA, 80) == "deny"  # env=prod
    assert run.verdict(ZA, YA, 80) == "allow"  # z has no env label
    assert run.verdict(YB, YA, 80) == "allow"  # env=dev


# --- ports -------------------------------------------------------------------------------

def test_protocol_defaults_to_tcp(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]})
    recs = probes((XA, YA)) + probes((XB, YA), proto="UDP") + probes((ZA, YA), proto="SCTP")
    run = simulate_world(world(), [pol], recs)
    assert run.verdict(XA, YA, 80, "TCP") == "allow"
    assert run.verdict(XB, YA, 80, "UDP") == "deny"
    assert run.verdict(ZA, YA, 80, "SCTP") == "deny"


def test_udp_and_sctp_ports(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [{"ports": [
        {"protocol": "UDP", "port": 80}, {"protocol": "SCTP", "port": 80}]}]})
    recs = probes((XA, YA), proto="UDP") + probes((XB, YA), proto="SCTP") + probes((ZA, YA))
    run = simulate_world(world(), [pol], recs)
    assert run.verdict(XA, YA, 80, "UDP") == "allow"
    assert run.verdict(XB, YA, 80, "SCTP") == "allow"
    assert run.verdict(ZA, YA, 80, "TCP") == "deny"


def test_port_without_number_means_all_ports_of_that_protocol(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "UDP"}]}]})
    recs = probes((XA, YA), port=53, proto="UDP") + probes((XB, YA), port=53)
    run = simulate_world(world(), [pol], recs)
    assert run.verdict(XA, YA, 53, "UDP") == "allow"
    assert run.verdict(XB, YA, 53, "TCP") == "deny"


def test_end_port_range_is_inclusive(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [
        {"ports": [{"port": 80, "endPort": 81}]}]})
    recs = probes((XA, YA), port=80) + probes((XA, YA), port=81) + probes((XA, YA), port=82)
    run = simulate_world(world(), [pol], recs)
    assert [run.verdict(XA, YA, p) for p in (80, 81, 82)] == ["allow", "allow", "deny"]


def test_rule_with_ports_never_matches_icmp_but_rule_without_ports_does(simulate_world):
    with_ports = netpol("y", "p", {"podSelector": {"matchLabels": {"pod": "a"}},
                                   "ingress": [{"ports": [{"port": 80}]}]})
    without = netpol("y", "q", {"podSelector": {"matchLabels": {"pod": "b"}},
                                "ingress": [{"from": [{"namespaceSelector": {}}]}]})
    recs = [vpc_record(XA, YA, 0, "ICMP", src_port=0), vpc_record(XA, YB, 0, "ICMP", src_port=0)]
    run = simulate_world(world(), [with_ports, without], recs)
    assert run.verdict(XA, YA, 0, "ICMP") == "deny"
    assert run.verdict(XA, YB, 0, "ICMP") == "allow"


def test_named_port_resolves_against_destination_pod_for_ingress(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [
        {"ports": [{"port": "serve-80-tcp"}]}]})
    # y/a declares serve-80-tcp as 80, y/b as 8080
    recs = probes((XA, YA), port=80) + probes((XA, YB), port=80) + probes((XB, YB), port=8080)
    run = simulate_world(world(), [pol], recs)
    assert run.verdict(XA, YA, 80) == "allow"
    assert run.verdict(XA, YB, 80) == "deny"
    assert run.verdict(XB, YB, 8080) == "allow"


def test_named_port_resolves_against_destination_pod_for_egress(simulate_world):
    pol = netpol("x", "p", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"ports": [{"port": "serve-80-tcp"}]}]})
    recs = (probes((XA, YA), port=80) + probes((XA, YB), port=8080)
            + probes((XA, YB), port=80) + probes((XA, EXT), port=80))
    run = simulate_world(world(), [pol], recs)
    assert run.verdict(XA, YA, 80) == "allow"
    assert run.verdict(XA, YB, 8080) == "allow"
    assert run.verdict(XA, YB, 80) == "deny"
    assert run.verdict(XA, EXT, 80) == "deny"  # a named port never matches a non-pod


def test_named_port_must_match_protocol(simulate_world):
    # serve-80-udp is declared for UDP; asking for it over TCP matches nothing
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [
        {"ports": [{"protocol": "TCP", "port": "serve-80-udp"}]}]})
    recs = probes((XA, YA), port=80) + probes((XB, YA), port=80, proto="UDP")
    run = simulate_world(world(), [pol], recs)
    assert run.verdict(XA, YA, 80) == "deny"
    assert run.verdict(XB, YA, 80, "UDP") == "deny"


# --- ipBlock -------------------------------------------------------------------------------

def test_ip_block_with_except_applies_to_pod_ips(simulate_world):
    pol = netpol("x", "p", {"podSelector": {"matchLabels": {"pod": "a"}},
                            "policyTypes": ["Egress"], "egress": [{"to": [
                                {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.0/24"]}}]}]})
    run = simulate_world(world(), [pol], probes((XA, XB), (XA, YA), (XA, EXT)))
    assert run.verdict(XA, XB, 80) == "allow"
    assert run.verdict(XA, YA, 80) == "deny"
    assert run.verdict(XA, EXT, 80) == "deny"


def test_ip_block_ipv6(simulate_world):
    objs = world() + [node("node-6", "fd00:1::1", ["fd00:10::/64"]),
                      pod("y", "v6", "fd00:10::5", {"pod": "v6"}, PORTS, node="node-6")]
    pol = netpol("y", "p", {"podSelector": {"matchLabels": {"pod": "v6"}}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:bad::/48"]}}]}]})
    recs = probes(("2001:db8:1::9", "fd00:10::5"), ("2001:db8:bad::9", "fd00:10::5"),
                  ("2001:0DB8:0002:0000::9", "fd00:10::5"), ("2600:1f18::7", "fd00:10::5"))
    run = simulate_world(objs, [pol], recs)
    assert run.verdict("2001:db8:1::9", "fd00:10::5", 80) == "allow"
    assert run.verdict("2001:db8:bad::9", "fd00:10::5", 80) == "deny"
    assert run.verdict("2001:db8:2::9", "fd00:10::5", 80) == "allow"  # canonicalised
    assert run.verdict("2600:1f18::7", "fd00:10::5", 80) == "deny"


def test_ipv4_block_does_not_match_ipv6(simulate_world):
    """A dual-stack pod reached over IPv6: 0.0.0.0/0 admits none of it."""
    objs = world() + [pod("y", "dual", ["10.0.2.40", "fd00:10::40"], {"pod": "dual"}, PORTS)]
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]})
    run = simulate_world(objs, [pol], probes(("2001:db8::1", "fd00:10::40"),
                                              (EXT, "10.0.2.40")))
    assert run.verdict("2001:db8::1", "fd00:10::40", 80) == "deny"
    assert run.verdict(EXT, "10.0.2.40", 80) == "allow"


# --- both ends ---------------------------------------------------------------------------

def test_egress_and_ingress_must_both_allow(simulate_world):
    egress = netpol("x", "e", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}]}]})
    ingress = netpol("y", "i", {"podSelector": {"matchLabels": {"pod": "b"}}, "ingress": []})
    run = simulate_world(world(), [egress, ingress], probes((XA, YA), (XA, YB), (XA, ZA)))
    assert run.verdict(XA, YA, 80) == "allow"
    assert run.verdict(XA, YB, 80) == "deny"
    assert run.conn(XA, YB, 80)["candidate_egress"] == "allow"
    assert run.conn(XA, YB, 80)["candidate_ingress"] == "deny"
    assert run.verdict(XA, ZA, 80) == "deny"
    assert run.conn(XA, ZA, 80)["candidate_egress"] == "deny"


def test_external_endpoints_have_no_policy(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]})
    run = simulate_world(world(), [pol], probes((EXT, XA), (YA, EXT)))
    assert run.verdict(EXT, XA, 80) == "allow"
    assert run.verdict(YA, EXT, 80) == "allow"
    assert run.conn(EXT, XA, 80)["src_kind"] == "external"


# --- nodes, hostNetwork, loopback ------------------------------------------------------------

def test_host_network_pods_are_nodes_not_pods(simulate_world):
    objs = world() + [pod("x", "exporter", NODE2, {"pod": "a"}, [("metrics", 9100, "TCP")],
                          node="node-2", host_network=True)]
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]})
    run = simulate_world(objs, [pol], probes((NODE2, YA), (XA, YA)))
    assert run.conn(NODE2, YA, 80)["src_kind"] == "node"
    assert run.verdict(NODE2, YA, 80) == "deny"  # labels of a hostNetwork pod don't count
    assert run.verdict(XA, YA, 80) == "allow"


def test_own_node_reaches_its_pods_despite_policy(simulate_world):
    pol = netpol("x", "p", {"podSelector": {}, "ingress": []})
    run = simulate_world(world(), [pol], probes((NODE1, XA), (NODE2, XA)))
    assert run.verdict(NODE1, XA, 80) == "allow"  # kubelet probes from x/a's node
    assert "own node" in run.conn(NODE1, XA, 80)["candidate_reason"]
    assert run.verdict(NODE2, XA, 80) == "deny"


# --- replies and direction ----------------------------------------------------------------

def test_replies_fold_into_the_connection_and_never_break(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": []})
    recs = [vpc_record(XA, YA, 80, src_port=45000, packets=3, nbytes=300),
            vpc_record(YA, XA, 45000, src_port=80, packets=2, nbytes=2000),
            vpc_record(YA, XA, 45001, src_port=80, packets=1, nbytes=100)]
    run = simulate_world(world(), [pol], recs)
    assert len(run.rows) == 1
    row = run.conn(XA, YA, 80)
    assert (row["flows"], row["reply_flows"], row["bytes"]) == (3, 2, 2400)
    assert row["change"] == "break"


def test_reply_to_declared_port_is_recognised_without_ephemeral_ports(simulate_world):
    # client port 5000 is not ephemeral; y/a declares 80 -> the record from :80 is a reply
    recs = [vpc_record(YA, XA, 5000, src_port=80)]
    run = simulate_world(world(), [], recs)
    row = run.conn(XA, YA, 80)
    assert row["direction"] == "declared port"
    assert row["direction_guessed"] is False


def test_reply_from_privileged_port_to_a_declared_port_is_a_reply(simulate_world):
    # an external HTTPS server answers y/b, whose client port happens to be 8080, a port
    # y/b declares: the privileged source port says who serves
    recs = [vpc_record(EXT, YB, 8080, src_port=443)]
    run = simulate_world(world(), [], recs)
    row = run.conn(YB, EXT, 443)
    assert row["reply_flows"] == 1


def test_both_directions_of_undeclared_ports_name_the_server_by_the_records(simulate_world):
    """No flag, no declared port, no ephemeral port: where both directions were recorded
    the lower port serves, and with equal ports the side that sent first opened it; a
    tuple seen one way only stays as recorded (a guess, said)."""
    recs = [vpc_record(XA, YA, 6000, src_port=5000, start=1_717_000_001),
            vpc_record(YA, XA, 5000, src_port=6000, start=1_717_000_002),
            vpc_record(XA, YA, 7000, src_port=7000, start=1_717_000_005),
            vpc_record(YA, XA, 7000, src_port=7000, start=1_717_000_003),
            vpc_record(XA, YA, 9000, src_port=8000, start=1_717_000_004)]
    run = simulate_world(world(), [], recs)
    lower = run.conn(YA, XA, 5000)          # y/a's port 6000 is the client's
    assert (lower["flows"], lower["reply_flows"]) == (2, 1)
    assert lower["direction"] == "port heuristic" and lower["direction_guessed"]
    first = run.conn(YA, XA, 7000)          # y/a sent first
    assert (first["flows"], first["reply_flows"]) == (2, 1)
    alone = run.conn(XA, YA, 9000)
    assert alone["direction"] == "as recorded" and alone["reply_flows"] == 0
    assert len(run.rows) == 3


def test_tcp_flags_decide_direction_over_ports(simulate_world, tmp_path):
    recs = [dict(vpc_record(XA, YA, 40001, src_port=40000), tcp_flags=18)]
    import pyarrow as pa
    import pyarrow.parquet as pq
    from click.testing import CliRunner
    from worldfiles import write_cluster, write_policies

    from simulator.cli import main
    table = pa.Table.from_pylist(recs)
    pq.write_table(table, tmp_path / "f.parquet")
    write_cluster(tmp_path / "c.json", world())
    write_policies(tmp_path / "p", [])
    res = CliRunner().invoke(main, ["--flows", str(tmp_path / "f.parquet"), "--cluster",
                                    str(tmp_path / "c.json"), "--policies", str(tmp_path / "p"),
                                    "--out", str(tmp_path / "o.parquet"), "-q"])
    assert res.exit_code == 0, res.output
    row = pq.read_table(tmp_path / "o.parquet").to_pylist()[0]
    # SYN-ACK from x/a: y/a opened the connection to x/a's port 40000
    assert (row["src_ip"], row["dst_ip"], row["dst_port"]) == (YA, XA, 40000)
    assert row["direction"] == "tcp flags"


# --- resolution ---------------------------------------------------------------------------

def test_pod_ip_reuse_resolves_by_time(simulate_world):
    t_old, t_new = 1_717_000_000, 1_717_300_000  # 2024-05-29, 2024-06-02
    objs = world() + [
        pod("z", "old", "10.0.9.9", {"pod": "old"}, PORTS, created="2024-05-01T00:00:00Z",
            deleted="2024-06-01T00:00:00Z"),
        pod("z", "new", "10.0.9.9", {"pod": "new"}, PORTS, created="2024-06-01T00:00:00Z"),
    ]
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "new"}}}]}]})
    recs = [vpc_record("10.0.9.9", YA, 80, start=t_old), vpc_record("10.0.9.9", YA, 80,
                                                                    start=t_new)]
    run = simulate_world(objs, [pol], recs)
    by_pod = {r["src_pod"]: r for r in run.rows}
    assert set(by_pod) == {"old", "new"}
    assert by_pod["old"]["candidate"] == "deny"
    assert by_pod["new"]["candidate"] == "allow"


def test_colliding_side_key_hashes_are_rehashed(simulate_world, monkeypatch):
    """Tuples find their resolved sides by a hash of the side's columns: a collision must
    never merge two addresses."""
    from simulator import connections

    recs = probes((XA, YA), (YA, XA), (XB, ZA), (NODE1, XA)) + [vpc_record(EXT, XA, 443)]
    expected = simulate_world(world(), [deny_all_ingress("y")], recs).rows
    real = connections._side_hash
    salts = []

    def colliding(columns: Any, salt: int) -> str:
        salts.append(salt)
        return "0::BIGINT" if salt == 0 else real(columns, salt)

    monkeypatch.setattr(connections, "_side_hash", colliding)
    rows = simulate_world(world(), [deny_all_ingress("y")], recs).rows
    assert 0 in salts and 1 in salts
    key = lambda r: (r["src_ip"], r["dst_ip"], r["dst_port"])  # noqa: E731
    assert sorted(rows, key=key) == sorted(expected, key=key)
    assert len(rows) == 5


def test_flow_before_pod_existed_is_unresolved(simulate_world):
    objs = world() + [pod("z", "late", "10.0.9.9", {"pod": "late"}, PORTS,
                          created="2030-01-01T00:00:00Z")]
    run = simulate_world(objs, [deny_all_ingress("y")], probes(("10.0.9.9", YA)))
    row = run.conn("10.0.9.9", YA, 80)
    assert row["src_kind"] == "unresolved"
    assert row["change"] == "unresolved"


def test_records_without_a_real_time_resolve_to_the_snapshot(simulate_world):
    # start=0 means the source had no timestamp, not that the flow happened in 1970
    recs = [vpc_record(XA, YA, 80, start=0, end=0)]
    run = simulate_world(world(), [deny_all_ingress("y")], recs)
    row = run.conn(XA, YA, 80)
    assert (row["src_kind"], row["dst_kind"], row["change"]) == ("pod", "pod", "break")


def test_unresolved_in_pod_cidr_is_never_external(simulate_world):
    pol = netpol("y", "p", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})
    run = simulate_world(world(), [pol], probes(("10.0.7.7", YA), ("10.9.9.9", YA)))
    unresolved = run.conn("10.0.7.7", YA, 80)
    assert unresolved["src_kind"] == "unresolved"
    assert unresolved["candidate"] == "unknown"  # a pod rule might admit it: not guessed
    assert unresolved["change"] == "unresolved"
    external = run.conn("10.9.9.9", YA, 80)
    assert external["src_kind"] == "external"
    assert external["candidate"] == "deny"


def test_pod_cidr_option_marks_unresolved(simulate_world):
    run = simulate_world(world(), [], probes(("10.9.9.9", YA)), extra=["--pod-cidr",
                                                                       "10.9.0.0/16"])
    assert run.conn("10.9.9.9", YA, 80)["src_kind"] == "unresolved"


def test_unresolved_peer_decided_when_policy_does_not_depend_on_it(simulate_world):
    run = simulate_world(world(), [deny_all_ingress("y")], probes(("10.0.7.7", YA)))
    row = run.conn("10.0.7.7", YA, 80)
    assert row["candidate_ingress"] == "deny"  # no rule could admit anyone
    assert row["change"] == "unresolved"


def test_workload_is_named_by_the_deployment(simulate_world):
    objs = world() + [pod("z", "api-7d9f8c6b5-x2x4z", "10.0.3.20",
                          {"app": "api", "pod-template-hash": "7d9f8c6b5"}, PORTS,
                          owner=("ReplicaSet", "api-7d9f8c6b5"))]
    run = simulate_world(objs, [], probes(("10.0.3.20", YA)))
    assert run.conn("10.0.3.20", YA, 80)["src_workload"] == "Deployment/api"


# --- baseline, diff, calibration -------------------------------------------------------------

def test_change_classes_against_a_baseline_set(simulate_world):
    baseline = [netpol("y", "b", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "x"}}}]}]})]
    candidate = [netpol("y", "c", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "z"}}}]}]})]
    run = simulate_world(world(), candidate, probes((XA, YA), (ZA, YA), (YB, YA), (YA, XA)),
                         baseline=baseline)
    assert run.conn(XA, YA, 80)["change"] == "break"
    assert run.conn(ZA, YA, 80)["change"] == "newly_allowed"
    assert run.conn(YB, YA, 80)["change"] == "still_denied"
    assert run.conn(YA, XA, 80)["change"] == "still_allowed"
    assert "y/b ingress[0]" in run.conn(XA, YA, 80)["baseline_reason"]


def test_baseline_defaults_to_observed_verdicts(simulate_world):
    recs = [vpc_record(XA, YA, 80, action="ACCEPT"), vpc_record(XB, YA, 80, action="REJECT")]
    run = simulate_world(world(), [], recs)
    assert run.conn(XA, YA, 80)["baseline"] == "allow"
    assert run.conn(XB, YA, 80)["baseline"] == "deny"
    assert run.conn(XB, YA, 80)["change"] == "newly_allowed"


def test_self_calibration_flags_disagreement(simulate_world):
    baseline = [deny_all_ingress("y")]
    recs = [vpc_record(XA, YA, 80, action="ACCEPT"), vpc_record(XA, XB, 80, action="ACCEPT")]
    run = simulate_world(world(), [], recs, baseline=baseline)
    assert run.conn(XA, YA, 80)["baseline_agrees"] is False
    assert run.conn(XA, XB, 80)["baseline_agrees"] is True
