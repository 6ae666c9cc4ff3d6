"""cilium.io/v2 CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (L3/L4), and the
CiliumCIDRGroups their `cidrGroupRef`s name: validated as the CRD and the agent do,
compiled to the IR with Cilium's semantics.

What differs from NetworkPolicy, each a trap:
- each item of `spec`/`specs` is a rule set of its own (one IR Policy each);
- an endpoint selected by a rule set with a non-empty ingress (or ingressDeny) section
  is default-deny for ingress, unless `enableDefaultDeny.ingress` is false (egress alike);
- deny rules (ingressDeny/egressDeny) win over every allow, in any policy;
- a rule without any L3 field admits its ports from/to every peer; `- {}` admits nothing;
- selector keys carry a source (`k8s:`, `any:`, `reserved:` ...); Cilium's identity
  labels (`io.kubernetes.pod.namespace`, `io.cilium.k8s.namespace.labels.*`,
  `io.cilium.k8s.policy.serviceaccount`/`.cluster`) live in their own key space here
  (DERIVED_PREFIX) so that NetworkPolicy selectors never see them;
- in a CiliumNetworkPolicy, the subject is always the policy's namespace, and an
  endpoint peer too unless its selector names the namespace (or namespace labels);
- CIDR rules only ever match addresses outside the cluster;
- a port without protocol means every L4 protocol (TCP, UDP, SCTP), not TCP.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import Any

from ..documents import Document
from .common import (
    Ctx,
    as_list,
    expression,
    label_string,
    mapping,
    no_unknown,
    policy_namespace,
    valid_dns_label,
    valid_dns_subdomain,
    valid_label_key,
    valid_label_value,
)
from .ir import (
    ANY_PORT,
    ENTITIES,
    MATCH_ALL,
    AnyPeer,
    CidrPeer,
    Direction,
    DomainPeer,
    EntityPeer,
    NodePeer,
    Peer,
    PodPeer,
    Policy,
    PortMatch,
    Requirement,
    Rule,
    Selector,
    ServicePeer,
    Subject,
    expand_peers,
)
from .npapi import Notes

API_VERSION = "cilium.io/v2"
CNP = "CiliumNetworkPolicy"
CCNP = "CiliumClusterwideNetworkPolicy"
CIDR_GROUP_VERSIONS = ("cilium.io/v2alpha1", "cilium.io/v2")
CIDR_GROUP = "CiliumCIDRGroup"
DIALECT = "cilium"

# Where Cilium's identity labels live among an identity's labels (catalog.py writes
# them; a Kubernetes label key cannot contain ':', so nothing else lands here).
DERIVED_PREFIX = "cilium:"
NS_LABEL = "io.kubernetes.pod.namespace"
NS_LABELS_PREFIX = "io.cilium.k8s.namespace.labels."
SA_LABEL = "io.cilium.k8s.policy.serviceaccount"
CLUSTER_LABEL = "io.cilium.k8s.policy.cluster"
_DERIVED = (NS_LABEL, SA_LABEL, CLUSTER_LABEL)
# label sources a selector key may name; `any` (the default) matches all of them
_SOURCES = ("k8s", "any", "reserved", "container", "cidr", "fqdn", "unspec", "cilium-generated")
_POD_SOURCES = ("k8s", "any", "unspec")

_SPEC_FIELDS = {"endpointSelector", "nodeSelector", "ingress", "ingressDeny", "egress",
                "egressDeny", "labels", "description", "enableDefaultDeny", "log"}
_SECTIONS: tuple[tuple[str, Direction, str], ...] = (
    ("ingress", "ingress", "allow"), ("ingressDeny", "ingress", "deny"),
    ("egress", "egress", "allow"), ("egressDeny", "egress", "deny"))
_L3_INGRESS = ("fromEndpoints", "fromEntities", "fromCIDR", "fromCIDRSet", "fromNodes",
               "fromGroups")
_L3_EGRESS = ("toEndpoints", "toEntities", "toCIDR", "toCIDRSet", "toNodes", "toGroups",
              "toServices", "toFQDNs")
_RULE_FIELDS = {
    "ingress": {*_L3_INGRESS, "fromRequires", "toPorts", "icmps", "authentication"},
    "egress": {*_L3_EGRESS, "toRequires", "toPorts", "icmps", "authentication"},
}
_PROTOCOLS = {"TCP": ("TCP",), "UDP": ("UDP",), "SCTP": ("SCTP",),
              "ANY": ("TCP", "UDP", "SCTP"), "ICMP": ("ICMP",), "ICMPV6": ("ICMPv6",)}
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_FQDN_NAME = re.compile(r"[-a-zA-Z0-9_.]+\.?")
_FQDN_PATTERN = re.compile(r"[-a-zA-Z0-9_.*]+\.?")


# ---- selectors --------------------------------------------------------------------------

def _split_key(key: str) -> tuple[str, str]:
    """(source, key) of a selector key: `k8s:app` -> (k8s, app); no source: any."""
    source, sep, rest = key.partition(":")
    if sep and source in _SOURCES:
        return source, rest
    return "any", key


def pod_key(key: str) -> str:
    """Where a (source-less) key of a pod selector lives among identity labels."""
    if key in _DERIVED or key.startswith(NS_LABELS_PREFIX):
        return DERIVED_PREFIX + key
    return key


class _Sel:
    """A Cilium endpoint selector as read: pod requirements, reserved (entity) names,
    and whether it names the namespace or namespace labels (for scoping)."""

    def __init__(self) -> None:
        self.reqs: list[Requirement] = []
        self.reserved: list[str] = []
        self.names_namespace = False
        self.names_ns_labels = False

    def selector(self, pin_namespace: bool = False) -> Selector:
        """pin_namespace: the agent sets the namespace match itself (a subject), replacing
        whatever the selector says."""
        reqs = [r for r in self.reqs
                if not (pin_namespace and r.key == DERIVED_PREFIX + NS_LABEL and r.op == "In")]
        return Selector(tuple(sorted(set(reqs), key=lambda r: (r.key, r.op, r.values))))


def _cilium_selector(ctx: Ctx, raw: Any, field: str) -> _Sel:
    raw = mapping(ctx, raw, field)
    no_unknown(ctx, raw, {"matchLabels", "matchExpressions"}, field)
    out = _Sel()

    def key_of(key: Any, f: str) -> str | None:
        if not isinstance(key, str):
            raise ctx.fail(f, f"invalid label key {key!r}")
        source, name = _split_key(key)
        if source == "reserved":
            out.reserved.append(name)
            return None
        if not valid_label_key(name):
            raise ctx.fail(f, f"invalid label key {key!r}")
        if name == NS_LABEL:
            out.names_namespace = True
        if name.startswith(NS_LABELS_PREFIX):
            out.names_ns_labels = True
        if source not in _POD_SOURCES:
            # a label of another source (container, cidr, fqdn): no pod carries it
            return f"{DERIVED_PREFIX}{source}:{name}"
        return pod_key(name)

    for key, value in mapping(ctx, raw.get("matchLabels"), f"{field}.matchLabels").items():
        value = label_string(ctx, "" if value is None else value,
                             f"{field}.matchLabels.{key}")
        k = key_of(key, f"{field}.matchLabels")
        if k is None:
            continue
        if not valid_label_value(value):
            raise ctx.fail(f"{field}.matchLabels.{key}", f"invalid label value {value!r}")
        out.reqs.append(Requirement(k, "In", (value,)))
    for i, expr in enumerate(as_list(ctx, raw.get("matchExpressions"),
                                   f"{field}.matchExpressions")):
        f = f"{field}.matchExpressions[{i}]"
        raw_key, op, values = expression(ctx, expr, f)
        k = key_of(raw_key, f"{f}.key")
        if k is not None:
            out.reqs.append(Requirement(k, op, tuple(sorted(set(values)))))
    return out


def _endpoint_peers(ctx: Ctx, raw: Any, field: str, namespace: str | None,
                    requires: bool = False) -> list[Peer]:
    """fromEndpoints/toEndpoints: pods, scoped as the agent scopes them; a selector of
    `reserved:` labels names entities instead. requires: read fromRequires/toRequires
    (pods only)."""
    out: list[Peer] = []
    for j, item in enumerate(as_list(ctx, raw, field)):
        sel = _cilium_selector(ctx, item, f"{field}[{j}]")
        if sel.reserved:
            for name in sel.reserved:
                if name not in ENTITIES:
                    raise ctx.fail(f"{field}[{j}]", f"unknown reserved label {name!r}")
            # every reserved label must hold: entities do not overlap but `all`
            if len(sel.reserved) == 1 and not sel.reqs and not requires:
                out.append(EntityPeer(sel.reserved[0], requirable=True))
            elif requires:  # a requirement no pod meets
                out.append(PodPeer(Selector((Requirement(DERIVED_PREFIX + "reserved",
                                                         "Exists"),)),
                                   namespace_selector=MATCH_ALL))
            continue  # reserved labels together with pod labels: nothing carries both
        if sel.names_namespace or namespace is None or sel.names_ns_labels:
            out.append(PodPeer(sel.selector(), namespace_selector=MATCH_ALL,
                               requirable=not requires))
        else:
            out.append(PodPeer(sel.selector(), namespace=namespace, requirable=not requires))
    return out


def _node_selector(ctx: Ctx, raw: Any, field: str) -> Selector:
    sel = _cilium_selector(ctx, raw, field)
    reqs = [Requirement(r.key.removeprefix(DERIVED_PREFIX), r.op, r.values) for r in sel.reqs]
    return Selector(tuple(sorted(set(reqs), key=lambda r: (r.key, r.op, r.values))))


# ---- CIDRs, FQDNs, services ---------------------------------------------------------------

def _network(ctx: Ctx, text: Any, field: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(text, str) or "%" in text:
        raise ctx.fail(field, f"invalid CIDR {text!r}")
    try:
        return ipaddress.ip_network(text.strip() if "/" in text else
                                    text.strip() + ("/32" if ":" not in text else "/128"),
                                    strict=False)
    except ValueError:
        raise ctx.fail(field, f"invalid CIDR {text!r}") from None


def _cidr_peer(ctx: Ctx, cidr: Any, excepts: list[Any] | None, field: str) -> CidrPeer:
    net = _network(ctx, cidr, f"{field}.cidr" if excepts is not None else field)
    out = []
    for k, e in enumerate(excepts or []):
        x = _network(ctx, e, f"{field}.except[{k}]")
        if x.version != net.version or not x.subnet_of(net):  # type: ignore[arg-type]
            raise ctx.fail(f"{field}.except[{k}]", f"{e!r} is not inside {cidr!r}")
        out.append(str(x))
    return CidrPeer(str(net), tuple(out), world_only=True)


def _cidr_set(ctx: Ctx, raw: Any, field: str, groups: list[tuple[str, tuple[str, ...]]]
              ) -> list[Peer]:
    out: list[Peer] = []
    for j, item in enumerate(as_list(ctx, raw, field)):
        f = f"{field}[{j}]"
        item = mapping(ctx, item, f)
        no_unknown(ctx, item, {"cidr", "except", "cidrGroupRef", "cidrGroupSelector"}, f)
        present = [k for k in ("cidr", "cidrGroupRef", "cidrGroupSelector") if item.get(k)]
        if len(present) != 1:
            raise ctx.fail(f, "must set exactly one of cidr, cidrGroupRef, cidrGroupSelector")
        excepts = as_list(ctx, item.get("except"), f"{f}.except")
        if present[0] == "cidr":
            out.append(_cidr_peer(ctx, item["cidr"], excepts, f))
        elif present[0] == "cidrGroupRef":
            ref = item["cidrGroupRef"]
            if not isinstance(ref, str) or not valid_dns_subdomain(ref):
                raise ctx.fail(f"{f}.cidrGroupRef", f"invalid name {ref!r}")
            for k, e in enumerate(excepts):
                _network(ctx, e, f"{f}.except[{k}]")
            groups.append((ref, tuple(str(e) for e in excepts)))
        else:
            raise ctx.fail(f"{f}.cidrGroupSelector", "not supported (name the group with "
                                                     "cidrGroupRef)")
    return out


def fqdn_regex(pattern: str) -> str:
    """Cilium's matchPattern: `*` alone is every name; `**.` before a suffix one or more
    labels; any other `*` a run of name characters inside one label."""
    p = pattern.lower().rstrip(".")
    if p == "*":
        return r".+"
    prefix = ""
    if p.startswith("**."):
        prefix, p = r"([-a-z0-9_]+\.)+", p[3:]
    return prefix + r"\.".join(
        "[-a-z0-9_]*".join(re.escape(part) for part in label.split("*"))
        for label in p.split("."))


def _one_of(ctx: Ctx, raw: Any, f: str, fields: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """An item that must set exactly one of `fields` (unknown fields refused): the item
    and the field it sets."""
    item = mapping(ctx, raw, f)
    no_unknown(ctx, item, set(fields), f)
    present = [k for k in fields if item.get(k)]
    if len(present) != 1:
        raise ctx.fail(f, f"must set exactly one of {', '.join(fields)}")
    return item, present[0]


def _fqdns(ctx: Ctx, raw: Any, field: str) -> list[Peer]:
    out: list[Peer] = []
    for j, item in enumerate(as_list(ctx, raw, field)):
        f = f"{field}[{j}]"
        item, which = _one_of(ctx, item, f, ("matchName", "matchPattern"))
        text = item[which]
        rx = _FQDN_NAME if which == "matchName" else _FQDN_PATTERN
        if not isinstance(text, str) or len(text) > 255 or not rx.fullmatch(text):
            raise ctx.fail(f"{f}.{which}", f"invalid {which} {text!r}")
        name = text.lower().rstrip(".")
        out.append(DomainPeer(name, re.escape(name) if which == "matchName"
                              else fqdn_regex(text)))
    return out


def _services(ctx: Ctx, raw: Any, field: str, namespace: str | None) -> list[Peer]:
    out: list[Peer] = []
    for j, item in enumerate(as_list(ctx, raw, field)):
        f = f"{field}[{j}]"
        item, which = _one_of(ctx, item, f, ("k8sService", "k8sServiceSelector"))
        body = mapping(ctx, item[which], f"{f}.{which}")
        ns = body.get("namespace") or namespace
        if ns is not None and (not isinstance(ns, str) or not valid_dns_label(ns)):
            raise ctx.fail(f"{f}.{which}.namespace", f"invalid namespace {ns!r}")
        if which == "k8sService":
            no_unknown(ctx, body, {"serviceName", "namespace"}, f"{f}.k8sService")
            name = body.get("serviceName")
            if not isinstance(name, str) or not valid_dns_label(name):
                raise ctx.fail(f"{f}.k8sService.serviceName", f"invalid name {name!r}")
            out.append(ServicePeer(ns, name=name))
        else:
            no_unknown(ctx, body, {"selector", "namespace"}, f"{f}.k8sServiceSelector")
            sel = _cilium_selector(ctx, body.get("selector"), f"{f}.k8sServiceSelector.selector")
            reqs = [Requirement(r.key.removeprefix(DERIVED_PREFIX), r.op, r.values)
                    for r in sel.reqs]
            out.append(ServicePeer(ns, selector=Selector(tuple(sorted(
                set(reqs), key=lambda r: (r.key, r.op, r.values))))))
    return out


# ---- ports -------------------------------------------------------------------------------

def _ports(ctx: Ctx, raw: Any, field: str, deny: bool) -> tuple[list[PortMatch], bool]:
    """toPorts: the port matches, and whether L7 rules were given (not judged)."""
    out: list[PortMatch] = []
    l7 = False
    for j, rule in enumerate(as_list(ctx, raw, field)):
        f = f"{field}[{j}]"
        rule = mapping(ctx, rule, f)
        no_unknown(ctx, rule, {"ports"} if deny else
                   {"ports", "rules", "terminatingTLS", "originatingTLS", "serverNames",
                    "listener"}, f)
        if rule.get("rules") or rule.get("listener"):
            l7 = True
        items = as_list(ctx, rule.get("ports"), f"{f}.ports")
        if not items:
            out.append(ANY_PORT)
        for k, item in enumerate(items):
            out += _port(ctx, item, f"{f}.ports[{k}]")
    return out, l7


def _port(ctx: Ctx, raw: Any, field: str) -> list[PortMatch]:
    raw = mapping(ctx, raw, field)
    no_unknown(ctx, raw, {"port", "endPort", "protocol"}, field)
    proto = raw.get("protocol") or "ANY"
    if not isinstance(proto, str) or proto.upper() not in _PROTOCOLS:
        raise ctx.fail(f"{field}.protocol", f"unsupported protocol {proto!r}; expected one "
                                            "of TCP, UDP, SCTP, ICMP, ICMPv6, ANY")
    protocols = _PROTOCOLS[proto.upper()]
    if "port" not in raw:
        raise ctx.fail(f"{field}.port", "required: the Cilium agent refuses a port entry "
                                        "without one (\"0\" means every port)")
    port = raw["port"]
    end = raw.get("endPort")
    text = str(port).strip() if isinstance(port, (str, int)) and not isinstance(port, bool) \
        else None
    if text is None or text == "":
        raise ctx.fail(f"{field}.port", f"invalid port {port!r}")
    if not text.isdigit():
        if not _PORT_NAME.fullmatch(text) or len(text) > 15 or not re.search("[a-z]", text):
            raise ctx.fail(f"{field}.port", f"invalid port {port!r} (a number 0-65535 or "
                                            "a port name)")
        if end is not None:
            raise ctx.fail(f"{field}.endPort", "not allowed with a named port")
        if proto.upper() == "ANY":
            return [PortMatch(None, name=text)]
        return [PortMatch(p, name=text) for p in protocols]
    number = int(text)
    if not 0 <= number <= 65535:
        raise ctx.fail(f"{field}.port", f"must be between 0 and 65535, got {number}")
    if end is not None:
        if isinstance(end, bool) or not isinstance(end, int) or not 0 <= end <= 65535:
            raise ctx.fail(f"{field}.endPort", f"must be a port number 0-65535, got {end!r}")
        if number and end < number:
            raise ctx.fail(f"{field}.endPort", f"must not be below port ({number}), got {end}")
    if number == 0:  # every port of the protocol(s)
        return [PortMatch(p) for p in protocols]
    hi = end if end else number
    return [PortMatch(p, number, hi) if p not in ("ICMP", "ICMPv6") else PortMatch(p)
            for p in protocols]


def _icmps(ctx: Ctx, raw: Any, field: str) -> list[PortMatch]:
    out: list[PortMatch] = []
    for j, item in enumerate(as_list(ctx, raw, field)):
        f = f"{field}[{j}]"
        item = mapping(ctx, item, f)
        no_unknown(ctx, item, {"fields"}, f)
        for k, fld in enumerate(as_list(ctx, item.get("fields"), f"{f}.fields")):
            fld = mapping(ctx, fld, f"{f}.fields[{k}]")
            no_unknown(ctx, fld, {"type", "family"}, f"{f}.fields[{k}]")
            family = fld.get("family") or "IPv4"
            if family not in ("IPv4", "IPv6"):
                raise ctx.fail(f"{f}.fields[{k}].family", f"unsupported family {family!r}; "
                                                          "expected IPv4 or IPv6")
            if fld.get("type") is None:
                raise ctx.fail(f"{f}.fields[{k}].type", "required")
            # flow records carry no ICMP type: every type of the family matches
            out.append(PortMatch("ICMP" if family == "IPv4" else "ICMPv6"))
    return out


# ---- rules and rule sets -----------------------------------------------------------------

def _summary(raw: dict[str, Any], fields: tuple[str, ...]) -> str:
    """A rule's peers in a few words, as reasons quote them."""
    parts = []
    for f in fields:
        value = raw.get(f)
        if not value:
            continue
        if f.endswith("Entities"):
            parts.append(f"{f}: {', '.join(map(str, value))}")
        elif f.endswith("CIDR"):
            parts.append(f"{f}: {', '.join(map(str, value))}")
        elif f.endswith("CIDRSet"):
            parts.append(f"{f}: " + ", ".join(
                str(v.get("cidr") or v.get("cidrGroupRef")) + (
                    f" except {', '.join(map(str, v['except']))}" if v.get("except") else "")
                for v in value if isinstance(v, dict)))
        elif f == "toFQDNs":
            parts.append("toFQDNs: " + ", ".join(
                str(v.get("matchName") or v.get("matchPattern")) for v in value
                if isinstance(v, dict)))
        elif f.endswith("Endpoints"):
            parts.append(f"{f}: " + ", ".join(_selector_text(v) for v in value))
        else:
            parts.append(f)
    text = "; ".join(parts)
    return text if len(text) <= 160 else text[:157] + "..."


