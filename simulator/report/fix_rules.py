"""The rule a suggested fix adds, written in the dialect of the policy it goes into.

Peers are named by the workload's stable labels (never per-pod hashes or names), external
and node addresses by exact CIDRs, the port by the name every destination pod declares
for it where the dialect allows a name there.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from ..cluster import NS_NAME_LABEL
from ..policy import anp_v1alpha1, banp_v1alpha1, cnp

# Labels that differ between pods of one workload or between its rollouts.
UNSTABLE_LABELS = frozenset({
    "pod-template-hash", "controller-revision-hash", "pod-template-generation",
    "statefulset.kubernetes.io/pod-name", "apps.kubernetes.io/pod-index",
    "controller-uid", "batch.kubernetes.io/controller-uid",
})
# What people select workloads by; when present, the rule uses only these.
IDENTITY_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/component", "app", "k8s-app", "name", "component")
PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")
MAX_BLOCKS = 64          # more distinct addresses than this are widened to their /24 or /64
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp",
                 "managedFields", "selfLink")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# the word each cluster-scoped kind uses for a rule that admits
ALLOW_WORD = {anp_v1alpha1.KIND: "Allow", banp_v1alpha1.KIND: "Allow", cnp.KIND: "Accept"}


def stable_labels(label_sets: list[dict[str, str]]) -> dict[str, str]:
    """Labels every pod of the side shares, without per-pod or per-rollout ones; only the
    identity labels among them when there are any."""
    if not label_sets:
        return {}
    common = set(label_sets[0].items())
    for labels in label_sets[1:]:
        common &= set(labels.items())
    shared = {k: v for k, v in sorted(common) if k not in UNSTABLE_LABELS}
    preferred = {k: shared[k] for k in IDENTITY_LABELS if k in shared}
    return preferred or shared


def ip_blocks(addresses: list[str]) -> list[str]:
    nets = [ipaddress.ip_network(a) for a in sorted(set(addresses))]
    if len(nets) > MAX_BLOCKS:
        nets = [n.supernet(new_prefix=24 if n.version == 4 else 64) for n in nets]
    out = []
    for version in (4, 6):
        out += [str(n) for n in ipaddress.collapse_addresses(
            n for n in nets if n.version == version)]
    return out


def clean_manifest(obj: dict[str, Any]) -> dict[str, Any]:
    """The manifest as a user would apply it: without status and server-set fields."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for f in SERVER_FIELDS:
            meta.pop(f, None)
        notes = meta.get("annotations")
        if isinstance(notes, dict):
            notes.pop(LAST_APPLIED, None)
            if not notes:
                meta.pop("annotations")
    return out


def _selector(labels: dict[str, str]) -> dict[str, Any]:
    return {"matchLabels": dict(labels)} if labels else {}


def peer_side(group: dict[str, Any], direction: str) -> str:
    """The side a rule names as its peer: the destination of an egress rule, the source
    of an ingress rule."""
    return "dst" if direction == "egress" else "src"


def _entity(group: dict[str, Any], side: str) -> dict[str, Any]:
    return group["source" if side == "src" else "destination"]


