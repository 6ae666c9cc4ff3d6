"""networking.k8s.io/v1 NetworkPolicy: validate as the API server does, compile to IR."""

from __future__ import annotations

from typing import Any

from ..documents import Document
from ..ipnet import parse_cidr
from .common import (
    Ctx,
    as_list,
    mapping,
    no_unknown,
    policy_namespace,
    selector,
    valid_dns_subdomain,
    valid_port_name,
)
from .ir import (
    ANY_PORT,
    AnyPeer,
    CidrPeer,
    Direction,
    Peer,
    PodPeer,
    Policy,
    PortMatch,
    Rule,
    Subject,
)

API_VERSION = "networking.k8s.io/v1"
KIND = "NetworkPolicy"
PROTOCOLS = ("TCP", "UDP", "SCTP")

_SPEC_FIELDS = {"podSelector", "policyTypes", "ingress", "egress"}
_RULE_FIELDS = {"ingress": {"from", "ports"}, "egress": {"to", "ports"}}
_PEER_FIELDS = {"podSelector", "namespaceSelector", "ipBlock"}
_PORT_FIELDS = {"protocol", "port", "endPort"}

def _peer(ctx: Ctx, raw: Any, field: str, namespace: str) -> Peer:
    raw = mapping(ctx, raw, field)
    no_unknown(ctx, raw, _PEER_FIELDS, field)
    present = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if k in raw]
    if not present:
        raise ctx.fail(field, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
    if "ipBlock" in raw:
        if len(present) > 1:
            raise ctx.fail(field, "ipBlock may not be combined with podSelector or "
                                  "namespaceSelector")
        block = mapping(ctx, raw["ipBlock"], f"{field}.ipBlock")
        no_unknown(ctx, block, {"cidr", "except"}, f"{field}.ipBlock")
        cidr_text = block.get("cidr")
        try:
            cidr = parse_cidr(str(cidr_text)) if cidr_text else None
        except ValueError:
            cidr = None
        if cidr is None:
            raise ctx.fail(f"{field}.ipBlock.cidr", f"invalid CIDR {cidr_text!r}")
        excepts = []
        for j, ex_text in enumerate(as_list(ctx, block.get("except"),
                                          f"{field}.ipBlock.except")):
            f = f"{field}.ipBlock.except[{j}]"
            try:
                ex = parse_cidr(str(ex_text))
            except ValueError:
                raise ctx.fail(f, f"invalid CIDR {ex_text!r}") from None
            inside = ex.family == cidr.family and cidr.lo <= ex.lo and ex.hi <= cidr.hi
            if not inside or (ex.lo, ex.hi) == (cidr.lo, cidr.hi):
                raise ctx.fail(f, f"{ex_text!r} must be a strict subset of cidr {cidr_text!r}")
            excepts.append(ex.text)
        return CidrPeer(cidr.text, tuple(excepts))
    pods = selector(ctx, raw.get("podSelector"), f"{field}.podSelector")
    if "namespaceSelector" in raw:
        ns_sel = selector(ctx, raw.get("namespaceSelector"), f"{field}.namespaceSelector")
        return PodPeer(pods, namespace_selector=ns_sel)
    return PodPeer(pods, namespace=namespace)


def _port(ctx: Ctx, raw: Any, field: str) -> PortMatch:
    raw = mapping(ctx, raw, field)
    no_unknown(ctx, raw, _PORT_FIELDS, field)
    protocol = raw.get("protocol", "TCP")
    if protocol not in PROTOCOLS:
        raise ctx.fail(f"{field}.protocol", f"unsupported protocol {protocol!r}; "
                                            f"expected one of {', '.join(PROTOCOLS)}")
    port, end = raw.get("port"), raw.get("endPort")
    if end is not None:
        if isinstance(end, bool) or not isinstance(end, int):
            raise ctx.fail(f"{field}.endPort", f"must be an integer, got {end!r}")
        if port is None or isinstance(port, str):
            raise ctx.fail(f"{field}.endPort", "may only be set with a numeric port")
    if port is None:
        return PortMatch(protocol)
    if isinstance(port, bool) or not isinstance(port, int | str):
        raise ctx.fail(f"{field}.port", f"must be a number or a port name, got {port!r}")
    if isinstance(port, str):
        if not valid_port_name(port):
            raise ctx.fail(f"{field}.port", f"invalid port name {port!r} (1-15 lowercase "
                                            "letters, digits and '-', with a letter)")
        return PortMatch(protocol, name=port)
    if not 1 <= port <= 65535:
        raise ctx.fail(f"{field}.port", f"must be between 1 and 65535, got {port}")
    if end is not None and not port <= end <= 65535:
        raise ctx.fail(f"{field}.endPort", f"must be between port ({port}) and 65535, "
                                           f"got {end}")
    return PortMatch(protocol, port, end if end is not None else port)


def _rules(ctx: Ctx, spec: dict[str, Any], direction: Direction,
           namespace: str) -> tuple[Rule, ...]:
    peers_key = "from" if direction == "ingress" else "to"
    rules = []
    for i, raw in enumerate(as_list(ctx, spec.get(direction), f"spec.{direction}")):
        field = f"spec.{direction}[{i}]"
        raw = mapping(ctx, raw, field)
        no_unknown(ctx, raw, _RULE_FIELDS[direction], field)
        peers = tuple(_peer(ctx, p, f"{field}.{peers_key}[{j}]", namespace)
                      for j, p in enumerate(as_list(ctx, raw.get(peers_key),
                                                  f"{field}.{peers_key}")))
        ports = tuple(_port(ctx, p, f"{field}.ports[{j}]")
                      for j, p in enumerate(as_list(ctx, raw.get("ports"), f"{field}.ports")))
        rules.append(Rule(direction, i, "allow", peers or (AnyPeer(),), ports or (ANY_PORT,)))
    return tuple(rules)


def compile_networkpolicy(doc: Document) -> Policy:
    ctx = Ctx(doc)
    obj = doc.obj
    meta = mapping(ctx, obj.get("metadata"), "metadata")
    name = meta.get("name")
    if not name or not isinstance(name, str):
        raise ctx.fail("metadata.name", "missing")
    if not valid_dns_subdomain(name):
        raise ctx.fail("metadata.name", f"invalid name {name!r} (a DNS subdomain: lowercase "
                                        "letters, digits, '-' and '.')")
    namespace = policy_namespace(ctx, meta)
    spec = mapping(ctx, obj.get("spec"), "spec")
    no_unknown(ctx, spec, _SPEC_FIELDS, "spec")
    subject = Subject(selector(ctx, spec.get("podSelector"), "spec.podSelector"), namespace)
    types = as_list(ctx, spec.get("policyTypes"), "spec.policyTypes")
    if types:
        if len(types) > 2 or len(set(types)) != len(types):
            raise ctx.fail("spec.policyTypes", "may list Ingress and Egress once each")
        for t in types:
            if t not in ("Ingress", "Egress"):
                raise ctx.fail("spec.policyTypes", f"unsupported value {t!r}; "
                                                   "expected Ingress or Egress")
        isolates = frozenset(t.lower() for t in types)
    else:
        # API server defaulting (also for `policyTypes: []`): Ingress always; Egress only
        # when egress rules exist.
        isolates = frozenset(["ingress"] + (["egress"] if spec.get("egress") else []))
    rules = _rules(ctx, spec, "ingress", namespace) + _rules(ctx, spec, "egress", namespace)
    return Policy(
        dialect="networkpolicy", tier="namespace", priority=0, namespace=namespace,
        name=name, source=f"{doc.path}:{doc.where}", subject=subject,
        isolates=isolates, rules=tuple(r for r in rules if r.direction in isolates),
    )
