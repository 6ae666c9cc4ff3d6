"""What the network-policy API group (policy.networking.k8s.io) shares across its kinds:
AdminNetworkPolicy and BaselineAdminNetworkPolicy (v1alpha1) and ClusterNetworkPolicy
(v1alpha2, v1beta1) select a subject, and match peers and ports the same way. Each kind's
own file (anp_v1alpha1, banp_v1alpha1, cnp) reads its spec with these and compiles to the
IR; the validation follows the CRDs' schemas and CEL rules.

A peer is exactly one of its fields. One this version does not know (a newer API) fails
closed, as the API prescribes: in an Allow/Accept rule it matches nothing, in a Deny or
Pass rule everything; the policy set carries a note saying so."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..ipnet import parse_cidr
from .common import (
    Ctx,
    as_list,
    mapping,
    no_unknown,
    selector,
    valid_dns_subdomain,
    valid_port_name,
)
from .ir import (
    ANY_PORT,
    MATCH_ALL,
    Action,
    AnyPeer,
    CidrPeer,
    Direction,
    DomainPeer,
    NodePeer,
    Peer,
    PodPeer,
    PortMatch,
    Rule,
    Subject,
)

GROUP = "policy.networking.k8s.io"
PROTOCOLS = ("TCP", "UDP", "SCTP")
MAX_PRIORITY = 1000
MAX_PEERS = 100
MAX_PORTS = 100
MAX_NETWORKS = 25
# a DNS name, optionally behind `*.` (the wildcard: one or more whole labels, as a prefix):
# the CRDs' pattern as written, `_` and unbounded labels included (its `A-z` admits the
# characters between `Z` and `a` too)
_DOMAIN = re.compile(r"(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+"
                     r"[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?")
# peers that name no pod: a named port cannot be resolved against them
_NO_PODS = ("nodes", "networks", "domainNames")


@dataclass
class Notes:
    """What a policy set should say about how it was read (fail-closed peers)."""

    lines: list[str] = field(default_factory=list)


def priority(ctx: Ctx, spec: dict[str, Any]) -> int:
    value = spec.get("priority")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.fail("spec.priority", f"must be an integer 0-{MAX_PRIORITY}, got {value!r}")
    if not 0 <= value <= MAX_PRIORITY:
        raise ctx.fail("spec.priority", f"must be between 0 and {MAX_PRIORITY}, got {value}")
    return value


def _one_of(ctx: Ctx, raw: dict[str, Any], known: tuple[str, ...], field: str,
            what: str) -> str:
    """The one field a union sets; several, or none, is invalid."""
    present = [k for k in raw if raw[k] is not None]
    if len(present) != 1:
        raise ctx.fail(field, f"must set exactly one of {', '.join(known)} ({what}), "
                              f"got {', '.join(present) or 'none'}")
    return present[0]


def _namespaced_pods(ctx: Ctx, raw: Any, field: str, ns_required: bool) -> tuple[Any, Any]:
    """ns_required: v1alpha1 requires namespaceSelector; ClusterNetworkPolicy makes it
    optional, meaning every namespace."""
    pods = mapping(ctx, raw, field)
    no_unknown(ctx, pods, {"namespaceSelector", "podSelector"}, field)
    for part in ("namespaceSelector", "podSelector") if ns_required else ("podSelector",):
        if part not in pods:
            raise ctx.fail(f"{field}.{part}", "required")
    return (selector(ctx, pods.get("namespaceSelector"), f"{field}.namespaceSelector"),
            selector(ctx, pods["podSelector"], f"{field}.podSelector"))


# The peers of network-policy-api v0.1.0-v0.1.4 (v1alpha1 too, in the conformance files of
# those releases): `namespaces: {namespaceSelector: …}` and `pods: {namespaces:
# {namespaceSelector: …}, podSelector: …}`, flattened in v0.1.5 to a label selector and
# `pods: {namespaceSelector, podSelector}`. The two shapes share no key, so either is read.
_NAMESPACED_PEER = ("namespaceSelector", "sameLabels", "notSameLabels")


def _namespaced_peer(ctx: Ctx, raw: Any, field: str) -> Any:
    """The namespace selector of an early v1alpha1 NamespacedPeer (exactly one field)."""
    peer = mapping(ctx, raw, field)
    kind = _one_of(ctx, peer, _NAMESPACED_PEER, field, "a namespaced peer")
    if kind == "namespaceSelector":
        return selector(ctx, peer[kind], f"{field}.namespaceSelector")
    if kind in _NAMESPACED_PEER:
        raise ctx.fail(f"{field}.{kind}", "namespaces chosen by their labels' sameness to the "
                                          "subject's (an early v1alpha1 field, removed in "
                                          "network-policy-api v0.1.5) are not supported by "
                                          "this version; name them with namespaceSelector")
    raise ctx.fail(f"{field}.{kind}", "unknown field")


def _early_shape(value: Any, keys: tuple[str, ...]) -> bool:
    return isinstance(value, dict) and any(k in value for k in keys)


def _peer_pods(ctx: Ctx, raw: Any, field: str, ns_required: bool) -> tuple[Any, Any]:
    """A `pods` peer's (namespace selector, pod selector), in either v1alpha1 shape."""
    if ns_required and _early_shape(raw, ("namespaces",)):
        no_unknown(ctx, raw, {"namespaces", "podSelector"}, field)
        if "podSelector" not in raw:
            raise ctx.fail(f"{field}.podSelector", "required")
        return (_namespaced_peer(ctx, raw["namespaces"], f"{field}.namespaces"),
                selector(ctx, raw["podSelector"], f"{field}.podSelector"))
    return _namespaced_pods(ctx, raw, field, ns_required)