def _selector_text(raw: Any) -> str:
    if not isinstance(raw, dict):
        return "?"
    bits = [f"{k}={v}" for k, v in (raw.get("matchLabels") or {}).items()]
    bits += [f"{e.get('key')} {e.get('operator')}" for e in raw.get("matchExpressions") or []
             if isinstance(e, dict)]
    return "{" + ", ".join(bits) + "}" if bits else "{}"


def _rule(ctx: Ctx, raw: Any, field: str, direction: Direction, action: str, index: int,
          name: str, namespace: str | None, notes: Notes,
          groups: list[tuple[str, tuple[str, ...]]]) -> Rule:
    raw = mapping(ctx, raw, field)
    no_unknown(ctx, raw, _RULE_FIELDS[direction], field)
    deny = action == "deny"
    ingress = direction == "ingress"
    l3_fields = _L3_INGRESS if ingress else _L3_EGRESS
    # what the agent refuses to import (pkg/policy/api/rule_validation.go): the policy
    # would be applied and never enforced
    present = [f for f in l3_fields if raw.get(f)]
    if len(present) > 1:
        raise ctx.fail(f"{field}.{present[1]}", f"combined with {present[0]} in one rule: the "
                                                "Cilium agent refuses the policy (combining "
                                                "them is not supported); write one rule each")
    if raw.get("icmps") and raw.get("toPorts"):
        raise ctx.fail(f"{field}.icmps", "combined with toPorts in one rule: the Cilium agent "
                                         "refuses the policy; write one rule each")
    peers: list[Peer] = []
    eps = "fromEndpoints" if ingress else "toEndpoints"
    peers += _endpoint_peers(ctx, raw.get(eps), f"{field}.{eps}", namespace)
    ents = "fromEntities" if ingress else "toEntities"
    for j, e in enumerate(as_list(ctx, raw.get(ents), f"{field}.{ents}")):
        if e not in ENTITIES:
            raise ctx.fail(f"{field}.{ents}[{j}]", f"unknown entity {e!r}; expected one of "
                                                   f"{', '.join(ENTITIES)}")
        peers.append(EntityPeer(str(e)))
    cidr = "fromCIDR" if ingress else "toCIDR"
    for j, c in enumerate(as_list(ctx, raw.get(cidr), f"{field}.{cidr}")):
        peers.append(_cidr_peer(ctx, c, None, f"{field}.{cidr}[{j}]"))
    cset = "fromCIDRSet" if ingress else "toCIDRSet"
    before = len(groups)
    peers += _cidr_set(ctx, raw.get(cset), f"{field}.{cset}", groups)
    refs = groups[before:]
    nodes = "fromNodes" if ingress else "toNodes"
    for j, n in enumerate(as_list(ctx, raw.get(nodes), f"{field}.{nodes}")):
        # the agent adds `reserved:remote-node` to every node selector: never the own host
        peers.append(NodePeer(_node_selector(ctx, n, f"{field}.{nodes}[{j}]"),
                              remote_only=True))
    if not ingress:
        peers += _services(ctx, raw.get("toServices"), f"{field}.toServices", namespace)
        peers += _fqdns(ctx, raw.get("toFQDNs"), f"{field}.toFQDNs")
    grp = "fromGroups" if ingress else "toGroups"
    if raw.get(grp):
        notes.lines.append(f"{ctx.doc.path}: {ctx.doc.where}: {field}.{grp}: cloud security "
                           "groups cannot be resolved from a snapshot; the peer matches "
                           "nothing")
    req = "fromRequires" if ingress else "toRequires"
    if raw.get(req):
        notes.lines.append(f"{ctx.doc.path}: {ctx.doc.where}: {field}.{req} is deprecated "
                           "in Cilium; honoured: every endpoint peer of the selected pods' "
                           f"{'deny' if deny else 'allow'} rules must also meet it")
    has_l3 = any(raw.get(f) for f in l3_fields)
    ports, l7 = _ports(ctx, raw.get("toPorts"), f"{field}.toPorts", deny)
    ports += _icmps(ctx, raw.get("icmps"), f"{field}.icmps")
    has_l4 = bool(raw.get("toPorts") or raw.get("icmps"))
    if not has_l3 and has_l4:
        peers.append(AnyPeer())  # ports alone: from/to every peer
    detail = _summary(raw, l3_fields) or ("every peer" if has_l4 else "empty rule: matches "
                                                                      "nothing")
    if raw.get("toPorts"):
        detail += "; toPorts"
    if l7:
        detail += "; L7 rules not judged"
    rule = Rule(direction, index, action, tuple(peers),  # type: ignore[arg-type]
                tuple(ports) or (ANY_PORT,), name, detail)
    return _with_group_refs(rule, refs)


