"""Hand-written cases for tests/reference.py, so the property tests' oracle is trustworthy.

Each case is one rule of the Kubernetes NetworkPolicy API documentation."""

from __future__ import annotations

from typing import Any

import pytest

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.reference import (
        ContainerPort,
        Pod,
        World,
        effective_policy_types,
        evaluate,
        selector_matches,
    )
except ImportError:  # pragma: no cover
    from reference import (
        ContainerPort,
        Pod,
        World,
        effective_policy_types,
        evaluate,
        selector_matches,
    )

NS = {"prod": {"env": "prod"}, "dev": {"env": "dev"}, "other": {}}
NODES = {"node-1": "172.16.0.1", "node-2": "172.16.0.2"}

WEB = Pod(
    "prod",
    "web",
    ("10.0.1.10", "fd00:0:0:1::10"),
    {"app": "web", "tier": "front"},
    (
        ContainerPort("http", 8080),
        ContainerPort("dns", 53, "UDP"),
        ContainerPort("sig", 3868, "SCTP"),
    ),
)
DB = Pod(
    "prod",
    "db",
    ("10.0.1.11",),
    {"app": "db"},
    (ContainerPort("http", 5432), ContainerPort(None, 9000)),
)
CLIENT = Pod("dev", "client", ("10.0.2.20", "fd00:0:0:2::20"), {"app": "client"})
PRODCLIENT = Pod("prod", "prodclient", ("10.0.1.21",), {"app": "client"})
OTHER = Pod("other", "x", ("10.0.2.30",), {"app": "client"})
HOSTNET = Pod(
    "prod", "hostnet", ("172.16.0.2",), {"app": "client"}, host_network=True, node="node-2"
)
PODS = (WEB, DB, CLIENT, PRODCLIENT, OTHER, HOSTNET)
EXTERNAL = "203.0.113.9"