def subject(ctx: Ctx, spec: dict[str, Any], ns_required: bool = True) -> Subject:
    raw = mapping(ctx, spec.get("subject"), "spec.subject")
    kind = _one_of(ctx, raw, ("namespaces", "pods"), "spec.subject", "the subject")
    if kind == "namespaces":
        return Subject(MATCH_ALL, namespace_selector=selector(ctx, raw["namespaces"],
                                                              "spec.subject.namespaces"))
    if kind == "pods":
        ns_sel, pod_sel = _namespaced_pods(ctx, raw["pods"], "spec.subject.pods", ns_required)
        return Subject(pod_sel, namespace_selector=ns_sel)
    raise ctx.fail(f"spec.subject.{kind}", "unknown field")


def _peers(ctx: Ctx, raw: Any, field: str, known: tuple[str, ...], action: Action,
           notes: Notes, max_peers: int, ns_required: bool
           ) -> tuple[tuple[Peer, ...], set[str]]:
    """The peers of one rule, and which kinds of peer it names."""
    items = as_list(ctx, raw, field)
    if not items:
        raise ctx.fail(field, "must list at least one peer")
    if len(items) > max_peers:
        raise ctx.fail(field, f"lists {len(items)} peers, more than {max_peers}")
    peers: list[Peer] = []
    kinds: set[str] = set()
    for j, item in enumerate(items):
        f = f"{field}[{j}]"
        item = mapping(ctx, item, f)
        kind = _one_of(ctx, item, known, f, "a peer")
        kinds.add(kind)
        value = item[kind]
        if kind == "namespaces":
            ns_sel = (_namespaced_peer(ctx, value, f"{f}.namespaces")
                      if ns_required and _early_shape(value, _NAMESPACED_PEER)
                      else selector(ctx, value, f"{f}.namespaces"))
            peers.append(PodPeer(MATCH_ALL, namespace_selector=ns_sel))
        elif kind == "pods":
            ns_sel, pod_sel = _peer_pods(ctx, value, f"{f}.pods", ns_required)
            peers.append(PodPeer(pod_sel, namespace_selector=ns_sel))
        elif kind == "nodes":
            peers.append(NodePeer(selector(ctx, value, f"{f}.nodes")))
        elif kind == "networks":
            peers += _networks(ctx, value, f"{f}.networks")
        elif kind == "domainNames":
            peers += _domains(ctx, value, f"{f}.domainNames")
        else:
            # a peer of a newer API: fail closed
            notes.lines.append(f"{ctx.doc.path}: {ctx.doc.where}: {f}.{kind}: unknown peer; "
                               f"the {action} rule fails closed (matches "
                               f"{'nothing' if action == 'allow' else 'everything'})")
            if action != "allow":
                peers.append(AnyPeer())
    return tuple(peers), kinds


