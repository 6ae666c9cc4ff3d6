"""CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy, on the topology of Cilium's
connectivity test suite (namespace cilium-test-1: client, client2, echo-same-node,
echo-other-node, host-network pods on two workers, world addresses). Each test is one
statement of Cilium's semantics that differs from NetworkPolicy's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from worldfiles import (
    cilium_policy,
    config_map,
    endpoint_slice,
    namespace,
    netpol,
    node,
    pod,
    service,
    vpc_record,
    write_cluster,
    write_policies,
    write_vpc_parquet,
)

from simulator.cli import main

NS = "cilium-test-1"
W1, W2, CP = "172.18.0.2", "172.18.0.3", "172.18.0.4"       # workers, control plane
CLIENT, CLIENT2 = "10.244.1.10", "10.244.1.11"               # on worker 1
ECHO_SAME, ECHO_OTHER = "10.244.1.20", "10.244.2.20"         # worker 1, worker 2
DNS = "10.244.2.53"                                          # kube-system/coredns
OTHER_NS_POD = "10.244.2.30"                                 # other-ns/probe
WORLD, WORLD2 = "1.1.1.1", "8.8.8.8"


def objects(cluster_name: str | None = None) -> list[dict[str, Any]]:
    objs = [
        namespace(NS, {"team": "cilium"}), namespace("kube-system"),
        namespace("other-ns", {"team": "other"}),
        node("worker-1", W1, ["10.244.1.0/24"]), node("worker-2", W2, ["10.244.2.0/24"]),
        node("control-plane", CP, ["10.244.0.0/24"]),
        pod(NS, "client-1", CLIENT, {"kind": "client", "name": "client"}, node="worker-1",
            service_account="client"),
        pod(NS, "client2-1", CLIENT2, {"kind": "client", "name": "client2", "other": "client"},
            node="worker-1", service_account="client2"),
        pod(NS, "echo-same-node-1", ECHO_SAME, {"kind": "echo", "name": "echo-same-node"},
            [("http", 8080, "TCP")], node="worker-1"),
        pod(NS, "echo-other-node-1", ECHO_OTHER, {"kind": "echo", "name": "echo-other-node"},
            [("http", 8080, "TCP")], node="worker-2"),
        pod(NS, "host-netns-1", W1, {"kind": "host-netns"}, node="worker-1", host_network=True),
        pod(NS, "host-netns-2", W2, {"kind": "host-netns"}, node="worker-2", host_network=True),
        pod("kube-system", "coredns-1", DNS, {"k8s-app": "kube-dns"},
            [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")], node="worker-2"),
        pod("other-ns", "probe", OTHER_NS_POD, {"kind": "client"}, node="worker-2"),
        # the API server runs on the control plane's host network
        endpoint_slice("default", "kubernetes", [CP]),
    ]
    if cluster_name:
        objs.append(config_map("kube-system", "cilium-config", {"cluster-name": cluster_name}))
    return objs


FLOWS = [
    vpc_record(CLIENT, ECHO_SAME, 8080), vpc_record(CLIENT, ECHO_OTHER, 8080),
    vpc_record(CLIENT2, ECHO_SAME, 8080), vpc_record(CLIENT, DNS, 53, "UDP"),
    vpc_record(CLIENT, DNS, 53, "TCP"), vpc_record(CLIENT, WORLD, 443),
    vpc_record(CLIENT, WORLD2, 80), vpc_record(CLIENT, W1, 10250),
    vpc_record(CLIENT, W2, 10250), vpc_record(CLIENT, CP, 6443),
    vpc_record(W1, ECHO_SAME, 8080), vpc_record(W2, ECHO_SAME, 8080),
    vpc_record(OTHER_NS_POD, ECHO_SAME, 8080), vpc_record(WORLD, ECHO_SAME, 8080),
]

CLIENT_SEL = {"matchLabels": {"kind": "client"}}
ECHO_SEL = {"matchLabels": {"kind": "echo"}}


def verdicts(simulate_world, policies: list[dict[str, Any]], *,
             objs: list[dict[str, Any]] | None = None,
             flows: list[dict[str, Any]] | None = None
             ) -> dict[tuple[str, str, int, str], str]:
    run = simulate_world(objs or objects(), policies, flows or FLOWS)
    return {(r["src_ip"], r["dst_ip"], r["dst_port"], r["protocol"]): r["candidate"]
            for r in run.rows}


def v(got: dict[tuple[str, str, int, str], str], src: str, dst: str, port: int,
      proto: str = "TCP") -> str:
    return got[(src, dst, port, proto)]


def test_an_egress_section_isolates_and_allows_are_a_union(simulate_world):
    # client-egress-only-dns: DNS to kube-dns on port 53 (no protocol: every protocol)
    dns = cilium_policy("client-egress-only-dns", {
        "endpointSelector": CLIENT_SEL,
        "egress": [{"toEndpoints": [{"matchLabels": {
            "k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns"}}],
            "toPorts": [{"ports": [{"port": "53"}]}]}]}, ns=NS)
    echo = cilium_policy("client-egress-to-echo", {
        "endpointSelector": CLIENT_SEL,
        "egress": [{"toEndpoints": [ECHO_SEL],
                    "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]}]}, ns=NS)
    got = verdicts(simulate_world, [dns])
    assert v(got, CLIENT, DNS, 53, "UDP") == "allow"
    assert v(got, CLIENT, DNS, 53, "TCP") == "allow"          # ANY, not TCP only
    assert v(got, CLIENT, ECHO_SAME, 8080) == "deny"
    assert v(got, CLIENT, WORLD, 443) == "deny"
    assert v(got, W1, ECHO_SAME, 8080) == "allow"             # echo is not selected
    got = verdicts(simulate_world, [dns, echo])
    assert v(got, CLIENT, ECHO_SAME, 8080) == "allow"
    assert v(got, CLIENT, DNS, 53, "UDP") == "allow"


def test_a_deny_rule_wins_over_every_allow_in_any_policy(simulate_world):
    allow_all = cilium_policy("allow-all", {
        "endpointSelector": {}, "egress": [{"toEntities": ["all"]}]}, ns=NS)
    deny_echo = cilium_policy("client-egress-to-echo-deny", {
        "endpointSelector": CLIENT_SEL,
        "egressDeny": [{"toEndpoints": [{"matchLabels": {"name": "echo-other-node"}}],
                        "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]}]},
        ns=NS)
    np_allow = netpol(NS, "np-allow-all-egress", {
        "podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]})
    run = simulate_world(objects(), [allow_all, deny_echo, np_allow], FLOWS)
    assert run.verdict(CLIENT, ECHO_OTHER, 8080) == "deny"
    reason = run.conn(CLIENT, ECHO_OTHER, 8080)["candidate_reason"]
    assert "CiliumNetworkPolicy cilium-test-1/client-egress-to-echo-deny egressDeny[0]" \
        in reason
    assert run.verdict(CLIENT, ECHO_SAME, 8080) == "allow"
    assert run.verdict(CLIENT, WORLD, 443) == "allow"


def test_a_deny_only_section_isolates_unless_default_deny_is_off(simulate_world):
    deny = {"endpointSelector": CLIENT_SEL,
            "egressDeny": [{"toEntities": ["world"]}]}
    got = verdicts(simulate_world, [cilium_policy("no-world", deny, ns=NS)])
    assert v(got, CLIENT, WORLD, 443) == "deny"
    assert v(got, CLIENT, ECHO_SAME, 8080) == "deny"          # isolated: nothing admits it
    off = dict(deny, enableDefaultDeny={"egress": False})
    got = verdicts(simulate_world, [cilium_policy("no-world", off, ns=NS)])
    assert v(got, CLIENT, WORLD, 443) == "deny"
    assert v(got, CLIENT, ECHO_SAME, 8080) == "allow"         # only the deny applies


def test_an_empty_rule_admits_nothing_and_ports_alone_admit_every_peer(simulate_world):
    empty = cilium_policy("echo-ingress-empty", {
        "endpointSelector": ECHO_SEL, "ingress": [{}]}, ns=NS)
    got = verdicts(simulate_world, [empty])
    assert v(got, CLIENT, ECHO_SAME, 8080) == "deny"
    assert v(got, WORLD, ECHO_SAME, 8080) == "deny"
    ports = cilium_policy("echo-ingress-8080", {
        "endpointSelector": ECHO_SEL,
        "ingress": [{"toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]}]}, ns=NS)
    got = verdicts(simulate_world, [ports])
    assert v(got, CLIENT, ECHO_SAME, 8080) == "allow"
    assert v(got, WORLD, ECHO_SAME, 8080) == "allow"          # every peer, the world too
    assert v(got, OTHER_NS_POD, ECHO_SAME, 8080) == "allow"


def test_endpoint_peers_are_scoped_to_the_policy_namespace(simulate_world):
    same_ns = cilium_policy("echo-from-any-pod-here", {
        "endpointSelector": ECHO_SEL, "ingress": [{"fromEndpoints": [{}]}]}, ns=NS)
    got = verdicts(simulate_world, [same_ns])
    assert v(got, CLIENT, ECHO_SAME, 8080) == "allow"
    assert v(got, OTHER_NS_POD, ECHO_SAME, 8080) == "deny"
    assert v(got, WORLD, ECHO_SAME, 8080) == "deny"
    named = cilium_policy("echo-from-other-ns", {
        "endpointSelector": ECHO_SEL, "ingress": [{"fromEndpoints": [{"matchLabels": {
            "k8s:io.kubernetes.pod.namespace": "other-ns"}}]}]}, ns=NS)
    got = verdicts(simulate_world, [named])
    assert v(got, OTHER_NS_POD, ECHO_SAME, 8080) == "allow"
    assert v(got, CLIENT, ECHO_SAME, 8080) == "deny"
    by_ns_label = cilium_policy("echo-from-team-other", {
        "endpointSelector": ECHO_SEL, "ingress": [{"fromEndpoints": [{"matchLabels": {
            "io.cilium.k8s.namespace.labels.team": "other"}}]}]}, ns=NS)
    got = verdicts(simulate_world, [by_ns_label])
    assert v(got, OTHER_NS_POD, ECHO_SAME, 8080) == "allow"
    assert v(got, CLIENT, ECHO_SAME, 8080) == "deny"
    # the subject stays in the policy's namespace whatever its selector says
    pinned = cilium_policy("lockdown", {
        "endpointSelector": {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "other-ns"}},
        "egress": [{}]}, ns=NS)
    got = verdicts(simulate_world, [pinned])
    assert v(got, OTHER_NS_POD, ECHO_SAME, 8080) == "allow"


def test_a_clusterwide_empty_selector_is_every_pod_never_the_world(simulate_world):
    ccnp = cilium_policy("echo-from-all-pods", {
        "endpointSelector": ECHO_SEL, "ingress": [{"fromEndpoints": [{}]}]})
    got = verdicts(simulate_world, [ccnp])
    assert v(got, CLIENT, ECHO_SAME, 8080) == "allow"
    assert v(got, OTHER_NS_POD, ECHO_SAME, 8080) == "allow"
    assert v(got, WORLD, ECHO_SAME, 8080) == "deny"
    assert v(got, W2, ECHO_SAME, 8080) == "deny"              # a remote node is no pod
    assert v(got, W1, ECHO_SAME, 8080) == "allow"             # its own host: always


def test_entities(simulate_world):
    def egress(entities: list[str]) -> dict[tuple[str, str, int, str], str]:
        return verdicts(simulate_world, [cilium_policy("client-egress", {
            "endpointSelector": {"matchLabels": {"name": "client"}},
            "egress": [{"toEntities": entities}]}, ns=NS)])

    got = egress(["world"])
    assert v(got, CLIENT, WORLD, 443) == "allow"
    assert v(got, CLIENT, ECHO_SAME, 8080) == "deny"
    assert v(got, CLIENT, W1, 10250) == "deny"
    got = egress(["host"])
    assert v(got, CLIENT, W1, 10250) == "allow"               # the client's own node
    assert v(got, CLIENT, W2, 10250) == "deny"
    got = egress(["remote-node"])
    assert (v(got, CLIENT, W1, 10250), v(got, CLIENT, W2, 10250)) == ("deny", "allow")
    got = egress(["cluster"])
    assert v(got, CLIENT, ECHO_OTHER, 8080) == "allow"
    assert v(got, CLIENT, W2, 10250) == "allow"
    assert v(got, CLIENT, WORLD, 443) == "deny"
    got = egress(["kube-apiserver"])
    assert v(got, CLIENT, CP, 6443) == "allow"
    assert v(got, CLIENT, W2, 10250) == "deny"
    got = egress(["world-ipv6"])
    assert v(got, CLIENT, WORLD, 443) == "deny"
    got = egress(["all"])
    assert all(verdict == "allow" for (src, *_), verdict in got.items() if src == CLIENT)


def test_an_api_server_outside_the_cluster_is_in_the_cluster_entity(simulate_world):
    """A managed control plane (EKS, GKE): default/kubernetes names an address that is no
    node or pod. Cilium counts the kube-apiserver entity in `cluster`; it is world too."""
    api = "10.0.5.5"
    objs = [o for o in objects() if o.get("kind") != "EndpointSlice"]
    objs.append(endpoint_slice("default", "kubernetes", [api]))
    flows = [vpc_record(CLIENT, api, 443), vpc_record(CLIENT, WORLD, 443)]

    def egress(rules: dict[str, Any]) -> dict[tuple[str, str, int, str], str]:
        return verdicts(simulate_world, [cilium_policy("client-egress", {
            "endpointSelector": {"matchLabels": {"name": "client"}}, **rules}, ns=NS)],
            objs=objs, flows=flows)

    got = egress({"egress": [{"toEntities": ["cluster"]}]})
    assert (v(got, CLIENT, api, 443), v(got, CLIENT, WORLD, 443)) == ("allow", "deny")
    got = egress({"egress": [{"toEntities": ["world"]}]})
    assert v(got, CLIENT, api, 443) == "allow"
    got = egress({"egress": [{"toEntities": ["all"]}],
                  "egressDeny": [{"toEntities": ["cluster"]}]})
    assert (v(got, CLIENT, api, 443), v(got, CLIENT, WORLD, 443)) == ("deny", "allow")


def test_node_peers_select_remote_nodes_by_label_never_the_own_host(simulate_world):
    """toNodes/fromNodes extend the remote-node entity: the agent adds
    `reserved:remote-node` to every node selector, so the pod's own host never matches."""
    got = verdicts(simulate_world, [cilium_policy("client-egress-to-nodes", {
        "endpointSelector": {"matchLabels": {"name": "client"}},
        "egress": [{"toNodes": [{}]}]}, ns=NS)])
    assert v(got, CLIENT, W2, 10250) == "allow"               # a remote node
    assert v(got, CLIENT, W1, 10250) == "deny"                # its own host
    assert v(got, CLIENT, ECHO_OTHER, 8080) == "deny"         # a pod is no node
    got = verdicts(simulate_world, [cilium_policy("echo-from-nodes", {
        "endpointSelector": ECHO_SEL, "ingress": [{"fromNodes": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "Exists"}]}]}]}, ns=NS)])
    assert v(got, W2, ECHO_SAME, 8080) == "allow"
    assert v(got, W1, ECHO_SAME, 8080) == "allow"             # own host: always (probes)
    assert v(got, CLIENT, ECHO_SAME, 8080) == "deny"