def _requirements(ctx: Ctx, raw: Any, field: str, direction: Direction, deny: bool,
                  index: int, name: str, namespace: str | None) -> list[Rule]:
    """A rule's fromRequires/toRequires, as `require` rules: each selector one rule whose
    pod peer every endpoint peer must also match (scoped as an endpoint peer is)."""
    key = "fromRequires" if direction == "ingress" else "toRequires"
    raw = mapping(ctx, raw, field)
    peers = _endpoint_peers(ctx, raw.get(key), f"{field}.{key}", namespace, requires=True)
    action = "require-deny" if deny else "require"
    return [Rule(direction, index + j, action, (p,), (ANY_PORT,),  # type: ignore[arg-type]
                 f"{name}.{key}[{j}]", None) for j, p in enumerate(peers)]


def _with_group_refs(rule: Rule, refs: list[tuple[str, tuple[str, ...]]]) -> Rule:
    """Keep the cidrGroupRefs of a rule as named placeholders (bind_cidr_groups)."""
    if not refs:
        return rule
    placeholders = tuple(CidrGroupRef(name, excepts) for name, excepts in refs)
    return replace(rule, peers=rule.peers + placeholders)  # type: ignore[operator]


@dataclass(frozen=True)
class CidrGroupRef:
    """A `cidrGroupRef` until its CiliumCIDRGroup is found (loader.merge_policy_files
    binds it to the group's CIDRs; a group that does not exist matches nothing, as in
    Cilium)."""

    group: str
    excepts: tuple[str, ...] = ()