def np(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def world(*policies: dict[str, Any]) -> World:
    return World(NS, PODS, NODES, tuple(policies))


def verdict(w: World, src: str, dst: str, port: int = 8080, proto: str = "TCP") -> str:
    return evaluate(w, src, dst, port, proto).word


WEB_SEL = {"matchLabels": {"app": "web"}}


# ---------------------------------------------------------------- selectors


@pytest.mark.parametrize(
    "selector, labels, expected",
    [
        ({}, {}, True),
        (None, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchLabels": {"a": "1"}}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]},
         {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
         {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]},
         {"a": "3"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"b": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"b": "1"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": "1"}, False),
        # matchLabels AND matchExpressions
        ({"matchLabels": {"a": "1"},
          "matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1"}, False),
        ({"matchLabels": {"a": "1"},
          "matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1", "b": "x"}, True),
    ],
)
def test_selector(selector: Any, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


# ---------------------------------------------------------------- policyTypes / isolation


def test_policy_types_defaulting() -> None:
    assert effective_policy_types({}) == {"Ingress"}
    assert effective_policy_types({"egress": []}) == {"Ingress"}
    assert effective_policy_types({"egress": [{}]}) == {"Ingress", "Egress"}
    assert effective_policy_types({"policyTypes": [], "egress": [{}]}) == {"Ingress", "Egress"}
    assert effective_policy_types({"policyTypes": ["Egress"], "ingress": [{}]}) == {"Egress"}


def test_no_policies_allows_everything() -> None:
    w = world()
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "allow"
    assert verdict(w, WEB.ips[0], EXTERNAL, 1, "ICMP") == "allow"


def test_absent_ingress_isolates_and_allows_nothing() -> None:
    w = world(np("prod", "deny", podSelector=WEB_SEL))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "deny"
    assert verdict(w, CLIENT.ips[0], DB.ips[0], 5432) == "allow"  # not selected
    assert verdict(w, WEB.ips[0], CLIENT.ips[0]) == "allow"  # egress not isolated


def test_empty_ingress_list_isolates() -> None:
    w = world(np("prod", "deny", podSelector=WEB_SEL, ingress=[]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "deny"


def test_empty_rule_allows_everything() -> None:
    w = world(np("prod", "deny", podSelector=WEB_SEL), np("prod", "all", ingress=[{}]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "allow"
    assert verdict(w, EXTERNAL, WEB.ips[0], 1, "ICMP") == "allow"
    assert verdict(w, NODES["node-2"], WEB.ips[0], 7, "SCTP") == "allow"
    v = evaluate(w, CLIENT.ips[0], WEB.ips[0], 80, "TCP")
    assert v.ingress.isolated_by == ("prod/deny", "prod/all")
    assert v.ingress.admitted_by == ("prod/all#ingress[0]",)


def test_empty_from_and_ports_lists_mean_all() -> None:
    w = world(np("prod", "p", ingress=[{"from": [], "ports": []}]))
    assert verdict(w, EXTERNAL, WEB.ips[0], 1, "ICMP") == "allow"


def test_egress_defaulted_only_with_egress_rules() -> None:
    # egress rules present, no policyTypes => Ingress and Egress
    dns = {"ports": [{"port": 53, "protocol": "UDP"}]}
    w = world(np("prod", "p", podSelector=WEB_SEL, egress=[dns]))
    assert verdict(w, WEB.ips[0], EXTERNAL, 53, "UDP") == "allow"
    assert verdict(w, WEB.ips[0], EXTERNAL, 53, "TCP") == "deny"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "deny"  # ingress isolated too


def test_egress_only_policy() -> None:
    w = world(np("prod", "p", podSelector=WEB_SEL, policyTypes=["Egress"]))
    assert verdict(w, WEB.ips[0], EXTERNAL, 443) == "deny"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "allow"


def test_rules_of_a_type_not_in_policy_types_are_ignored() -> None:
    w = world(
        np("prod", "iso", podSelector=WEB_SEL),
        np("prod", "eg", podSelector=WEB_SEL, policyTypes=["Egress"], ingress=[{}], egress=[{}]),
    )
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "deny"
    assert verdict(w, WEB.ips[0], CLIENT.ips[0]) == "allow"


def test_both_sides_must_allow() -> None:
    w = world(
        np("dev", "egress-deny", policyTypes=["Egress"]),
        np("prod", "ingress-all", podSelector=WEB_SEL, ingress=[{}]),
    )
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "deny"
    assert verdict(w, PRODCLIENT.ips[0], WEB.ips[0]) == "allow"


def test_policies_are_additive() -> None:
    a = {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]}
    b = {"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}
    w = world(np("prod", "a", podSelector=WEB_SEL, ingress=[a]), np("prod", "b", ingress=[b]))
    assert verdict(w, PRODCLIENT.ips[0], WEB.ips[0], 80) == "allow"
    assert verdict(w, PRODCLIENT.ips[0], WEB.ips[0], 81) == "deny"
    assert verdict(w, EXTERNAL, WEB.ips[0], 81) == "allow"


# ---------------------------------------------------------------- peers


def test_pod_selector_alone_is_policy_namespace() -> None:
    rule = {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[rule]))
    assert verdict(w, PRODCLIENT.ips[0], WEB.ips[0]) == "allow"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "deny"  # same labels, other namespace


def test_namespace_selector_alone_is_all_pods_there() -> None:
    rule = {"from": [{"namespaceSelector": {"matchLabels": {"env": "dev"}}}]}
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[rule]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "allow"
    assert verdict(w, PRODCLIENT.ips[0], WEB.ips[0]) == "deny"
    assert verdict(w, EXTERNAL, WEB.ips[0]) == "deny"


def test_empty_namespace_selector_is_all_pods_everywhere_but_no_external() -> None:
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[{"from": [{"namespaceSelector": {}}]}]))
    for p in (CLIENT, PRODCLIENT, OTHER, DB):
        assert verdict(w, p.ips[0], WEB.ips[0]) == "allow"
    assert verdict(w, EXTERNAL, WEB.ips[0]) == "deny"
    assert verdict(w, NODES["node-2"], WEB.ips[0]) == "deny"


def test_namespace_and_pod_selector_in_one_peer_is_and() -> None:
    peer = {
        "namespaceSelector": {"matchLabels": {"env": "dev"}},
        "podSelector": {"matchLabels": {"app": "client"}},
    }
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[{"from": [peer]}]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "allow"
    assert verdict(w, PRODCLIENT.ips[0], WEB.ips[0]) == "deny"  # right pod, wrong namespace
    assert verdict(w, OTHER.ips[0], WEB.ips[0]) == "deny"


def test_two_peers_are_or() -> None:
    peers = [
        {"namespaceSelector": {"matchLabels": {"env": "dev"}}},
        {"podSelector": {"matchLabels": {"app": "client"}}},
    ]
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[{"from": peers}]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "allow"
    assert verdict(w, PRODCLIENT.ips[0], WEB.ips[0]) == "allow"
    assert verdict(w, OTHER.ips[0], WEB.ips[0]) == "deny"


def test_namespace_name_label_is_implicit() -> None:
    peer = {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["other"]}]}}
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[{"from": [peer]}]))
    assert verdict(w, OTHER.ips[0], WEB.ips[0]) == "allow"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "deny"


