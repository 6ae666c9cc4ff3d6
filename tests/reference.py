"""A small reference evaluator of Kubernetes NetworkPolicy (networking.k8s.io/v1) semantics.

Written independently of the engine, to be obviously correct rather than fast: plain
Python, one connection at a time, each rule of the API documentation as one small
function. The property tests compare the engine's verdicts against this module.

The model:

* An IP resolves to the (non-hostNetwork) pod holding it. Anything else (a node IP, a
  hostNetwork pod, which shares its node's IP, or an external address) is "not a pod":
  no policy applies to it and pod/namespace selectors never match it. ipBlock peers
  match on the IP alone, whatever it resolves to.
* A connection (initiating direction only) is allowed iff the source side allows it
  (source is not a pod, or is not egress-isolated, or some egress rule of a policy
  selecting it admits the destination and port) AND the destination side allows it
  (destination is not a pod, or is not ingress-isolated, or some ingress rule of a
  policy selecting it admits the source and port, or the source is the destination
  pod's own node).
* "Pods cannot ... block access from their resident node" (kubernetes.io, Network
  Policies, "What you can't do"): ingress from the IP of the node a pod runs on (the
  node itself or a hostNetwork pod there) is always allowed, so kubelet probes work.
  Egress from a pod to its node is policed like any other egress.

Policies are the plain dicts a user writes in YAML (``{"metadata": ..., "spec": ...}``).

Cluster-scoped policies (policy.networking.k8s.io: AdminNetworkPolicy, BaselineAdmin-
NetworkPolicy, ClusterNetworkPolicy) add tiers around the NetworkPolicies, per direction:

1. the admin tier (AdminNetworkPolicies, ClusterNetworkPolicies of tier Admin) whose
   subject selects the pod: each policy's first rule (as written) matching the traffic;
   of those, the lowest priority value wins; Allow/Accept and Deny decide, Pass goes on;
   two policies at that priority that disagree leave the outcome undefined ("unknown");
2. the NetworkPolicies, as above, when one isolates the pod in that direction;
3. the baseline tier (the BaselineAdminNetworkPolicy, ClusterNetworkPolicies of tier
   Baseline) the same way; a Pass there, or no match, is allowed.

A cluster-scoped policy isolates nothing. Their peers: `namespaces` (every pod of the
selected namespaces), `pods` (namespace AND pod selector), `nodes` (the addresses of the
nodes whose labels match), `networks` (CIDRs, matching any address). Their ports:
`portNumber`, `namedPort` (the destination pod's, any protocol it declares), `portRange`,
or ClusterNetworkPolicy's `protocols`.
CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (cilium.io/v2) act beside the
NetworkPolicies, as Cilium enforces both (one rule set per item of `spec`/`specs`):

* a rule set applies to the pods its endpointSelector selects (a CiliumNetworkPolicy's
  only in its own namespace); selector keys may carry a `k8s:`/`any:` source prefix and
  see Cilium's identity labels (io.kubernetes.pod.namespace, io.cilium.k8s.namespace.
  labels.<key>, io.cilium.k8s.policy.cluster "default", ...serviceaccount "default");
* a non-empty ingress/ingressDeny section makes the pod default-deny for ingress unless
  enableDefaultDeny.ingress is false (egress alike);
* allows of every policy (NetworkPolicies included) are one union; a matching deny rule
  denies, whatever allows;
* peers: fromEndpoints/toEndpoints (pods; in a CiliumNetworkPolicy of its namespace
  unless the selector names the namespace or namespace labels; in a cluster-wide one any
  pod), entities (world = not a pod or node; host = the pod's own node; remote-node =
  the other nodes; cluster = pods and nodes; all), CIDRs (only addresses that are not
  pods or nodes); a rule without any of them admits its ports from/to everyone, and one
  without ports either admits nothing;
* toPorts: a port without protocol (or ANY) is TCP, UDP and SCTP; port 0 every port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")  # the only protocols a NetworkPolicyPort can name
INGRESS = "Ingress"
EGRESS = "Egress"


@dataclass(frozen=True)
class ContainerPort:
    name: str | None
    number: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ips: tuple[str, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[ContainerPort, ...] = ()
    host_network: bool = False
    node: str = "node-1"


@dataclass(frozen=True)
class World:
    namespaces: Mapping[str, Mapping[str, str]]  # name -> labels (as written)
    pods: tuple[Pod, ...]
    nodes: Mapping[str, str] = field(default_factory=dict)  # node name -> node IP
    policies: tuple[Mapping[str, Any], ...] = ()
    node_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Side:
    """What one direction (egress of the source, ingress of the destination) says.
    unknown: the outcome is undefined (two cluster-scoped policies of one priority
    disagree); allowed is then False."""

    allowed: bool
    isolated_by: tuple[str, ...] = ()  # "ns/name" of the policies isolating the pod
    admitted_by: tuple[str, ...] = ()  # "ns/name#ingress[i]" rules that admit the traffic
    unknown: bool = False
    tier: str = "default"  # admin | networkpolicy | baseline | default


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    egress: Side
    ingress: Side

    @property
    def word(self) -> str:
        sides = (self.egress, self.ingress)
        if any(not s.allowed and not s.unknown for s in sides):
            return "deny"
        if any(s.unknown for s in sides):
            return "unknown"
        return "allow"


# --------------------------------------------------------------------------- selectors


def requirement_matches(req: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op = req["key"], req["operator"]
    values = list(req.get("values") or [])
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    raise ValueError(f"unknown label selector operator {op!r}")


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector: matchLabels AND matchExpressions; empty selects everything."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    return all(requirement_matches(r, labels) for r in selector.get("matchExpressions") or [])


def namespace_labels(world: World, ns: str) -> dict[str, str]:
    labels = dict(world.namespaces.get(ns, {}))
    labels[NAMESPACE_NAME_LABEL] = ns  # the API server always sets this label
    return labels


# --------------------------------------------------------------------------- endpoints


def same_ip(a: str, b: str) -> bool:
    return ipaddress.ip_address(a) == ipaddress.ip_address(b)


def resolve_pod(world: World, ip: str) -> Pod | None:
    """The pod holding `ip`, or None if the IP is a node, hostNetwork pod or external."""
    for p in world.pods:
        if not p.host_network and any(same_ip(ip, pod_ip) for pod_ip in p.ips):
            return p
    return None


# --------------------------------------------------------------------------- policies


def policy_id(policy: Mapping[str, Any]) -> str:
    meta = policy.get("metadata", {})
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"


def effective_policy_types(spec: Mapping[str, Any]) -> set[str]:
    """API-server defaulting: absent/empty policyTypes => Ingress, plus Egress iff the
    spec has at least one egress rule."""
    given = spec.get("policyTypes")
    if given:
        return set(given)
    types = {INGRESS}
    if spec.get("egress"):
        types.add(EGRESS)
    return types


def policy_selects(world: World, policy: Mapping[str, Any], pod: Pod) -> bool:
    ns = policy.get("metadata", {}).get("namespace", "default")
    return pod.namespace == ns and selector_matches(policy["spec"].get("podSelector"), pod.labels)


def peer_matches(
    world: World, peer: Mapping[str, Any], policy_ns: str, ip: str, pod: Pod | None
) -> bool:
    """One NetworkPolicyPeer against the remote end (its IP and the pod it resolves to)."""
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        addr = ipaddress.ip_address(ip)
        cidr = ipaddress.ip_network(block["cidr"])
        if addr.version != cidr.version or addr not in cidr:
            return False
        for exc in block.get("except") or []:
            exc_net = ipaddress.ip_network(exc)
            if addr.version == exc_net.version and addr in exc_net:
                return False
        return True
    # podSelector and/or namespaceSelector: only ever match pods.
    if pod is None:
        return False
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], namespace_labels(world, pod.namespace)):
            return False
    elif pod.namespace != policy_ns:
        return False  # podSelector alone: pods of the policy's own namespace
    if "podSelector" in peer:
        return selector_matches(peer["podSelector"], pod.labels)
    return True  # namespaceSelector alone: every pod of the selected namespaces


def port_matches(
    port_spec: Mapping[str, Any], protocol: str, port: int, dst_pod: Pod | None
) -> bool:
    """One NetworkPolicyPort against the connection's protocol and destination port."""
    if port_spec.get("protocol", "TCP") != protocol:
        return False
    want = port_spec.get("port")
    if want is None:
        return True  # every port of that protocol
    if isinstance(want, int):
        end = port_spec.get("endPort")
        if end is None:
            return port == want
        return want <= port <= end
    # A named port: look it up in the destination pod's container ports (name + protocol).
    if dst_pod is None:
        return False
    return any(
        cp.name == want and cp.protocol == protocol and cp.number == port for cp in dst_pod.ports
    )


