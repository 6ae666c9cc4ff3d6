"""Generate the Cilium demo: a small cluster running Cilium, twenty minutes of its Hubble flows
(`hubble observe -o json` lines, in the shape of the published Hubble samples), and two
sets of CiliumNetworkPolicies (policies/cilium-current/, policies/cilium-candidate/).

    python flows/make_cilium_demo.py

The candidate set breaks three things a Cilium user meets: an endpoint peer without a
namespace (Cilium scopes it to the policy's own namespace), a DNS rule pinned to TCP, and a
cluster-wide deny rule that no allow can override. Seeded; the output is byte-identical
on every run. Needs only the standard library and PyYAML.
"""

from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

SEED = 20241202
ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
POLICIES = ROOT / "policies"
CLUSTER_NAME = "demo"
START = datetime(2024, 12, 2, 9, 0, tzinfo=UTC)
MINUTES = 20

NODES = {"k8s-cp": ("172.20.0.10", "10.0.0.0/24"),
         "k8s-worker-1": ("172.20.0.11", "10.0.1.0/24"),
         "k8s-worker-2": ("172.20.0.12", "10.0.2.0/24")}
NAMESPACES = {"shop": {"team": "shop"}, "payments": {"team": "payments", "pci": "true"},
              "kube-system": {}, "monitoring": {"team": "sre"}}
# name: (namespace, ip, node, labels, service account, [(port name, number, protocol)])
PODS: dict[str, tuple[str, str, str, dict[str, str], str, list[tuple[str, int, str]]]] = {
    "frontend-7d9c5b6f4-x2k8p": ("shop", "10.0.1.21", "k8s-worker-1", {"app": "frontend"},
                                 "frontend", [("http", 8080, "TCP")]),
    "frontend-7d9c5b6f4-m9q4t": ("shop", "10.0.2.21", "k8s-worker-2", {"app": "frontend"},
                                 "frontend", [("http", 8080, "TCP")]),
    "cart-5f8b9c7d6-p7w2z": ("shop", "10.0.1.31", "k8s-worker-1", {"app": "cart"}, "cart",
                             [("http", 8080, "TCP")]),
    "payments-api-6c4d8f9b7-h3n5v": ("payments", "10.0.2.41", "k8s-worker-2",
                                     {"app": "payments-api"}, "payments-api",
                                     [("https", 8443, "TCP"), ("metrics", 9090, "TCP")]),
    "payments-db-0": ("payments", "10.0.1.51", "k8s-worker-1", {"app": "payments-db"},
                      "payments-db", [("postgres", 5432, "TCP")]),
    "coredns-5d78c9869d-4xk2j": ("kube-system", "10.0.2.53", "k8s-worker-2",
                                 {"k8s-app": "kube-dns"}, "coredns",
                                 [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]),
    "prometheus-0": ("monitoring", "10.0.1.61", "k8s-worker-1",
                     {"app.kubernetes.io/name": "prometheus"}, "prometheus", []),
}
API_SERVER = "172.20.0.10"
BANK = ("93.184.216.34", "api.bank.example")
STRIPE = ("151.101.1.22", "api.stripe.com")
CLIENTS = [f"203.0.113.{i}" for i in range(10, 40)]


def _pod_manifest(name: str) -> dict[str, Any]:
    ns, ip, node, labels, sa, ports = PODS[name]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels,
                         "creationTimestamp": "2024-12-01T00:00:00Z"},
            "spec": {"nodeName": node, "serviceAccountName": sa,
                     "containers": [{"name": "main", "image": "registry.example/demo:1",
                                     "ports": [{"name": n, "containerPort": p, "protocol": pr}
                                               for n, p, pr in ports]}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


def build_cluster() -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for ns, labels in NAMESPACES.items():
        items.append({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": ns, "labels": {
                          **labels, "kubernetes.io/metadata.name": ns}}})
    for name, (ip, cidr) in NODES.items():
        items.append({"apiVersion": "v1", "kind": "Node",
                      "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                      "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
                      "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
    items += [_pod_manifest(name) for name in PODS]
    items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"name": "kubernetes", "namespace": "default",
                               "labels": {"kubernetes.io/service-name": "kubernetes"}},
                  "addressType": "IPv4",
                  "endpoints": [{"addresses": [API_SERVER], "conditions": {"ready": True}}],
                  "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]})
    items.append({"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "cilium-config", "namespace": "kube-system"},
                  "data": {"cluster-name": CLUSTER_NAME, "enable-ipv4": "true"}})
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}