def agent(settings: dict[str, str]) -> list[dict[str, Any]]:
    """The connectivity-test world with the Cilium agent configured by its ConfigMap."""
    return objects() + [config_map("kube-system", "cilium-config",
                                   {"cluster-name": "default", **settings})]


def test_agent_settings_in_cilium_config_change_the_verdicts(simulate_world):
    """The snapshot's cilium-config makes the profile Cilium's and carries the settings the
    documentation names (policy enforcement modes, allow-localhost, CIDR match mode)."""
    echo_from_world = cilium_policy("echo-from-world", {
        "endpointSelector": ECHO_SEL, "ingress": [{"fromEntities": ["world"]}]}, ns=NS)
    to_cidr = cilium_policy("client-to-node-cidr", {
        "endpointSelector": {"matchLabels": {"name": "client"}},
        "egress": [{"toCIDR": ["172.18.0.0/16"]}]}, ns=NS)
    # defaults: the own node is always allowed, CIDR rules never select nodes, and only
    # selected pods are isolated
    got = verdicts(simulate_world, [echo_from_world, to_cidr], objs=agent({}))
    assert v(got, W1, ECHO_SAME, 8080) == "allow"
    assert v(got, CLIENT, W2, 10250) == "deny"
    assert v(got, CLIENT2, ECHO_SAME, 8080) == "deny"          # echo: isolated
    got = verdicts(simulate_world, [echo_from_world], objs=agent({}))
    assert v(got, CLIENT, WORLD, 443) == "allow"               # client: selected by none
    got = verdicts(simulate_world, [echo_from_world, to_cidr], objs=agent({
        "allow-localhost": "policy", "policy-cidr-match-mode": "nodes"}))
    assert v(got, W1, ECHO_SAME, 8080) == "deny"               # the own node is policed
    assert v(got, CLIENT, W2, 10250) == "allow"                # the CIDR selects the node
    assert v(got, CLIENT, W1, 10250) == "allow"
    assert v(got, CLIENT, ECHO_OTHER, 8080) == "deny"          # never a pod
    got = verdicts(simulate_world, [echo_from_world], objs=agent({"enable-policy": "always"}))
    assert v(got, CLIENT, WORLD, 443) == "deny"                # no policy, still isolated
    assert v(got, WORLD, ECHO_SAME, 8080) == "allow"
    assert v(got, W2, ECHO_SAME, 8080) == "deny"
    got = verdicts(simulate_world, [echo_from_world], objs=agent({"enable-policy": "never"}))
    assert v(got, CLIENT, ECHO_SAME, 8080) == "allow"           # nothing is enforced


