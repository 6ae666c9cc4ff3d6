"""Hypothesis strategies for random but valid "worlds": namespaces, pods, nodes, policies
and flows, small enough to replay through the CLI in a fraction of a second.

Everything generated is something the Kubernetes API server would accept (valid label
values, canonical CIDRs with `except` strictly inside, endPort only with a numeric port,
IANA service names for named ports). Every NetworkPolicy feature shows up: all four
matchExpressions operators, namespaceSelector+podSelector peers, ipBlock with except
(IPv4 and IPv6), named ports with protocols, endPort ranges, SCTP/UDP, `{}` rules,
`ingress: []`, explicit and defaulted policyTypes, egress-only policies; and every kind
of endpoint: pods (IPv4 and dual-stack), hostNetwork pods, node IPs, external IPs.

The model keeps IP resolution unambiguous: all pods exist for the whole flow time, pod
IPs lie inside their node's podCIDRs, external IPs lie outside every podCIDR.

Flows: `cases()` draws 10-40 flows (half aimed at a specific rule's peers and ports, half
random); `all_flows(case)` adds a deterministic probe matrix (every endpoint pair with a
pod at one end, on every port the pods or policies mention), so each world is checked
exhaustively and a shrunk world still carries a full set of probes. Flows are request
records (client port 40000-60000, server port < 32768); ICMP appears in one direction per
address pair only, since VPC logs cannot tell an ICMP request from its reply.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

try:  # tests/ as a package or as a plain directory on sys.path
    from tests.reference import (
        ContainerPort,
        Pod,
        World,
        peer_matches,
        resolve_pod,
        selector_matches,
    )
    from tests.worldfiles import cluster_policy, netpol
except ImportError:  # pragma: no cover
    from reference import (
        ContainerPort,
        Pod,
        World,
        peer_matches,
        resolve_pod,
        selector_matches,
    )
    from worldfiles import cluster_policy, netpol

# ------------------------------------------------------------------ fixed parts of a world

NODES: dict[str, str] = {"node-1": "172.16.0.1", "node-2": "172.16.0.2"}
NODE_LABELS: dict[str, dict[str, str]] = {
    "node-1": {"kubernetes.io/hostname": "node-1", "zone": "a", "role": "worker"},
    "node-2": {"kubernetes.io/hostname": "node-2", "zone": "b", "role": "infra"},
}
NODE_LABEL_PALETTE: dict[str, tuple[str, ...]] = {"zone": ("a", "b"),
                                                  "role": ("worker", "infra")}
NODE_POD_CIDRS: dict[str, tuple[str, str]] = {
    "node-1": ("10.0.1.0/24", "fd00:0:0:1::/64"),
    "node-2": ("10.0.2.0/24", "fd00:0:0:2::/64"),
}
EXTERNAL_IPS = (
    "192.0.2.10",
    "198.51.100.7",
    "203.0.113.99",
    "203.0.113.5",
    "8.8.8.8",
    "2001:db8::10",
    "2001:db8:1::20",
)
NAMESPACE_NAMES = ("alpha", "beta", "gamma")
NAMESPACE_LABELS: dict[str, tuple[str, ...]] = {"team": ("red", "blue"), "env": ("prod", "dev")}
POD_LABELS: dict[str, tuple[str, ...]] = {
    "app": ("web", "db", "api"),
    "tier": ("front", "back"),
    "example.com/role": ("a", "b"),
}
# (name, number, protocol): the same name maps to different numbers/protocols on different
# pods, so named ports must really be resolved per destination pod.
CONTAINER_PORTS: tuple[tuple[str | None, int, str], ...] = (
    ("http", 80, "TCP"),
    ("http", 8080, "TCP"),
    ("metrics", 9090, "TCP"),
    ("dns", 53, "UDP"),
    ("dns-tcp", 53, "TCP"),
    ("svc", 5000, "UDP"),
    ("svc", 5000, "TCP"),
    ("svc", 5001, "SCTP"),
    ("sig", 3868, "SCTP"),
    (None, 443, "TCP"),
    (None, 5432, "TCP"),
)
PORT_NAMES = ("http", "metrics", "dns", "dns-tcp", "svc", "sig", "nope")
PORT_NUMBERS = (22, 53, 80, 443, 3868, 5000, 5001, 5432, 8080, 9090, 20000)
PROTOCOLS = ("TCP", "UDP", "SCTP")
# None: the field is absent. [] is defaulted by the API server exactly like absent.
POLICY_TYPES: tuple[list[str] | None, ...] = (
    None, None, [], ["Ingress"], ["Egress"], ["Egress"], ["Ingress", "Egress"],
    ["Egress", "Ingress"],
)


@dataclass(frozen=True)
class Flow:
    """One request-direction flow record: src_ip:src_port -> dst_ip:dst_port/protocol."""

    src: str
    dst: str
    port: int
    protocol: str  # TCP, UDP, SCTP, ICMP, ICMPv6
    src_port: int = 40000


@dataclass(frozen=True)
class Case:
    world: World  # namespaces, pods, nodes and the (candidate) policies
    flows: tuple[Flow, ...]
    node_pod_cidrs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def canonical(ip: str) -> str:
    return str(ipaddress.ip_address(ip))


# ------------------------------------------------------------------ namespaces and pods


@st.composite
def namespaces(draw: st.DrawFn) -> dict[str, dict[str, str]]:
    names = draw(st.lists(st.sampled_from(NAMESPACE_NAMES), min_size=2, max_size=3, unique=True))
    result = {}
    for name in sorted(names):
        keys = draw(st.lists(st.sampled_from(sorted(NAMESPACE_LABELS)), unique=True, max_size=2))
        result[name] = {k: draw(st.sampled_from(NAMESPACE_LABELS[k])) for k in keys}
    return result


@st.composite
def label_sets(draw: st.DrawFn, palette: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    keys = draw(st.lists(st.sampled_from(sorted(palette)), unique=True, max_size=len(palette)))
    return {k: draw(st.sampled_from(palette[k])) for k in keys}


@st.composite
def container_ports(draw: st.DrawFn) -> tuple[ContainerPort, ...]:
    chosen = draw(st.lists(st.sampled_from(CONTAINER_PORTS), max_size=3))
    ports: list[ContainerPort] = []
    for name, number, proto in chosen:
        if name is not None and any(p.name == name for p in ports):
            continue  # container port names are unique within a pod
        if any((p.number, p.protocol) == (number, proto) for p in ports):
            continue
        ports.append(ContainerPort(name, number, proto))
    return tuple(ports)


@st.composite
def pods(draw: st.DrawFn, ns_names: list[str]) -> tuple[Pod, ...]:
    count = draw(st.integers(2, 6))
    result = []
    for i in range(count):
        node = draw(st.sampled_from(sorted(NODES)))
        k = node.split("-")[1]
        host_network = i > 0 and draw(st.integers(0, 7)) == 0  # pod-0 is always a real pod
        if host_network:
            ips: tuple[str, ...] = (NODES[node],)
        else:
            ips = (f"10.0.{k}.{10 + i}",)
            if draw(st.booleans()):
                ips += (canonical(f"fd00:0:0:{k}::{10 + i:x}"),)
        result.append(
            Pod(
                namespace=draw(st.sampled_from(ns_names)),
                name=f"pod-{i}",
                ips=ips,
                labels=draw(label_sets(POD_LABELS)),
                ports=draw(container_ports()),
                host_network=host_network,
                node=node,
            )
        )
    return tuple(result)


# ------------------------------------------------------------------ selectors


@st.composite
def label_selectors(draw: st.DrawFn, palette: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """A metav1.LabelSelector over `palette` (plus a value no object carries)."""
    selector: dict[str, Any] = {}
    keys = sorted(palette)
    match_labels = {}
    for key in draw(st.lists(st.sampled_from(keys), unique=True, max_size=1)):
        match_labels[key] = draw(st.sampled_from((*palette[key], *palette[key], "zzz")))
    if match_labels:
        selector["matchLabels"] = match_labels
    exprs = []
    for _ in range(draw(st.sampled_from((0, 0, 1, 1, 2)))):
        key = draw(st.sampled_from(keys))
        op = draw(st.sampled_from(("In", "NotIn", "Exists", "DoesNotExist")))
        req: dict[str, Any] = {"key": key, "operator": op}
        if op in ("In", "NotIn"):
            req["values"] = draw(
                st.lists(st.sampled_from((*palette[key], "zzz")), min_size=1, max_size=2,
                         unique=True)
            )
        exprs.append(req)
    if exprs:
        selector["matchExpressions"] = exprs
    return selector


# ------------------------------------------------------------------ peers and ports


@st.composite
def ip_blocks(draw: st.DrawFn, world_ips: list[str]) -> dict[str, Any]:
    """A canonical CIDR around some IP of the world, with `except`s strictly inside it."""
    anchor = ipaddress.ip_address(draw(st.sampled_from(world_ips)))
    bits = anchor.max_prefixlen
    if bits == 32:
        prefix = draw(st.sampled_from((0, 8, 12, 16, 22, 24, 28, 30, 31, 32)))
    else:
        prefix = draw(st.sampled_from((0, 16, 48, 60, 64, 112, 120, 127, 128)))
    net = ipaddress.ip_network(f"{anchor}/{prefix}", strict=False)
    block: dict[str, Any] = {"cidr": str(net)}
    inside = [ip for ip in world_ips if ipaddress.ip_address(ip) in net]
    excepts: list[str] = []
    if prefix < bits:
        for _ in range(draw(st.integers(0, 2))):
            hole_anchor = draw(st.sampled_from(inside))
            hole_prefix = draw(st.integers(prefix + 1, bits))
            hole = str(ipaddress.ip_network(f"{hole_anchor}/{hole_prefix}", strict=False))
            if hole not in excepts:
                excepts.append(hole)
    if excepts:
        block["except"] = excepts
    return block


@st.composite
def peers(draw: st.DrawFn, ns_palette: Mapping[str, tuple[str, ...]],
          world_ips: list[str]) -> dict[str, Any]:
    kind = draw(st.sampled_from(("pod", "namespace", "both", "ipBlock")))
    if kind == "ipBlock":
        return {"ipBlock": draw(ip_blocks(world_ips))}
    peer: dict[str, Any] = {}
    if kind in ("namespace", "both"):
        peer["namespaceSelector"] = draw(label_selectors(ns_palette))
    if kind in ("pod", "both"):
        peer["podSelector"] = draw(label_selectors(POD_LABELS))
    return peer


@st.composite
def policy_ports(draw: st.DrawFn) -> dict[str, Any]:
    port: dict[str, Any] = {}
    if draw(st.integers(0, 3)) > 0:
        port["protocol"] = draw(st.sampled_from(PROTOCOLS))
    kind = draw(st.sampled_from(("number", "number", "range", "name", "name", "absent")))
    if kind in ("number", "range"):
        port["port"] = draw(st.sampled_from(PORT_NUMBERS))
        if kind == "range":
            port["endPort"] = port["port"] + draw(st.sampled_from((0, 1, 5, 100, 5000)))
    elif kind == "name":
        if draw(st.integers(0, 2)) > 0:
            # a (name, protocol) some pod may declare, so named ports do resolve
            name, _, proto = draw(st.sampled_from([c for c in CONTAINER_PORTS if c[0]]))
            port.pop("protocol", None)
            if proto != "TCP" or draw(st.booleans()):
                port["protocol"] = proto
            port["port"] = name
        else:
            port["port"] = draw(st.sampled_from(PORT_NAMES))
    return port


@st.composite
def rules(draw: st.DrawFn, peers_key: str, ns_palette: Mapping[str, tuple[str, ...]],
          world_ips: list[str]) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    shape = draw(st.sampled_from(("absent", "empty", "list", "list")))
    if shape == "empty":
        rule[peers_key] = []
    elif shape == "list":
        rule[peers_key] = draw(st.lists(peers(ns_palette, world_ips), min_size=1, max_size=3))
    shape = draw(st.sampled_from(("absent", "empty", "list", "list")))
    if shape == "empty":
        rule["ports"] = []
    elif shape == "list":
        rule["ports"] = draw(st.lists(policy_ports(), min_size=1, max_size=3))
    return rule


@st.composite
def policies(draw: st.DrawFn, ns_labels: Mapping[str, Mapping[str, str]],
             world_ips: list[str], index: int) -> dict[str, Any]:
    ns_palette: dict[str, tuple[str, ...]] = dict(NAMESPACE_LABELS)
    ns_palette["kubernetes.io/metadata.name"] = (*NAMESPACE_NAMES,)
    # a third of the policies select every pod of their namespace, so most isolate someone
    pod_selector = {} if draw(st.integers(0, 2)) == 0 else draw(label_selectors(POD_LABELS))
    spec: dict[str, Any] = {"podSelector": pod_selector}
    types = draw(st.sampled_from(POLICY_TYPES))
    if types is not None:
        spec["policyTypes"] = list(types)  # no shared objects, so no YAML aliases
    for key, peers_key in (("ingress", "from"), ("egress", "to")):
        shape = draw(st.sampled_from(("absent", "empty", "list", "list", "list")))
        if shape == "empty":
            spec[key] = []
        elif shape == "list":
            spec[key] = draw(
                st.lists(rules(peers_key, ns_palette, world_ips), min_size=1, max_size=3)
            )
    ns = draw(st.sampled_from(sorted(ns_labels)))
    return netpol(ns, f"np-{index}", spec)


# ------------------------------------------------------------------ cluster-scoped policies

# few priorities, so that two policies of one tier often share one (the ambiguous case)
PRIORITIES = (1, 2, 2, 3, 10)


@st.composite
def cluster_peers(draw: st.DrawFn, direction: str, ns_palette: Mapping[str, tuple[str, ...]],
                  world_ips: list[str]) -> dict[str, Any]:
    kinds = ["namespaces", "pods"] + (["nodes", "networks"] if direction == "egress" else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "namespaces":
        return {"namespaces": draw(label_selectors(ns_palette))}
    if kind == "pods":
        return {"pods": {"namespaceSelector": draw(label_selectors(ns_palette)),
                         "podSelector": draw(label_selectors(POD_LABELS))}}
    if kind == "nodes":
        return {"nodes": draw(label_selectors(NODE_LABEL_PALETTE))}
    blocks = draw(st.lists(ip_blocks(world_ips), min_size=1, max_size=2))
    return {"networks": [b["cidr"] for b in blocks]}


@st.composite
def cluster_ports(draw: st.DrawFn, shape: str, named: bool) -> dict[str, Any]:
    """One port entry: v1alpha1 `ports` (shape 'ports') or ClusterNetworkPolicy
    `protocols` (shape 'protocols'); named: a named port may be drawn."""
    kind = draw(st.sampled_from(("number", "number", "range", "any") + (("name",) if named
                                                                         else ())))
    proto = draw(st.sampled_from(PROTOCOLS))
    if kind == "name":
        name = draw(st.sampled_from(PORT_NAMES))
        return {"namedPort": name} if shape == "ports" else {"destinationNamedPort": name}
    number = draw(st.sampled_from(PORT_NUMBERS))
    end = number + draw(st.sampled_from((1, 5, 100, 5000)))
    if shape == "ports":
        if kind == "range":
            return {"portRange": {"protocol": proto, "start": number, "end": end}}
        entry = {"port": number}
        if draw(st.booleans()) or proto != "TCP":
            entry["protocol"] = proto
        return {"portNumber": entry}
    if kind == "any":
        return {proto.lower(): {}}
    if kind == "range":
        return {proto.lower(): {"destinationPort": {"range": {"start": number, "end": end}}}}
    return {proto.lower(): {"destinationPort": {"number": number}}}


@st.composite
def cluster_rules(draw: st.DrawFn, direction: str, actions: tuple[str, ...], shape: str,
                  ns_palette: Mapping[str, tuple[str, ...]], world_ips: list[str]
                  ) -> dict[str, Any]:
    peers_key = "from" if direction == "ingress" else "to"
    the_peers = draw(st.lists(cluster_peers(direction, ns_palette, world_ips), min_size=1,
                              max_size=2))
    rule: dict[str, Any] = {"action": draw(st.sampled_from(actions)), peers_key: the_peers}
    if draw(st.booleans()):
        rule["name"] = f"r-{draw(st.integers(0, 99))}"
    if draw(st.integers(0, 2)) > 0:
        # a named port only where every peer names pods
        named = all(set(p) <= {"namespaces", "pods"} for p in the_peers)
        rule[shape] = draw(st.lists(cluster_ports(shape, named), min_size=1, max_size=2))
    return rule


@st.composite
def cluster_policies(draw: st.DrawFn, ns_labels: Mapping[str, Mapping[str, str]],
                     world_ips: list[str], index: int, kind: str) -> dict[str, Any]:
    """kind: AdminNetworkPolicy, BaselineAdminNetworkPolicy, or ClusterNetworkPolicy with
    tier Admin or Baseline ('CNP-Admin', 'CNP-Baseline')."""
    ns_palette: dict[str, tuple[str, ...]] = dict(NAMESPACE_LABELS)
    ns_palette["kubernetes.io/metadata.name"] = (*NAMESPACE_NAMES,)
    if draw(st.booleans()):
        subject: dict[str, Any] = {"namespaces": draw(label_selectors(ns_palette))}
    else:
        subject = {"pods": {"namespaceSelector": draw(label_selectors(ns_palette)),
                            "podSelector": draw(label_selectors(POD_LABELS))}}
    spec: dict[str, Any] = {"subject": subject}
    if kind == "BaselineAdminNetworkPolicy":
        actions, shape = ("Allow", "Deny"), "ports"
    elif kind == "AdminNetworkPolicy":
        actions, shape = ("Allow", "Deny", "Pass"), "ports"
    else:
        actions = ("Accept", "Deny", "Pass")
        shape = draw(st.sampled_from(("protocols", "protocols", "ports")))
        spec["tier"] = kind.split("-")[1]
    if kind != "BaselineAdminNetworkPolicy":
        spec["priority"] = draw(st.sampled_from(PRIORITIES))
    for direction in ("ingress", "egress"):
        if draw(st.integers(0, 3)) > 0:
            spec[direction] = draw(st.lists(
                cluster_rules(direction, actions, shape, ns_palette, world_ips),
                min_size=1, max_size=3))
    if kind == "BaselineAdminNetworkPolicy":
        return cluster_policy(kind, "default", spec)
    real_kind = kind.split("-")[0] if kind.startswith("CNP") else kind
    real_kind = "ClusterNetworkPolicy" if real_kind == "CNP" else real_kind
    return cluster_policy(real_kind, f"cp-{index}", spec)


# ------------------------------------------------------------------ Cilium policies

ENTITY_CHOICES = ("world", "cluster", "host", "remote-node", "all", "world-ipv6")


@st.composite
def cilium_selectors(draw: st.DrawFn, ns_palette: Mapping[str, tuple[str, ...]]
                     ) -> dict[str, Any]:
    """An endpoint selector: pod labels, maybe with a `k8s:` source prefix, maybe naming
    the namespace or a namespace label (which lifts the namespace scoping)."""
    sel = draw(label_selectors(POD_LABELS))
    how = draw(st.sampled_from(("plain", "plain", "prefix", "namespace", "ns-label")))
    labels = dict(sel.get("matchLabels") or {})
    if how == "prefix":
        labels = {f"k8s:{k}": v for k, v in labels.items()}
    elif how == "namespace":
        labels["k8s:io.kubernetes.pod.namespace"] = draw(st.sampled_from(NAMESPACE_NAMES))
    elif how == "ns-label":
        key = draw(st.sampled_from(sorted(ns_palette)))
        labels[f"io.cilium.k8s.namespace.labels.{key}"] = draw(st.sampled_from(
            ns_palette[key]))
    if labels:
        sel["matchLabels"] = labels
    return sel


@st.composite
def cilium_ports(draw: st.DrawFn) -> dict[str, Any]:
    item: dict[str, Any] = {}
    kind = draw(st.sampled_from(("number", "number", "range", "name", "zero")))
    if kind in ("number", "range"):
        item["port"] = str(draw(st.sampled_from(PORT_NUMBERS)))
        if kind == "range":
            item["endPort"] = int(item["port"]) + draw(st.sampled_from((0, 1, 100)))
    elif kind == "name":
        item["port"] = draw(st.sampled_from(PORT_NAMES))
    else:
        item["port"] = "0"
    proto = draw(st.sampled_from((None, None, "TCP", "UDP", "SCTP", "ANY")))
    if proto:
        item["protocol"] = proto
    return item


@st.composite
def cilium_rules(draw: st.DrawFn, direction: str, ns_palette: Mapping[str, tuple[str, ...]],
                 world_ips: list[str]) -> dict[str, Any]:
    pre = "from" if direction == "ingress" else "to"
    rule: dict[str, Any] = {}
    # one kind of L3 peer per rule (the agent refuses a rule that combines two), an
    # endpoint list sometimes holding a `reserved:` selector beside the others
    kinds = draw(st.sampled_from(((), ("Endpoints",), ("Endpoints",), ("Endpoints", "reserved"),
                                  ("reserved",), ("Entities",), ("CIDR",), ("CIDRSet",))))
    for what in kinds:
        if what == "Endpoints":
            rule[f"{pre}Endpoints"] = draw(st.lists(cilium_selectors(ns_palette),
                                                    min_size=1, max_size=2))
        elif what == "reserved":
            rule.setdefault(f"{pre}Endpoints", []).append(
                {"matchLabels": {f"reserved:{draw(st.sampled_from(ENTITY_CHOICES))}": ""}})
        elif what == "Entities":
            rule[f"{pre}Entities"] = draw(st.lists(st.sampled_from(ENTITY_CHOICES),
                                                   min_size=1, max_size=2, unique=True))
        elif what == "CIDR":
            rule[f"{pre}CIDR"] = [draw(ip_blocks(world_ips))["cidr"]]
        else:
            rule[f"{pre}CIDRSet"] = [draw(ip_blocks(world_ips))]
    if draw(st.integers(0, 2)):
        rule["toPorts"] = [{"ports": draw(st.lists(cilium_ports(), min_size=1,
                                                   max_size=2))}]
    return rule


@st.composite
def cilium_policies(draw: st.DrawFn, ns_labels: Mapping[str, Mapping[str, str]],
                    world_ips: list[str], index: int) -> dict[str, Any]:
    """A CiliumNetworkPolicy (in a namespace) or a CiliumClusterwideNetworkPolicy: allow
    and deny sections, sometimes without default deny."""
    ns_palette: dict[str, tuple[str, ...]] = dict(NAMESPACE_LABELS)
    ns_palette["kubernetes.io/metadata.name"] = (*NAMESPACE_NAMES,)
    spec: dict[str, Any] = {"endpointSelector": {} if draw(st.integers(0, 2)) == 0
                            else draw(label_selectors(POD_LABELS))}
    for section, direction in (("ingress", "ingress"), ("egress", "egress"),
                               ("ingressDeny", "ingress"), ("egressDeny", "egress")):
        if draw(st.integers(0, 3 if section.endswith("Deny") else 1)) == 0:
            spec[section] = draw(st.lists(cilium_rules(direction, ns_palette, world_ips),
                                          min_size=1, max_size=2))
    if not any(k in spec for k in ("ingress", "egress", "ingressDeny", "egressDeny")):
        spec["ingress"] = [{}]
    if draw(st.integers(0, 4)) == 0:
        spec["enableDefaultDeny"] = {"ingress": draw(st.booleans()),
                                     "egress": draw(st.booleans())}
    kind = draw(st.sampled_from(("CiliumNetworkPolicy", "CiliumNetworkPolicy",
                                 "CiliumClusterwideNetworkPolicy")))
    meta: dict[str, Any] = {"name": f"cil-{index}"}
    if kind == "CiliumNetworkPolicy":
        meta["namespace"] = draw(st.sampled_from(sorted(ns_labels)))
    return {"apiVersion": "cilium.io/v2", "kind": kind, "metadata": meta, "spec": spec}


# ------------------------------------------------------------------ flows


def endpoint_ips(world: World) -> list[str]:
    ips = [ip for p in world.pods for ip in p.ips]
    ips += list(world.nodes.values())
    ips += list(EXTERNAL_IPS)
    return sorted(set(ips))


def interesting_ports(
    world: World, src_pod: Pod | None, dst_pod: Pod | None
) -> list[tuple[str, int]]:
    """(protocol, port) pairs on and around the ports the policies and the pods name.

    Container ports of both ends, under every protocol: a named port must resolve on the
    destination (not the source) and with the rule's protocol (not any)."""
    found: set[tuple[str, int]] = set()
    for p in (src_pod, dst_pod):
        if p is not None:
            found.update((proto, cp.number) for cp in p.ports for proto in PROTOCOLS)
    def around(proto: str, lo: int, hi: int) -> None:
        found.update((proto, p) for p in (lo - 1, lo, (lo + hi) // 2, hi, hi + 1))

    for pol in world.policies:
        spec = pol["spec"]
        for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
            for item in (rule.get("ports") or []) + (rule.get("protocols") or []):
                # the cluster-scoped shapes
                if "portNumber" in item:
                    n = item["portNumber"]["port"]
                    around(item["portNumber"].get("protocol", "TCP"), n, n)
                elif "portRange" in item:
                    r = item["portRange"]
                    around(r.get("protocol", "TCP"), r["start"], r["end"])
                for proto in ("tcp", "udp", "sctp"):
                    dest = (item.get(proto) or {}).get("destinationPort") or {}
                    if "number" in dest:
                        around(proto.upper(), dest["number"], dest["number"])
                    elif "range" in dest:
                        around(proto.upper(), dest["range"]["start"], dest["range"]["end"])
            for ps in rule.get("ports") or []:
                if not {"port", "protocol", "endPort"} & set(ps) and ps:
                    continue  # a cluster-scoped entry, above
                proto, want = ps.get("protocol", "TCP"), ps.get("port")
                if isinstance(want, int):
                    end = ps.get("endPort", want)
                    found.update((proto, p) for p in (want - 1, want, (want + end) // 2, end,
                                                      end + 1))
                elif want is None:
                    found.add((proto, 1234))
    return sorted((proto, p) for proto, p in found if 0 < p < 32768)


def family(ip: str) -> int:
    return ipaddress.ip_address(ip).version


@st.composite
def protocol_and_port(draw: st.DrawFn, world: World, src: str, dst: str) -> tuple[str, int]:
    proto = draw(st.sampled_from(("TCP", "TCP", "TCP", "UDP", "SCTP", "ICMP")))
    if proto == "ICMP":
        return ("ICMPv6" if family(src) == 6 else "ICMP"), 0
    near = interesting_ports(world, resolve_pod(world, src), resolve_pod(world, dst))
    if near and draw(st.booleans()):
        return draw(st.sampled_from(near))
    return proto, draw(st.sampled_from(PORT_NUMBERS))


@st.composite
def random_flow_ends(draw: st.DrawFn, world: World) -> tuple[str, str]:
    """Any two endpoints of one address family, at least one of them a real pod."""
    pod_ips = {ip: p for p in world.pods if not p.host_network for ip in p.ips}
    pod_ip = draw(st.sampled_from(sorted(pod_ips)))
    others = [ip for ip in endpoint_ips(world) if family(ip) == family(pod_ip)]
    pod_others = [ip for ip in others if ip in pod_ips and ip != pod_ip]
    if pod_others and draw(st.booleans()):
        other = draw(st.sampled_from(pod_others))  # pod to pod, half the time
    else:
        other = draw(st.sampled_from(others))  # rarely the pod itself
    return (pod_ip, other) if draw(st.booleans()) else (other, pod_ip)


@st.composite
def targeted_flow(draw: st.DrawFn, world: World) -> Flow | None:
    """A flow aimed at one rule: from/to a pod its policy selects, a peer the rule names
    (or a near miss), a port the rule names. Random flows rarely get this close."""
    namespaced = [p for p in world.policies if p.get("kind") == "NetworkPolicy"]
    if not namespaced:
        return None
    pol = draw(st.sampled_from(namespaced))
    direction = draw(st.sampled_from(("ingress", "egress")))
    rules_here = pol["spec"].get(direction) or []
    if not rules_here:
        return None
    rule = draw(st.sampled_from(rules_here))
    ns = pol["metadata"]["namespace"]
    real = [p for p in world.pods if not p.host_network]
    selected = [p for p in real if p.namespace == ns
                and selector_matches(pol["spec"].get("podSelector"), p.labels)]
    subject = draw(st.sampled_from(selected or real))
    # the peer: an address the rule names, or any endpoint
    peer_list = rule.get("from" if direction == "ingress" else "to") or []
    candidates = endpoint_ips(world)
    if peer_list and draw(st.integers(0, 3)) > 0:
        peer = draw(st.sampled_from(peer_list))
        if "ipBlock" in peer:
            net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            holes = [ipaddress.ip_network(e) for e in peer["ipBlock"].get("except", [])]
            inside = [ip for ip in candidates if ipaddress.ip_address(ip) in net]
            in_hole = [ip for ip in inside if any(ipaddress.ip_address(ip) in h for h in holes)]
            candidates = (in_hole if in_hole and draw(st.booleans()) else inside) or candidates
        else:
            matching = [ip for p in real for ip in p.ips
                        if peer_matches(world, peer, ns, ip, p)]
            candidates = matching or candidates
    candidates = [ip for ip in candidates if any(family(ip) == family(s) for s in subject.ips)]
    if not candidates:
        return None
    remote = draw(st.sampled_from(candidates))
    local = next(ip for ip in subject.ips if family(ip) == family(remote))
    src, dst = (remote, local) if direction == "ingress" else (local, remote)
    # the port: one the rule names, resolved on the destination pod if it is a name
    port_list = rule.get("ports") or []
    if not port_list or draw(st.integers(0, 4)) == 0:
        proto, port = draw(protocol_and_port(world, src, dst))
        return Flow(src, dst, port, proto, 0 if proto.startswith("ICMP") else 40001)
    ps = draw(st.sampled_from(port_list))
    proto, want = ps.get("protocol", "TCP"), ps.get("port")
    if isinstance(want, int):
        end = ps.get("endPort", want)
        port = draw(st.sampled_from(sorted({want, end, (want + end) // 2, end + 1})))
    else:
        dst_pod = resolve_pod(world, dst)
        named = [cp.number for cp in (dst_pod.ports if dst_pod else ()) if cp.name == want]
        port = draw(st.sampled_from(named or list(PORT_NUMBERS)))
    if not 0 < port < 32768:
        return None
    return Flow(src, dst, port, proto, draw(st.integers(40000, 60000)))


@st.composite
def flows(draw: st.DrawFn, world: World) -> tuple[Flow, ...]:
    result: list[Flow] = []
    icmp_pairs: set[frozenset[str]] = set()
    for _ in range(draw(st.integers(10, 40))):
        flow = draw(targeted_flow(world)) if draw(st.booleans()) else None
        if flow is None:
            src, dst = draw(random_flow_ends(world))
            proto, port = draw(protocol_and_port(world, src, dst))
            src_port = 0 if proto.startswith("ICMP") else draw(st.integers(40000, 60000))
            flow = Flow(src, dst, port, proto, src_port)
        if flow.protocol.startswith("ICMP"):
            # VPC logs carry no ICMP type: a->b and b->a are indistinguishable from a
            # request and its reply, so only one direction per pair.
            pair = frozenset((flow.src, flow.dst))
            if pair in icmp_pairs:
                continue
            icmp_pairs.add(pair)
        result.append(flow)
    return tuple(result)


def probe_matrix(world: World, already: Iterable[Flow] = ()) -> tuple[Flow, ...]:
    """Every ordered pair of endpoints (one end a real pod, same address family) on every
    interesting (protocol, port) of that pair, plus one ICMP probe per unordered pair:
    the truth-table probe of upstream's e2e tests. Deterministic, so a shrunk world
    keeps a full probe set; the drawn flows add random src ports, times, and repeats."""
    pod_ips = {ip for p in world.pods if not p.host_network for ip in p.ips}
    ips = endpoint_ips(world)
    icmp_pairs = {frozenset((f.src, f.dst)) for f in already if f.protocol.startswith("ICMP")}
    result: list[Flow] = []
    for src in ips:
        for dst in ips:
            if family(src) != family(dst) or not ({src, dst} & pod_ips):
                continue
            src_port = 40000
            for proto, port in interesting_ports(world, resolve_pod(world, src),
                                                 resolve_pod(world, dst)):
                result.append(Flow(src, dst, port, proto, src_port))
                src_port += 1
            pair = frozenset((src, dst))
            if pair not in icmp_pairs:
                icmp_pairs.add(pair)
                result.append(Flow(src, dst, 0, "ICMPv6" if family(src) == 6 else "ICMP", 0))
    return tuple(result)


def all_flows(case: Case) -> tuple[Flow, ...]:
    """The drawn flows followed by the probe matrix."""
    return case.flows + probe_matrix(case.world, case.flows)


# ------------------------------------------------------------------ whole cases


@st.composite
def cases(draw: st.DrawFn) -> Case:
    ns_labels = draw(namespaces())
    the_pods = draw(pods(sorted(ns_labels)))
    base = World(ns_labels, the_pods, dict(NODES))
    world_ips = endpoint_ips(base)
    count = draw(st.integers(0 if draw(st.booleans()) else 1, 5))
    the_policies = tuple(draw(policies(ns_labels, world_ips, i)) for i in range(count))
    if draw(st.integers(0, 3)) == 0:
        # a Cilium cluster: its own policies beside the NetworkPolicies (no admin tiers)
        the_policies += tuple(draw(cilium_policies(ns_labels, world_ips, i))
                              for i in range(draw(st.integers(1, 3))))
        world = World(ns_labels, the_pods, dict(NODES), the_policies,
                      {k: dict(v) for k, v in NODE_LABELS.items()})
        return Case(world, draw(flows(world)), dict(NODE_POD_CIDRS))
    # cluster-scoped policies in two cases of three: admin and baseline tiers of every shape
    kinds = draw(st.lists(st.sampled_from(("AdminNetworkPolicy", "AdminNetworkPolicy",
                                           "CNP-Admin", "CNP-Baseline")),
                          max_size=3)) if draw(st.integers(0, 2)) else []
    if kinds and draw(st.booleans()):
        kinds.append("BaselineAdminNetworkPolicy")
    if not the_policies and not kinds:
        kinds = ["AdminNetworkPolicy"]
    the_policies += tuple(draw(cluster_policies(ns_labels, world_ips, i, kind))
                          for i, kind in enumerate(kinds))
    world = World(ns_labels, the_pods, dict(NODES), the_policies,
                  {k: dict(v) for k, v in NODE_LABELS.items()})
    return Case(world, draw(flows(world)), dict(NODE_POD_CIDRS))


# ------------------------------------------------------------------ feature census


def _walk_rules(spec: Mapping[str, Any]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for key in ("ingress", "egress"):
        for rule in spec.get(key) or []:
            yield key, rule


def features(case: Case) -> set[str]:
    """Names of the features a case exercises, to check the strategies cover them all."""
    seen: set[str] = set()
    for p in case.world.pods:
        if p.host_network:
            seen.add("hostNetwork pod")
        if any(":" in ip for ip in p.ips):
            seen.add("dual-stack pod")
    priorities: dict[str, list[int]] = {}
    for pol in case.world.policies:
        if pol["kind"].startswith("Cilium"):
            seen.add(pol["kind"])
            spec = pol["spec"]
            if "enableDefaultDeny" in spec:
                seen.add("cilium enableDefaultDeny")
            for section in ("ingress", "egress", "ingressDeny", "egressDeny"):
                for rule in spec.get(section) or []:
                    seen.add(f"cilium {section}")
                    for key, value in rule.items():
                        seen.add(f"cilium {key[2:] if key.startswith('to') else key[4:]}")
                        if key.endswith("Endpoints") and any(
                                k.startswith("reserved:") for v in value
                                for k in v.get("matchLabels", {})):
                            seen.add("cilium reserved label")
            continue
        spec = pol["spec"]
        if pol["kind"] != "NetworkPolicy":
            kind = pol["kind"] + (f" {spec['tier']}" if "tier" in spec else "")
            seen.add(kind)
            tier = "Baseline" if "Baseline" in kind else "Admin"
            priorities.setdefault(tier, []).append(spec.get("priority", 0))
            for _direction, rule in _walk_rules(spec):
                seen.add(f"action {rule['action']}")
                for peer in rule.get("from", []) + rule.get("to", []):
                    seen.add(f"cluster peer {next(iter(peer))}")
                for item in (rule.get("ports") or []) + (rule.get("protocols") or []):
                    key = next(iter(item))
                    seen.add("cluster port protocols" if key in ("tcp", "udp", "sctp")
                             else f"cluster port {key}")
            continue
        types = spec.get("policyTypes")
        seen.add("policyTypes defaulted" if not types else "policyTypes explicit")
        if types == ["Egress"]:
            seen.add("egress-only policy")
        if not types and spec.get("egress"):
            seen.add("Egress defaulted from rules")
        for key in ("ingress", "egress"):
            if spec.get(key) == []:
                seen.add(f"{key}: []")
        selectors = [spec.get("podSelector") or {}]
        for direction, rule in _walk_rules(spec):
            if not rule:
                seen.add("rule {}")
            for peer in rule.get("from", []) + rule.get("to", []):
                if "ipBlock" in peer:
                    v6 = ":" in peer["ipBlock"]["cidr"]
                    seen.add("ipBlock v6" if v6 else "ipBlock v4")
                    if peer["ipBlock"].get("except"):
                        seen.add("ipBlock except v6" if v6 else "ipBlock except v4")
                if "namespaceSelector" in peer and "podSelector" in peer:
                    seen.add("namespaceSelector AND podSelector")
                selectors += [peer.get("namespaceSelector") or {}, peer.get("podSelector") or {}]
            for ps in rule.get("ports", []):
                seen.add(f"protocol {ps.get('protocol', 'TCP')}")
                if isinstance(ps.get("port"), str):
                    seen.add(f"named port {direction}")
                if "endPort" in ps:
                    seen.add("endPort")
                if "port" not in ps:
                    seen.add("port absent")
        for sel in selectors:
            for req in sel.get("matchExpressions", []):
                seen.add(f"operator {req['operator']}")
    if any(len(p) != len(set(p)) for p in priorities.values()):
        seen.add("priority tie")
    node_ips = set(case.world.nodes.values())
    pod_ips = {ip for p in case.world.pods if not p.host_network for ip in p.ips}
    for f in case.flows:
        for ip in (f.src, f.dst):
            if ip in node_ips:
                seen.add("node IP flow")
            elif ip not in pod_ips:
                seen.add("external IP flow")
        seen.add(f"flow {f.protocol}")
    return seen


ALL_FEATURES = frozenset({
    "hostNetwork pod", "dual-stack pod", "policyTypes defaulted", "policyTypes explicit",
    "egress-only policy", "Egress defaulted from rules", "ingress: []", "egress: []", "rule {}",
    "ipBlock v4", "ipBlock v6", "ipBlock except v4", "ipBlock except v6",
    "namespaceSelector AND podSelector", "protocol TCP", "protocol UDP", "protocol SCTP",
    "named port ingress", "named port egress", "endPort", "port absent",
    "operator In", "operator NotIn", "operator Exists", "operator DoesNotExist",
    "node IP flow", "external IP flow", "flow TCP", "flow UDP", "flow SCTP", "flow ICMP",
    "flow ICMPv6",
    "AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "ClusterNetworkPolicy Admin",
    "ClusterNetworkPolicy Baseline", "action Allow", "action Accept", "action Deny",
    "action Pass", "cluster peer namespaces", "cluster peer pods", "cluster peer nodes",
    "cluster peer networks", "cluster port portNumber", "cluster port portRange",
    "cluster port namedPort", "cluster port protocols", "cluster port destinationNamedPort",
    "priority tie",
    "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy", "cilium enableDefaultDeny",
    "cilium ingress", "cilium egress", "cilium ingressDeny", "cilium egressDeny",
    "cilium Endpoints", "cilium Entities", "cilium CIDR", "cilium CIDRSet", "cilium Ports",
    "cilium reserved label",
})
