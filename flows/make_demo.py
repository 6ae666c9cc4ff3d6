#!/usr/bin/env python3
"""Write the netpol-simulator demo data set (deterministic; run from anywhere).

    python flows/make_demo.py

Outputs (paths relative to the repository root):

    flows/demo-cluster.json        what `kubectl get pods,namespaces,nodes,services,
                                   endpointslices -A -o json` prints
    flows/demo-vpc.parquet         AWS VPC flow log records, Parquet delivery schema
    policies/current/*.yaml        NetworkPolicies in force now (the baseline)
    policies/candidate/*.yaml      the baseline plus a lock-down of `shop` and a payments change

The story and the expected result are in flows/README.md. Uses only the standard
library, pyarrow and PyYAML; the same seed always gives byte-identical JSON/YAML and the
same Parquet rows.
"""

from __future__ import annotations

import ipaddress
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

SEED = 20240601
ROOT = Path(__file__).resolve().parent.parent
FLOWS_DIR = ROOT / "flows"
POLICY_DIR = ROOT / "policies"

ACCOUNT_ID = "123456789012"
# Flows cover one hour: 2024-06-01 12:00:00Z .. 13:00:00Z, in 60 s aggregation windows.
T0 = int(datetime(2024, 6, 1, 12, 0, tzinfo=UTC).timestamp())
WINDOWS = 60
WINDOW_S = 60
EPHEMERAL = (32768, 60999)  # Linux ip_local_port_range default
UNRESOLVED_IP = "10.42.1.77"  # inside node 2's pod CIDR, held by no pod

# k8s name suffix alphabet (utilrand.String): no vowels, no 0/1/3.
ALNUM = "bcdfghjklmnpqrstvwxz2456789"