def test_selectors_never_match_host_network_pods_or_nodes() -> None:
    # HOSTNET has app=client in prod, but it is host traffic, not a pod
    rule = {"from": [{"podSelector": {}}, {"namespaceSelector": {}}]}
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[rule]))
    assert verdict(w, HOSTNET.ips[0], WEB.ips[0]) == "deny"
    assert verdict(w, NODES["node-2"], WEB.ips[0]) == "deny"
    # and a policy selecting app=client in prod does not isolate the hostNetwork pod
    w = world(np("prod", "iso", podSelector={"matchLabels": {"app": "client"}},
                 policyTypes=["Ingress", "Egress"]))
    assert verdict(w, HOSTNET.ips[0], WEB.ips[0]) == "allow"
    assert verdict(w, WEB.ips[0], HOSTNET.ips[0]) == "allow"
    assert verdict(w, PRODCLIENT.ips[0], WEB.ips[0]) == "deny"


def test_ip_block_with_except_v4() -> None:
    peer = {"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.0/29"]}}
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[{"from": [peer]}]))
    assert verdict(w, "203.0.113.9", WEB.ips[0]) == "allow"
    assert verdict(w, "203.0.113.7", WEB.ips[0]) == "deny"
    assert verdict(w, "203.0.114.1", WEB.ips[0]) == "deny"
    assert verdict(w, "2001:db8::1", WEB.ips[1]) == "deny"  # family mismatch


def test_ip_block_matches_pod_and_node_ips() -> None:
    peer = {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.2.0/24"]}}
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[{"from": [peer]}]))
    assert verdict(w, PRODCLIENT.ips[0], WEB.ips[0]) == "allow"  # 10.0.1.21
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "deny"  # 10.0.2.20 excepted
    assert verdict(w, NODES["node-2"], WEB.ips[0]) == "allow"
    assert verdict(w, HOSTNET.ips[0], WEB.ips[0]) == "allow"
    assert verdict(w, CLIENT.ips[1], WEB.ips[1]) == "deny"  # IPv6: 0.0.0.0/0 doesn't cover


def test_ip_block_v6_with_except() -> None:
    peer = {"ipBlock": {"cidr": "fd00::/48", "except": ["fd00:0:0:2::/64"]}}
    w = world(np("dev", "p", policyTypes=["Egress"], egress=[{"to": [peer]}]))
    assert verdict(w, CLIENT.ips[1], WEB.ips[1]) == "allow"  # fd00:0:0:1::10
    assert verdict(w, CLIENT.ips[1], "fd00:0:0:2::99") == "deny"
    assert verdict(w, CLIENT.ips[1], "2001:db8::1") == "deny"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0]) == "deny"


def test_ipv6_address_spelling_does_not_matter() -> None:
    w = world(np("prod", "p", podSelector=WEB_SEL))
    assert verdict(w, CLIENT.ips[1], "fd00:0000:0000:0001:0000:0000:0000:0010") == "deny"


# ---------------------------------------------------------------- ports


def test_ports_protocol_defaults_to_tcp_and_no_icmp() -> None:
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[{"ports": [{"port": 53}]}]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 53, "TCP") == "allow"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 53, "UDP") == "deny"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 0, "ICMP") == "deny"


def test_port_absent_means_all_ports_of_the_protocol() -> None:
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[{"ports": [{"protocol": "SCTP"}]}]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 1, "SCTP") == "allow"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 30000, "SCTP") == "allow"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 1, "TCP") == "deny"


