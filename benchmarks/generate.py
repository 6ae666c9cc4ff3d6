"""Generate a large, seeded, synthetic workload for benchmarking `simulate`.

Writes, below --out (default benchmarks/data):

* ``cluster.json``   -- ``kubectl get nodes,namespaces,pods -o json`` style ``kind: List``
* ``current/``       -- NetworkPolicy YAML in force when the flows were recorded
* ``candidate/``     -- the same set with changes: some traffic breaks, some is newly allowed
* ``flows.parquet``  -- AWS VPC flow logs in the Parquet delivery schema

The cluster and policies are small (thousands of objects) and built in plain Python with
``random.Random(seed)``. The flow records are the big part; they are produced by DuckDB SQL
over ``range(N)`` with deterministic ``hash()``-based randomness, so 10M records take
seconds and the same seed gives the same file.

Traffic model: an application graph (ingress controller -> frontends -> backends ->
databases/caches, workers, cross-namespace gRPC, DNS to CoreDNS, Prometheus scrapes,
kubelet probes, egress to external APIs and an RDS range in the VPC, internet clients to the
ingress controller, scanners) is expanded to pod pairs, which form the set of distinct
connections (src, dst, dst_port, proto). Records are drawn from that set with a skewed
(power-law) popularity; about 30% of records are replies (src/dst swapped, server port as
srcport). Connections are either pooled (a few stable ephemeral source ports, many
records each) or short-lived (a fresh ephemeral port per record). Connections that the
current policies deny are recorded with action REJECT and have no replies.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "data"

T0 = 1_717_200_000  # 2024-06-01T00:00:00Z: first flow record
WINDOW = 6 * 3600  # seconds of traffic the records span
ACCOUNT = "123456789012"
EPH_LO, EPH_HI = 32768, 60999  # Linux ip_local_port_range default

TCP, UDP = 6, 17
PODS_PER_NODE = 30
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
RDS_CIDR = "10.1.0.0/16"

WORDS = [
    "web", "api", "auth", "orders", "payments", "search", "catalog", "cart", "users",
    "billing", "notify", "reports", "ledger", "inventory", "shipping", "profile", "media",
    "pricing", "reviews", "session", "gateway", "checkout", "events", "audit", "feeds",
]  # fmt: skip
TIER_CYCLE = [
    "frontend", "backend", "backend", "db", "cache", "worker", "backend", "frontend",
    "backend", "worker", "backend", "db",
]  # fmt: skip
ENVS = ["prod", "staging", "dev"]


# --------------------------------------------------------------------------- model


@dataclass
class App:
    id: int
    ns: str
    name: str
    tier: str
    labels: dict[str, str]
    ports: list[tuple[str, int, str]]  # (name, number, protocol)
    replicas: int
    owner_kind: str = "ReplicaSet"
    pods: list[int] = field(default_factory=list)  # pod indices

    def port(self, name: str) -> int | None:
        for pname, num, _ in self.ports:
            if pname == name:
                return num
        return None


@dataclass
class Namespace:
    name: str
    team: str
    env: str
    locked: bool = False  # has default-deny ingress in the current set
    egress_locked: bool = False  # has default-deny egress in the current set
    apps: list[int] = field(default_factory=list)


@dataclass
class World:
    nodes: list[dict[str, Any]]
    node_ips: list[str]
    namespaces: dict[str, Namespace]
    apps: list[App]
    pod_ip: list[str]
    pod_node: list[int]
    pod_app: list[int]
    objects: list[dict[str, Any]]


def _hex(rng: random.Random, n: int, alphabet: str = "bcdfghjklmnpqrstvwxz2456789") -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _ts(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def build_world(seed: int, n_pods: int, n_namespaces: int) -> World:
    rng = random.Random(seed)
    n_namespaces = max(4, n_namespaces)

    # ---- namespaces: three system ones plus application namespaces
    namespaces: dict[str, Namespace] = {}
    for name in ("kube-system", "monitoring", "ingress-nginx"):
        namespaces[name] = Namespace(name, "platform", "prod")
    n_app_ns = n_namespaces - 3
    for i in range(n_app_ns):
        word = WORDS[i % len(WORDS)]
        name = f"{word}-{i:03d}"
        team = f"team-{i % 20:02d}"
        env = ENVS[(i // 2) % 3]
        ns = Namespace(name, team, env)
        # ~85% of app namespaces are locked down (default-deny ingress); prod ones
        # also lock egress about half the time.
        ns.locked = rng.random() < 0.85
        ns.egress_locked = ns.locked and env == "prod" and rng.random() < 0.5
        namespaces[name] = ns
    app_ns = [
        ns
        for ns in namespaces.values()
        if ns.name not in ("kube-system", "monitoring", "ingress-nginx")
    ]
    namespaces["ingress-nginx"].locked = True

    # ---- applications and their replicas
    apps: list[App] = []

    def add_app(
        ns: str,
        name: str,
        tier: str,
        labels: dict[str, str],
        ports: list[tuple[str, int, str]],
        replicas: int,
        owner_kind: str = "ReplicaSet",
    ) -> App:
        app = App(len(apps), ns, name, tier, labels, ports, replicas, owner_kind)
        apps.append(app)
        namespaces[ns].apps.append(app.id)
        return app

    n_dns = max(2, n_pods // 500)
    add_app(
        "kube-system",
        "coredns",
        "dns",
        {"k8s-app": "kube-dns"},
        [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")],
        n_dns,
    )
    add_app(
        "monitoring",
        "prometheus",
        "monitoring",
        {"app": "prometheus", "app.kubernetes.io/name": "prometheus", "team": "platform"},
        [("http", 9090, "TCP")],
        2,
        "StatefulSet",
    )
    add_app(
        "ingress-nginx",
        "ingress-nginx-controller",
        "edge",
        {
            "app": "ingress-nginx",
            "app.kubernetes.io/name": "ingress-nginx",
            "app.kubernetes.io/component": "controller",
            "team": "platform",
        },
        [("http", 80, "TCP"), ("https", 443, "TCP"), ("metrics", 10254, "TCP")],
        max(3, n_pods // 1500),
    )
    system_pods = sum(a.replicas for a in apps)

    remaining = max(len(app_ns), n_pods - system_pods)
    # split the remaining pods over app namespaces with some variance
    weights = [rng.uniform(0.4, 1.6) for _ in app_ns]
    total_w = sum(weights)
    quotas = [max(1, int(remaining * w / total_w)) for w in weights]
    quotas[-1] += remaining - sum(quotas)
    for ns, quota in zip(app_ns, quotas, strict=True):
        k = 0
        used_names: set[str] = set()
        while quota > 0:
            tier = TIER_CYCLE[k % len(TIER_CYCLE)]
            k += 1
            if tier == "db":
                replicas = rng.choice([1, 2, 3])
            elif tier == "cache":
                replicas = rng.choice([1, 2, 3])
            else:
                replicas = rng.randint(2, 8)
            replicas = min(replicas, quota)
            quota -= replicas
            word = rng.choice(WORDS)
            name = f"{word}-{tier}"
            j = 2
            while name in used_names:
                name = f"{word}-{tier}-{j}"
                j += 1
            used_names.add(name)
            labels = {"app": name, "tier": tier, "team": ns.team}
            if tier == "frontend":
                ports = [("http", rng.choice([8080, 3000, 80]), "TCP"), ("metrics", 9090, "TCP")]
            elif tier == "backend":
                ports = [
                    ("http", rng.choice([8080, 8000, 5000]), "TCP"),
                    ("grpc", rng.choice([50051, 50051, 9000]), "TCP"),
                    ("metrics", rng.choice([9090, 9102]), "TCP"),
                ]
            elif tier == "db":
                ports = [("postgres", 5432, "TCP"), ("metrics", 9187, "TCP")]
            elif tier == "cache":
                ports = [("redis", 6379, "TCP"), ("metrics", 9121, "TCP")]
            else:  # worker
                ports = [("http", 8080, "TCP"), ("metrics", 9090, "TCP")]
            add_app(
                ns.name,
                name,
                tier,
                labels,
                ports,
                replicas,
                "StatefulSet" if tier == "db" else "ReplicaSet",
            )

    total_pods = sum(a.replicas for a in apps)

    # ---- nodes: /24 pod CIDR each from 10.128.0.0/9, InternalIP in 10.0.0.0/16
    n_nodes = max(1, -(-total_pods // PODS_PER_NODE))
    nodes: list[dict[str, Any]] = []
    node_ips: list[str] = []
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    for n in range(n_nodes):
        ip = f"10.0.{n // 250}.{n % 250 + 4}"
        cidr = f"10.{128 + n // 256}.{n % 256}.0/24"
        node_ips.append(ip)
        name = f"ip-{ip.replace('.', '-')}.ec2.internal"
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "topology.kubernetes.io/zone": zones[n % 3],
                        "node.kubernetes.io/instance-type": "m6i.2xlarge",
                    },
                    "creationTimestamp": _ts(T0 - 60 * 86400),
                },
                "spec": {
                    "podCIDR": cidr,
                    "podCIDRs": [cidr],
                    "providerID": f"aws:///{zones[n % 3]}/i-0{n:016x}",
                },
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": ip},
                        {"type": "Hostname", "address": name},
                        {"type": "InternalDNS", "address": name},
                    ],
                },
            }
        )

    # ---- pods: shuffled onto nodes, IPs from the node's /24
    slots = list(range(total_pods))
    rng.shuffle(slots)
    pod_ip: list[str] = []
    pod_node: list[int] = []
    pod_app: list[int] = []
    pod_objects: list[dict[str, Any]] = []
    idx = 0
    for app in apps:
        rs_hash = _hex(rng, 10)
        for r in range(app.replicas):
            slot = slots[idx]
            node_i, k = divmod(slot, PODS_PER_NODE)
            ip = f"10.{128 + node_i // 256}.{node_i % 256}.{k + 2}"
            if app.owner_kind == "StatefulSet":
                pod_name = f"{app.name}-{r}"
                owner_name = app.name
                labels = dict(app.labels)
                labels["statefulset.kubernetes.io/pod-name"] = pod_name
            else:
                pod_name = f"{app.name}-{rs_hash}-{_hex(rng, 5)}"
                owner_name = f"{app.name}-{rs_hash}"
                labels = dict(app.labels)
                labels["pod-template-hash"] = rs_hash
            created = T0 - rng.randint(3600, 30 * 86400)
            image = f"registry.example.com/{app.ns}/{app.name}:1.{rng.randint(0, 40)}"
            container_ports = [
                {"name": n, "containerPort": p, "protocol": pr} for n, p, pr in app.ports
            ]
            pod_objects.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": pod_name,
                        "namespace": app.ns,
                        "labels": labels,
                        "creationTimestamp": _ts(created),
                        "ownerReferences": [
                            {
                                "apiVersion": "apps/v1",
                                "kind": app.owner_kind,
                                "name": owner_name,
                                "uid": f"{rng.getrandbits(128):032x}",
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "spec": {
                        "nodeName": nodes[node_i]["metadata"]["name"],
                        "serviceAccountName": "default",
                        "restartPolicy": "Always",
                        "containers": [
                            {
                                "name": app.name.split("-")[0],
                                "image": image,
                                "ports": container_ports,
                                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                            }
                        ],
                    },
                    "status": {
                        "phase": "Running",
                        "hostIP": node_ips[node_i],
                        "podIP": ip,
                        "podIPs": [{"ip": ip}],
                        "qosClass": "Burstable",
                        "startTime": _ts(created + 5),
                    },
                }
            )
            app.pods.append(len(pod_ip))
            pod_ip.append(ip)
            pod_node.append(node_i)
            pod_app.append(app.id)
            idx += 1

    ns_objects = []
    for ns in namespaces.values():
        labels = {"kubernetes.io/metadata.name": ns.name, "team": ns.team, "env": ns.env}
        if ns.name not in ("kube-system", "monitoring", "ingress-nginx"):
            labels["cost-center"] = f"cc-{int(ns.team[-2:]) * 37 % 1000:03d}"
        ns_objects.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns.name,
                    "labels": labels,
                    "creationTimestamp": _ts(T0 - 90 * 86400),
                },
                "status": {"phase": "Active"},
            }
        )
    objects = nodes + ns_objects + pod_objects
    return World(nodes, node_ips, namespaces, apps, pod_ip, pod_node, pod_app, objects)


# ------------------------------------------------------------------------ policies


def _np(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def _ns_sel(name: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


DEFAULT_DENY_INGRESS = {"podSelector": {}, "policyTypes": ["Ingress"]}
PROMETHEUS_PEER = {
    "namespaceSelector": _ns_sel("monitoring"),
    "podSelector": {"matchLabels": {"app": "prometheus"}},
}


@dataclass
class Plan:
    """The policy sets and the by-construction verdicts the traffic generator needs."""

    current: dict[str, list[dict[str, Any]]]  # namespace -> policies
    candidate: dict[str, list[dict[str, Any]]]
    # target app id -> set of caller namespaces allowed cross-namespace (current)
    xns_allowed: dict[int, set[str]]
    xns_policy_apps: set[int]


def build_policies(world: World, seed: int, target: int, xns_edges: list[tuple[int, int]]) -> Plan:
    rng = random.Random(seed + 1)
    apps = world.apps
    current: dict[str, list[dict[str, Any]]] = {}

    def tiers(ns: Namespace) -> set[str]:
        return {apps[a].tier for a in ns.apps}

    for ns in world.namespaces.values():
        pols: list[dict[str, Any]] = []
        if ns.name == "ingress-nginx":
            pols.append(_np(ns.name, "default-deny-ingress", DEFAULT_DENY_INGRESS))
            pols.append(
                _np(
                    ns.name,
                    "allow-internet-to-controller",
                    {
                        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                "ports": [
                                    {"protocol": "TCP", "port": "http"},
                                    {"protocol": "TCP", "port": 443},
                                ],
                            },
                            {
                                "from": [PROMETHEUS_PEER],
                                "ports": [{"protocol": "TCP", "port": "metrics"}],
                            },
                        ],
                    },
                )
            )
        elif not ns.locked:
            pass
        else:
            t = tiers(ns)
            pols.append(_np(ns.name, "default-deny-ingress", DEFAULT_DENY_INGRESS))
            pols.append(
                _np(
                    ns.name,
                    "allow-prometheus-scrape",
                    {
                        "podSelector": {},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [PROMETHEUS_PEER],
                                "ports": [{"protocol": "TCP", "port": "metrics"}],
                            }
                        ],
                    },
                )
            )
            if "frontend" in t:
                pols.append(
                    _np(
                        ns.name,
                        "allow-ingress-controller-to-frontend",
                        {
                            "podSelector": {"matchLabels": {"tier": "frontend"}},
                            "policyTypes": ["Ingress"],
                            "ingress": [
                                {
                                    "from": [
                                        {
                                            "namespaceSelector": _ns_sel("ingress-nginx"),
                                            "podSelector": {
                                                "matchLabels": {
                                                    "app.kubernetes.io/name": "ingress-nginx"
                                                }
                                            },
                                        }
                                    ],
                                    "ports": [{"protocol": "TCP", "port": "http"}],
                                }
                            ],
                        },
                    )
                )
            if t & {"backend", "worker"}:
                pols.append(
                    _np(
                        ns.name,
                        "allow-same-namespace-to-backend",
                        {
                            "podSelector": {
                                "matchExpressions": [
                                    {"key": "tier", "operator": "In", "values": ["backend"]}
                                ]
                            },
                            "policyTypes": ["Ingress"],
                            "ingress": [
                                {
                                    "from": [{"podSelector": {}}],
                                    "ports": [
                                        {"protocol": "TCP", "port": "http"},
                                        {"protocol": "TCP", "port": "grpc"},
                                    ],
                                }
                            ],
                        },
                    )
                )
            if t & {"db", "cache"}:
                pols.append(
                    _np(
                        ns.name,
                        "allow-backend-to-data",
                        {
                            "podSelector": {
                                "matchExpressions": [
                                    {"key": "tier", "operator": "In", "values": ["db", "cache"]}
                                ]
                            },
                            "policyTypes": ["Ingress"],
                            "ingress": [
                                {
                                    "from": [
                                        {
                                            "podSelector": {
                                                "matchExpressions": [
                                                    {
                                                        "key": "tier",
                                                        "operator": "In",
                                                        "values": ["backend", "worker"],
                                                    }
                                                ]
                                            }
                                        }
                                    ],
                                    "ports": [
                                        {"protocol": "TCP", "port": "postgres"},
                                        {"protocol": "TCP", "port": "redis"},
                                    ],
                                }
                            ],
                        },
                    )
                )
            if ns.egress_locked:
                pols.append(
                    _np(
                        ns.name,
                        "default-deny-egress",
                        {"podSelector": {}, "policyTypes": ["Egress"]},
                    )
                )
                pols.append(
                    _np(
                        ns.name,
                        "allow-egress",
                        {
                            "podSelector": {},
                            "policyTypes": ["Egress"],
                            "egress": [
                                {
                                    "to": [
                                        {
                                            "namespaceSelector": _ns_sel("kube-system"),
                                            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                                        }
                                    ],
                                    "ports": [
                                        {"protocol": "UDP", "port": 53},
                                        {"protocol": "TCP", "port": 53},
                                    ],
                                },
                                {"to": [{"podSelector": {}}]},
                                {
                                    "to": [
                                        {
                                            "namespaceSelector": {},
                                            "podSelector": {"matchLabels": {"tier": "backend"}},
                                        }
                                    ],
                                    "ports": [{"protocol": "TCP", "port": "grpc"}],
                                },
                                {
                                    "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE}}],
                                    "ports": [{"protocol": "TCP", "port": 443}],
                                },
                                {
                                    "to": [{"ipBlock": {"cidr": RDS_CIDR}}],
                                    "ports": [{"protocol": "TCP", "port": 5432}],
                                },
                            ],
                        },
                    )
                )
        current[ns.name] = pols

    # ---- per-app cross-namespace policies, within the remaining budget
    core = sum(len(p) for p in current.values())
    callers: dict[int, set[int]] = {}
    for src, dst in xns_edges:
        callers.setdefault(dst, set()).add(src)
    targets = [a for a in sorted(callers) if world.namespaces[apps[a].ns].locked]
    rng.shuffle(targets)
    budget = max(0, target - core)
    # keep ~15% of targets without a policy: their cross-namespace callers are rejected
    with_policy = set(targets[: min(budget, int(len(targets) * 0.85))])
    xns_allowed: dict[int, set[str]] = {}
    for a in sorted(with_policy):
        app = apps[a]
        team = world.namespaces[app.ns].team
        caller_ns = {apps[c].ns for c in callers[a]}
        other = sorted(n for n in caller_ns if world.namespaces[n].team != team)
        # other-team callers are listed explicitly for ~70% of them
        listed = [n for n in other if rng.random() < 0.7]
        peers: list[dict[str, Any]] = [
            {
                "namespaceSelector": {"matchLabels": {"team": team}},
                "podSelector": {"matchLabels": {"tier": "backend"}},
            }
        ]
        if listed:
            peers.append(
                {
                    "namespaceSelector": {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/metadata.name",
                                "operator": "In",
                                "values": listed,
                            }
                        ]
                    },
                    "podSelector": {
                        "matchExpressions": [
                            {"key": "tier", "operator": "In", "values": ["backend", "worker"]}
                        ]
                    },
                }
            )
        current[app.ns].append(
            _np(
                app.ns,
                f"allow-cross-namespace-to-{app.name}",
                {
                    "podSelector": {"matchLabels": {"app": app.name}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": "grpc"}]}],
                },
            )
        )
        xns_allowed[a] = {n for n in caller_ns if world.namespaces[n].team == team} | set(listed)

    candidate = build_candidate(world, current, callers, xns_allowed, rng)
    pad_policies(world, current, candidate, target, seed)
    add_guardrails(world, current, candidate)
    return Plan(current, candidate, xns_allowed, with_policy)


# bumped when the policy sets change shape: data of an older version gets new policy sets
POLICY_VERSION = 2
GUARDRAILS = 48          # per-namespace AdminNetworkPolicies, besides the cluster-wide ones
METADATA = "169.254.169.254/32"
CLUSTER = "_cluster"     # the key (and file name) of the cluster-scoped policies


def _cluster_policy(kind: str, name: str, spec: dict[str, Any],
                    version: str = "v1alpha1") -> dict[str, Any]:
    return {"apiVersion": f"policy.networking.k8s.io/{version}", "kind": kind,
            "metadata": {"name": name}, "spec": spec}


def add_guardrails(
    world: World,
    current: dict[str, list[dict[str, Any]]],
    candidate: dict[str, list[dict[str, Any]]],
) -> None:
    """The platform team's cluster-scoped tiers, in both sets: ~50 AdminNetworkPolicies (one
    per busy namespace, mostly passing traffic on to the NetworkPolicies, and denying the
    cloud metadata address), a ClusterNetworkPolicy in the `protocols` shape, and the
    BaselineAdminNetworkPolicy. They decide nothing the flows carry, so the recorded
    verdicts stay true; the candidate adds one admin Deny (dev namespaces into prod) that
    does break observed traffic."""
    app_ns = sorted((ns for ns in world.namespaces.values() if ns.apps),
                    key=lambda ns: (-len(ns.apps), ns.name))[:GUARDRAILS]
    rails: list[dict[str, Any]] = [_cluster_policy("AdminNetworkPolicy", "deny-metadata", {
        "priority": 1, "subject": {"namespaces": {}},
        "egress": [{"name": "deny-metadata", "action": "Deny",
                    "to": [{"networks": [METADATA]}]}]})]
    for i, ns in enumerate(app_ns):
        rails.append(_cluster_policy("AdminNetworkPolicy", f"guard-{ns.name}", {
            "priority": 20 + i,
            "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": ns.name}}},
            "ingress": [
                {"name": "pass-monitoring", "action": "Pass",
                 "from": [{"pods": {"namespaceSelector": _ns_sel("monitoring"),
                                    "podSelector": {"matchLabels": {"app": "prometheus"}}}}],
                 "ports": [{"namedPort": "metrics"}]},
                {"name": "pass-own-team", "action": "Pass",
                 "from": [{"namespaces": {"matchLabels": {"team": ns.team}}}]},
                {"name": "pass-rest", "action": "Pass", "from": [{"namespaces": {}}]}],
            "egress": [
                {"name": "deny-metadata", "action": "Deny", "to": [{"networks": [METADATA]}]},
                {"name": "pass-nodes", "action": "Pass", "to": [{"nodes": {}}],
                 "ports": [{"portRange": {"protocol": "TCP", "start": 10250, "end": 10259}}]},
                {"name": "pass-rest", "action": "Pass",
                 "to": [{"namespaces": {}}, {"networks": ["0.0.0.0/0", "::/0"]}]}]}))
    rails.append(_cluster_policy("ClusterNetworkPolicy", "prod-dns", {
        "tier": "Admin", "priority": 15,
        "subject": {"namespaces": {"matchLabels": {"env": "prod"}}},
        "egress": [{"name": "pass-dns", "action": "Pass",
                    "to": [{"namespaces": _ns_sel("kube-system")}],
                    "protocols": [{"udp": {"destinationPort": {"number": 53}}},
                                  {"tcp": {"destinationPort": {"number": 53}}}]}]},
        version="v1alpha2"))
    rails.append(_cluster_policy("BaselineAdminNetworkPolicy", "default", {
        "subject": {"namespaces": {}},
        "ingress": [{"name": "allow-monitoring", "action": "Allow",
                     "from": [{"namespaces": _ns_sel("monitoring")}]}],
        "egress": [{"name": "deny-metadata", "action": "Deny",
                    "to": [{"networks": [METADATA]}]}]}))
    current[CLUSTER] = rails
    prod_apps = {"matchLabels": {"env": "prod"}, "matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
         "values": ["kube-system", "monitoring", "ingress-nginx"]}]}
    candidate[CLUSTER] = rails + [_cluster_policy("AdminNetworkPolicy", "no-dev-into-prod", {
        "priority": 5, "subject": {"namespaces": prod_apps},
        "ingress": [{"name": "deny-dev", "action": "Deny",
                     "from": [{"namespaces": {"matchLabels": {"env": "dev"}}}]}]})]


def pad_policies(
    world: World,
    current: dict[str, list[dict[str, Any]]],
    candidate: dict[str, list[dict[str, Any]]],
    target: int,
    seed: int,
) -> int:
    """Fill both sets up to `target` policies (the current set's size) with per-app ingress
    allowances that admit nothing the traffic contains: agents that do not run
    (`app: audit-agent-K` in the app's team namespaces) and TEST-NET-1 addresses, on ports no
    flow uses. They are added only where both sets already deny ingress by default, so no
    verdict changes, but every one of them selects pods, isolates them and is evaluated on
    their connections: what a policy repository with thousands of objects costs.
    Returns how many were added to each set (none at the default sizes)."""
    missing = target - sum(len(p) for p in current.values())
    if missing <= 0:
        return 0

    def deny_all(pols: list[dict[str, Any]]) -> bool:
        return any(p["metadata"]["name"] == "default-deny-ingress" for p in pols)

    slots = [
        (ns.name, world.apps[a])
        for ns in sorted(world.namespaces.values(), key=lambda n: n.name)
        if deny_all(current.get(ns.name, [])) and deny_all(candidate.get(ns.name, []))
        for a in ns.apps
    ]
    if not slots:
        return 0
    rng = random.Random(seed + 7)
    for k in range(missing):
        ns_name, app = slots[k % len(slots)]
        team = world.namespaces[ns_name].team
        selector: dict[str, Any] = (
            {"matchLabels": {"app": app.name}}
            if k % 3
            else {"matchExpressions": [{"key": "tier", "operator": "In", "values": [app.tier]}]}
        )
        peers: list[dict[str, Any]] = [
            {
                "namespaceSelector": {"matchLabels": {"team": team}},
                "podSelector": {"matchLabels": {"app": f"audit-agent-{rng.randrange(50)}"}},
            },
            {"ipBlock": {"cidr": f"192.0.2.{rng.randrange(256)}/32"}},
        ]
        port = 7100 + rng.randrange(50)
        pol = _np(
            ns_name,
            f"allow-audit-{app.name}-{k // len(slots)}",
            {
                "podSelector": selector,
                "policyTypes": ["Ingress"],
                "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": port}]}],
            },
        )
        current.setdefault(ns_name, []).append(pol)
        candidate.setdefault(ns_name, []).append(pol)
    return missing


def build_candidate(
    world: World,
    current: dict[str, list[dict[str, Any]]],
    callers: dict[int, set[int]],
    xns_allowed: dict[int, set[str]],
    rng: random.Random,
) -> dict[str, list[dict[str, Any]]]:
    """Copy `current` with a realistic mix of tightening and loosening changes."""
    import copy

    cand = copy.deepcopy(current)
    apps = world.apps
    app_ns = [
        ns
        for ns in world.namespaces.values()
        if ns.name not in ("kube-system", "monitoring", "ingress-nginx")
    ]
    locked = [ns for ns in app_ns if ns.locked]
    open_ = [ns for ns in app_ns if not ns.locked]

    def drop(ns: str, name: str) -> None:
        cand[ns] = [p for p in cand[ns] if p["metadata"]["name"] != name]

    def find(ns: str, name: str) -> dict[str, Any] | None:
        for p in cand[ns]:
            if p["metadata"]["name"] == name:
                return p
        return None

    # breaks: Prometheus scrape allowance removed in ~8% of locked namespaces
    for ns in rng.sample(locked, max(1, len(locked) * 8 // 100)):
        drop(ns.name, "allow-prometheus-scrape")
    # breaks: named ports replaced by numbers that only match some backends (~6%)
    for ns in rng.sample(locked, max(1, len(locked) * 6 // 100)):
        p = find(ns.name, "allow-same-namespace-to-backend")
        if p:
            p["spec"]["ingress"][0]["ports"] = [
                {"protocol": "TCP", "port": 8080},
                {"protocol": "TCP", "port": 50051},
            ]
    # breaks: half of the open namespaces get locked down, forgetting the data tier
    for ns in rng.sample(open_, len(open_) // 2):
        cand[ns.name] = [
            _np(ns.name, "default-deny-ingress", DEFAULT_DENY_INGRESS),
            _np(
                ns.name,
                "allow-prometheus-scrape",
                {
                    "podSelector": {},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [PROMETHEUS_PEER],
                            "ports": [{"protocol": "TCP", "port": "metrics"}],
                        }
                    ],
                },
            ),
            _np(
                ns.name,
                "allow-frontend-and-backend",
                {
                    "podSelector": {
                        "matchExpressions": [
                            {"key": "tier", "operator": "In", "values": ["frontend", "backend"]}
                        ]
                    },
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [
                                {"podSelector": {}},
                                {"namespaceSelector": _ns_sel("ingress-nginx")},
                            ],
                            "ports": [
                                {"protocol": "TCP", "port": "http"},
                                {"protocol": "TCP", "port": "grpc"},
                            ],
                        }
                    ],
                },
            ),
        ]
    # breaks: egress lockdown in a few staging namespaces that forgets DNS
    staging = [ns for ns in locked if ns.env == "staging" and not ns.egress_locked]
    for ns in rng.sample(staging, min(len(staging), max(1, len(locked) // 25))):
        cand[ns.name].append(
            _np(ns.name, "default-deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
        )
        cand[ns.name].append(
            _np(
                ns.name,
                "allow-egress-in-namespace",
                {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {"to": [{"podSelector": {}}]},
                        {
                            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE}}],
                            "ports": [{"protocol": "TCP", "port": 443}],
                        },
                    ],
                },
            )
        )
    # breaks: external egress narrowed to a few provider ranges in some prod namespaces
    eg = [ns for ns in locked if ns.egress_locked]
    for ns in rng.sample(eg, len(eg) // 3):
        p = find(ns.name, "allow-egress")
        if p:
            p["spec"]["egress"][3]["to"] = [
                {"ipBlock": {"cidr": c}} for c in ("52.0.0.0/8", "54.0.0.0/8")
            ]
    # newly allowed: frontends may reach the data tier directly (~10%)
    for ns in rng.sample(locked, max(1, len(locked) // 10)):
        p = find(ns.name, "allow-backend-to-data")
        if p:
            p["spec"]["ingress"][0]["from"] = [{"podSelector": {}}]
    # newly allowed: previously rejected cross-namespace callers get a policy (~25%)
    for a, cs in sorted(callers.items()):
        app = apps[a]
        ns = world.namespaces[app.ns]
        if not ns.locked:
            continue
        denied = sorted({apps[c].ns for c in cs} - xns_allowed.get(a, set()))
        if denied and rng.random() < 0.25:
            cand[app.ns].append(
                _np(
                    app.ns,
                    f"allow-{app.name}-from-partners",
                    {
                        "podSelector": {"matchLabels": {"app": app.name}},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [
                                    {
                                        "namespaceSelector": {
                                            "matchExpressions": [
                                                {
                                                    "key": "kubernetes.io/metadata.name",
                                                    "operator": "In",
                                                    "values": denied,
                                                }
                                            ]
                                        },
                                    }
                                ],
                                "ports": [{"protocol": "TCP", "port": "grpc"}],
                            }
                        ],
                    },
                )
            )
    # newly allowed: a couple of dev namespaces drop their default deny
    dev = [ns for ns in locked if ns.env == "dev"]
    for ns in rng.sample(dev, min(len(dev), 2)):
        drop(ns.name, "default-deny-ingress")
        cand[ns.name].append(
            _np(
                ns.name,
                "allow-all-ingress",
                {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]},
            )
        )
    return cand


def write_policy_dir(directory: Path, policies: dict[str, list[dict[str, Any]]]) -> int:
    """One multi-document YAML file per namespace (how policy repos are usually laid out)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    n = 0
    for ns, pols in sorted(policies.items()):
        if not pols:
            continue
        path = directory / f"{ns}.yaml"
        path.write_text(yaml.safe_dump_all(pols, sort_keys=False))
        n += len(pols)
    return n


# -------------------------------------------------------------------------- traffic

# edge kinds -> (pool code). pool: 0 = fresh ephemeral port per record, k>0 = k stable ports
EDGE_COLUMNS = ["src_group", "dst_group", "port", "proto", "action", "pool", "keep", "kind"]


def build_edges(
    world: World, plan: Plan | None, seed: int, xns_edges: list[tuple[int, int]]
) -> list[tuple]:
    """Group-level edges. Groups are app ids, plus the special external groups below."""
    rng = random.Random(seed + 2)
    apps = world.apps
    ns_of = world.namespaces
    edges: list[tuple] = []
    dns = 0
    prom = 1
    ingress = 2

    def add(
        src: int, dst: int, port: int, proto: int, ok: bool, pool: int, keep: float, kind: str
    ) -> None:
        edges.append((src, dst, port, proto, "ACCEPT" if ok else "REJECT", pool, keep, kind))

    for ns in ns_of.values():
        if ns.name in ("kube-system", "monitoring", "ingress-nginx"):
            continue
        by_tier: dict[str, list[App]] = {}
        for a in ns.apps:
            by_tier.setdefault(apps[a].tier, []).append(apps[a])
        fronts = by_tier.get("frontend", [])
        backs = by_tier.get("backend", [])
        data = by_tier.get("db", []) + by_tier.get("cache", [])
        workers = by_tier.get("worker", [])
        locked = ns.locked
        for f in fronts:
            add(apps[ingress].id, f.id, f.port("http"), TCP, True, 3, 1.0, "ingress")
            for b in backs:
                add(f.id, b.id, b.port("http"), TCP, True, 2, 1.0, "app")
            for d in data:  # stray: frontends talking to the data tier directly
                if rng.random() < 0.3:
                    add(
                        f.id,
                        d.id,
                        d.port("postgres") or d.port("redis"),
                        TCP,
                        not locked,
                        1,
                        0.5,
                        "stray",
                    )
        for b in backs:
            for other in rng.sample(backs, min(len(backs), 2)):
                if other.id != b.id:
                    add(b.id, other.id, other.port("grpc"), TCP, True, 1, 1.0, "app")
            for d in data:
                add(b.id, d.id, d.port("postgres") or d.port("redis"), TCP, True, 4, 1.0, "app")
        for w in workers:
            for d in data:
                add(w.id, d.id, d.port("postgres") or d.port("redis"), TCP, True, 2, 1.0, "app")
            for b in backs[:2]:
                add(w.id, b.id, b.port("grpc"), TCP, True, 1, 1.0, "app")
        # egress to the outside
        for a in fronts + backs:
            if rng.random() < 0.4:
                add(a.id, -2, 443, TCP, True, 0, 0.3, "external-api")
            if ns.egress_locked and rng.random() < 0.2:
                add(a.id, -2, 80, TCP, False, 0, 0.2, "external-api")
        for b in backs:
            if rng.random() < 0.25:
                add(b.id, -3, 5432, TCP, True, 3, 0.5, "rds")
        # scanners probing admin ports
        for a in ns.apps:
            if rng.random() < 0.1:
                add(-4, a, rng.choice([22, 3389, 6443]), TCP, not locked, 0, 0.2, "scan")

    # cross-namespace gRPC
    for src, dst in xns_edges:
        tgt = apps[dst]
        ok = (not ns_of[tgt.ns].locked) or (
            plan is not None and apps[src].ns in plan.xns_allowed.get(dst, set())
        )
        add(src, dst, tgt.port("grpc"), TCP, ok, 1, 1.0, "cross-ns")

    # platform traffic to/from every app
    for app in apps:
        if app.id != dns:
            add(app.id, dns, 53, UDP, True, 0, 1.0, "dns")
            if rng.random() < 0.05:
                add(app.id, dns, 53, TCP, True, 0, 1.0, "dns")
        mport = app.port("metrics")
        if mport:
            add(prom, app.id, mport, TCP, True, 1, 1.0, "metrics")
    return edges


def pick_cross_ns(world: World, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed + 3)
    apps = world.apps
    backs = [a for a in apps if a.tier == "backend"]
    by_team: dict[str, list[App]] = {}
    for b in backs:
        by_team.setdefault(world.namespaces[b.ns].team, []).append(b)
    out = []
    for b in backs:
        team = world.namespaces[b.ns].team
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            if rng.random() < 0.6:
                pool = [x for x in by_team[team] if x.ns != b.ns]
            else:
                pool = backs
            if not pool:
                continue
            t = rng.choice(pool)
            if t.ns != b.ns:
                out.append((b.id, t.id))
    return sorted(set(out))


def write_flows(
    world: World,
    edges: list[tuple],
    path: Path,
    n_flows: int,
    n_conns: int,
    seed: int,
    threads: int | None = None,
) -> dict[str, Any]:
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = true")

    # kubelet probes go to the pod's first TCP port (http for most apps)
    probe_port = [next((p for _, p, pr in a.ports if pr == "TCP"), 8080) for a in world.apps]
    endpoints = pa.table(
        {
            "grp": pa.array(world.pod_app, pa.int64()),
            "ip": pa.array(world.pod_ip, pa.string()),
            "node": pa.array(world.pod_node, pa.int64()),
            "probe_port": pa.array([probe_port[a] for a in world.pod_app], pa.int64()),
        }
    )
    edge_tbl = pa.table({name: [e[i] for e in edges] for i, name in enumerate(EDGE_COLUMNS)})
    nodes = pa.table(
        {
            "node": pa.array(range(len(world.node_ips)), pa.int64()),
            "ip": pa.array(world.node_ips, pa.string()),
        }
    )
    con.register("endpoints_pods", endpoints)
    con.register("edges", edge_tbl)
    con.register("nodes", nodes)

    s = int(seed)
    # special groups: -2 external APIs, -3 RDS instances in the VPC, -4 scanners
    con.execute(f"""
        CREATE TEMP TABLE endpoints AS
        SELECT grp, ip, node FROM endpoints_pods
        UNION ALL
        SELECT -2, (list_value(3, 13, 18, 34, 35, 52, 54, 104, 140, 151)[1 + (i % 10)])::VARCHAR
                   || '.' || (hash(i, {s}, 21) % 256)::VARCHAR
                   || '.' || (hash(i, {s}, 22) % 256)::VARCHAR
                   || '.' || (1 + hash(i, {s}, 23) % 254)::VARCHAR, NULL
        FROM range(200) t(i)
        UNION ALL
        SELECT -3, '10.1.' || (i // 16)::VARCHAR || '.' || (10 + i % 16)::VARCHAR, NULL
        FROM range(40) t(i)
        UNION ALL
        SELECT -4, (list_value(45, 61, 80, 91, 185, 193, 212)[1 + (i % 7)])::VARCHAR
                   || '.' || (hash(i, {s}, 24) % 256)::VARCHAR
                   || '.' || (hash(i, {s}, 25) % 256)::VARCHAR
                   || '.' || (1 + hash(i, {s}, 26) % 254)::VARCHAR, NULL
        FROM range(50) t(i)
    """)
    # candidate pod-level connections from the group graph
    con.execute(f"""
        CREATE TEMP TABLE pairs AS
        SELECT s.ip AS src, d.ip AS dst, e.port, e.proto, e.action, e.pool, e.kind,
               coalesce(s.node, d.node) AS src_node, coalesce(d.node, s.node) AS dst_node,
               e.keep, hash(s.ip, d.ip, e.port, e.proto, {s}) AS h
        FROM edges e
        JOIN endpoints s ON s.grp = e.src_group
        JOIN endpoints d ON d.grp = e.dst_group
        WHERE s.ip <> d.ip
        UNION ALL
        -- kubelet probes from the node to its own pods
        SELECT n.ip, p.ip, p.probe_port, 6, 'ACCEPT', 0, 'probe', p.node, p.node, 1.0,
               hash(n.ip, p.ip, {s})
        FROM endpoints_pods p JOIN nodes n USING (node)
    """)
    n_fixed, kept = con.execute("""
        SELECT count(*) FILTER (WHERE kind IN ('dns','metrics','probe')),
               coalesce(sum(keep) FILTER (WHERE kind NOT IN ('dns','metrics','probe')), 0)
        FROM pairs
    """).fetchall()[0]
    # keep probability for the app graph so the internal pairs fit the connection budget;
    # the rest of the budget is internet clients of the ingress controller
    budget_internal = int(n_conns * 0.8)
    scale = 1.0
    if kept > 0 and n_fixed + kept > budget_internal:
        scale = max(0.0, (budget_internal - n_fixed) / kept)
    con.execute(f"""
        CREATE TEMP TABLE conns0 AS
        SELECT * FROM (
            SELECT src, dst, port, proto, action, pool, kind, src_node, dst_node, h
            FROM pairs
            WHERE kind IN ('dns','metrics','probe')
               OR (h >> 11)::DOUBLE / 9007199254740992.0 < keep * {scale}
        )
        QUALIFY row_number() OVER (PARTITION BY src, dst, port, proto ORDER BY h) = 1
    """)
    n_internal = con.execute("SELECT count(*) FROM conns0").fetchall()[0][0]
    n_inet = max(0, n_conns - n_internal)
    ingress_pods = [world.pod_ip[p] for p in world.apps[2].pods]
    ingress_nodes = [world.pod_node[p] for p in world.apps[2].pods]
    con.register(
        "ingress_pods",
        pa.table(
            {
                "k": pa.array(range(len(ingress_pods)), pa.int64()),
                "ip": pa.array(ingress_pods, pa.string()),
                "node": pa.array(ingress_nodes, pa.int64()),
            }
        ),
    )
    n_ing = len(ingress_pods)
    # internet clients to the ingress controller (443 mostly, some plain 80)
    con.execute(f"""
        CREATE TEMP TABLE conns AS
        WITH inet AS (
            -- the octets are bits of one hash: hashes of (i, seed, n) for neighbouring n
            -- are correlated, and drawing each octet from its own made a quarter of the
            -- clients collide at 800k
            SELECT (list_value(24, 31, 37, 49, 62, 73, 77, 81, 86, 98, 101, 109, 117, 122,
                               176, 188, 201, 203)[(1 + hx % 18)::BIGINT])::VARCHAR
                   || '.' || ((hx >> 8) % 256)::VARCHAR
                   || '.' || ((hx >> 16) % 256)::VARCHAR
                   || '.' || (1 + (hx >> 24) % 254)::VARCHAR AS src,
                   i % {n_ing} AS k,
                   CASE WHEN hash(i, {s}, 35) % 10 < 8 THEN 443 ELSE 80 END AS port
            FROM (SELECT i, hash(i, {s}, 31) AS hx FROM range({n_inet}) t(i))
        ), allc AS (
            SELECT src, dst, port, proto, action, pool, kind, src_node, dst_node, h
            FROM conns0
            UNION ALL
            SELECT inet.src, ip.ip, inet.port, 6, 'ACCEPT', 0, 'internet', ip.node, ip.node,
                   hash(inet.src, ip.ip, inet.port, {s})
            FROM inet JOIN ingress_pods ip USING (k)
        )
        SELECT row_number() OVER (ORDER BY h, src, dst, port) - 1 AS cid,
               src, dst, port::INTEGER AS port, proto::INTEGER AS proto, action, pool, kind,
               'eni-0' || lpad(printf('%x', src_node * 7919 + {s} % 1000), 16, '0') AS src_eni,
               'eni-0' || lpad(printf('%x', dst_node * 7919 + {s} % 1000), 16, '0') AS dst_eni
        FROM (SELECT * FROM allc
              QUALIFY row_number() OVER (PARTITION BY src, dst, port, proto ORDER BY h) = 1)
    """)
    n_c = con.execute("SELECT count(*) FROM conns").fetchall()[0][0]

    # flow records: conn chosen with power-law popularity (cid 0 most popular)
    con.execute(f"""
        COPY (
            WITH r AS (
                SELECT i,
                       hash(i, {s}, 1) AS h1, hash(i, {s}, 2) AS h2,
                       hash(i, {s}, 3) AS h3, hash(i, {s}, 4) AS h4
                FROM range({n_flows}) t(i)
            ), x AS (
                SELECT i, h2, h3, h4,
                       least({n_c - 1}, floor({n_c} * pow((h1 >> 11)::DOUBLE
                             / 9007199254740992.0, 2.0)))::BIGINT AS cid
                FROM r
            ), y AS (
                SELECT x.i, x.h2, x.h3, x.h4, c.*,
                       (c.action = 'ACCEPT' AND (x.h2 % 1000) < 320) AS is_reply,
                       ({EPH_LO} + CASE WHEN c.pool = 0
                            THEN hash(x.i, {s}, 5) % {EPH_HI - EPH_LO + 1}
                            ELSE hash(c.cid, (x.h3 >> 8) % c.pool, {s})
                                 % {EPH_HI - EPH_LO + 1} END)::INTEGER AS eph
                FROM x JOIN conns c USING (cid)
            )
            SELECT 2::INTEGER AS version,
                   '{ACCOUNT}' AS account_id,
                   CASE WHEN (h4 & 1) = 0 THEN src_eni ELSE dst_eni END AS interface_id,
                   CASE WHEN is_reply THEN dst ELSE src END AS srcaddr,
                   CASE WHEN is_reply THEN src ELSE dst END AS dstaddr,
                   CASE WHEN is_reply THEN port ELSE eph END AS srcport,
                   CASE WHEN is_reply THEN eph ELSE port END AS dstport,
                   proto AS protocol,
                   (1 + (h3 % 40) * (1 + (h4 >> 40) % 3))::BIGINT AS packets,
                   ((1 + (h3 % 40) * (1 + (h4 >> 40) % 3))
                     * CASE WHEN is_reply THEN 200 + (h4 >> 8) % 1200
                            ELSE 60 + (h4 >> 8) % 400 END)::BIGINT AS bytes,
                   ({T0} + (i * {WINDOW}) // {n_flows} - (h3 >> 20) % 30)::BIGINT AS start,
                   ({T0} + (i * {WINDOW}) // {n_flows} - (h3 >> 20) % 30
                     + 1 + (h4 >> 16) % 59)::BIGINT AS "end",
                   action,
                   'OK' AS log_status
            FROM y
        ) TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)
    """)
    stats = dict(
        con.execute("""
        SELECT kind, count(*) FROM conns GROUP BY kind ORDER BY 2 DESC
    """).fetchall()
    )
    con.close()
    return {"connections": n_c, "connection_kinds": stats, "app_graph_scale": round(scale, 3)}


# ----------------------------------------------------------------------------- main


def generate(
    out: Path,
    flows: int,
    pods: int,
    namespaces: int,
    policies: int,
    seed: int = 42,
    connections: int | None = None,
    threads: int | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if connections is None:
        connections = min(400_000, max(1000, flows // 10))

    world = build_world(seed, pods, namespaces)
    xns = pick_cross_ns(world, seed)
    plan = build_policies(world, seed, policies, xns)
    edges = build_edges(world, plan, seed, xns)

    (out / "cluster.json").write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": world.objects,
                "metadata": {"resourceVersion": ""},
            },
            indent=1,
        )
    )
    n_cur = write_policy_dir(out / "current", plan.current)
    n_cand = write_policy_dir(out / "candidate", plan.candidate)
    t_small = time.perf_counter() - t_start

    t1 = time.perf_counter()
    flow_path = out / "flows.parquet"
    tmp = out / "flows.parquet.tmp"
    fstats = write_flows(world, edges, tmp, flows, connections, seed, threads)
    tmp.replace(flow_path)
    t_flows = time.perf_counter() - t1

    summary = {
        "seed": seed,
        "flows": flows,
        "pods": len(world.pod_ip),
        "nodes": len(world.nodes),
        "namespaces": len(world.namespaces),
        "apps": len(world.apps),
        "policies_current": n_cur,
        "policies_candidate": n_cand,
        "policy_version": POLICY_VERSION,
        # of them cluster-scoped (AdminNetworkPolicies and the like)
        "cluster_policies_current": len(plan.current.get(CLUSTER, [])),
        "cluster_policies_candidate": len(plan.candidate.get(CLUSTER, [])),
        **fstats,
        "seconds_cluster_and_policies": round(t_small, 2),
        "seconds_flows": round(t_flows, 2),
        "flows_parquet_mb": round(flow_path.stat().st_size / 1e6, 1),
    }
    (out / "manifest.json").write_text(json.dumps(summary, indent=2) + "\n")
    if not quiet:
        print(json.dumps(summary, indent=2))
    return summary


def rewrite_policies(out: Path, pods: int, namespaces: int, policies: int,
                     seed: int = 42) -> None:
    """The policy sets of existing data again (after a change to how they are built): the
    world and the plan are seeded, so the flows stay true to them."""
    world = build_world(seed, pods, namespaces)
    plan = build_policies(world, seed, policies, pick_cross_ns(world, seed))
    manifest = out / "manifest.json"
    info = json.loads(manifest.read_text())
    info["policies_current"] = write_policy_dir(out / "current", plan.current)
    info["policies_candidate"] = write_policy_dir(out / "candidate", plan.candidate)
    info["policy_version"] = POLICY_VERSION
    info["cluster_policies_current"] = len(plan.current.get(CLUSTER, []))
    info["cluster_policies_candidate"] = len(plan.candidate.get(CLUSTER, []))
    manifest.write_text(json.dumps(info, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    ap.add_argument("--flows", type=int, default=10_000_000, help="flow records")
    ap.add_argument("--pods", type=int, default=5000)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument(
        "--policies", type=int, default=500, help="approximate size of the current policy set"
    )
    ap.add_argument(
        "--connections",
        type=int,
        default=None,
        help="distinct (src, dst, dst_port, proto) tuples (default min(400k, flows/10))",
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--policies-only", action="store_true",
                    help="rewrite only the policy sets of existing data (same arguments)")
    args = ap.parse_args(argv)
    if args.policies_only:
        rewrite_policies(args.out, args.pods, args.namespaces, args.policies, args.seed)
        return 0
    generate(
        args.out,
        args.flows,
        args.pods,
        args.namespaces,
        args.policies,
        args.seed,
        args.connections,
        args.threads,
        args.quiet,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
