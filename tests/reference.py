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


@dataclass(frozen=True)
class Side:
    """What one direction (egress of the source, ingress of the destination) says."""

    allowed: bool
    isolated_by: tuple[str, ...] = ()  # "ns/name" of the policies isolating the pod
    admitted_by: tuple[str, ...] = ()  # "ns/name#ingress[i]" rules that admit the traffic


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    egress: Side
    ingress: Side

    @property
    def word(self) -> str:
        return "allow" if self.allowed else "deny"


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
    rules_key, peers_key = ("ingress", "from") if direction == INGRESS else ("egress", "to")
    isolated_by: list[str] = []
    admitted_by: list[str] = []
    for policy in world.policies:
        spec = policy["spec"]
        if direction not in effective_policy_types(spec) or not policy_selects(world, policy, pod):
            continue
        isolated_by.append(policy_id(policy))
        policy_ns = policy.get("metadata", {}).get("namespace", "default")
        for i, rule in enumerate(spec.get(rules_key) or []):
            if rule_admits(
                world, rule, peers_key, policy_ns, remote_ip, remote_pod, protocol, port, dst_pod
            ):
                admitted_by.append(f"{policy_id(policy)}#{rules_key}[{i}]")
    allowed = not isolated_by or bool(admitted_by)
    return Side(allowed, tuple(isolated_by), tuple(admitted_by))


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
) -> World:
    return World(dict(namespaces), tuple(pods), dict(nodes or {}), tuple(policies))