def rule_admits(
    world: World,
    rule: Mapping[str, Any],
    peers_key: str,
    policy_ns: str,
    remote_ip: str,
    remote_pod: Pod | None,
    protocol: str,
    port: int,
    dst_pod: Pod | None,
) -> bool:
    peers = rule.get(peers_key) or []
    if peers and not any(peer_matches(world, p, policy_ns, remote_ip, remote_pod) for p in peers):
        return False
    ports = rule.get("ports") or []
    if not ports:
        return True  # all ports and all protocols (ICMP too)
    if protocol not in PORT_PROTOCOLS:
        return False
    return any(port_matches(ps, protocol, port, dst_pod) for ps in ports)


# --------------------------------------------------------------------------- tiers

CLUSTER_KINDS = ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "ClusterNetworkPolicy")
ACTIONS = {"Allow": "allow", "Accept": "allow", "Deny": "deny", "Pass": "pass"}


def cluster_tier(policy: Mapping[str, Any]) -> str | None:
    """'admin' or 'baseline' for a cluster-scoped policy, None for a NetworkPolicy."""
    kind = policy.get("kind", "NetworkPolicy")
    if kind == "AdminNetworkPolicy":
        return "admin"
    if kind == "BaselineAdminNetworkPolicy":
        return "baseline"
    if kind == "ClusterNetworkPolicy":
        return policy["spec"]["tier"].lower()
    return None