def np_rule(group: dict[str, Any], direction: str, policy_ns: str | None,
            sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A NetworkPolicy rule admitting the group's peer on its port."""
    side = peer_side(group, direction)
    ent, info = _entity(group, side), sides[side]
    if ent["kind"] == "pod":
        peer: dict[str, Any] = {"podSelector": _selector(info["labels"])}
        if ent["namespace"] != policy_ns:
            peer["namespaceSelector"] = {"matchLabels": {NS_NAME_LABEL: ent["namespace"]}}
        peers = [peer]
    else:
        peers = [{"ipBlock": {"cidr": c}} for c in ip_blocks(info["addresses"])]
    rule: dict[str, Any] = {"to" if direction == "egress" else "from": peers}
    if group["protocol"] in PORT_PROTOCOLS and group["port"] is not None:
        rule["ports"] = [{"protocol": group["protocol"],
                          "port": sides["dst"].get("port_name") or group["port"]}]
    return rule


def cilium_rule(group: dict[str, Any], direction: str,
                sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A CiliumNetworkPolicy allow rule admitting the group's peer on its port: a pod by
    its namespace and stable labels, a node by entity, anything else by exact CIDRs
    (Cilium's CIDR rules match outside addresses only)."""
    side = peer_side(group, direction)
    ent, info = _entity(group, side), sides[side]
    pre = "to" if direction == "egress" else "from"
    rule: dict[str, Any]
    if ent["kind"] == "pod":
        rule = {f"{pre}Endpoints": [{"matchLabels": {
            **info["labels"], "k8s:io.kubernetes.pod.namespace": ent["namespace"]}}]}
    elif ent["kind"] == "node":
        rule = {f"{pre}Entities": ["host", "remote-node"]}
    else:
        rule = {f"{pre}CIDRSet": [{"cidr": c} for c in ip_blocks(info["addresses"])]}
    if group["protocol"] in PORT_PROTOCOLS and group["port"] is not None:
        rule["toPorts"] = [{"ports": [{
            "port": str(sides["dst"].get("port_name") or group["port"]),
            "protocol": group["protocol"]}]}]
    return rule


def port_shape(manifest: dict[str, Any]) -> str:
    """`ports` (v1alpha1, and early v1alpha2 ClusterNetworkPolicies) or `protocols`: the
    shape the policy's own rules use, else its kind's."""
    if manifest.get("kind") != cnp.KIND:
        return "ports"
    spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            if isinstance(rule, dict):
                for shape in ("protocols", "ports"):
                    if shape in rule:
                        return shape
    return "protocols"


def cluster_rule(group: dict[str, Any], direction: str, sides: dict[str, dict[str, Any]],
                 manifest: dict[str, Any], action: str, name: str) -> dict[str, Any] | str:
    """An AdminNetworkPolicy/BaselineAdminNetworkPolicy/ClusterNetworkPolicy rule with
    `action` for the group's peer and port; or why none can name that peer."""
    side = peer_side(group, direction)
    ent, info = _entity(group, side), sides[side]
    if ent["kind"] == "pod":
        peers: list[dict[str, Any]] = [{"pods": {
            "namespaceSelector": {"matchLabels": {NS_NAME_LABEL: ent["namespace"]}},
            "podSelector": _selector(info["labels"])}}]
    elif direction == "egress" and info["addresses"]:
        peers = [{"networks": ip_blocks(info["addresses"])}]
    else:
        return (f"{manifest.get('kind')} ingress rules name only pods and namespaces: no "
                f"rule can admit a {ent['kind']} source")
    rule: dict[str, Any] = {"name": name, "action": action,
                            "to" if direction == "egress" else "from": peers}
    proto, port = group["protocol"], group["port"]
    if proto in PORT_PROTOCOLS and port is not None:
        # a named port only next to pod peers (the API refuses it beside networks)
        named = sides["dst"].get("port_name") if ent["kind"] == "pod" else None
        if port_shape(manifest) == "ports":
            rule["ports"] = [{"namedPort": named} if named else
                             {"portNumber": {"protocol": proto, "port": port}}]
        else:
            rule["protocols"] = [{"destinationNamedPort": named} if named else
                                 {proto.lower(): {"destinationPort": {"number": port}}}]
    return rule


def insert_rule(manifest: dict[str, Any], direction: str, at: int | None,
                rule: dict[str, Any]) -> None:
    """Put `rule` into the manifest's rules of `direction`: before rule `at`, or last."""
    spec = manifest.setdefault("spec", {})
    if not isinstance(spec.get(direction), list):
        spec[direction] = []
    rules = spec[direction]
    rules.insert(len(rules) if at is None else at, rule)


def repair_rule(manifest: dict[str, Any], direction: str, index: int,
                change: dict[str, Any]) -> dict[str, Any] | None:
    """Make a near miss's change to the NetworkPolicy rule at `index` of `direction` (in
    the manifest itself): add the port ({"add_port": {protocol, port}}) or the peers
    ({"add_peers": [...]}) it lacked; the rule as changed, or None if there is no such
    rule."""
    spec = manifest.get("spec")
    rules = spec.get(direction) if isinstance(spec, dict) else None
    if not isinstance(rules, list) or not 0 <= index < len(rules):
        return None
    rule = rules[index]
    if not isinstance(rule, dict):
        return None
    port = change.get("add_port")
    if port:
        ports = rule.setdefault("ports", [])
        entry = {"protocol": port["protocol"], "port": port["port"]}
        if isinstance(ports, list) and entry not in ports:
            ports.append(entry)
    peers_key = "to" if direction == "egress" else "from"
    for peer in change.get("add_peers") or ():
        peers = rule.setdefault(peers_key, [])
        if isinstance(peers, list) and peer not in peers:
            peers.append(peer)
    return rule


MERGE_LIMIT = 25   # peers or ports per merged rule (the API's smallest list limit)


def merge_rules(rules: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """Rules of one action added at one place, fewer: those with the same peers become one
    with their ports together, then those with the same ports one with their peers
    together (a rule without ports admits every port and absorbs the others' ports). The
    first rule's name and action stay."""
    peers_key = "to" if direction == "egress" else "from"

    def ports_key(rule: dict[str, Any]) -> str | None:
        return next((k for k in ("ports", "protocols") if k in rule), None)

    def same(a: dict[str, Any], b: dict[str, Any], field: str) -> bool:
        return (a.get("action") == b.get("action") and ports_key(a) == ports_key(b)
                and a.get(field) == b.get(field))

    out: list[dict[str, Any]] = []
    for rule in rules:   # same peers: ports together
        key = ports_key(rule)
        into = next((r for r in out if same(r, rule, peers_key)), None)
        if into is None or key is None or len(into[key]) + len(rule[key]) > MERGE_LIMIT:
            if into is not None and key is None:
                continue   # a rule for every port of these peers is there
            out.append(copy.deepcopy(rule))
            continue
        into[key] += [p for p in rule[key] if p not in into[key]]
    merged: list[dict[str, Any]] = []
    for rule in out:     # same ports: peers together
        key = ports_key(rule)
        into = next((r for r in merged if same(r, rule, key or "")), None)
        if into is None or len(into[peers_key]) + len(rule[peers_key]) > MERGE_LIMIT:
            merged.append(rule)
            continue
        into[peers_key] += [p for p in rule[peers_key] if p not in into[peers_key]]
    return merged