def _endpoint(ip: str) -> dict[str, Any]:
    """A flow endpoint as Hubble prints it: a pod's identity labels, or a reserved one."""
    for name, (ns, pod_ip, _node, labels, sa, _ports) in PODS.items():
        if pod_ip == ip:
            ident = [f"k8s:{k}={v}" for k, v in labels.items()]
            ident += [f"k8s:io.cilium.k8s.namespace.labels.{k}={v}" for k, v in
                      {**NAMESPACES[ns], "kubernetes.io/metadata.name": ns}.items()]
            ident += [f"k8s:io.cilium.k8s.policy.cluster={CLUSTER_NAME}",
                      f"k8s:io.cilium.k8s.policy.serviceaccount={sa}",
                      f"k8s:io.kubernetes.pod.namespace={ns}"]
            owner = name.rsplit("-", 2)[0] if not name.endswith("-0") else name[:-2]
            kind = "StatefulSet" if name.endswith("-0") else "Deployment"
            return {"ID": 1000 + int(ip.split(".")[-1]), "identity": 40000 + len(ident),
                    "namespace": ns, "labels": sorted(ident), "pod_name": name,
                    "workloads": [{"name": owner, "kind": kind}]}
    if ip == API_SERVER:
        return {"identity": 7, "labels": ["reserved:kube-apiserver", "reserved:remote-node"]}
    return {"identity": 2, "labels": ["reserved:world"]}


def _node_of(ip: str) -> str:
    for _name, (_ns, pod_ip, node, *_rest) in PODS.items():
        if pod_ip == ip:
            return node
    return "k8s-worker-1"


def _line(t: datetime, src: str, dst: str, sport: int, dport: int, proto: str,
          reply: bool, flags: dict[str, bool] | None, names: list[str] | None) -> str:
    l4: dict[str, Any] = {proto: {"source_port": sport, "destination_port": dport}}
    if proto == "TCP":
        l4["TCP"]["flags"] = flags or {"ACK": True}
    when = t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    node = _node_of(dst if not reply else src)
    flow: dict[str, Any] = {
        "time": when, "verdict": "FORWARDED",
        "IP": {"source": src, "destination": dst, "ipVersion": "IPv4"}, "l4": l4,
        "source": _endpoint(src), "destination": _endpoint(dst), "Type": "L3_L4",
        "node_name": node, "is_reply": reply, "event_type": {"type": 4},
        "traffic_direction": "EGRESS", "trace_observation_point": "TO_ENDPOINT",
    }
    if names and not reply:
        flow["destination_names"] = names
    return json.dumps({"flow": flow, "node_name": node, "time": when}, sort_keys=True)


# (source, destination, port, protocol, connections per minute, destination names)
TRAFFIC: list[tuple[str | list[str], str, int, str, int, list[str] | None]] = [
    (CLIENTS, "10.0.1.21", 8080, "TCP", 6, None),           # the world -> frontend
    (CLIENTS, "10.0.2.21", 8080, "TCP", 6, None),
    ("10.0.1.21", "10.0.1.31", 8080, "TCP", 4, None),       # frontend -> cart
    ("10.0.2.21", "10.0.1.31", 8080, "TCP", 4, None),
    ("10.0.1.31", "10.0.2.41", 8443, "TCP", 3, None),       # cart -> payments API
    ("10.0.2.41", "10.0.1.51", 5432, "TCP", 3, None),       # payments API -> its database
    ("10.0.1.31", "10.0.2.53", 53, "UDP", 4, None),         # DNS
    ("10.0.2.41", "10.0.2.53", 53, "UDP", 3, None),
    ("10.0.1.21", "10.0.2.53", 53, "UDP", 2, None),
    ("10.0.1.31", STRIPE[0], 443, "TCP", 1, [STRIPE[1]]),    # cart -> card processor
    ("10.0.2.41", BANK[0], 443, "TCP", 1, [BANK[1]]),        # payments API -> the bank
    ("10.0.1.61", "10.0.1.21", 8080, "TCP", 1, None),       # Prometheus scrapes
    ("10.0.1.61", "10.0.2.41", 9090, "TCP", 1, None),
    ("10.0.1.61", API_SERVER, 6443, "TCP", 1, None),
]