# Column types of AWS's Parquet delivery (see FORMATS.md, "Delivery, incl. Parquet").
VPC_SCHEMA = pa.schema(
    [
        ("version", pa.int32()),
        ("account_id", pa.string()),
        ("interface_id", pa.string()),
        ("srcaddr", pa.string()),
        ("dstaddr", pa.string()),
        ("srcport", pa.int32()),
        ("dstport", pa.int32()),
        ("protocol", pa.int32()),
        ("packets", pa.int64()),
        ("bytes", pa.int64()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("action", pa.string()),
        ("log_status", pa.string()),
    ]
)
TCP, UDP = 6, 17


def ts(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class Ids:
    """Deterministic uids, hashes and name suffixes."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def suffix(self, n: int) -> str:
        return "".join(self.rng.choice(ALNUM) for _ in range(n))

    def hexid(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))


# --------------------------------------------------------------------------- cluster

NODES = [
    # name, InternalIP, podCIDR, zone
    ("ip-192-168-1-11.eu-west-1.compute.internal", "192.168.1.11", "10.42.0.0/24", "eu-west-1a"),
    ("ip-192-168-1-12.eu-west-1.compute.internal", "192.168.1.12", "10.42.1.0/24", "eu-west-1b"),
    ("ip-192-168-1-13.eu-west-1.compute.internal", "192.168.1.13", "10.42.2.0/24", "eu-west-1c"),
]

NAMESPACES = {
    # name: extra labels (kubernetes.io/metadata.name is added for every namespace)
    "default": {},
    "kube-node-lease": {},
    "kube-public": {},
    "kube-system": {"team": "platform"},
    "monitoring": {"team": "platform"},
    "ingress-nginx": {"team": "platform", "app.kubernetes.io/name": "ingress-nginx"},
    "shop": {"team": "storefront", "env": "prod"},
    "payments": {"team": "payments", "env": "prod", "pci": "true"},
    "reporting": {"team": "finance", "env": "prod"},
}


def P(name: str | None, port: int, proto: str = "TCP") -> tuple[str | None, int, str]:
    return (name, port, proto)


# Workloads: namespace, name, kind, replicas, labels, containers [(name, image, ports)],
# hostNetwork.  Deployment pods get pod-template-hash, StatefulSet pods -N names,
# DaemonSet pods one per node.
WORKLOADS = [
    dict(
        ns="kube-system",
        name="coredns",
        kind="Deployment",
        replicas=2,
        labels={"k8s-app": "kube-dns", "app.kubernetes.io/name": "coredns"},
        containers=[
            (
                "coredns",
                "registry.k8s.io/coredns/coredns:v1.11.1",
                [P("dns", 53, "UDP"), P("dns-tcp", 53, "TCP"), P("metrics", 9153)],
            )
        ],
    ),
    dict(
        ns="kube-system",
        name="kube-proxy",
        kind="DaemonSet",
        host_network=True,
        labels={"k8s-app": "kube-proxy", "app.kubernetes.io/name": "kube-proxy"},
        containers=[("kube-proxy", "registry.k8s.io/kube-proxy:v1.29.4", [])],
    ),
    dict(
        ns="monitoring",
        name="prometheus-k8s",
        kind="StatefulSet",
        replicas=1,
        labels={"app": "prometheus", "app.kubernetes.io/name": "prometheus", "prometheus": "k8s"},
        containers=[
            ("prometheus", "quay.io/prometheus/prometheus:v2.52.0", [P("web", 9090)]),
            (
                "config-reloader",
                "quay.io/prometheus-operator/prometheus-config-reloader:v0.74.0",
                [P("reloader-web", 8080)],
            ),
        ],
    ),
    dict(
        ns="monitoring",
        name="grafana",
        kind="Deployment",
        replicas=1,
        labels={"app": "grafana", "app.kubernetes.io/name": "grafana"},
        containers=[("grafana", "docker.io/grafana/grafana:10.4.2", [P("http-grafana", 3000)])],
    ),
    dict(
        ns="monitoring",
        name="kube-state-metrics",
        kind="Deployment",
        replicas=1,
        labels={"app": "kube-state-metrics", "app.kubernetes.io/name": "kube-state-metrics"},
        containers=[
            (
                "kube-state-metrics",
                "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.12.0",
                [P("http-metrics", 8080), P("telemetry", 8081)],
            )
        ],
    ),
    dict(
        ns="monitoring",
        name="node-exporter",
        kind="DaemonSet",
        host_network=True,
        labels={"app": "node-exporter", "app.kubernetes.io/name": "node-exporter"},
        containers=[
            ("node-exporter", "quay.io/prometheus/node-exporter:v1.8.0", [P("metrics", 9100)])
        ],
    ),
    dict(
        ns="ingress-nginx",
        name="ingress-nginx-controller",
        kind="Deployment",
        replicas=2,
        labels={
            "app": "ingress-nginx",
            "app.kubernetes.io/name": "ingress-nginx",
            "app.kubernetes.io/instance": "ingress-nginx",
            "app.kubernetes.io/component": "controller",
        },
        containers=[
            (
                "controller",
                "registry.k8s.io/ingress-nginx/controller:v1.10.1",
                [P("http", 80), P("https", 443), P("metrics", 10254), P("webhook", 8443)],
            )
        ],
    ),
    dict(
        ns="shop",
        name="frontend",
        kind="Deployment",
        replicas=3,
        labels={"app": "frontend", "app.kubernetes.io/name": "frontend", "tier": "web"},
        containers=[
            (
                "frontend",
                "ghcr.io/example/shop-frontend:2.14.0",
                [P("http", 8080), P("metrics", 9090)],
            )
        ],
    ),
    dict(
        ns="shop",
        name="cart",
        kind="Deployment",
        replicas=2,
        labels={"app": "cart", "app.kubernetes.io/name": "cart", "tier": "backend"},
        containers=[
            ("cart", "ghcr.io/example/shop-cart:1.9.3", [P("http", 8080), P("metrics", 9090)])
        ],
    ),
    dict(
        ns="shop",
        name="checkout",
        kind="Deployment",
        replicas=2,
        labels={"app": "checkout", "app.kubernetes.io/name": "checkout", "tier": "backend"},
        containers=[
            (
                "checkout",
                "ghcr.io/example/shop-checkout:3.2.1",
                [P("http", 8080), P("metrics", 9090)],
            )
        ],
    ),
    dict(
        ns="shop",
        name="catalog",
        kind="Deployment",
        replicas=2,
        labels={"app": "catalog", "app.kubernetes.io/name": "catalog", "tier": "backend"},
        containers=[
            ("catalog", "ghcr.io/example/shop-catalog:1.4.0", [P("http", 8080), P("metrics", 9090)])
        ],
    ),
    dict(
        ns="shop",
        name="cart-redis",
        kind="StatefulSet",
        replicas=1,
        labels={"app": "cart-redis", "app.kubernetes.io/name": "redis", "tier": "data"},
        containers=[
            ("redis", "docker.io/library/redis:7.2.4", [P("redis", 6379)]),
            ("redis-exporter", "quay.io/oliver006/redis_exporter:v1.59.0", [P("metrics", 9121)]),
        ],
    ),
    dict(
        ns="payments",
        name="payments-api",
        kind="Deployment",
        replicas=2,
        labels={"app": "payments-api", "app.kubernetes.io/name": "payments-api"},
        containers=[
            ("api", "ghcr.io/example/payments-api:5.0.2", [P("grpc", 7070), P("metrics", 9090)])
        ],
    ),
    dict(
        ns="payments",
        name="postgres",
        kind="StatefulSet",
        replicas=1,
        labels={"app": "postgres", "app.kubernetes.io/name": "postgresql"},
        containers=[
            ("postgres", "docker.io/library/postgres:16.3", [P("tcp-postgresql", 5432)]),
            (
                "exporter",
                "quay.io/prometheuscommunity/postgres-exporter:v0.15.0",
                [P("metrics", 9187)],
            ),
        ],
    ),
    dict(
        ns="reporting",
        name="ledger-export",
        kind="Deployment",
        replicas=1,
        labels={"app": "ledger-export", "app.kubernetes.io/name": "ledger-export"},
        containers=[("exporter", "ghcr.io/example/ledger-export:0.7.0", [])],
    ),
]

# Services: namespace, name, selector (None: manual endpoints),
# ports (name, port, proto, targetPort), clusterIP ("None" for headless), type.
SERVICES = [
    ("default", "kubernetes", None, [("https", 443, "TCP", 443)], "10.43.0.1", "ClusterIP"),
    (
        "kube-system",
        "kube-dns",
        {"k8s-app": "kube-dns"},
        [("dns", 53, "UDP", 53), ("dns-tcp", 53, "TCP", 53), ("metrics", 9153, "TCP", 9153)],
        "10.43.0.10",
        "ClusterIP",
    ),
    (
        "monitoring",
        "prometheus-k8s",
        {"app.kubernetes.io/name": "prometheus"},
        [("web", 9090, "TCP", "web")],
        "10.43.112.40",
        "ClusterIP",
    ),
    (
        "monitoring",
        "grafana",
        {"app.kubernetes.io/name": "grafana"},
        [("http", 80, "TCP", "http-grafana")],
        "10.43.87.201",
        "ClusterIP",
    ),
    (
        "ingress-nginx",
        "ingress-nginx-controller",
        {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
        [("http", 80, "TCP", "http"), ("https", 443, "TCP", "https")],
        "10.43.20.15",
        "LoadBalancer",
    ),
    (
        "shop",
        "frontend",
        {"app": "frontend"},
        [("http", 80, "TCP", "http")],
        "10.43.141.7",
        "ClusterIP",
    ),
    ("shop", "cart", {"app": "cart"}, [("http", 8080, "TCP", "http")], "10.43.141.22", "ClusterIP"),
    (
        "shop",
        "checkout",
        {"app": "checkout"},
        [("http", 8080, "TCP", "http")],
        "10.43.141.35",
        "ClusterIP",
    ),
    (
        "shop",
        "catalog",
        {"app": "catalog"},
        [("http", 8080, "TCP", "http")],
        "10.43.141.48",
        "ClusterIP",
    ),
    (
        "shop",
        "cart-redis",
        {"app": "cart-redis"},
        [("redis", 6379, "TCP", "redis")],
        "None",
        "ClusterIP",
    ),
    (
        "payments",
        "payments-api",
        {"app": "payments-api"},
        [("grpc", 7070, "TCP", "grpc")],
        "10.43.200.9",
        "ClusterIP",
    ),
    (
        "payments",
        "postgres",
        {"app": "postgres"},
        [("tcp-postgresql", 5432, "TCP", "tcp-postgresql")],
        "None",
        "ClusterIP",
    ),
]
API_SERVER_IPS = ["192.168.1.201", "192.168.1.202"]  # EKS control-plane ENIs


def build_cluster(rng: random.Random, ids: Ids) -> tuple[list[dict], list[dict]]:
    """Return (kubectl List items, pod records used by the flow generator)."""
    base = datetime(2024, 5, 10, 8, 0, tzinfo=UTC)
    nodes, namespaces, pods, services, slices = [], [], [], [], []
    node_info = []
    for i, (name, ip, cidr, zone) in enumerate(NODES):
        instance = "i-0" + ids.hexid(16)
        node_info.append(
            {
                "name": name,
                "ip": ip,
                "cidr": cidr,
                "eni": "eni-0" + ids.hexid(16),
                "next": 2 + rng.randint(0, 4),
            }
        )
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "uid": ids.uid(),
                    "creationTimestamp": ts(base + timedelta(minutes=3 * i)),
                    "labels": {
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/hostname": name,
                        "node.kubernetes.io/instance-type": "m6i.xlarge",
                        "topology.kubernetes.io/region": "eu-west-1",
                        "topology.kubernetes.io/zone": zone,
                        "eks.amazonaws.com/nodegroup": "general",
                    },
                },
                "spec": {
                    "podCIDR": cidr,
                    "podCIDRs": [cidr],
                    "providerID": f"aws:///{zone}/{instance}",
                },
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": ip},
                        {"type": "InternalDNS", "address": name},
                        {"type": "Hostname", "address": name},
                    ],
                    "nodeInfo": {
                        "kubeletVersion": "v1.29.4-eks-036c24b",
                        "containerRuntimeVersion": "containerd://1.7.11",
                        "osImage": "Amazon Linux 2",
                        "architecture": "amd64",
                    },
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                },
            }
        )

    for i, (ns, extra) in enumerate(NAMESPACES.items()):
        labels = {"kubernetes.io/metadata.name": ns, **extra}
        namespaces.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "uid": ids.uid(),
                    "labels": labels,
                    "creationTimestamp": ts(base + timedelta(minutes=10 + i)),
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
        )

    pod_records = []
    node_cycle = 0

    def alloc_ip(n: dict) -> str:
        net = ipaddress.ip_network(n["cidr"])
        ip = str(net.network_address + n["next"])
        n["next"] += rng.randint(1, 5)
        assert ip != UNRESOLVED_IP
        return ip

    for w in WORKLOADS:
        created = base + timedelta(
            days=rng.randint(9, 19), hours=rng.randint(0, 23), minutes=rng.randint(0, 59)
        )
        kind, hostnet = w["kind"], w.get("host_network", False)
        if kind == "Deployment":
            h = ids.suffix(10)
            owner = ("ReplicaSet", f"{w['name']}-{h}")
            members = [
                (f"{w['name']}-{h}-{ids.suffix(5)}", {"pod-template-hash": h})
                for _ in range(w["replicas"])
            ]
        elif kind == "StatefulSet":
            rev = f"{w['name']}-{ids.suffix(10)}"
            owner = ("StatefulSet", w["name"])
            members = [
                (
                    f"{w['name']}-{k}",
                    {
                        "controller-revision-hash": rev,
                        "statefulset.kubernetes.io/pod-name": f"{w['name']}-{k}",
                        "apps.kubernetes.io/pod-index": str(k),
                    },
                )
                for k in range(w["replicas"])
            ]
        else:  # DaemonSet: one per node
            rev = ids.suffix(10)
            owner = ("DaemonSet", w["name"])
            members = [
                (
                    f"{w['name']}-{ids.suffix(5)}",
                    {"controller-revision-hash": rev, "pod-template-generation": "1"},
                )
                for _ in NODES
            ]
        for k, (pname, extra_labels) in enumerate(members):
            if kind == "DaemonSet":
                n = node_info[k]
            else:
                n = node_info[node_cycle % len(node_info)]
                node_cycle += 1
            ip = n["ip"] if hostnet else alloc_ip(n)
            pod_created = created + timedelta(seconds=rng.randint(5, 90))
            containers = []
            for cname, image, ports in w["containers"]:
                c = {
                    "name": cname,
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
                if ports:
                    c["ports"] = []
                    for portname, num, proto in ports:
                        entry = {"name": portname, "containerPort": num, "protocol": proto}
                        if hostnet:
                            entry["hostPort"] = num
                        c["ports"].append(entry)
                containers.append(c)
            spec = {
                "containers": containers,
                "nodeName": n["name"],
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "serviceAccountName": w["name"],
                "dnsPolicy": "ClusterFirstWithHostNet" if hostnet else "ClusterFirst",
            }
            if hostnet:
                spec["hostNetwork"] = True
            labels = {**w["labels"], **extra_labels}
            pods.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pname,
                        "namespace": w["ns"],
                        "uid": ids.uid(),
                        "creationTimestamp": ts(pod_created),
                        "labels": labels,
                        "ownerReferences": [
                            {
                                "apiVersion": "apps/v1",
                                "kind": owner[0],
                                "name": owner[1],
                                "uid": ids.uid(),
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "spec": spec,
                    "status": {
                        "phase": "Running",
                        "hostIP": n["ip"],
                        "hostIPs": [{"ip": n["ip"]}],
                        "podIP": ip,
                        "podIPs": [{"ip": ip}],
                        "startTime": ts(pod_created + timedelta(seconds=2)),
                        "qosClass": "Burstable",
                        "conditions": [
                            {"type": t, "status": "True"}
                            for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
                        ],
                    },
                }
            )
            pod_records.append(
                {
                    "ns": w["ns"],
                    "workload": w["name"],
                    "name": pname,
                    "ip": ip,
                    "node": n,
                    "host_network": hostnet,
                    "labels": labels,
                    "ports": {(pn, pr): num for _, _, ps in w["containers"] for pn, num, pr in ps},
                }
            )

    def matches(sel: dict, labels: dict) -> bool:
        return all(labels.get(k) == v for k, v in sel.items())

    for ns, name, selector, ports, cluster_ip, stype in SERVICES:
        svc_spec = {
            "type": stype,
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "sessionAffinity": "None",
            "internalTrafficPolicy": "Cluster",
            "ports": [
                {"name": pn, "port": p, "protocol": pr, "targetPort": tp} for pn, p, pr, tp in ports
            ],
        }
        if selector:
            svc_spec["selector"] = selector
        svc_status: dict = {"loadBalancer": {}}
        if stype == "LoadBalancer":
            svc_spec["externalTrafficPolicy"] = "Local"
            for p in svc_spec["ports"]:
                p["nodePort"] = 30000 + rng.randint(0, 2767)
            svc_status["loadBalancer"] = {
                "ingress": [
                    {
                        "hostname": f"a{ids.hexid(32)}-{rng.randint(10**9, 10**10 - 1)}"
                        ".elb.eu-west-1.amazonaws.com"
                    }
                ]
            }
        svc_uid = ids.uid()
        services.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": name,
                    "namespace": ns,
                    "uid": svc_uid,
                    "creationTimestamp": ts(base + timedelta(days=rng.randint(1, 8))),
                    "labels": (
                        {
                            "app.kubernetes.io/name": selector.get(
                                "app.kubernetes.io/name", selector.get("app", name)
                            )
                        }
                        if selector
                        else {"component": "apiserver", "provider": "kubernetes"}
                    ),
                },
                "spec": svc_spec,
                "status": svc_status,
            }
        )
        if selector:
            backends = [p for p in pod_records if p["ns"] == ns and matches(selector, p["labels"])]
            endpoints = [
                {
                    "addresses": [p["ip"]],
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "nodeName": p["node"]["name"],
                    "targetRef": {
                        "kind": "Pod",
                        "name": p["name"],
                        "namespace": ns,
                        "uid": next(
                            x["metadata"]["uid"] for x in pods if x["metadata"]["name"] == p["name"]
                        ),
                    },
                }
                for p in backends
            ]
            eps_ports = []
            for pn, _p, pr, tp in ports:
                num = tp if isinstance(tp, int) else backends[0]["ports"][(tp, pr)]
                eps_ports.append({"name": pn, "port": num, "protocol": pr})
            slice_name = f"{name}-{ids.suffix(5)}"
            slice_labels = {
                "kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            }
        else:
            endpoints = [
                {"addresses": [ip], "conditions": {"ready": True}} for ip in API_SERVER_IPS
            ]
            eps_ports = [{"name": "https", "port": 443, "protocol": "TCP"}]
            slice_name = name
            slice_labels = {"kubernetes.io/service-name": name}
        slice_meta = {
            "name": slice_name,
            "namespace": ns,
            "uid": ids.uid(),
            "creationTimestamp": services[-1]["metadata"]["creationTimestamp"],
            "labels": slice_labels,
        }
        if selector:
            slice_meta["generateName"] = f"{name}-"
            slice_meta["ownerReferences"] = [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": name,
                    "uid": svc_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]
        slices.append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": slice_meta,
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": eps_ports,
            }
        )

    items = pods + namespaces + nodes + services + slices
    return items, pod_records


# --------------------------------------------------------------------------- flows


class FlowWriter:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.rows: list[dict] = []

    def _row(self, eni, src, dst, sport, dport, proto, packets, nbytes, start, end, action):
        self.rows.append(
            {
                "version": 2,
                "account_id": ACCOUNT_ID,
                "interface_id": eni,
                "srcaddr": src,
                "dstaddr": dst,
                "srcport": sport,
                "dstport": dport,
                "protocol": proto,
                "packets": packets,
                "bytes": nbytes,
                "start": start,
                "end": end,
                "action": action,
                "log_status": "OK",
            }
        )

    def conversation(
        self,
        w: int,
        eni: str,
        client: str,
        server: str,
        dport: int,
        proto: int,
        req: tuple[int, int],
        resp: tuple[int, int] | None,
        *,
        sport: int | None = None,
        action: str = "ACCEPT",
    ) -> None:
        """One request record and (unless resp is None) its reply, inside window w.

        req/resp: (packets, bytes). Both records are taken on the same ENI, as AWS does.
        """
        r = self.rng
        sport = sport or r.randint(*EPHEMERAL)
        wstart = T0 + w * WINDOW_S
        start = wstart + r.randint(0, 40)
        end = min(wstart + WINDOW_S, start + r.randint(1, 20))
        self._row(eni, client, server, sport, dport, proto, req[0], req[1], start, end, action)
        if resp is not None:
            self._row(
                eni, server, client, dport, sport, proto, resp[0], resp[1], start, end, action
            )

    def status_only(self, eni: str, w: int, status: str) -> None:
        start = T0 + w * WINDOW_S
        self.rows.append(
            {
                "version": 2,
                "account_id": ACCOUNT_ID,
                "interface_id": eni,
                "srcaddr": None,
                "dstaddr": None,
                "srcport": None,
                "dstport": None,
                "protocol": None,
                "packets": None,
                "bytes": None,
                "start": start,
                "end": start + WINDOW_S,
                "action": None,
                "log_status": status,
            }
        )

    def table(self) -> pa.Table:
        rows = sorted(
            self.rows,
            key=lambda x: (
                x["start"],
                x["interface_id"],
                x["srcaddr"] or "",
                x["dstaddr"] or "",
                x["srcport"] or 0,
            ),
        )
        return pa.Table.from_pylist(rows, schema=VPC_SCHEMA)


def build_flows(rng: random.Random, pods: list[dict]) -> pa.Table:
    fw = FlowWriter(rng)
    by_wl: dict[tuple[str, str], list[dict]] = {}
    for p in pods:
        by_wl.setdefault((p["ns"], p["workload"]), []).append(p)

    def wl(ns: str, name: str) -> list[dict]:
        return by_wl[(ns, name)]

    def port(p: dict, name: str, proto: str = "TCP") -> int:
        return p["ports"][(name, proto)]

    coredns = wl("kube-system", "coredns")
    prom = wl("monitoring", "prometheus-k8s")[0]
    frontends = wl("shop", "frontend")
    backends = {n: wl("shop", n) for n in ("cart", "checkout", "catalog")}
    redis = wl("shop", "cart-redis")[0]
    api = wl("payments", "payments-api")
    postgres = wl("payments", "postgres")[0]
    ledger = wl("reporting", "ledger-export")[0]
    ingress = wl("ingress-nginx", "ingress-nginx-controller")
    grafana = wl("monitoring", "grafana")[0]
    ksm = wl("monitoring", "kube-state-metrics")[0]
    node_exporters = wl("monitoring", "node-exporter")

    dns_clients = (
        frontends
        + backends["cart"]
        + backends["checkout"]
        + backends["catalog"]
        + api
        + [ledger, prom, grafana]
        + ingress
    )
    scrape_targets = (
        [(p, port(p, "metrics")) for p in frontends + sum(backends.values(), []) + [redis]]
        + [(p, port(p, "metrics")) for p in api + [postgres] + coredns + ingress + node_exporters]
        + [
            (ksm, port(ksm, "http-metrics")),
            (ksm, port(ksm, "telemetry")),
            (grafana, port(grafana, "http-grafana")),
        ]
    )
    # Prometheus keeps scrape connections alive: one ephemeral port per target for the hour.
    scrape_ports = {(t["name"], n): rng.randint(*EPHEMERAL) for t, n in scrape_targets}
    # kubelet probes: (pod, port) probed from the pod's own node.
    probes = (
        [(p, port(p, "http")) for p in frontends + sum(backends.values(), [])]
        + [(p, port(p, "grpc")) for p in api]
        + [(redis, port(redis, "redis"))]
        + [(p, 8080) for p in coredns]
        + [(p, 8181) for p in coredns]  # /health, /ready
        + [(p, port(p, "metrics")) for p in ingress]  # /healthz on 10254
        + [
            (prom, port(prom, "web")),
            (grafana, port(grafana, "http-grafana")),
            (ksm, port(ksm, "http-metrics")),
        ]
    )
    internet_clients = [f"203.0.113.{rng.randint(2, 250)}" for _ in range(12)] + [
        f"198.51.100.{rng.randint(2, 250)}" for _ in range(8)
    ]
    payment_processor = "52.94.236.248"  # an AWS-hosted payment gateway endpoint
    s3 = ["52.216.152.70", "52.216.8.219", "52.217.44.6"]

    def eni(p: dict) -> str:
        return p["node"]["eni"]

    for w in range(WINDOWS):
        # DNS lookups: UDP 53, occasionally TCP 53 (truncated answers) on coredns.
        for c in dns_clients:
            if rng.random() < 0.45:
                d = rng.choice(coredns)
                n = rng.randint(1, 4)
                fw.conversation(
                    w,
                    eni(c),
                    c["ip"],
                    d["ip"],
                    port(d, "dns", "UDP"),
                    UDP,
                    (n, n * rng.randint(70, 95)),
                    (n, n * rng.randint(110, 480)),
                )
        for c in backends["catalog"] + [ledger]:
            if rng.random() < 0.08:
                d = rng.choice(coredns)
                fw.conversation(
                    w,
                    eni(c),
                    c["ip"],
                    d["ip"],
                    port(d, "dns-tcp"),
                    TCP,
                    (6, rng.randint(420, 520)),
                    (5, rng.randint(1400, 3800)),
                )
        # Prometheus scrapes every target once a minute over a kept-alive connection.
        for t, n in scrape_targets:
            fw.conversation(
                w,
                eni(prom),
                prom["ip"],
                t["ip"],
                n,
                TCP,
                (rng.randint(4, 6), rng.randint(380, 520)),
                (rng.randint(8, 60), rng.randint(9_000, 80_000)),
                sport=scrape_ports[(t["name"], n)],
            )
        # Stale scrape target: a deleted pod's IP, no reply (first 8 minutes only).
        if w < 8:
            fw.conversation(
                w,
                eni(prom),
                prom["ip"],
                UNRESOLVED_IP,
                9090,
                TCP,
                (rng.randint(2, 3), rng.randint(120, 180)),
                None,
            )
        # Grafana queries Prometheus.
        if rng.random() < 0.5:
            fw.conversation(
                w,
                eni(grafana),
                grafana["ip"],
                prom["ip"],
                port(prom, "web"),
                TCP,
                (rng.randint(5, 12), rng.randint(600, 2400)),
                (rng.randint(6, 40), rng.randint(4_000, 60_000)),
            )
        # Internet -> ingress-nginx (NLB with client IP preservation) on 443.
        for ing in ingress:
            for _ in range(rng.randint(0, 2)):
                fw.conversation(
                    w,
                    eni(ing),
                    rng.choice(internet_clients),
                    ing["ip"],
                    port(ing, "https"),
                    TCP,
                    (rng.randint(8, 30), rng.randint(1_200, 9_000)),
                    (rng.randint(10, 60), rng.randint(8_000, 160_000)),
                )
        # ingress-nginx -> shop/frontend http.
        for ing in ingress:
            if rng.random() < 0.6:
                f = rng.choice(frontends)
                fw.conversation(
                    w,
                    eni(ing),
                    ing["ip"],
                    f["ip"],
                    port(f, "http"),
                    TCP,
                    (rng.randint(6, 25), rng.randint(900, 6_000)),
                    (rng.randint(8, 50), rng.randint(6_000, 120_000)),
                )
        # frontend -> cart / checkout / catalog.
        for f in frontends:
            for be in backends.values():
                if rng.random() < 0.3:
                    b = rng.choice(be)
                    fw.conversation(
                        w,
                        eni(f),
                        f["ip"],
                        b["ip"],
                        port(b, "http"),
                        TCP,
                        (rng.randint(4, 14), rng.randint(500, 3_000)),
                        (rng.randint(4, 30), rng.randint(800, 40_000)),
                    )
        # checkout -> cart; cart -> cart-redis.
        for c in backends["checkout"]:
            if rng.random() < 0.25:
                b = rng.choice(backends["cart"])
                fw.conversation(
                    w,
                    eni(c),
                    c["ip"],
                    b["ip"],
                    port(b, "http"),
                    TCP,
                    (rng.randint(4, 8), rng.randint(400, 1_500)),
                    (rng.randint(4, 10), rng.randint(600, 4_000)),
                )
        for c in backends["cart"]:
            if rng.random() < 0.4:
                fw.conversation(
                    w,
                    eni(c),
                    c["ip"],
                    redis["ip"],
                    port(redis, "redis"),
                    TCP,
                    (rng.randint(3, 20), rng.randint(200, 2_400)),
                    (rng.randint(3, 20), rng.randint(200, 6_000)),
                )
        # shop/checkout -> payments/payments-api grpc (cross-namespace).
        for c in backends["checkout"]:
            if rng.random() < 0.35:
                a = rng.choice(api)
                fw.conversation(
                    w,
                    eni(c),
                    c["ip"],
                    a["ip"],
                    port(a, "grpc"),
                    TCP,
                    (rng.randint(6, 16), rng.randint(900, 3_500)),
                    (rng.randint(5, 14), rng.randint(700, 2_800)),
                )
        # payments-api -> postgres.
        for a in api:
            if rng.random() < 0.4:
                fw.conversation(
                    w,
                    eni(a),
                    a["ip"],
                    postgres["ip"],
                    port(postgres, "tcp-postgresql"),
                    TCP,
                    (rng.randint(4, 30), rng.randint(300, 6_000)),
                    (rng.randint(4, 40), rng.randint(400, 24_000)),
                )
        # reporting/ledger-export -> payments-api grpc: refused today (REJECT, no reply,
        # client retries with a new source port).
        if w % 6 == 3:
            a = rng.choice(api)
            for _ in range(rng.randint(1, 3)):
                fw.conversation(
                    w,
                    eni(ledger),
                    ledger["ip"],
                    a["ip"],
                    port(a, "grpc"),
                    TCP,
                    (rng.randint(1, 3), rng.randint(60, 180)),
                    None,
                    action="REJECT",
                )
        # Egress to the internet (HTTPS).
        external = [(c, payment_processor) for c in backends["checkout"] + api]
        external += [(c, rng.choice(s3)) for c in backends["catalog"] + [ledger]]
        for c, dst in external:
            if rng.random() < 0.2:
                fw.conversation(
                    w,
                    eni(c),
                    c["ip"],
                    dst,
                    443,
                    TCP,
                    (rng.randint(8, 30), rng.randint(1_500, 12_000)),
                    (rng.randint(8, 40), rng.randint(3_000, 90_000)),
                )
        # kubelet probes from the pod's own node.
        for p, n in probes:
            if rng.random() < 0.3:
                fw.conversation(
                    w,
                    eni(p),
                    p["node"]["ip"],
                    p["ip"],
                    n,
                    TCP,
                    (5, rng.randint(300, 420)),
                    (4, rng.randint(250, 600)),
                )

    # A few status-only records (no traffic in the window / records skipped), addresses null.
    enis = [n["eni"] for n in {id(p["node"]): p["node"] for p in pods}.values()]
    for w, status in (
        (5, "NODATA"),
        (17, "NODATA"),
        (33, "SKIPDATA"),
        (41, "NODATA"),
        (52, "SKIPDATA"),
    ):
        fw.status_only(rng.choice(enis), w, status)

    # Lookups sent to the kube-dns Service's ClusterIP, recorded before DNAT (as a node's
    # capture sees them): the replay follows them to the coredns backends, so the DNS
    # break shows through the Service too. Their own generator: the records above stay.
    svc_rng = random.Random(SEED + 1)
    for w in range(0, WINDOWS, 6):
        for c in wl("shop", "frontend")[:2]:
            n = svc_rng.randint(1, 3)
            fw.rng, saved = svc_rng, fw.rng
            fw.conversation(w, eni(c), c["ip"], "10.43.0.10", 53, UDP,
                            (n, n * svc_rng.randint(70, 95)),
                            (n, n * svc_rng.randint(110, 480)))
            fw.rng = saved
    return fw.table()


# --------------------------------------------------------------------------- policies

COREDNS_POLICY = """\
# CoreDNS accepts DNS from every namespace and metrics scrapes from Prometheus.
# No policyTypes: it defaults to [Ingress] because the policy has no egress section.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: coredns-ingress
  namespace: kube-system
spec:
  podSelector:
    matchLabels:
      k8s-app: kube-dns
  ingress:
    - from:
        - namespaceSelector: {}
      ports:
        - protocol: UDP
          port: dns
        - protocol: TCP
          port: dns-tcp
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: monitoring
          podSelector:
            matchLabels:
              app.kubernetes.io/name: prometheus
      ports:
        - port: metrics
"""

PAYMENTS_COMMON_HEAD = """\
# payments: default-deny ingress, then explicit allows.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
  namespace: payments
spec:
  podSelector: {}
  policyTypes:
    - Ingress
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-same-namespace
  namespace: payments
spec:
  podSelector: {}
  policyTypes:
    - Ingress
  ingress:
    - from:
        - podSelector: {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-prometheus-scrape
  namespace: payments
spec:
  podSelector: {}
  policyTypes:
    - Ingress
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: monitoring
          podSelector:
            matchLabels:
              app.kubernetes.io/name: prometheus
      ports:
        - protocol: TCP
          port: metrics
"""

PAYMENTS_CURRENT_API = """\
---
# Only shop's checkout pods may call the payments API (namespace AND pod selector: one peer).
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-checkout-to-api
  namespace: payments
spec:
  podSelector:
    matchLabels:
      app: payments-api
  policyTypes:
    - Ingress
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: shop
          podSelector:
            matchLabels:
              app: checkout
      ports:
        - protocol: TCP
          port: grpc
"""

PAYMENTS_CANDIDATE_API = """\
---
# PCI review (CHG-2291): "only payments- and finance-owned namespaces may call the API".
# Replaces allow-checkout-to-api.  NOTE: shop is team=storefront, reporting is team=finance.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-trusted-teams-to-api
  namespace: payments
  labels:
    change: CHG-2291
spec:
  podSelector:
    matchLabels:
      app: payments-api
  policyTypes:
    - Ingress
  ingress:
    - from:
        - namespaceSelector:
            matchExpressions:
              - key: team
                operator: In
                values:
                  - payments
                  - finance
      ports:
        - protocol: TCP
          port: grpc
"""

SHOP_EGRESS = """\
# Lock down egress of the shop namespace (CHG-2290).
apiVersion: v1
kind: ConfigMap
metadata:
  name: netpol-rollout
  namespace: shop
  labels:
    change: CHG-2290
data:
  owner: storefront-sre
  ticket: CHG-2290
  note: egress default-deny for shop; allow in-namespace, DNS, payments API and HTTPS out.
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-egress
  namespace: shop
  labels:
    change: CHG-2290
spec:
  podSelector: {}
  policyTypes:
    - Egress
---
# DNS to CoreDNS.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-dns-egress
  namespace: shop
  labels:
    change: CHG-2290
spec:
  podSelector: {}
  policyTypes:
    - Egress
  egress:
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: kube-system
          podSelector:
            matchLabels:
              k8s-app: kube-dns
      ports:
        - port: 53
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-same-namespace-egress
  namespace: shop
  labels:
    change: CHG-2290
spec:
  podSelector: {}
  policyTypes:
    - Egress
  egress:
    - to:
        - podSelector: {}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-checkout-to-payments
  namespace: shop
  labels:
    change: CHG-2290
spec:
  podSelector:
    matchLabels:
      app: checkout
  policyTypes:
    - Egress
  egress:
    - to:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: payments
          podSelector:
            matchLabels:
              app: payments-api
      ports:
        - protocol: TCP
          port: grpc
---
# HTTPS to the internet (payment gateway, S3) but not to private ranges.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-https-egress
  namespace: shop
  labels:
    change: CHG-2290
spec:
  podSelector:
    matchExpressions:
      - key: app
        operator: In
        values:
          - checkout
          - catalog
  policyTypes:
    - Egress
  egress:
    - to:
        - ipBlock:
            cidr: 0.0.0.0/0
            except:
              - 10.0.0.0/8
              - 172.16.0.0/12
              - 192.168.0.0/16
              - 169.254.0.0/16
      ports:
        - protocol: TCP
          port: 443
"""

SHOP_INGRESS = """\
# Ingress lock-down of the shop namespace (CHG-2290).
# The frontend takes traffic only from the ingress-nginx controller.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: frontend-ingress
  namespace: shop
  labels:
    change: CHG-2290
spec:
  podSelector:
    matchLabels:
      app: frontend
  policyTypes:
    - Ingress
  ingress:
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: ingress-nginx
          podSelector:
            matchLabels:
              app.kubernetes.io/name: ingress-nginx
      ports:
        - protocol: TCP
          port: http
---
# Every other shop pod: traffic from inside shop, and Prometheus on the metrics port.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: backend-ingress
  namespace: shop
  labels:
    change: CHG-2290
spec:
  podSelector:
    matchExpressions:
      - key: app
        operator: NotIn
        values:
          - frontend
  policyTypes:
    - Ingress
  ingress:
    - from:
        - podSelector: {}
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: monitoring
          podSelector:
            matchLabels:
              app.kubernetes.io/name: prometheus
      ports:
        - protocol: TCP
          port: metrics
"""

# Cluster guardrails of the PCI review (CHG-2291), owned by the platform team: the admin
# tier keeps every namespace but monitoring and the PCI-scoped teams out of PCI
# namespaces; the baseline denies PCI namespaces the internet unless a NetworkPolicy
# allows it.
CLUSTER_GUARDRAILS = """\
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata:
  name: pci-ingress-guardrail
spec:
  priority: 10
  subject:
    namespaces:
      matchLabels:
        pci: "true"
  ingress:
    - name: allow-monitoring
      action: Allow
      from:
        - namespaces:
            matchLabels:
              kubernetes.io/metadata.name: monitoring
    # PCI-scoped teams: their NetworkPolicies decide
    - name: pass-pci-teams
      action: Pass
      from:
        - namespaces:
            matchExpressions:
              - key: team
                operator: In
                values:
                  - payments
                  - finance
    - name: deny-other-namespaces
      action: Deny
      from:
        - namespaces: {}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata:
  name: default
spec:
  subject:
    namespaces:
      matchLabels:
        pci: "true"
  egress:
    - name: allow-in-cluster
      action: Allow
      to:
        - namespaces: {}
    - name: deny-internet
      action: Deny
      to:
        - networks:
            - 0.0.0.0/0
            - ::/0
"""

POLICY_FILES = {
    "current": {
        "kube-system-coredns.yaml": COREDNS_POLICY,
        "payments.yaml": PAYMENTS_COMMON_HEAD + PAYMENTS_CURRENT_API,
    },
    "candidate": {
        "kube-system-coredns.yaml": COREDNS_POLICY,
        "payments.yaml": PAYMENTS_COMMON_HEAD + PAYMENTS_CANDIDATE_API,
        "shop-egress.yaml": SHOP_EGRESS,
        "shop-ingress.yaml": SHOP_INGRESS,
        "cluster-guardrails.yaml": CLUSTER_GUARDRAILS,
    },
}


def write_policies() -> list[Path]:
    written = []
    for set_name, files in POLICY_FILES.items():
        d = POLICY_DIR / set_name
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("*.yaml"):
            if old.name not in files:
                old.unlink()
        for fname, text in files.items():
            list(yaml.safe_load_all(text))  # fail early on a typo
            (d / fname).write_text(text)
            written.append(d / fname)
    return written


# --------------------------------------------------------------------------- main


def main() -> None:
    rng = random.Random(SEED)
    ids = Ids(rng)
    items, pod_records = build_cluster(rng, ids)
    cluster = {
        "apiVersion": "v1",
        "kind": "List",
        "items": items,
        "metadata": {"resourceVersion": ""},
    }
    cluster_path = FLOWS_DIR / "demo-cluster.json"
    cluster_path.write_text(json.dumps(cluster, indent=2) + "\n")

    table = build_flows(rng, pod_records)
    flows_path = FLOWS_DIR / "demo-vpc.parquet"
    # AWS delivers Parquet Gzip-compressed.
    pq.write_table(table, flows_path, compression="gzip")

    written = write_policies()
    print(f"wrote {cluster_path.relative_to(ROOT)} ({len(items)} objects, {len(pod_records)} pods)")
    print(f"wrote {flows_path.relative_to(ROOT)} ({table.num_rows} records)")
    for p in written:
        print(f"wrote {p.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
