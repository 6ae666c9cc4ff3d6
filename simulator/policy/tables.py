"""Flatten policy IR into the relational tables the SQL evaluator joins against.

Selectors are interned (one row set per distinct selector), so 12,000 policies that say
`podSelector: {}` cost one selector, not 12,000.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import duckdb
import pyarrow as pa

from .. import db
from ..ipnet import parse_cidr
from ..protocols import PROTOCOL_NUMBERS
from .ir import (
    AnyPeer,
    CidrPeer,
    DomainPeer,
    EntityPeer,
    NodePeer,
    PodPeer,
    Policy,
    Selector,
)

_POSITIVE = ("In", "Exists")


class _Rows:
    def __init__(self, *names: str) -> None:
        self.cols: dict[str, list[Any]] = {n: [] for n in names}

    def add(self, *values: Any) -> None:
        for col, v in zip(self.cols.values(), values, strict=True):
            col.append(v)

    def table(self, types: dict[str, pa.DataType]) -> pa.Table:
        return pa.table({n: pa.array(v, type=types.get(n, pa.string()))
                         for n, v in self.cols.items()})


I32 = pa.int32()


def domain_regex(pattern: str) -> str:
    """A domain-name peer of the network-policy API as a regular expression: `*.` stands
    for one or more whole labels."""
    if pattern.startswith("*."):
        return r"([-a-z0-9_]+\.)+" + re.escape(pattern[2:])
    return re.escape(pattern)


def display_name(p: Policy) -> str:
    """How reasons name a policy: ns/name for a NetworkPolicy; with its kind otherwise."""
    if p.dialect == "networkpolicy":
        return p.ref
    return f"{p.kind} {p.namespace}/{p.name}" if p.namespace else f"{p.kind} {p.name}"


def register_policy_tables(con: duckdb.DuckDBPyConnection,
                           sets: Iterable[tuple[str, list[Policy]]]) -> None:
    selectors: dict[Selector, int] = {}

    def sel_id(sel: Selector | None) -> int | None:
        if sel is None:
            return None
        return selectors.setdefault(sel, len(selectors))

    # display: how reasons name the policy
    pol = _Rows("pset", "pol_id", "ref", "namespace", "tier", "priority", "kind", "dialect",
                "display")
    # node_sel_id: a host policy's node selector (then pod_sel_id is NULL); isolates:
    # whether selecting the subject makes it default-deny in that direction
    target = _Rows("pset", "pol_id", "direction", "ns_fixed", "ns_sel_id", "pod_sel_id",
                   "node_sel_id", "isolates")
    rule = _Rows("pset", "rule_id", "pol_id", "direction", "rule_idx", "action", "name",
                 "detail")
    # pod_sel_id holds a node peer's node selector; pattern a domain peer's name as a
    # regular expression, or an entity's name; world_only: a CIDR that never matches
    # pods or nodes; requirable: a Cilium endpoint peer, which the subject's requirements
    # (fromRequires) constrain; remote_only: a node peer that never matches the subject
    # pod's own node
    peer = _Rows("rule_id", "peer_id", "kind", "ns_fixed", "ns_sel_id", "pod_sel_id",
                 "family", "lo", "hi", "pattern", "world_only", "requirable", "remote_only")
    exc = _Rows("peer_id", "family", "lo", "hi")
    port = _Rows("rule_id", "proto", "lo", "hi", "name")
    rule_id = peer_id = 0
    for pset, policies in sets:
        for pol_id, p in enumerate(policies):
            pol.add(pset, pol_id, p.ref, p.namespace, p.tier, p.priority, p.kind, p.dialect,
                    display_name(p))
            subj = p.subject
            for d in sorted(p.directions):
                node = subj.node_selector is not None
                target.add(pset, pol_id, d, subj.namespace, sel_id(subj.namespace_selector),
                           None if node else sel_id(subj.pod_selector),
                           sel_id(subj.node_selector), d in p.isolates)
            for r in p.rules:
                rule.add(pset, rule_id, pol_id, r.direction, r.index, r.action, r.name,
                         r.detail)
                for pr in r.peers:
                    if isinstance(pr, AnyPeer):
                        peer.add(rule_id, peer_id, "any", *[None] * 7, False, False, False)
                    elif isinstance(pr, PodPeer):
                        peer.add(rule_id, peer_id, "pods", pr.namespace,
                                 sel_id(pr.namespace_selector), sel_id(pr.pod_selector),
                                 None, None, None, None, False, pr.requirable, False)
                    elif isinstance(pr, CidrPeer):
                        c = parse_cidr(pr.cidr)
                        peer.add(rule_id, peer_id, "cidr", None, None, None, c.family, c.lo,
                                 c.hi, None, pr.world_only, False, False)
                        for e in pr.excepts:
                            x = parse_cidr(e)
                            exc.add(peer_id, x.family, x.lo, x.hi)
                    elif isinstance(pr, NodePeer):
                        peer.add(rule_id, peer_id, "nodes", None, None, sel_id(pr.selector),
                                 None, None, None, None, False, False, pr.remote_only)
                    elif isinstance(pr, DomainPeer):
                        peer.add(rule_id, peer_id, "domain", *[None] * 6,
                                 pr.regex or domain_regex(pr.pattern), False, False, False)
                    elif isinstance(pr, EntityPeer):
                        peer.add(rule_id, peer_id, "entity", *[None] * 6, pr.entity, False,
                                 pr.requirable, False)
                    else:  # unbound references (services, CIDR groups) never get here
                        raise TypeError(f"unbound peer {pr!r} in {p.source}")
                    peer_id += 1
                for pm in r.ports:
                    proto = PROTOCOL_NUMBERS[pm.protocol] if pm.protocol else None
                    port.add(rule_id, proto, pm.lo, pm.hi, pm.name)
                rule_id += 1
    sel = _Rows("sel_id", "n_pos")
    req = _Rows("sel_id", "req_idx", "key", "op", "vals")
    for s, sid in selectors.items():
        sel.add(sid, sum(r.op in _POSITIVE for r in s.requirements))
        for i, r in enumerate(s.requirements):
            req.add(sid, i, r.key, r.op, list(r.values))
    flags = {"isolates": pa.bool_(), "world_only": pa.bool_(), "requirable": pa.bool_(),
             "remote_only": pa.bool_()}
    ints = {**flags, "node_sel_id": I32, "pol_id": I32, "rule_id": I32, "peer_id": I32,
            "rule_idx": I32, "priority": I32,
            "ns_sel_id": I32, "pod_sel_id": I32, "sel_id": I32, "req_idx": I32, "n_pos": I32,
            "family": I32, "proto": I32}
    for name, rows, extra in (
        ("np_pol", pol, {}), ("np_target", target, {}), ("np_rule", rule, {}),
        ("np_peer", peer, {}), ("np_except", exc, {}),
        ("np_port", port, {"lo": I32, "hi": I32}),
        ("np_sel", sel, {}), ("np_req", req, {"vals": pa.list_(pa.string())}),
    ):
        con.register(f"{name}_arrow", rows.table({**ints, **extra}))
        db.run(con, f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM {name}_arrow")
        con.unregister(f"{name}_arrow")