def _rule_set(ctx: Ctx, spec: Any, field: str, kind: str, name: str, namespace: str | None,
              notes: Notes, prefix: str) -> Policy:
    spec = mapping(ctx, spec, field)
    no_unknown(ctx, spec, _SPEC_FIELDS, field)
    has_ep, has_node = spec.get("endpointSelector") is not None, \
        spec.get("nodeSelector") is not None
    if has_ep == has_node:
        raise ctx.fail(field, "must set exactly one of endpointSelector, nodeSelector")
    if not any(k in spec for k, _, _ in _SECTIONS):
        raise ctx.fail(field, "must set at least one of ingress, ingressDeny, egress, "
                              "egressDeny")
    if has_node:
        if kind == CNP:
            raise ctx.fail(f"{field}.nodeSelector", "only a CiliumClusterwideNetworkPolicy "
                                                    "may select nodes")
        subject = Subject(MATCH_ALL, node_selector=_node_selector(
            ctx, spec["nodeSelector"], f"{field}.nodeSelector"))
    else:
        sel = _cilium_selector(ctx, spec["endpointSelector"], f"{field}.endpointSelector")
        if sel.reserved:
            raise ctx.fail(f"{field}.endpointSelector", "reserved labels select no pod; "
                                                        "select nodes with nodeSelector")
        if namespace is not None:
            # the agent pins the subject to the policy's namespace, whatever it says
            subject = Subject(sel.selector(pin_namespace=True), namespace=namespace)
        else:
            subject = Subject(sel.selector(), namespace_selector=MATCH_ALL)
    dd = mapping(ctx, spec.get("enableDefaultDeny"), f"{field}.enableDefaultDeny")
    no_unknown(ctx, dd, {"ingress", "egress"}, f"{field}.enableDefaultDeny")
    rules: list[Rule] = []
    isolates: set[Direction] = set()
    applies: set[Direction] = set()
    groups: list[tuple[str, tuple[str, ...]]] = []
    index = {"ingress": 0, "egress": 0}
    for section, direction, action in _SECTIONS:
        items = as_list(ctx, spec.get(section), f"{field}.{section}")
        if not items:
            continue
        applies.add(direction)
        flag = dd.get(direction)
        if flag is not None and not isinstance(flag, bool):
            raise ctx.fail(f"{field}.enableDefaultDeny.{direction}", f"must be true or "
                                                                     f"false, got {flag!r}")
        if flag is not False:
            isolates.add(direction)
        for i, raw in enumerate(items):
            rules.append(_rule(ctx, raw, f"{field}.{section}[{i}]", direction, action,
                               index[direction], f"{prefix}{section}[{i}]", namespace, notes,
                               groups))
            index[direction] += 1
            required = _requirements(ctx, raw, f"{field}.{section}[{i}]", direction,
                                     action == "deny", index[direction],
                                     f"{prefix}{section}[{i}]", namespace)
            rules += required
            index[direction] += len(required)
    return Policy(
        dialect=DIALECT, tier="namespace", priority=0, namespace=namespace, name=name,
        source=f"{ctx.doc.path}:{ctx.doc.where}", subject=subject,
        isolates=frozenset(isolates), applies=frozenset(applies - isolates),
        rules=tuple(rules), kind=kind)


