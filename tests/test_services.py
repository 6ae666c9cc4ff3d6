"""Services: flows addressed to a ClusterIP, a node port, a load-balancer or external IP
are judged at the Service's backends (EndpointSlices, else legacy Endpoints), with the
port mapping Kubernetes uses, the backends present and ready at the flow's time, and the
source NAT of externalTrafficPolicy: Cluster. Through the CLI on real-format files."""

from __future__ import annotations

import json
from typing import Any

from worldfiles import namespace, netpol, node, pod, service_of, slice_of, vpc_record

WEB, WEB2 = "10.0.1.10", "10.0.1.11"
API1, API2 = "10.0.2.10", "10.0.2.11"
NODE1, NODE2 = "192.168.0.10", "192.168.0.11"
CLUSTER_IP, LB_IP = "10.96.0.10", "198.51.100.20"
CLIENT = "203.0.113.7"
T0 = 1_717_000_000


def api_pod(name: str, ip: str, port: int, ready_since: str | None = None) -> dict[str, Any]:
    p = pod("api", name, ip, {"app": "api", "pod-template-hash": "5f7b8d9c6b"},
            [("http", port, "TCP")], owner=("ReplicaSet", "api-5f7b8d9c6b"), node="node-2")
    if ready_since:
        p["status"]["conditions"] = [{"type": "Ready", "status": "True",
                                      "lastTransitionTime": ready_since}]
    return p


def api_service(**kw: Any) -> dict[str, Any]:
    """The api Service: port 80 -> the backends' `http` port, node port 30080."""
    kw.setdefault("cluster_ip", CLUSTER_IP)
    kw.setdefault("type", "NodePort")
    return service_of("api", "api", [{"name": "web", "port": 80, "targetPort": "http",
                                      "protocol": "TCP", "nodePort": 30080}],
                      selector={"app": "api"}, **kw)


def world(*extra: dict[str, Any], ready_since: str | None = None,
          svc: dict[str, Any] | None = None, slices: bool = True) -> list[dict[str, Any]]:
    """web pods in shop; two api backends whose named target port `http` differs
    (8080, 9090): Kubernetes puts them in two EndpointSlices, one per port."""
    objects = [
        namespace("shop", {"team": "shop"}), namespace("api", {"team": "api"}),
        node("node-1", NODE1, ["10.0.0.0/16"]), node("node-2", NODE2, ["10.1.0.0/16"]),
        pod("shop", "web", WEB, {"app": "web"}), pod("shop", "web2", WEB2, {"app": "web2"}),
        api_pod("api-1", API1, 8080), api_pod("api-2", API2, 9090, ready_since),
        svc or api_service(),
    ]
    if slices:
        objects += [slice_of("api", "api", "a", [(API1, "api-1", True)],
                             [("web", 8080, "TCP")]),
                    slice_of("api", "api", "b", [(API2, "api-2", None)],
                             [("web", 9090, "TCP")])]
    return objects + list(extra)


def allow_ingress(ports: list[dict[str, Any]], peers: list[dict[str, Any]] | None = None
                  ) -> dict[str, Any]:
    return netpol("api", "allow-web", {
        "podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": peers if peers is not None else
                     [{"namespaceSelector": {"matchLabels": {"team": "shop"}}}],
                     "ports": ports}]})


def to_service(src: str = WEB, dst: str = CLUSTER_IP, port: int = 80, **kw: Any
               ) -> dict[str, Any]:
    return vpc_record(src, dst, port, src_port=41000, **kw)


def test_clusterip_followed_to_backends_without_policy(simulate_world):
    run = simulate_world(world(), [], [to_service()])
    row = run.conn(WEB, CLUSTER_IP, 80)
    assert row["candidate"] == "allow"
    assert row["change"] != "unresolved"
    assert row["dst_service"] == "api/api"
    assert row["dst_service_port"] == 80
    # two backends of one workload: the workload is named, not a pod
    assert row["dst_workload"] == "Deployment/api"
    assert row["dst_pod"] is None
    assert row["dst_kind"] == "pod"