def _networks(ctx: Ctx, raw: Any, field: str) -> list[Peer]:
    items = as_list(ctx, raw, field)
    if not items or len(items) > MAX_NETWORKS:
        raise ctx.fail(field, f"must list 1 to {MAX_NETWORKS} CIDRs, got {len(items)}")
    out: list[Peer] = []
    for k, text in enumerate(items):
        try:
            out.append(CidrPeer(parse_cidr(str(text)).text))
        except ValueError:
            raise ctx.fail(f"{field}[{k}]", f"invalid CIDR {text!r}") from None
    return out


def _domains(ctx: Ctx, raw: Any, field: str) -> list[Peer]:
    items = as_list(ctx, raw, field)
    if not items or len(items) > MAX_NETWORKS:
        raise ctx.fail(field, f"must list 1 to {MAX_NETWORKS} names, got {len(items)}")
    out: list[Peer] = []
    for k, name in enumerate(items):
        if not isinstance(name, str) or not _DOMAIN.fullmatch(name):
            raise ctx.fail(f"{field}[{k}]", f"invalid domain name {name!r} (a DNS name, "
                                            "optionally behind '*.')")
        out.append(DomainPeer(name.lower().rstrip(".")))
    return out


def _protocol(ctx: Ctx, raw: dict[str, Any], field: str) -> str:
    proto = raw.get("protocol", "TCP")
    if proto not in PROTOCOLS:
        raise ctx.fail(f"{field}.protocol", f"unsupported protocol {proto!r}; expected one "
                                            f"of {', '.join(PROTOCOLS)}")
    return str(proto)


