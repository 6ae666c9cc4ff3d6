"""networking.k8s.io/v1 NetworkPolicy: validate as the API server does, compile to IR."""

from __future__ import annotations

import re
from typing import Any

from ..documents import Document
from ..errors import PolicyError
from ..ipnet import parse_cidr
from .ir import (
    ANY_PORT,
    AnyPeer,
    CidrPeer,
    Direction,
    Peer,
    PodPeer,
    Policy,
    PortMatch,
    Requirement,
    Rule,
    Selector,
    Subject,
)

API_VERSION = "networking.k8s.io/v1"
KIND = "NetworkPolicy"
PROTOCOLS = ("TCP", "UDP", "SCTP")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")

_SPEC_FIELDS = {"podSelector", "policyTypes", "ingress", "egress"}
_RULE_FIELDS = {"ingress": {"from", "ports"}, "egress": {"to", "ports"}}
_PEER_FIELDS = {"podSelector", "namespaceSelector", "ipBlock"}
_PORT_FIELDS = {"protocol", "port", "endPort"}
_SELECTOR_FIELDS = {"matchLabels", "matchExpressions"}


class _Ctx:
    """Where we are inside one policy document, for error messages."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc

    def fail(self, field: str, message: str) -> PolicyError:
        return PolicyError(self.doc.path, f"{field}: {message}", self.doc.where)


def _valid_label_key(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, prefix)):
        return False
    return 0 < len(name) <= 63 and re.fullmatch(_NAME, name) is not None


def _valid_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and re.fullmatch(_NAME, value) is not None)


def _valid_port_name(name: str) -> bool:
    return (len(name) <= 15 and _PORT_NAME.fullmatch(name) is not None
            and "--" not in name and re.search("[a-z]", name) is not None)


def _mapping(ctx: _Ctx, value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.fail(field, "expected a mapping")
    return value


def _list(ctx: _Ctx, value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.fail(field, "expected a list")
    return value


def _no_unknown(ctx: _Ctx, obj: dict[str, Any], allowed: set[str], field: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ctx.fail(f"{field}.{unknown[0]}", "unknown field")


def _label_string(ctx: _Ctx, value: Any, field: str) -> str:
    # YAML turns `true`, `1.0` and friends into non-strings; the API server would refuse
    # them as label values (they must be strings), and so do we.
    if not isinstance(value, str):
        raise ctx.fail(field, f"must be a string, got {value!r}")
    return value


def selector(ctx: _Ctx, raw: Any, field: str) -> Selector:
    raw = _mapping(ctx, raw, field)
    _no_unknown(ctx, raw, _SELECTOR_FIELDS, field)
    reqs: list[Requirement] = []
    for key, value in _mapping(ctx, raw.get("matchLabels"), f"{field}.matchLabels").items():
        value = _label_string(ctx, value, f"{field}.matchLabels.{key}")
        if not isinstance(key, str) or not _valid_label_key(key):
            raise ctx.fail(f"{field}.matchLabels", f"invalid label key {key!r}")
        if not _valid_label_value(value):
            raise ctx.fail(f"{field}.matchLabels.{key}", f"invalid label value {value!r}")
        reqs.append(Requirement(str(key), "In", (value,)))
    for i, expr in enumerate(_list(ctx, raw.get("matchExpressions"),
                                   f"{field}.matchExpressions")):
        f = f"{field}.matchExpressions[{i}]"
        expr = _mapping(ctx, expr, f)
        _no_unknown(ctx, expr, {"key", "operator", "values"}, f)
        key, op = expr.get("key"), expr.get("operator")
        if not isinstance(key, str) or not _valid_label_key(key):
            raise ctx.fail(f"{f}.key", f"invalid label key {key!r}")
        if op not in OPERATORS:
            raise ctx.fail(f"{f}.operator", f"unsupported operator {op!r}; "
                                            f"expected one of {', '.join(OPERATORS)}")
        values = [_label_string(ctx, v, f"{f}.values[{j}]")
                  for j, v in enumerate(_list(ctx, expr.get("values"), f"{f}.values"))]
        if op in ("In", "NotIn") and not values:
            raise ctx.fail(f"{f}.values", f"must be non-empty when operator is {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise ctx.fail(f"{f}.values", f"must be empty when operator is {op}")
        for j, v in enumerate(values):
            if not _valid_label_value(v):
                raise ctx.fail(f"{f}.values[{j}]", f"invalid label value {v!r}")
        reqs.append(Requirement(key, op, tuple(sorted(set(values)))))
    return Selector(tuple(sorted(set(reqs), key=lambda r: (r.key, r.op, r.values))))


def _peer(ctx: _Ctx, raw: Any, field: str, namespace: str) -> Peer:
    raw = _mapping(ctx, raw, field)
    _no_unknown(ctx, raw, _PEER_FIELDS, field)
    present = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if k in raw]
    if not present:
        raise ctx.fail(field, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
    if "ipBlock" in raw:
        if len(present) > 1:
            raise ctx.fail(field, "ipBlock may not be combined with podSelector or "
                                  "namespaceSelector")
        block = _mapping(ctx, raw["ipBlock"], f"{field}.ipBlock")
        _no_unknown(ctx, block, {"cidr", "except"}, f"{field}.ipBlock")
        cidr_text = block.get("cidr")
        try:
            cidr = parse_cidr(str(cidr_text)) if cidr_text else None
        except ValueError:
            cidr = None
        if cidr is None:
            raise ctx.fail(f"{field}.ipBlock.cidr", f"invalid CIDR {cidr_text!r}")
        excepts = []
        for j, ex_text in enumerate(_list(ctx, block.get("except"),
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


def _port(ctx: _Ctx, raw: Any, field: str) -> PortMatch:
    raw = _mapping(ctx, raw, field)
    _no_unknown(ctx, raw, _PORT_FIELDS, field)
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
        if not _valid_port_name(port):
            raise ctx.fail(f"{field}.port", f"invalid port name {port!r} (1-15 lowercase "
                                            "letters, digits and '-', with a letter)")
        return PortMatch(protocol, name=port)
    if not 1 <= port <= 65535:
        raise ctx.fail(f"{field}.port", f"must be between 1 and 65535, got {port}")
    if end is not None and not port <= end <= 65535:
        raise ctx.fail(f"{field}.endPort", f"must be between port ({port}) and 65535, "
                                           f"got {end}")
    return PortMatch(protocol, port, end if end is not None else port)


def _rules(ctx: _Ctx, spec: dict[str, Any], direction: Direction,
           namespace: str) -> tuple[Rule, ...]:
    peers_key = "from" if direction == "ingress" else "to"
    rules = []
    for i, raw in enumerate(_list(ctx, spec.get(direction), f"spec.{direction}")):
        field = f"spec.{direction}[{i}]"
        raw = _mapping(ctx, raw, field)
        _no_unknown(ctx, raw, _RULE_FIELDS[direction], field)
        peers = tuple(_peer(ctx, p, f"{field}.{peers_key}[{j}]", namespace)
                      for j, p in enumerate(_list(ctx, raw.get(peers_key),
                                                  f"{field}.{peers_key}")))
        ports = tuple(_port(ctx, p, f"{field}.ports[{j}]")
                      for j, p in enumerate(_list(ctx, raw.get("ports"), f"{field}.ports")))
        rules.append(Rule(direction, i, "allow", peers or (AnyPeer(),), ports or (ANY_PORT,)))
    return tuple(rules)


def compile_networkpolicy(doc: Document) -> Policy:
    ctx = _Ctx(doc)
    obj = doc.obj
    meta = _mapping(ctx, obj.get("metadata"), "metadata")
    name = meta.get("name")
    if not name or not isinstance(name, str):
        raise ctx.fail("metadata.name", "missing")
    if len(name) > 253 or not re.fullmatch(_DNS_SUBDOMAIN, name):
        raise ctx.fail("metadata.name", f"invalid name {name!r} (a DNS subdomain: lowercase "
                                        "letters, digits, '-' and '.')")
    namespace = meta.get("namespace") or "default"
    if not isinstance(namespace, str) or len(namespace) > 63 or not re.fullmatch(
            _DNS_LABEL, namespace):
        raise ctx.fail("metadata.namespace", f"invalid namespace {namespace!r} (a DNS "
                                             "label: lowercase letters, digits and '-')")
    spec = _mapping(ctx, obj.get("spec"), "spec")
    _no_unknown(ctx, spec, _SPEC_FIELDS, "spec")
    subject = Subject(selector(ctx, spec.get("podSelector"), "spec.podSelector"), namespace)
    types = _list(ctx, spec.get("policyTypes"), "spec.policyTypes")
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