def test_named_target_port_admits_every_backend(simulate_world):
    run = simulate_world(world(), [allow_ingress([{"port": "http"}])], [to_service()])
    assert run.verdict(WEB, CLUSTER_IP, 80) == "allow"


def test_backends_that_disagree_leave_the_connection_unresolved(simulate_world):
    # port 8080 admits api-1 (it serves on 8080) but not api-2 (9090)
    run = simulate_world(world(), [allow_ingress([{"port": 8080}])], [to_service()])
    row = run.conn(WEB, CLUSTER_IP, 80)
    assert row["candidate"] == "unknown"
    assert row["change"] == "unresolved"
    reason = row["candidate_reason"]
    assert reason.startswith("service backends disagree")
    assert "api/api-1 allow" in reason and "api/api-2 deny" in reason


def test_backends_that_agree_on_deny_break(simulate_world):
    run = simulate_world(world(), [allow_ingress([{"port": 7000}])], [to_service()])
    row = run.conn(WEB, CLUSTER_IP, 80)
    assert row["candidate"] == "deny"
    assert row["change"] == "break"


def test_service_port_that_the_service_does_not_have_is_not_followed(simulate_world):
    run = simulate_world(world(), [allow_ingress([{"port": "http"}])],
                         [to_service(port=81)])
    row = run.conn(WEB, CLUSTER_IP, 81)
    assert row["candidate"] == "unknown"
    assert "not followed" in row["candidate_reason"]


def test_only_backends_ready_at_the_flow_time_count(simulate_world):
    # api-2 became ready at T0 + 1000: web's early flow only had api-1 to go to, web2's
    # later flow both
    ready = "2024-05-29T16:43:20Z"  # T0 + 1000
    records = [to_service(WEB, start=T0, end=T0 + 10),
               to_service(WEB2, start=T0 + 2000, end=T0 + 2010)]
    pol = allow_ingress([{"port": 8080}], [{"namespaceSelector": {}}])
    run = simulate_world(world(ready_since=ready), [pol], records)
    assert run.verdict(WEB, CLUSTER_IP, 80) == "allow"
    assert run.conn(WEB, CLUSTER_IP, 80)["dst_pod"] == "api-1"
    assert run.verdict(WEB2, CLUSTER_IP, 80) == "unknown"


def test_legacy_endpoints_when_the_snapshot_has_no_slices(simulate_world):
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": "api", "namespace": "api"},
                 "subsets": [{"addresses": [{"ip": API1, "targetRef": {
                     "kind": "Pod", "name": "api-1", "namespace": "api"}}],
                     "notReadyAddresses": [{"ip": API2}],
                     "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}]}]}
    run = simulate_world(world(endpoints, slices=False), [allow_ingress([{"port": 8080}])],
                         [to_service()])
    row = run.conn(WEB, CLUSTER_IP, 80)
    assert row["candidate"] == "allow"   # api-2 is not ready: only api-1 serves
    assert row["dst_pod"] == "api-1"


def test_egress_is_judged_at_the_backend_and_its_port(simulate_world):
    egress = netpol("shop", "web-egress", {
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "api"}}}],
                    "ports": [{"port": 8080}, {"port": 9090}]}]})
    run = simulate_world(world(), [egress], [to_service()])
    assert run.verdict(WEB, CLUSTER_IP, 80) == "allow"
    only_80 = netpol("shop", "web-egress", {
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
        "egress": [{"ports": [{"port": 80}]}]})
    run = simulate_world(world(), [only_80], [to_service()])
    # the service port is not what egress policy sees: the backend's port is
    assert run.verdict(WEB, CLUSTER_IP, 80) == "deny"