def subject_selects(world: World, policy: Mapping[str, Any], pod: Pod) -> bool:
    subject = policy["spec"]["subject"]
    ns_labels = namespace_labels(world, pod.namespace)
    if "namespaces" in subject:
        return selector_matches(subject["namespaces"], ns_labels)
    pods = subject["pods"]
    return (selector_matches(pods["namespaceSelector"], ns_labels)
            and selector_matches(pods["podSelector"], pod.labels))


def cluster_peer_matches(world: World, peer: Mapping[str, Any], ip: str,
                         pod: Pod | None) -> bool:
    if "networks" in peer:
        addr = ipaddress.ip_address(ip)
        return any(addr.version == ipaddress.ip_network(c).version
                   and addr in ipaddress.ip_network(c) for c in peer["networks"])
    if "nodes" in peer:
        return any(same_ip(ip, node_ip)
                   and selector_matches(peer["nodes"], world.node_labels.get(name, {}))
                   for name, node_ip in world.nodes.items())
    if pod is None:  # namespaces and pods peers select pods only
        return False
    ns_labels = namespace_labels(world, pod.namespace)
    if "namespaces" in peer:
        return selector_matches(peer["namespaces"], ns_labels)
    if "pods" in peer:
        return (selector_matches(peer["pods"]["namespaceSelector"], ns_labels)
                and selector_matches(peer["pods"]["podSelector"], pod.labels))
    return False


def _named_port(name: str, protocol: str, port: int, dst_pod: Pod | None) -> bool:
    return dst_pod is not None and any(
        cp.name == name and cp.protocol == protocol and cp.number == port
        for cp in dst_pod.ports)