def compile_cilium(doc: Document, notes: Notes) -> list[Policy]:
    ctx = Ctx(doc)
    kind = str(doc.obj.get("kind"))
    meta = mapping(ctx, doc.obj.get("metadata"), "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not valid_dns_subdomain(name):
        raise ctx.fail("metadata.name", f"invalid name {name!r}")
    namespace: str | None = None
    if kind == CNP:
        namespace = policy_namespace(ctx, meta)
    spec, specs = doc.obj.get("spec"), doc.obj.get("specs")
    if spec is None and specs is None:
        raise ctx.fail("spec", "both spec and specs are missing")
    out = []
    if spec is not None:
        out.append(_rule_set(ctx, spec, "spec", kind, name, namespace, notes, ""))
    for i, item in enumerate(as_list(ctx, specs, "specs")):
        out.append(_rule_set(ctx, item, f"specs[{i}]", kind, name, namespace, notes,
                             f"specs[{i}]."))
    return out


def read_cidr_group(doc: Document) -> tuple[str, tuple[str, ...]]:
    """A CiliumCIDRGroup: its name and CIDRs."""
    ctx = Ctx(doc)
    meta = mapping(ctx, doc.obj.get("metadata"), "metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not valid_dns_subdomain(name):
        raise ctx.fail("metadata.name", f"invalid name {name!r}")
    spec = mapping(ctx, doc.obj.get("spec"), "spec")
    cidrs = []
    for j, c in enumerate(as_list(ctx, spec.get("externalCIDRs"), "spec.externalCIDRs")):
        cidrs.append(str(_network(ctx, c, f"spec.externalCIDRs[{j}]")))
    return name, tuple(cidrs)


def bind_cidr_groups(policy: Policy, groups: dict[str, tuple[str, ...]]) -> Policy:
    """Replace cidrGroupRef placeholders by the groups' CIDRs (minus the rule's
    excepts that fall inside each)."""
    def cidrs(ref: CidrGroupRef) -> list[Peer]:
        out: list[Peer] = []
        for c in groups.get(ref.group, ()):
            net = ipaddress.ip_network(c)
            inside = tuple(e for e in ref.excepts
                           if ipaddress.ip_network(e).version == net.version
                           and ipaddress.ip_network(e).subnet_of(net))  # type: ignore[arg-type]
            out.append(CidrPeer(c, inside, world_only=True))
        return out

    return expand_peers(policy, CidrGroupRef, cidrs)