def test_node_port_with_cluster_policy_hides_the_client(simulate_world):
    by_cidr = allow_ingress([{"port": "http"}], [{"ipBlock": {"cidr": "203.0.113.0/24"}}])
    rec = [vpc_record(CLIENT, NODE1, 30080, src_port=41000)]
    run = simulate_world(world(), [by_cidr], rec)
    row = run.conn(CLIENT, NODE1, 30080)
    # the backend sees the node (source NAT), which the CIDR does not hold
    assert row["candidate"] == "deny"
    assert row["dst_service"] == "api/api"
    local = api_service(traffic_policy="Local")
    run = simulate_world(world(svc=local), [by_cidr], rec)
    assert run.verdict(CLIENT, NODE1, 30080) == "allow"   # the client address is kept


def test_node_port_to_a_backend_on_the_same_node_comes_from_that_node(simulate_world):
    # source NAT to the backend's own node: ingress from a pod's own node is allowed
    pods_only = allow_ingress([{"port": "http"}])
    rec = [vpc_record(CLIENT, NODE2, 30080, src_port=41000)]
    row = simulate_world(world(), [pods_only], rec).conn(CLIENT, NODE2, 30080)
    assert row["candidate"] == "allow"
    assert "own node" in row["candidate_reason"]


def test_load_balancer_with_cluster_policy_cannot_judge_a_cidr(simulate_world):
    lb = api_service(type="LoadBalancer", lb_ips=[LB_IP])
    by_cidr = allow_ingress([{"port": "http"}], [{"ipBlock": {"cidr": "0.0.0.0/0"}}])
    rec = [vpc_record(CLIENT, LB_IP, 80, src_port=41000)]
    row = simulate_world(world(svc=lb), [by_cidr], rec).conn(CLIENT, LB_IP, 80)
    # which node forwarded it, and so the address the backend saw, is not known
    assert row["candidate"] == "unknown"
    assert "source NAT" in row["candidate_reason"]
    pods_only = allow_ingress([{"port": "http"}])
    row = simulate_world(world(svc=lb), [pods_only], rec).conn(CLIENT, LB_IP, 80)
    assert row["candidate"] == "deny"   # a node is never a pod of namespace shop


def test_host_network_pod_is_its_node_and_named_on_its_port(simulate_world):
    agent = pod("monitoring", "node-exporter-x1", NODE2, {"app": "node-exporter"},
                [("metrics", 9100, "TCP")], node="node-2", host_network=True)
    # a pod-selector policy on the monitoring namespace selects no host-network pod
    deny_all = netpol("monitoring", "deny-all", {"podSelector": {}})
    run = simulate_world(world(namespace("monitoring"), agent), [deny_all],
                         [vpc_record(WEB, NODE2, 9100, src_port=41000)])
    row = run.conn(WEB, NODE2, 9100)
    assert row["candidate"] == "allow"
    assert (row["dst_kind"], row["dst_namespace"], row["dst_pod"], row["dst_node"]) == \
        ("node", "monitoring", "node-exporter-x1", "node-2")


def test_selectorless_service_follows_its_manual_slice_to_an_outside_address(simulate_world):
    # a Service fronting a database outside the cluster: egress is judged at that address
    db_svc = service_of("api", "legacy-db", [{"name": "pg", "port": 5432,
                                              "protocol": "TCP"}], cluster_ip="10.96.0.50")
    manual = slice_of("api", "legacy-db", "manual", [("192.0.2.15", None, True)],
                      [("pg", 5432, "TCP")])
    egress = netpol("shop", "web-egress", {
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}], "ports": [{"port": 5432}]}]})
    rec = [to_service(dst="10.96.0.50", port=5432)]
    row = simulate_world(world(db_svc, manual), [egress], rec).conn(WEB, "10.96.0.50", 5432)
    assert (row["candidate"], row["dst_kind"], row["dst_service"]) == \
        ("allow", "external", "api/legacy-db")
    other = netpol("shop", "web-egress", {
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}]}]})
    assert simulate_world(world(db_svc, manual), [other], rec).verdict(
        WEB, "10.96.0.50", 5432) == "deny"