def build_flows(rng: random.Random) -> list[str]:
    lines: list[tuple[datetime, str]] = []
    for minute in range(MINUTES):
        base = START + timedelta(minutes=minute)
        for src, dst, port, proto, per_minute, names in TRAFFIC:
            for _ in range(per_minute):
                s = rng.choice(src) if isinstance(src, list) else src
                sport = rng.randint(32768, 60999)
                t = base + timedelta(seconds=rng.uniform(0, 59), microseconds=rng.randint(0, 999))
                if proto == "TCP":
                    seq = [(False, {"SYN": True}), (True, {"SYN": True, "ACK": True}),
                           (False, {"ACK": True}), (True, {"ACK": True, "FIN": True})]
                else:
                    seq = [(False, None), (True, None)]
                for k, (reply, flags) in enumerate(seq):
                    when = t + timedelta(milliseconds=3 * k)
                    if reply:
                        lines.append((when, _line(when, dst, s, port, sport, proto, True,
                                                  flags, None)))
                    else:
                        lines.append((when, _line(when, s, dst, sport, port, proto, False,
                                                  flags, names)))
    lines.sort(key=lambda x: x[0])
    return [line for _, line in lines]


def _cnp(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


PROMETHEUS = {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "monitoring",
                              "app.kubernetes.io/name": "prometheus"}}
CURRENT = {
    "shop.yaml": [_cnp("shop", "frontend-ingress", {
        "description": "The storefront: from the internet and from Prometheus.",
        "endpointSelector": {"matchLabels": {"app": "frontend"}},
        "ingress": [{"fromEntities": ["world"],
                     "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]},
                    {"fromEndpoints": [PROMETHEUS],
                     "toPorts": [{"ports": [{"port": "http"}]}]}]})],
    "payments.yaml": [_cnp("payments", "db-ingress", {
        "endpointSelector": {"matchLabels": {"app": "payments-db"}},
        "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "payments-api"}}],
                     "toPorts": [{"ports": [{"port": "5432", "protocol": "TCP"}]}]}]})],
}
CANDIDATE = {
    "shop.yaml": CURRENT["shop.yaml"] + [_cnp("shop", "cart-egress", {
        "description": "Lock the cart's egress down to what it needs.",
        "endpointSelector": {"matchLabels": {"app": "cart"}},
        "egress": [
            {"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "payments",
                                              "app": "payments-api"}}],
             "toPorts": [{"ports": [{"port": "8443", "protocol": "TCP"}]}]},
            # the trap: DNS is UDP first; TCP alone breaks every lookup
            {"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system",
                                              "k8s-app": "kube-dns"}}],
             "toPorts": [{"ports": [{"port": "53", "protocol": "TCP"}]}]},
            {"toFQDNs": [{"matchName": STRIPE[1]}],
             "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}]})],
    "payments.yaml": CURRENT["payments.yaml"] + [
        _cnp("payments", "api-ingress", {
            "description": "Only the cart calls the payments API; Prometheus scrapes it.",
            "endpointSelector": {"matchLabels": {"app": "payments-api"}},
            # the trap: no namespace in the selector means this policy's own namespace
            "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "cart"}}],
                         "toPorts": [{"ports": [{"port": "https"}]}]},
                        {"fromEndpoints": [PROMETHEUS],
                         "toPorts": [{"ports": [{"port": "metrics"}]}]}]})],
    "guardrails.yaml": [{
        "apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
        "metadata": {"name": "pci-no-internet"},
        "spec": {"description": "PCI: nothing in a pci namespace talks to the internet.",
                 "endpointSelector": {"matchLabels": {
                     "io.cilium.k8s.namespace.labels.pci": "true"}},
                 "egressDeny": [{"toEntities": ["world"]}],
                 "enableDefaultDeny": {"egress": False}}}],
}


def _write_set(directory: Path, files: dict[str, list[dict[str, Any]]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.yaml"):
        old.unlink()
    for name, docs in files.items():
        (directory / name).write_text(
            "# Generated by flows/make_cilium_demo.py; edit the script, not this file.\n"
            + yaml.safe_dump_all(docs, sort_keys=False))


def main() -> None:
    rng = random.Random(SEED)
    (FLOWS / "demo-cilium-cluster.json").write_text(json.dumps(build_cluster(), indent=1)
                                                    + "\n")
    text = ("\n".join(build_flows(rng)) + "\n").encode()
    # gzip without a timestamp, so that the file is byte-identical on every run
    with open(FLOWS / "demo-hubble.jsonl.gz", "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(text)
    _write_set(POLICIES / "cilium-current", CURRENT)
    _write_set(POLICIES / "cilium-candidate", CANDIDATE)


if __name__ == "__main__":
    main()