def cluster_port_matches(item: Mapping[str, Any], protocol: str, port: int,
                         dst_pod: Pod | None) -> bool:
    """One entry of `ports` (v1alpha1) or `protocols` (ClusterNetworkPolicy)."""
    if "portNumber" in item:
        pn = item["portNumber"]
        return pn.get("protocol", "TCP") == protocol and pn["port"] == port
    if "portRange" in item:
        pr = item["portRange"]
        return pr.get("protocol", "TCP") == protocol and pr["start"] <= port <= pr["end"]
    if "namedPort" in item:
        return _named_port(item["namedPort"], protocol, port, dst_pod)
    if "destinationNamedPort" in item:
        return _named_port(item["destinationNamedPort"], protocol, port, dst_pod)
    for proto in ("tcp", "udp", "sctp"):
        if proto in item:
            if protocol != proto.upper():
                return False
            dest = (item[proto] or {}).get("destinationPort")
            if dest is None:
                return True
            if "number" in dest:
                return dest["number"] == port
            return dest["range"]["start"] <= port <= dest["range"]["end"]
    raise ValueError(f"unknown port entry {item!r}")


def cluster_rule_matches(world: World, rule: Mapping[str, Any], peers_key: str,
                         remote_ip: str, remote_pod: Pod | None, protocol: str, port: int,
                         dst_pod: Pod | None) -> bool:
    if not any(cluster_peer_matches(world, p, remote_ip, remote_pod)
               for p in rule[peers_key]):
        return False
    items = rule.get("ports") or rule.get("protocols") or []
    if not items:
        return True  # every protocol and port
    if protocol not in PORT_PROTOCOLS:
        return False
    return any(cluster_port_matches(i, protocol, port, dst_pod) for i in items)


def tier_decision(world: World, tier: str, pod: Pod, direction: str, remote_ip: str,
                  remote_pod: Pod | None, protocol: str, port: int,
                  dst_pod: Pod | None) -> str | None:
    """allow | deny | pass | unknown (two policies of the winning priority disagree), or
    None when no rule of the tier matches."""
    rules_key, peers_key = ("ingress", "from") if direction == INGRESS else ("egress", "to")
    hits: list[tuple[int, str]] = []
    for policy in world.policies:
        if cluster_tier(policy) != tier or not subject_selects(world, policy, pod):
            continue
        priority = policy["spec"].get("priority", 0)
        for rule in policy["spec"].get(rules_key) or []:
            if cluster_rule_matches(world, rule, peers_key, remote_ip, remote_pod, protocol,
                                    port, dst_pod):
                hits.append((priority, ACTIONS[rule["action"]]))
                break  # the policy's first matching rule is its answer
    if not hits:
        return None
    top = min(p for p, _ in hits)
    actions = {a for p, a in hits if p == top}
    return actions.pop() if len(actions) == 1 else "unknown"


def _decided(decision: str | None, tier: str) -> Side | None:
    if decision == "allow":
        return Side(True, tier=tier)
    if decision == "deny":
        return Side(False, tier=tier)
    if decision == "unknown":
        return Side(False, unknown=True, tier=tier)
    return None


# --------------------------------------------------------------------------- Cilium

CILIUM_KINDS = ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")
CILIUM_NS = "io.kubernetes.pod.namespace"
CILIUM_NS_LABELS = "io.cilium.k8s.namespace.labels."


def is_cilium(policy: Mapping[str, Any]) -> bool:
    return policy.get("kind") in CILIUM_KINDS


def _source_key(key: str) -> tuple[str, str]:
    for source in ("k8s", "any", "reserved"):
        if key.startswith(source + ":"):
            return source, key[len(source) + 1:]
    return "any", key


def identity_labels(world: World, pod: Pod) -> dict[str, str]:
    labels = dict(pod.labels)
    labels[CILIUM_NS] = pod.namespace
    for k, v in namespace_labels(world, pod.namespace).items():
        labels[CILIUM_NS_LABELS + k] = v
    labels["io.cilium.k8s.policy.cluster"] = "default"
    labels["io.cilium.k8s.policy.serviceaccount"] = "default"
    return labels