def test_dual_stack_service_address_leads_to_backends_of_its_family(simulate_world):
    v6_api = pod("api", "api-v6", ["10.0.2.20", "fd00::20"], {"app": "api6"},
                 [("http", 8080, "TCP")], node="node-2")
    svc = service_of("api", "api6", [{"name": "web", "port": 80, "targetPort": 8080,
                                      "protocol": "TCP"}], selector={"app": "api6"})
    svc["spec"]["clusterIPs"] = ["10.96.0.60", "fd00:96::60"]
    svc["spec"]["clusterIP"] = "10.96.0.60"
    v4 = slice_of("api", "api6", "v4", [("10.0.2.20", "api-v6", True)],
                  [("web", 8080, "TCP")])
    v6 = slice_of("api", "api6", "v6", [("fd00::20", "api-v6", True)],
                  [("web", 8080, "TCP")])
    rec = [to_service(dst="10.96.0.60")]
    run = simulate_world(world(v6_api, svc, v4, v6), [], rec)
    row = run.conn(WEB, "10.96.0.60", 80)
    assert (row["dst_pod"], row["candidate"], row["change"]) == \
        ("api-v6", "allow", "still_allowed")


def test_node_port_reason_says_the_client_is_hidden(simulate_world):
    pods_only = allow_ingress([{"port": "http"}])
    rec = [vpc_record(CLIENT, NODE1, 30080, src_port=41000)]
    row = simulate_world(world(), [pods_only], rec).conn(CLIENT, NODE1, 30080)
    assert row["candidate"] == "deny"
    assert "client is hidden by the Service's source NAT" in row["candidate_reason"]


def test_headless_service_changes_nothing_flows_reach_pods_directly(simulate_world):
    headless = api_service(cluster_ip=None, type="ClusterIP")
    headless["spec"]["clusterIP"] = "None"
    run = simulate_world(world(svc=headless), [allow_ingress([{"port": 8080}])],
                         [vpc_record(WEB, API1, 8080, src_port=41000),
                          vpc_record(WEB, API2, 9090, src_port=41001)])
    assert run.verdict(WEB, API1, 8080) == "allow"
    assert run.verdict(WEB, API2, 9090) == "deny"
    assert run.conn(WEB, API1, 8080)["dst_service"] is None


def test_node_egress_to_outside_without_pkt_srcaddr_is_counted_as_hidden_by_snat(
        simulate_world, tmp_path):
    rec = [vpc_record(NODE1, "198.51.100.99", 443, src_port=41000)]
    run = simulate_world(world(), [], rec, extra=["--json", str(tmp_path / "o.json")])
    summary = json.loads((tmp_path / "o.json").read_text())["summary"]
    assert summary["connections"]["source_hidden_by_snat"]["connections"] == 1
    warning = [w for w in summary["warnings"] if w["code"] == "source_hidden_by_snat"]
    assert warning and "source hidden by SNAT" in warning[0]["message"]
    assert run.verdict(NODE1, "198.51.100.99", 443) == "allow"


def test_host_network_pod_is_named_in_reason_and_report(simulate_world, tmp_path):
    agent = pod("monitoring", "node-exporter-x1", NODE2, {"app": "node-exporter"},
                [("metrics", 9100, "TCP")], node="node-2", host_network=True,
                owner=("DaemonSet", "node-exporter"))
    egress = netpol("shop", "web-egress", {
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"]})
    run = simulate_world(world(namespace("monitoring"), agent), [egress],
                         [vpc_record(WEB, NODE2, 9100, src_port=41000)],
                         extra=["--report", str(tmp_path / "r.html")])
    row = run.conn(WEB, NODE2, 9100)
    assert row["change"] == "break"
    assert "a node (or a host-network pod on it), no policy applies" in row["candidate_reason"]
    html = (tmp_path / "r.html").read_text()
    assert "host-network pod monitoring/node-exporter (its node)" in html