def test_agent_settings_are_said_and_reports_name_them(tmp_path):
    deny_nothing = cilium_policy("client-allow-dns", {
        "endpointSelector": {"matchLabels": {"name": "client"}},
        "egress": [{"toEndpoints": [{"matchLabels": {
            "k8s:io.kubernetes.pod.namespace": "kube-system"}}]}]}, ns=NS)
    args = ["--flows", str(write_vpc_parquet(tmp_path / "f.parquet", FLOWS)),
            "--cluster", str(write_cluster(tmp_path / "c.json", agent({
                "enable-policy": "always", "allow-localhost": "policy"}))),
            "--policies", str(write_policies(tmp_path / "p", [deny_nothing])),
            "--out", str(tmp_path / "o.csv"), "--json", str(tmp_path / "o.json"),
            "--report", str(tmp_path / "o.html"), "--markdown", str(tmp_path / "o.md")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code in (0, 1), r.output
    assert "cilium-config: enable-policy: always" in r.output
    assert "cilium-config: allow-localhost: policy" in r.output
    plane = json.loads((tmp_path / "o.json").read_text())["summary"]["dataplane"]
    assert plane["cni"] == "cilium" and len(plane["agent_config"]) == 2
    reasons = (tmp_path / "o.csv").read_text()
    assert "isolated by cilium-config (enable-policy: always)" in reasons
    # a break the agent's isolation decides is fixed in Cilium's language
    report = json.loads((tmp_path / "o.json").read_text())["report"]
    edits = [e for g in report["breaks"]["groups"] for e in (g.get("fix") or {})["edits"]]
    assert edits and all(e["kind"] == "CiliumNetworkPolicy" for e in edits)
    assert all((g.get("fix") or {})["edits"] for g in report["breaks"]["groups"]
               if "cilium-config" in str(g["verdicts"]))


def test_cidr_rules_only_match_outside_the_cluster(simulate_world):
    got = verdicts(simulate_world, [cilium_policy("client-egress-to-cidr", {
        "endpointSelector": {"matchLabels": {"name": "client"}},
        "egress": [{"toCIDRSet": [{"cidr": "0.0.0.0/0", "except": ["8.8.8.0/24"]}]}]},
        ns=NS)])
    assert v(got, CLIENT, WORLD, 443) == "allow"
    assert v(got, CLIENT, WORLD2, 80) == "deny"               # the exception
    assert v(got, CLIENT, ECHO_SAME, 8080) == "deny"          # a pod, inside 0.0.0.0/0
    assert v(got, CLIENT, W2, 10250) == "deny"                # a node too


def test_identity_labels_service_account_and_cluster_name(simulate_world):
    by_sa = cilium_policy("echo-from-client2-sa", {
        "endpointSelector": ECHO_SEL, "ingress": [{"fromEndpoints": [{"matchLabels": {
            "io.cilium.k8s.policy.serviceaccount": "client2"}}]}]}, ns=NS)
    got = verdicts(simulate_world, [by_sa])
    assert v(got, CLIENT2, ECHO_SAME, 8080) == "allow"
    assert v(got, CLIENT, ECHO_SAME, 8080) == "deny"
    by_cluster = cilium_policy("echo-from-cluster-c1", {
        "endpointSelector": ECHO_SEL, "ingress": [{"fromEndpoints": [{"matchLabels": {
            "k8s:io.cilium.k8s.policy.cluster": "c1"}}]}]}, ns=NS)
    got = verdicts(simulate_world, [by_cluster], objs=objects("c1"))
    assert v(got, CLIENT, ECHO_SAME, 8080) == "allow"
    got = verdicts(simulate_world, [by_cluster])                   # default: "default"
    assert v(got, CLIENT, ECHO_SAME, 8080) == "deny"
    # a NetworkPolicy never sees Cilium's identity labels
    np_sa = netpol(NS, "np-echo", {"podSelector": ECHO_SEL, "ingress": [{"from": [{
        "podSelector": {"matchExpressions": [{
            "key": "io.cilium.k8s.policy.serviceaccount", "operator": "Exists"}]}}]}]})
    got = verdicts(simulate_world, [np_sa])
    assert v(got, CLIENT2, ECHO_SAME, 8080) == "deny"


def test_networkpolicies_and_cilium_policies_apply_together(simulate_world):
    np_isolate = netpol(NS, "echo-from-client2", {"podSelector": ECHO_SEL, "ingress": [{
        "from": [{"podSelector": {"matchLabels": {"name": "client2"}}}]}]})
    cnp_allow = cilium_policy("echo-from-client", {
        "endpointSelector": ECHO_SEL, "ingress": [{"fromEndpoints": [
            {"matchLabels": {"name": "client"}}]}]}, ns=NS)
    got = verdicts(simulate_world, [np_isolate, cnp_allow])
    assert v(got, CLIENT, ECHO_SAME, 8080) == "allow"         # the Cilium allow
    assert v(got, CLIENT2, ECHO_SAME, 8080) == "allow"        # the NetworkPolicy's
    assert v(got, OTHER_NS_POD, ECHO_SAME, 8080) == "deny"
    cnp_deny = cilium_policy("no-client2", {
        "endpointSelector": ECHO_SEL, "ingressDeny": [{"fromEndpoints": [
            {"matchLabels": {"name": "client2"}}]}],
        "enableDefaultDeny": {"ingress": False}}, ns=NS)
    got = verdicts(simulate_world, [np_isolate, cnp_deny])
    assert v(got, CLIENT2, ECHO_SAME, 8080) == "deny"         # the deny beats the NP allow


def test_the_local_host_always_reaches_its_pods(simulate_world):
    got = verdicts(simulate_world, [cilium_policy("echo-ingress-empty", {
        "endpointSelector": ECHO_SEL, "ingress": [{}]}, ns=NS)])
    assert v(got, W1, ECHO_SAME, 8080) == "allow"
    assert v(got, W2, ECHO_SAME, 8080) == "deny"


def test_to_services_are_their_backends(simulate_world):
    objs = objects() + [service(NS, "echo-same-node", "10.96.0.10",
                                {"name": "echo-same-node"}),
                        service(NS, "external-db", "10.96.0.11", None),
                        endpoint_slice(NS, "external-db", [WORLD2])]
    got = verdicts(simulate_world, [cilium_policy("client-to-services", {
        "endpointSelector": CLIENT_SEL,
        "egress": [{"toServices": [{"k8sService": {"serviceName": "echo-same-node"}},
                                   {"k8sService": {"serviceName": "external-db",
                                                   "namespace": NS}}]}]}, ns=NS)], objs=objs)
    assert v(got, CLIENT, ECHO_SAME, 8080) == "allow"
    assert v(got, CLIENT, ECHO_OTHER, 8080) == "deny"
    assert v(got, CLIENT, WORLD2, 80) == "allow"               # a selector-less backend
    assert v(got, CLIENT, WORLD, 443) == "deny"


def test_fqdn_rules_without_recorded_names_are_unresolved(simulate_world):
    run = simulate_world(objects(), [cilium_policy("client-egress-fqdn", {
        "endpointSelector": CLIENT_SEL,
        "egress": [{"toFQDNs": [{"matchPattern": "*.cilium.io"}]}]}, ns=NS)], FLOWS)
    row = run.conn(CLIENT, WORLD, 443)
    assert row["candidate"] == "unknown" and row["change"] == "unresolved"
    assert "destination name unknown" in row["candidate_reason"]
    assert run.verdict(CLIENT, ECHO_SAME, 8080) == "deny"      # a pod is no FQDN


def test_l7_rules_do_not_change_the_l4_verdict(simulate_world):
    run = simulate_world(objects(), [cilium_policy("echo-l7", {
        "endpointSelector": ECHO_SEL,
        "ingress": [{"fromEndpoints": [CLIENT_SEL], "toPorts": [{
            "ports": [{"port": "http"}],
            "rules": {"http": [{"method": "GET", "path": "/"}]}}]}]}, ns=NS)], FLOWS)
    row = run.conn(CLIENT, ECHO_SAME, 8080)
    assert row["candidate"] == "allow"
    assert "L7 rules not judged" in row["candidate_reason"]


def test_specs_are_separate_rule_sets(simulate_world):
    pol = cilium_policy("two-sets", specs=[
        {"endpointSelector": {"matchLabels": {"name": "echo-same-node"}},
         "ingress": [{"fromEndpoints": [{"matchLabels": {"name": "client"}}]}]},
        {"endpointSelector": {"matchLabels": {"name": "echo-other-node"}},
         "ingress": [{"fromEndpoints": [{"matchLabels": {"name": "client2"}}]}]}], ns=NS)
    got = verdicts(simulate_world, [pol], flows=FLOWS + [vpc_record(CLIENT2, ECHO_OTHER,
                                                                    8080)])
    assert v(got, CLIENT, ECHO_SAME, 8080) == "allow"
    assert v(got, CLIENT2, ECHO_SAME, 8080) == "deny"
    assert v(got, CLIENT, ECHO_OTHER, 8080) == "deny"
    assert v(got, CLIENT2, ECHO_OTHER, 8080) == "allow"


BAD = [
    ({"endpointSelector": {}, "egress": [{"toEntities": ["internet"]}]},
     "spec.egress[0].toEntities[0]: unknown entity 'internet'"),
    ({"endpointSelector": {}, "egress": [{"toCIDRSet": [
        {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}]}]},
     "spec.egress[0].toCIDRSet[0].except[0]"),
    ({"endpointSelector": {}, "egress": [{"toCIDR": ["10.0.0.300/8"]}]},
     "spec.egress[0].toCIDR[0]: invalid CIDR"),
    ({"endpointSelector": {}, "egress": [{"toPorts": [{"ports": [
        {"port": "8080", "endPort": 80}]}]}]},
     "spec.egress[0].toPorts[0].ports[0].endPort"),
    ({"endpointSelector": {}, "egress": [{"toPorts": [{"ports": [{"port": "70000"}]}]}]},
     "spec.egress[0].toPorts[0].ports[0].port"),
    ({"endpointSelector": {}, "egress": [{"toPorts": [{"ports": [
        {"port": "53", "protocol": "DNS"}]}]}]},
     "spec.egress[0].toPorts[0].ports[0].protocol: unsupported protocol 'DNS'"),
    (None, "spec: both spec and specs are missing"),
    # what the agent refuses to import (rule_validation.go), though the CRD admits it
    ({"endpointSelector": {}, "egress": [{"toEndpoints": [ECHO_SEL],
                                          "toEntities": ["world"]}]},
     "spec.egress[0].toEntities: combined with toEndpoints in one rule"),
    ({"endpointSelector": {}, "ingressDeny": [{"fromCIDR": ["1.1.1.1/32"],
                                               "fromCIDRSet": [{"cidr": "8.8.8.0/24"}]}]},
     "spec.ingressDeny[0].fromCIDRSet: combined with fromCIDR"),
    ({"endpointSelector": ECHO_SEL, "ingress": [{"fromEndpoints": [CLIENT_SEL],
                                                 "icmps": [{"fields": [{"type": 8}]}],
                                                 "toPorts": [{"ports": [{"port": "8080"}]}]}]},
     "spec.ingress[0].icmps: combined with toPorts in one rule"),
    ({"endpointSelector": ECHO_SEL, "ingress": [{"toPorts": [{"ports": [
        {"protocol": "TCP"}]}]}]},
     "spec.ingress[0].toPorts[0].ports[0].port: required"),
]


@pytest.mark.parametrize("spec,message", BAD)
def test_invalid_policies_are_refused_naming_file_document_and_field(tmp_path, spec,
                                                                     message):
    pols = write_policies(tmp_path / "p", [cilium_policy("bad", spec, ns=NS)])
    flows = write_vpc_parquet(tmp_path / "f.parquet", FLOWS[:1])
    cluster = write_cluster(tmp_path / "c.json", objects())
    r = CliRunner().invoke(main, ["--flows", str(flows), "--cluster", str(cluster),
                                  "--policies", str(pols), "--quiet"])
    assert r.exit_code == 2, r.output
    assert message in r.output and "0000-cilium-test-1-bad.yaml" in r.output
    assert "document 1" in r.output and len(r.output.strip().splitlines()) == 1


def test_from_requires_constrains_every_endpoint_peer_of_the_subject(simulate_world):
    allow = cilium_policy("echo-from-clients", {
        "endpointSelector": ECHO_SEL, "ingress": [{"fromEndpoints": [CLIENT_SEL]}]}, ns=NS)
    requires = cilium_policy("echo-requires-other", {
        "endpointSelector": ECHO_SEL,
        "ingress": [{"fromRequires": [{"matchLabels": {"other": "client"}}]}]}, ns=NS)
    got = verdicts(simulate_world, [allow])
    assert v(got, CLIENT, ECHO_SAME, 8080) == "allow"
    got = verdicts(simulate_world, [allow, requires])
    assert v(got, CLIENT, ECHO_SAME, 8080) == "deny"          # lacks other=client
    assert v(got, CLIENT2, ECHO_SAME, 8080) == "allow"
    assert v(got, WORLD, ECHO_SAME, 8080) == "deny"


def test_host_policies_police_the_nodes_they_select(simulate_world):
    host = cilium_policy("worker-2-kubelet", {
        "nodeSelector": {"matchLabels": {"kubernetes.io/hostname": "worker-2"}},
        "ingress": [{"fromEntities": ["cluster"],
                     "toPorts": [{"ports": [{"port": "10250", "protocol": "TCP"}]}]}]})
    flows = FLOWS + [vpc_record(WORLD, W2, 10250), vpc_record(WORLD, W1, 10250)]
    got = verdicts(simulate_world, [host], flows=flows)
    assert v(got, CLIENT, W2, 10250) == "allow"
    assert v(got, WORLD, W2, 10250) == "deny"                  # the world is no cluster
    assert v(got, WORLD, W1, 10250) == "allow"                 # worker-1 is not selected


def test_cidr_group_references_and_icmp_rules(simulate_world):
    group = {"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumCIDRGroup",
             "metadata": {"name": "public-dns"}, "spec": {"externalCIDRs": ["8.8.8.0/24"]}}
    pol = cilium_policy("client-egress", {
        "endpointSelector": {"matchLabels": {"name": "client"}},
        "egress": [{"toCIDRSet": [{"cidrGroupRef": "public-dns"}]},
                   {"toEntities": ["world"], "icmps": [{"fields": [{"type": 8}]}]}]}, ns=NS)
    flows = FLOWS + [vpc_record(CLIENT, WORLD, 0, "ICMP")]
    got = verdicts(simulate_world, [group, pol], flows=flows)
    assert v(got, CLIENT, WORLD2, 80) == "allow"
    assert v(got, CLIENT, WORLD, 443) == "deny"
    assert v(got, CLIENT, WORLD, 0, "ICMP") == "allow"


def test_the_cilium_demo_shows_its_three_traps_and_their_fixes(tmp_path):
    """flows/make_cilium_demo.py: Hubble flows and CiliumNetworkPolicies; the candidate
    breaks a namespace-less endpoint peer, a DNS rule pinned to TCP and a deny rule."""
    root = Path(__file__).resolve().parent.parent
    js = tmp_path / "demo.json"
    r = CliRunner().invoke(main, [
        "--flows", str(root / "flows/demo-hubble.jsonl.gz"),
        "--cluster", str(root / "flows/demo-cilium-cluster.json"),
        "--policies", str(root / "policies/cilium-candidate"),
        "--baseline", str(root / "policies/cilium-current"), "--json", str(js), "--quiet"])
    assert r.exit_code == 0, r.output
    doc = json.loads(js.read_text())
    assert doc["warnings"] == []
    groups = {(g["source"]["workload"], g["destination"].get("workload") or
               g["destination"]["kind"], g["port"]): g for g in doc["report"]["breaks"]["groups"]}
    assert len(groups) == 3
    api = groups[("Deployment/cart", "Deployment/payments-api", 8443)]
    assert "CiliumNetworkPolicy payments/api-ingress" in api["reason"]
    fix = yaml.safe_load(api["fix"]["yaml"])
    assert fix["kind"] == "CiliumNetworkPolicy"
    assert fix["spec"]["ingress"][0]["fromEndpoints"][0]["matchLabels"] == {
        "app": "cart", "k8s:io.kubernetes.pod.namespace": "shop"}
    assert api["fix"]["restores"] == {"connections": 1, "of": 1, "other_breaks": 0}
    dns = groups[("Deployment/cart", "Deployment/coredns", 53)]
    assert dns["fix"]["edits"][0]["rule"]["toPorts"][0]["ports"][0]["protocol"] == "UDP"
    bank = groups[("Deployment/payments-api", "external", 443)]
    assert "egressDeny[0] (toEntities: world)" in bank["reason"]
    assert bank["fix"]["deny_rules"] and not bank["fix"]["edits"]
    # the card processor's name is recorded, so its toFQDNs rule admits it
    rows = {(c["dst_ip"], c["dst_port"]): c for c in doc["connections"]}
    assert rows[("151.101.1.22", 443)]["candidate"] == "allow"


def test_how_cilium_policies_were_read_is_a_warning_of_its_own(simulate_world, tmp_path):
    pol = cilium_policy("client-egress", {
        "endpointSelector": CLIENT_SEL,
        "egress": [{"toServices": [{"k8sService": {"serviceName": "nowhere"}}]},
                   {"toCIDRSet": [{"cidrGroupRef": "no-such-group"}]}]}, ns=NS)
    js = tmp_path / "w.json"
    simulate_world(objects(), [pol], FLOWS, extra=["--json", str(js)])
    warnings = json.loads(js.read_text())["warnings"]
    notes = [w for w in warnings if w["code"] == "policy_notes"]
    assert len(notes) == 1 and "2 things to know" in notes[0]["message"]
    assert not any(w["code"] == "fail_closed_peers" for w in warnings)