def _cilium_requirements(selector: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The selector as requirements on source-less keys (reserved ones keep `reserved:`)."""
    reqs = []
    for key, value in (selector.get("matchLabels") or {}).items():
        source, name = _source_key(key)
        reqs.append({"key": name if source != "reserved" else key, "operator": "In",
                     "values": [value]})
    for r in selector.get("matchExpressions") or []:
        source, name = _source_key(r["key"])
        reqs.append(dict(r, key=name if source != "reserved" else r["key"]))
    return reqs


def cilium_rule_sets(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return ([policy["spec"]] if policy.get("spec") else []) + list(policy.get("specs") or [])


def cilium_selects(world: World, policy: Mapping[str, Any], rule_set: Mapping[str, Any],
                   pod: Pod) -> bool:
    ns = policy.get("metadata", {}).get("namespace")
    if policy["kind"] == "CiliumNetworkPolicy" and pod.namespace != (ns or "default"):
        return False
    labels = identity_labels(world, pod)
    return all(requirement_matches(r, labels)
               for r in _cilium_requirements(rule_set.get("endpointSelector") or {})
               if not (ns and r["key"] == CILIUM_NS and r["operator"] == "In"))


def _node_of(world: World, ip: str) -> str | None:
    for name, node_ip in world.nodes.items():
        if same_ip(ip, node_ip):
            return name
    return None


def _entities(world: World, pod: Pod, remote_ip: str, remote_pod: Pod | None) -> set[str]:
    if remote_pod is not None:
        return {"cluster"}
    node = _node_of(world, remote_ip)
    if node is not None:
        return {"cluster", "host" if node == pod.node else "remote-node"}
    return {"world", f"world-ipv{ipaddress.ip_address(remote_ip).version}"}


def _in_cidr(ip: str, cidr: str, excepts: Sequence[str] = ()) -> bool:
    addr, net = ipaddress.ip_address(ip), ipaddress.ip_network(cidr, strict=False)
    if addr.version != net.version or addr not in net:
        return False
    return not any(addr.version == ipaddress.ip_network(e).version
                   and addr in ipaddress.ip_network(e) for e in excepts)


def cilium_peer_matches(world: World, policy: Mapping[str, Any], rule: Mapping[str, Any],
                        direction: str, pod: Pod, remote_ip: str,
                        remote_pod: Pod | None) -> bool | None:
    """Whether the rule's L3 part matches the remote end; None: the rule has none."""
    pre = "from" if direction == INGRESS else "to"
    fields = [f"{pre}Endpoints", f"{pre}Entities", f"{pre}CIDR", f"{pre}CIDRSet"]
    if not any(rule.get(f) for f in fields):
        return None
    ns = policy.get("metadata", {}).get("namespace")
    entities = _entities(world, pod, remote_ip, remote_pod)
    for sel in rule.get(f"{pre}Endpoints") or []:
        reqs = _cilium_requirements(sel)
        reserved = [r["key"][len("reserved:"):] for r in reqs
                    if r["key"].startswith("reserved:")]
        if reserved:
            if len(reserved) == 1 and len(reqs) == 1 and (
                    reserved[0] == "all" or reserved[0] in entities):
                return True
            continue
        if remote_pod is None:
            continue
        keys = {r["key"] for r in reqs}
        scoped = (policy["kind"] == "CiliumNetworkPolicy" and CILIUM_NS not in keys
                  and not any(k.startswith(CILIUM_NS_LABELS) for k in keys))
        if scoped and remote_pod.namespace != (ns or "default"):
            continue
        labels = identity_labels(world, remote_pod)
        if all(requirement_matches(r, labels) for r in reqs):
            return True
    for e in rule.get(f"{pre}Entities") or []:
        if e == "all" or e in entities:
            return True
    outside = remote_pod is None and _node_of(world, remote_ip) is None
    for c in rule.get(f"{pre}CIDR") or []:
        if outside and _in_cidr(remote_ip, c):
            return True
    for item in rule.get(f"{pre}CIDRSet") or []:
        if outside and _in_cidr(remote_ip, item["cidr"], item.get("except") or []):
            return True
    return False


def cilium_ports_match(rule: Mapping[str, Any], protocol: str, port: int,
                       dst_pod: Pod | None) -> bool | None:
    """Whether the rule's toPorts admit the port; None: the rule has no toPorts."""
    if not rule.get("toPorts"):
        return None
    for entry in rule["toPorts"]:
        items = entry.get("ports") or []
        if not items:
            return True
        for item in items:
            proto = (item.get("protocol") or "ANY").upper()
            protos = ("TCP", "UDP", "SCTP") if proto == "ANY" else (proto,)
            if protocol.upper() not in protos:
                continue
            want = str(item.get("port", "0"))
            if want.isdigit():
                lo = int(want)
                hi = int(item.get("endPort") or lo)
                if lo == 0 or lo <= port <= hi:
                    return True
            elif dst_pod is not None and any(cp.name == want and cp.protocol == protocol
                                             and cp.number == port for cp in dst_pod.ports):
                return True
    return False


def cilium_rule_matches(world: World, policy: Mapping[str, Any], rule: Mapping[str, Any],
                        direction: str, pod: Pod, remote_ip: str, remote_pod: Pod | None,
                        protocol: str, port: int, dst_pod: Pod | None) -> bool:
    peers = cilium_peer_matches(world, policy, rule, direction, pod, remote_ip, remote_pod)
    ports = cilium_ports_match(rule, protocol, port, dst_pod)
    if peers is None and ports is None:
        return False  # an empty rule admits nothing
    return peers is not False and ports is not False


def cilium_side(world: World, policy: Mapping[str, Any], pod: Pod, direction: str,
                remote_ip: str, remote_pod: Pod | None, protocol: str, port: int,
                dst_pod: Pod | None) -> tuple[bool, list[str], list[str]]:
    """(isolates, admitting rules, denying rules) of one Cilium policy for `pod`."""
    allow_key = "ingress" if direction == INGRESS else "egress"
    isolates, admits, denies = False, [], []
    for n, rs in enumerate(cilium_rule_sets(policy)):
        if not cilium_selects(world, policy, rs, pod):
            continue
        if (rs.get(allow_key) or rs.get(allow_key + "Deny")) and \
                (rs.get("enableDefaultDeny") or {}).get(allow_key) is not False:
            isolates = True
        for key, out in ((allow_key, admits), (allow_key + "Deny", denies)):
            for i, rule in enumerate(rs.get(key) or []):
                if cilium_rule_matches(world, policy, rule, direction, pod, remote_ip,
                                       remote_pod, protocol, port, dst_pod):
                    out.append(f"{policy_id(policy)}#{n}.{key}[{i}]")
    return isolates, admits, denies


def is_resident_node(world: World, ip: str, pod: Pod) -> bool:
    """Is `ip` the address of the node `pod` runs on?"""
    node_ip = world.nodes.get(pod.node)
    return node_ip is not None and same_ip(ip, node_ip)


def evaluate_side(
    world: World,
    pod: Pod | None,
    direction: str,
    remote_ip: str,
    remote_pod: Pod | None,
    protocol: str,
    port: int,
    dst_pod: Pod | None,
    resident_node_allowed: bool = True,
) -> Side:
    """Does `pod` (the source for Egress, the destination for Ingress) let this through?"""
    if pod is None:
        return Side(allowed=True)  # not a pod: no NetworkPolicy applies
    if direction == INGRESS and resident_node_allowed and is_resident_node(world, remote_ip, pod):
        return Side(allowed=True)  # a pod cannot block its own node (kubelet probes)
    tier_args = (pod, direction, remote_ip, remote_pod, protocol, port, dst_pod)
    admin = tier_decision(world, "admin", *tier_args)
    side = _decided(admin, "admin")
    if side is not None:
        return side
    rules_key, peers_key = ("ingress", "from") if direction == INGRESS else ("egress", "to")
    isolated_by: list[str] = []
    admitted_by: list[str] = []
    denied_by: list[str] = []
    for policy in world.policies:
        if is_cilium(policy):
            isolates, admits, denies = cilium_side(world, policy, pod, direction, remote_ip,
                                                   remote_pod, protocol, port, dst_pod)
            if isolates:
                isolated_by.append(policy_id(policy))
            admitted_by += admits
            denied_by += denies
            continue
        spec = policy["spec"]
        if cluster_tier(policy) is not None:
            continue
        if direction not in effective_policy_types(spec) or not policy_selects(world, policy, pod):
            continue
        isolated_by.append(policy_id(policy))
        policy_ns = policy.get("metadata", {}).get("namespace", "default")
        for i, rule in enumerate(spec.get(rules_key) or []):
            if rule_admits(
                world, rule, peers_key, policy_ns, remote_ip, remote_pod, protocol, port, dst_pod
            ):
                admitted_by.append(f"{policy_id(policy)}#{rules_key}[{i}]")
    if denied_by:  # a Cilium deny rule wins over every allow
        return Side(False, tuple(isolated_by), (), tier="networkpolicy")
    if isolated_by:
        return Side(bool(admitted_by), tuple(isolated_by), tuple(admitted_by),
                    tier="networkpolicy")
    baseline = tier_decision(world, "baseline", *tier_args)
    return _decided(baseline if baseline != "pass" else None, "baseline") or Side(True)


def evaluate(
    world: World,
    src_ip: str,
    dst_ip: str,
    port: int,
    protocol: str,
    *,
    resident_node_allowed: bool = True,
) -> Verdict:
    """Verdict for a connection initiated by src_ip to dst_ip:port/protocol."""
    src_pod = resolve_pod(world, src_ip)
    dst_pod = resolve_pod(world, dst_ip)
    egress = evaluate_side(world, src_pod, EGRESS, dst_ip, dst_pod, protocol, port, dst_pod)
    ingress = evaluate_side(
        world, dst_pod, INGRESS, src_ip, src_pod, protocol, port, dst_pod, resident_node_allowed
    )
    return Verdict(egress.allowed and ingress.allowed, egress, ingress)


def world_from_parts(
    namespaces: Mapping[str, Mapping[str, str]],
    pods: Sequence[Pod],
    nodes: Mapping[str, str] | None = None,
    policies: Sequence[Mapping[str, Any]] = (),
    node_labels: Mapping[str, Mapping[str, str]] | None = None,
) -> World:
    return World(dict(namespaces), tuple(pods), dict(nodes or {}), tuple(policies),
                 dict(node_labels or {}))


# --------------------------------------------------------------------------- Services


@dataclass(frozen=True)
class Service:
    """A ClusterIP Service: its port, and the target port (a number, or a container
    port's name resolved per backend pod)."""

    cluster_ip: str
    port: int
    protocol: str
    target: int | str
    backends: tuple[Pod, ...]


def backend_port(service: Service, pod: Pod) -> int | None:
    """The port a backend serves the Service on (None: the pod lacks the named port)."""
    if isinstance(service.target, int):
        return service.target
    return next((cp.number for cp in pod.ports
                 if cp.name == service.target and cp.protocol == service.protocol), None)


def evaluate_service(world: World, src_ip: str, service: Service, port: int,
                     protocol: str) -> str:
    """The verdict of a connection to the Service's address, judged at every backend: the
    word they agree on; 'unknown' when they disagree or none serves that port."""
    if port != service.port or protocol != service.protocol:
        return "unknown"
    words = {evaluate(world, src_ip, same_family_ip(pod, service.cluster_ip), target,
                      protocol).word
             for pod in service.backends
             if (target := backend_port(service, pod)) is not None}
    return words.pop() if len(words) == 1 else "unknown"


def same_family_ip(pod: Pod, like: str) -> str:
    family = ipaddress.ip_address(like).version
    return next(ip for ip in pod.ips if ipaddress.ip_address(ip).version == family)