def _port_number(ctx: Ctx, value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ctx.fail(field, f"must be a port number 1-65535, got {value!r}")
    return value


def _named(ctx: Ctx, value: Any, field: str) -> PortMatch:
    if not isinstance(value, str) or not valid_port_name(value):
        raise ctx.fail(field, f"invalid port name {value!r}")
    # the destination pod's container port of that name, whatever its protocol
    return PortMatch(None, name=value)


def _range(ctx: Ctx, raw: Any, field: str, protocol: str) -> PortMatch:
    raw = mapping(ctx, raw, field)
    start = _port_number(ctx, raw.get("start"), f"{field}.start")
    end = _port_number(ctx, raw.get("end"), f"{field}.end")
    if start >= end:
        raise ctx.fail(field, f"start ({start}) must be less than end ({end})")
    return PortMatch(protocol, start, end)


def ports_v1alpha1(ctx: Ctx, raw: Any, field: str) -> tuple[PortMatch, ...]:
    """`ports`: portNumber {protocol, port} | namedPort | portRange {protocol, start,
    end}."""
    items = as_list(ctx, raw, field)
    if len(items) > MAX_PORTS:
        raise ctx.fail(field, f"lists {len(items)} ports, more than {MAX_PORTS}")
    out = []
    for j, item in enumerate(items):
        f = f"{field}[{j}]"
        item = mapping(ctx, item, f)
        kind = _one_of(ctx, item, ("portNumber", "namedPort", "portRange"), f, "a port")
        if kind == "portNumber":
            pn = mapping(ctx, item[kind], f"{f}.portNumber")
            no_unknown(ctx, pn, {"protocol", "port"}, f"{f}.portNumber")
            port = _port_number(ctx, pn.get("port"), f"{f}.portNumber.port")
            out.append(PortMatch(_protocol(ctx, pn, f"{f}.portNumber"), port, port))
        elif kind == "namedPort":
            out.append(_named(ctx, item[kind], f"{f}.namedPort"))
        elif kind == "portRange":
            pr = mapping(ctx, item[kind], f"{f}.portRange")
            no_unknown(ctx, pr, {"protocol", "start", "end"}, f"{f}.portRange")
            out.append(_range(ctx, pr, f"{f}.portRange", _protocol(ctx, pr, f"{f}.portRange")))
        else:
            raise ctx.fail(f"{f}.{kind}", "unknown field")
    return tuple(out)


def protocols_v1alpha2(ctx: Ctx, raw: Any, field: str) -> tuple[PortMatch, ...]:
    """`protocols`: tcp|udp|sctp {destinationPort: {number} | {range: {start, end}}} (no
    destinationPort: every port of the protocol) | destinationNamedPort."""
    items = as_list(ctx, raw, field)
    if len(items) > MAX_PORTS:
        raise ctx.fail(field, f"lists {len(items)} protocols, more than {MAX_PORTS}")
    out = []
    for j, item in enumerate(items):
        f = f"{field}[{j}]"
        item = mapping(ctx, item, f)
        kind = _one_of(ctx, item, ("tcp", "udp", "sctp", "destinationNamedPort"), f,
                       "a protocol")
        if kind == "destinationNamedPort":
            out.append(_named(ctx, item[kind], f"{f}.destinationNamedPort"))
            continue
        if kind not in ("tcp", "udp", "sctp"):
            raise ctx.fail(f"{f}.{kind}", f"unsupported protocol {kind!r}; expected tcp, "
                                          "udp or sctp")
        proto = kind.upper()
        body = mapping(ctx, item[kind], f"{f}.{kind}")
        no_unknown(ctx, body, {"destinationPort"}, f"{f}.{kind}")
        if body.get("destinationPort") is None:
            out.append(PortMatch(proto))
            continue
        dp = mapping(ctx, body["destinationPort"], f"{f}.{kind}.destinationPort")
        which = _one_of(ctx, dp, ("number", "range"), f"{f}.{kind}.destinationPort",
                        "a destination port")
        if which == "number":
            n = _port_number(ctx, dp["number"], f"{f}.{kind}.destinationPort.number")
            out.append(PortMatch(proto, n, n))
        elif which == "range":
            rng = mapping(ctx, dp["range"], f"{f}.{kind}.destinationPort.range")
            no_unknown(ctx, rng, {"start", "end"}, f"{f}.{kind}.destinationPort.range")
            out.append(_range(ctx, rng, f"{f}.{kind}.destinationPort.range", proto))
        else:
            raise ctx.fail(f"{f}.{kind}.destinationPort.{which}", "unknown field")
    return tuple(out)


PortsReader = Callable[[Ctx, Any, str], tuple[PortMatch, ...]]


def rules(ctx: Ctx, spec: dict[str, Any], direction: Direction, *, actions: dict[str, Action],
          peer_fields: tuple[str, ...], max_rules: int, ports: dict[str, PortsReader],
          notes: Notes, max_peers: int = MAX_PEERS, ns_required: bool = True
          ) -> tuple[Rule, ...]:
    """One direction's rules. actions: the spelled action -> the IR's; ports: the rule
    field -> its reader (`ports` and/or `protocols`); max_peers: per rule;
    ns_required: whether a pods peer must name its namespaceSelector (v1alpha1, which also
    reads the peers' early shapes)."""
    peers_key = "from" if direction == "ingress" else "to"
    items = as_list(ctx, spec.get(direction), f"spec.{direction}")
    if len(items) > max_rules:
        raise ctx.fail(f"spec.{direction}", f"lists {len(items)} rules, more than "
                                            f"{max_rules}")
    out = []
    for i, raw in enumerate(items):
        f = f"spec.{direction}[{i}]"
        raw = mapping(ctx, raw, f)
        no_unknown(ctx, raw, {"name", "action", peers_key, *ports}, f)
        name = raw.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 100):
            raise ctx.fail(f"{f}.name", f"must be a string of at most 100 characters, "
                                        f"got {name!r}")
        spelled = raw.get("action")
        if spelled not in actions:
            raise ctx.fail(f"{f}.action", f"unsupported action {spelled!r}; expected one of "
                                          f"{', '.join(actions)}")
        action = actions[spelled]
        peers, kinds = _peers(ctx, raw.get(peers_key), f"{f}.{peers_key}", peer_fields,
                              action, notes, max_peers, ns_required)
        port_fields = [k for k in ports if raw.get(k) is not None]
        if len(port_fields) > 1:
            raise ctx.fail(f, f"may set only one of {', '.join(ports)}")
        matches = (ports[port_fields[0]](ctx, raw[port_fields[0]], f"{f}.{port_fields[0]}")
                   if port_fields else ())
        if any(m.name for m in matches) and kinds & set(_NO_PODS):
            raise ctx.fail(f"{f}.{port_fields[0]}", "a named port cannot be used with "
                                                    f"{', '.join(sorted(kinds & set(_NO_PODS)))} "
                                                    "peers")
        out.append(Rule(direction, i, action, peers, matches or (ANY_PORT,), name))
    return tuple(out)


def cluster_name(ctx: Ctx, meta: dict[str, Any]) -> str:
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ctx.fail("metadata.name", "missing")
    if not valid_dns_subdomain(name):
        raise ctx.fail("metadata.name", f"invalid name {name!r}")
    return name