def test_end_port_inclusive() -> None:
    ports = [{"port": 1000, "endPort": 1002, "protocol": "UDP"}]
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[{"ports": ports}]))
    got = [verdict(w, CLIENT.ips[0], WEB.ips[0], p, "UDP") for p in (999, 1000, 1001, 1002, 1003)]
    assert got == ["deny", "allow", "allow", "allow", "deny"]
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 1001, "TCP") == "deny"


def test_named_port_ingress_resolves_on_destination() -> None:
    w = world(np("prod", "p", ingress=[{"ports": [{"port": "http"}]}]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 8080) == "allow"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 5432) == "deny"
    assert verdict(w, CLIENT.ips[0], DB.ips[0], 5432) == "allow"  # same name, other number
    assert verdict(w, CLIENT.ips[0], DB.ips[0], 8080) == "deny"


def test_named_port_needs_matching_protocol() -> None:
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[
        {"ports": [{"port": "dns"}]},  # TCP by default, but "dns" is UDP on WEB
    ]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 53, "UDP") == "deny"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 53, "TCP") == "deny"
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[
        {"ports": [{"port": "dns", "protocol": "UDP"}, {"port": "sig", "protocol": "SCTP"}]},
    ]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 53, "UDP") == "allow"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 3868, "SCTP") == "allow"
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 3868, "TCP") == "deny"


def test_named_port_egress_resolves_on_destination_not_source() -> None:
    w = world(np("dev", "p", policyTypes=["Egress"], egress=[{"ports": [{"port": "http"}]}]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 8080) == "allow"
    assert verdict(w, CLIENT.ips[0], DB.ips[0], 5432) == "allow"
    assert verdict(w, CLIENT.ips[0], DB.ips[0], 8080) == "deny"
    # never matches a non-pod destination
    assert verdict(w, CLIENT.ips[0], EXTERNAL, 8080) == "deny"
    assert verdict(w, CLIENT.ips[0], NODES["node-1"], 8080) == "deny"


def test_unknown_named_port_matches_nothing() -> None:
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[{"ports": [{"port": "nope"}]}]))
    assert verdict(w, CLIENT.ips[0], WEB.ips[0], 8080) == "deny"


def test_rule_needs_peer_and_port() -> None:
    rule = {"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443}]}
    w = world(np("prod", "p", podSelector=WEB_SEL, ingress=[rule]))
    assert verdict(w, EXTERNAL, WEB.ips[0], 443) == "allow"
    assert verdict(w, EXTERNAL, WEB.ips[0], 80) == "deny"
    assert verdict(w, "198.51.100.1", WEB.ips[0], 443) == "deny"


def test_external_and_node_endpoints_have_no_policy() -> None:
    w = world(np("prod", "all", policyTypes=["Ingress", "Egress"]))
    assert verdict(w, EXTERNAL, NODES["node-1"], 22) == "allow"
    assert verdict(w, WEB.ips[0], EXTERNAL, 443) == "deny"
    assert verdict(w, CLIENT.ips[0], EXTERNAL, 443) == "allow"


def test_resident_node_can_always_reach_its_pods() -> None:
    # "Pods cannot ... block access from their resident node" (kubelet probes)
    w = world(np("prod", "deny-all", policyTypes=["Ingress", "Egress"]))
    assert WEB.node == "node-1" and HOSTNET.node == "node-2"
    assert verdict(w, NODES["node-1"], WEB.ips[0], 8080) == "allow"
    assert verdict(w, NODES["node-2"], WEB.ips[0], 8080) == "deny"  # another node
    assert verdict(w, HOSTNET.ips[0], WEB.ips[0], 8080) == "deny"  # hostNetwork on node-2
    # only ingress: egress from the pod to its node is policed
    assert verdict(w, WEB.ips[0], NODES["node-1"], 10250) == "deny"
    # and the exception can be switched off to see the pure policy verdict
    strict = evaluate(w, NODES["node-1"], WEB.ips[0], 8080, "TCP", resident_node_allowed=False)
    assert strict.word == "deny"


def test_pod_to_itself_is_policed() -> None:
    w = world(np("prod", "deny", podSelector=WEB_SEL))
    assert verdict(w, WEB.ips[0], WEB.ips[0], 8080) == "deny"
