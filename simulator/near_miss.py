"""Near misses: for a direction a NetworkPolicy isolates and no rule admits, or a rule of
a first-match tier (AdminNetworkPolicy, baseline) denies, the rules that almost admit it
and the one condition that fails (a protocol, a port, a named port, a label requirement,
an ipBlock), ranked by how small a change would repair them.

Judged once per evaluation key (evaluate.py's dir_key: subject identity, peer, port),
never per connection, against the candidate set's policies as written; Cilium's policies
(a union beside deny rules, with selectors of their own) get none. Writes `near_miss`
(key_id, rank, direction, policy, rule, condition, detail, cost, repair) for the result
table and the fixes.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, replace
from typing import Any

import duckdb
import pyarrow as pa

from . import db
from .cluster import NS_NAME_LABEL
from .policy.ir import AnyPeer, CidrPeer, PodPeer, Policy, PortMatch, Requirement, Rule, Selector
from .policy.loader import PolicySet
from .protocols import PROTOCOL_NAMES

PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")
PER_KEY = 5            # near misses kept per key, best first
MAX_WIDEN_BITS = 8     # an ipBlock this many prefix bits short of the address is "near"
POLICY_TYPES_COST = 10  # explains the denial, but no edit of one rule repairs it

DENIED_KEYS_SQL = """
WITH isolated AS (   -- isolated, no allow rule admits, no deny rule decided
    SELECT key_id, isolated_by AS refs, 'networkpolicy' AS tier,
        []::VARCHAR[] AS decided_by, NULL::VARCHAR AS below_admin
    FROM key_verdict
    WHERE pset = 'candidate' AND verdict = 'deny' AND tier = 'networkpolicy'
        AND NOT by_deny_rule AND len(isolated_by) > 0
),
first_match AS (   -- denied by a rule of a first-match tier: that tier's policies here
    SELECT v.key_id, list(DISTINCT p.ref ORDER BY p.ref) AS refs, v.tier, v.decided_by,
        v.below_admin
    FROM key_verdict v
    JOIN dir_key k USING (key_id)
    JOIN target_subj t ON t.subj_kind = k.subj_kind AND t.subj = k.subj_ident
        AND t.direction = k.direction AND t.pset = v.pset
    JOIN np_pol p ON p.pset = t.pset AND p.pol_id = t.pol_id AND p.tier = v.tier
    WHERE v.pset = 'candidate' AND v.verdict = 'deny' AND v.tier IN ('admin', 'baseline')
    GROUP BY v.key_id, v.tier, v.decided_by, v.below_admin
),
denied AS (SELECT * FROM isolated UNION ALL SELECT * FROM first_match),
rep AS (   -- one connection's peer endpoint names each key's peer in sentences
    SELECT ck.ekey AS key_id,
        min(CASE WHEN ck.member >= 0 THEN ck.member ELSE c.dst_ep END) AS ep_id
    FROM conn_key_all ck JOIN conns c USING (conn_id)
    WHERE ck.ekey IN (SELECT key_id FROM denied)
    GROUP BY ALL
    UNION ALL
    SELECT ck.ikey, min(__INGRESS_PEER__)
    FROM conn_key_all ck JOIN conns c USING (conn_id) __BACKEND_JOIN__
    WHERE ck.ikey IN (SELECT key_id FROM denied)
    GROUP BY ALL
)
SELECT d.key_id, d.refs, d.tier, d.decided_by, d.below_admin, k.direction, k.subj_ident,
    k.peer_kind, k.peer_ident,
    k.dst_prof, k.dst_port, k.proto, e.ip::VARCHAR AS peer_ip,
    e.namespace::VARCHAR AS peer_ns, e.workload::VARCHAR AS peer_wl,
    e.pod::VARCHAR AS peer_pod
FROM denied d
JOIN dir_key k USING (key_id)
LEFT JOIN (SELECT key_id, min(ep_id) AS ep_id FROM rep GROUP BY key_id) r USING (key_id)
LEFT JOIN ep e ON e.ep_id = r.ep_id
"""

# A connection whose Service backends are judged by different keys has a pair of its own
# (-gid, evaluate.py): its near misses are its backends' (a verdict of deny there means
# every backend denies).
SERVICE_SQL = """
INSERT INTO near_miss
WITH member AS (
    SELECT DISTINCT gid, 'egress' AS direction, ekey AS key_id FROM svc_member
    UNION
    SELECT DISTINCT gid, 'ingress', ikey FROM svc_member
),
members AS (SELECT gid, direction, count(*) AS n FROM member GROUP BY ALL),
shared AS (   -- only what holds for every backend: a repair for one leaves others denied
    SELECT m.gid, n.direction, n.policy, n.rule, n.condition, n.detail, n.repair,
        min(n.cost) AS cost, min(n.rank) AS rank, count(DISTINCT n.key_id) AS holds
    FROM member m
    JOIN near_miss n ON n.key_id = m.key_id AND n.direction = m.direction
    WHERE n.key_id > 0
    GROUP BY ALL
)
SELECT -s.gid, (row_number() OVER (PARTITION BY s.gid, s.direction
                                   ORDER BY s.cost, s.rank, s.policy, s.rule, s.detail)
                - 1)::INTEGER,
    s.direction, s.policy, s.rule, s.condition, s.detail, s.cost, s.repair
FROM shared s JOIN members c ON c.gid = s.gid AND c.direction = s.direction
WHERE s.holds = c.n
"""

SCHEMA = pa.schema([("key_id", pa.int64()), ("rank", pa.int32()),
                    ("direction", pa.string()), ("policy", pa.string()),
                    ("rule", pa.int32()), ("condition", pa.string()),
                    ("detail", pa.string()), ("cost", pa.int32()),
                    ("repair", pa.string())])


@dataclass(frozen=True)
class NearMiss:
    policy: str
    rule: int | None          # the rule's position among the policy's rules of its direction
    condition: str            # protocol, port, named_port, namespace, namespace_selector,
    #                           pod_selector, ipblock_except, ipblock_outside, policy_types
    detail: str
    cost: int
    repair: dict[str, Any] | None = None   # what the fix changes in that rule


@dataclass
class Key:
    direction: str
    proto: str | None         # TCP, UDP, ...
    port: int | None
    peer_kind: str
    peer_labels: dict[str, str] | None
    peer_ns: str | None
    peer_ns_labels: dict[str, str]
    peer_ip: str | None
    peer_name: str
    dst_ports: list[tuple[str, str, int]]   # the destination pod's (name, protocol, port)
    cidr_world_only: bool = False             # the dataplane's ipBlocks skip pods and nodes
    cidr_nodes: bool = False                  # ... but not nodes (policy-cidr-match-mode)


def _q(text: str) -> str:
    """Inline code in a sentence (reports escape it; the backtick is the only markup)."""
    return "`" + text.replace("`", "'") + "`"


def _requirement_text(r: Requirement) -> str:
    if r.op == "In" and len(r.values) == 1:
        return f"{r.key}: {r.values[0]}"
    if r.op == "In":
        return f"{r.key} in ({', '.join(r.values)})"
    if r.op == "NotIn":
        return f"{r.key} not in ({', '.join(r.values)})"
    return f"{r.key} exists" if r.op == "Exists" else f"no {r.key} label"


def _holds(r: Requirement, labels: dict[str, str]) -> bool:
    value = labels.get(r.key)
    if r.op == "In":
        return value is not None and value in r.values
    if r.op == "NotIn":
        return value is None or value not in r.values
    if r.op == "Exists":
        return value is not None
    return value is None


def _failing(sel: Selector, labels: dict[str, str], what: str, owner: str) -> list[str]:
    """One sentence per requirement the labels break, with the label they have."""
    out = []
    for r in sel.requirements:
        if _holds(r, labels):
            continue
        have = (f"has {_q(f'{r.key}: {labels[r.key]}')}" if r.key in labels
                else f"has no {_q(r.key)} label")
        out.append(f"{what} requires {_q(_requirement_text(r))}; {owner} {have}")
    return out


def _port_text(pm: PortMatch) -> str:
    if pm.name is not None:
        return f"{pm.protocol} {pm.name}"
    if pm.lo is None:
        return f"every {pm.protocol} port"
    return f"{pm.protocol}/{pm.lo}" + (f"-{pm.hi}" if pm.hi not in (None, pm.lo) else "")


def _raw_port(manifest: dict[str, Any] | None, rule: Rule, j: int) -> dict[str, Any]:
    try:
        raw = manifest["spec"][rule.direction][rule.index]["ports"][j]  # type: ignore[index]
        return raw if isinstance(raw, dict) else {}
    except (KeyError, IndexError, TypeError):
        return {}


def _port_miss(policy: Policy, rule: Rule, key: Key, manifest: dict[str, Any] | None,
               head: str) -> NearMiss | None:
    """The rule's peer admits the key: why its ports do not, if one change would do."""
    if key.proto not in PORT_PROTOCOLS or key.port is None:
        return None   # a rule with ports admits no ICMP: no one edit of its ports would
    proto, port = key.proto, key.port
    same_port_other_proto: list[tuple[int, PortMatch]] = []
    named: list[PortMatch] = []
    for j, pm in enumerate(rule.ports):
        if pm.protocol is None:
            return None
        if pm.name is not None:
            named.append(pm)
            resolved = [(p, num) for n, p, num in key.dst_ports if n == pm.name]
            if any(num == port for _, num in resolved) and pm.protocol != proto:
                same_port_other_proto.append((j, pm))
        elif pm.lo is not None and pm.lo <= port <= (pm.hi or pm.lo) and pm.protocol != proto:
            same_port_other_proto.append((j, pm))
        elif pm.lo is None and pm.protocol != proto:
            same_port_other_proto.append((j, pm))
    ref = policy.ref
    if same_port_other_proto:
        j, pm = same_port_other_proto[0]
        raw = _raw_port(manifest, rule, j)
        written = raw.get("port")
        if "protocol" not in raw and written is not None:
            how = (f"{_q(f'port: {written}')} without {_q('protocol')} means TCP; "
                   f"add {_q(f'protocol: {proto}')} (as a second entry, "
                   f"{_q(f'{{protocol: {proto}, port: {written}}}')}, to keep TCP)")
        else:
            how = (f"add a second entry {_q(f'{{protocol: {proto}, port: {port}}}')}")
        return NearMiss(ref, rule.index, "protocol",
                        f"{head} on port {port} but only for {pm.protocol}: {how}", 1,
                        {"add_port": {"protocol": proto, "port": port}})
    for pm in named:
        if pm.protocol != proto:
            continue
        declared = [(p, num) for n, p, num in key.dst_ports if n == pm.name]
        if not declared:
            text = (f"{head} on the named port {_q(str(pm.name))}, which the destination "
                    f"pod does not declare (it was reached on {proto}/{port}): name the "
                    f"port in the pod's spec or admit {proto}/{port}")
        elif all(p != proto for p, _ in declared):
            text = (f"{head} on the named port {_q(str(pm.name))}, which the destination "
                    f"pod declares for {', '.join(sorted({p for p, _ in declared}))}, not "
                    f"{proto}: admit {proto}/{port}")
        else:
            nums = ", ".join(str(num) for p, num in sorted(declared) if p == proto)
            text = (f"{head} on the named port {_q(str(pm.name))}, which is {proto}/{nums} "
                    f"on the destination pod, not {port}: admit {proto}/{port}")
        return NearMiss(ref, rule.index, "named_port", text, 1,
                        {"add_port": {"protocol": proto, "port": port}})
    admitted = [pm for pm in rule.ports if pm.protocol == proto]
    if admitted:
        listed = ", ".join(_port_text(pm) for pm in admitted[:6])
        more = f" and {len(admitted) - 6} more" if len(admitted) > 6 else ""
        return NearMiss(ref, rule.index, "port",
                        f"{head} but only on {listed}{more}, not {proto}/{port}: add "
                        f"{_q(f'port: {port}')}", 1,
                        {"add_port": {"protocol": proto, "port": port}})
    others = ", ".join(sorted({_port_text(pm) for pm in rule.ports}))
    return NearMiss(ref, rule.index, "protocol",
                    f"{head} but only on {others}, not {proto}/{port}: add "
                    f"{_q(f'protocol: {proto}')} with {_q(f'port: {port}')}", 1,
                    {"add_port": {"protocol": proto, "port": port}})


def _pod_peer_miss(peer: PodPeer, policy_ns: str | None, key: Key,
                   words: tuple[str, str] = ("namespaceSelector", "podSelector")
                   ) -> tuple[int, list[str]] | None:
    """(cost, sentences) for a pod peer the key's peer pod fails, or None when it
    matches."""
    labels = key.peer_labels or {}
    ns_ok = (peer.namespace == key.peer_ns if peer.namespace is not None
             else all(_holds(r, key.peer_ns_labels)
                      for r in (peer.namespace_selector or Selector()).requirements))
    pod_fails = _failing(peer.pod_selector, labels, words[1], key.peer_name)
    if ns_ok and not pod_fails:
        return None
    sentences: list[str] = []
    cost = len(pod_fails)
    if not ns_ok:
        if peer.namespace is not None:
            sentences.append(
                f"a {_q('podSelector')} without {_q('namespaceSelector')} selects only "
                f"pods of the policy's namespace {policy_ns}; {key.peer_name} is in "
                f"{key.peer_ns}: add a peer with "
                f"{_q(f'namespaceSelector: {{{NS_NAME_LABEL}: {key.peer_ns}}}')} and the same "
                f"{_q('podSelector')}")
            cost += 1
        else:
            ns_fails = _failing(peer.namespace_selector or Selector(), key.peer_ns_labels,
                                words[0], f"namespace {key.peer_ns}")
            sentences += ns_fails
            cost += len(ns_fails)
    sentences += pod_fails
    both = peer.namespace_selector is not None and peer.pod_selector.requirements
    if both and (ns_ok or not pod_fails):
        sentences.append(f"{_q('namespaceSelector')} and {_q('podSelector')} in one peer "
                         "must both match (AND); written as two peers, either would do (OR)")
    return cost, sentences


def _cidr_miss(peer: CidrPeer, key: Key) -> tuple[int, str, str] | None:
    """(cost, condition, sentence) for an ipBlock the peer address misses, if near."""
    if key.peer_ip is None:
        return None
    try:
        addr = ipaddress.ip_address(key.peer_ip)
        net = ipaddress.ip_network(peer.cidr, strict=False)
    except ValueError:
        return None
    if addr.version != net.version:
        return None
    in_cluster = key.peer_kind in ("pod", "node")
    extra = 2 if in_cluster else 0   # pod addresses change: an ipBlock for one is fragile
    if addr in net:
        for ex in peer.excepts:
            exn = ipaddress.ip_network(ex, strict=False)
            if addr in exn:
                return (1 + extra, "ipblock_except",
                        f"ipBlock {peer.cidr} excepts {ex}, which holds {addr}")
        return None
    widened = net.prefixlen
    while widened > 0 and addr not in ipaddress.ip_network(f"{net.network_address}/"
                                                          f"{widened}", strict=False):
        widened -= 1
    if net.prefixlen - widened > MAX_WIDEN_BITS:
        return None
    wider = ipaddress.ip_network(f"{net.network_address}/{widened}", strict=False)
    return (1 + extra, "ipblock_outside",
            f"{addr} is just outside ipBlock {peer.cidr} (the smallest block holding both "
            f"is {wider})")


def _peer_miss(policy: Policy, rule: Rule, key: Key, head: str) -> NearMiss | None:
    """The rule's ports admit the key: the cheapest peer that almost matches, if any."""
    best: NearMiss | None = None
    for peer in rule.peers:
        found: NearMiss | None = None
        if isinstance(peer, AnyPeer):
            return None
        if isinstance(peer, PodPeer) and key.peer_kind == "pod" and key.peer_ns:
            miss = _pod_peer_miss(peer, policy.namespace, key,
                                  ("namespaceSelector", "podSelector")
                                  if policy.dialect == "networkpolicy"
                                  else ("the namespace selector", "the pod selector"))
            if miss is None:
                return None
            cost, sentences = miss
            if 0 < cost <= 2:
                ns_sel = peer.namespace_selector
                condition = ("namespace" if peer.namespace is not None
                             and peer.namespace != key.peer_ns else
                             "namespace_selector" if ns_sel is not None and not all(
                                 _holds(r, key.peer_ns_labels) for r in ns_sel.requirements)
                             else "pod_selector")
                found = NearMiss(policy.ref, rule.index, condition,
                                 f"{head} but " + "; ".join(sentences), cost,
                                 {"add_peer": True})
        elif isinstance(peer, CidrPeer) and _cidr_judges(key):
            miss2 = _cidr_miss(peer, key)
            if miss2 is None and key.peer_ip is not None:
                try:
                    if ipaddress.ip_address(key.peer_ip) in ipaddress.ip_network(
                            peer.cidr, strict=False):
                        return None
                except ValueError:
                    pass
            if miss2 is not None:
                cost, condition, sentence = miss2
                found = NearMiss(policy.ref, rule.index, condition, f"{head} but {sentence}",
                                 cost, {"add_peer": True})
        if found is not None and (best is None or found.cost < best.cost):
            best = found
    return best


def _cidr_judges(key: Key) -> bool:
    """Whether an ipBlock can match the key's peer at all: under a dataplane whose CIDR
    rules match only outside addresses (Cilium, Azure), never a pod or node."""
    return not (key.cidr_world_only and (key.peer_kind == "pod"
                                         or key.peer_kind == "node" and not key.cidr_nodes))


def _matching_peers(rule: Rule, key: Key) -> list[Any]:
    """The peers of the rule that surely admit the key's peer."""
    out: list[Any] = []
    for peer in rule.peers:
        if isinstance(peer, AnyPeer):
            out.append(peer)
        elif isinstance(peer, PodPeer) and key.peer_kind == "pod" and key.peer_ns:
            if _pod_peer_miss(peer, None, key) is None:
                out.append(peer)
        elif isinstance(peer, CidrPeer) and key.peer_ip is not None and _cidr_judges(key):
            try:
                addr = ipaddress.ip_address(key.peer_ip)
                if addr in ipaddress.ip_network(peer.cidr, strict=False) and not any(
                        addr in ipaddress.ip_network(e, strict=False) for e in peer.excepts):
                    out.append(peer)
            except (ValueError, TypeError):
                continue
    return out


def _broad(peer: Any) -> bool:
    """A peer that admits far more than one workload: everything, every pod of every
    namespace, or every address."""
    if isinstance(peer, AnyPeer):
        return True
    if isinstance(peer, PodPeer):
        return (not peer.pod_selector.requirements and peer.namespace_selector is not None
                and not peer.namespace_selector.requirements)
    return isinstance(peer, CidrPeer) and peer.cidr.endswith("/0")


def _ports_match(rule: Rule, key: Key) -> bool:
    for pm in rule.ports:
        if pm.protocol is None:
            return True
        if pm.protocol != key.proto:
            continue
        if pm.name is not None:
            if any(n == pm.name and p == key.proto and num == key.port
                   for n, p, num in key.dst_ports):
                return True
        elif pm.lo is None or (key.port is not None and pm.lo <= key.port <= (pm.hi or pm.lo)):
            return True
    return False


_RULE_REF = re.compile(r"^(?P<ref>.+) (?P<direction>ingress|egress)\[(?P<idx>\d+)\]$")


def explain_first_match(policies: list[Policy], decided_by: list[str], tier: str,
                        below_admin: str | None, manifests: dict[str, dict[str, Any]],
                        key: Key) -> list[NearMiss]:
    """The near misses of a key a first-match tier denied: the rules evaluated before the
    deciding one (a lower priority value, or earlier in the same policy) that would have
    admitted it (Allow/Accept; a Pass where the tiers below admit) but for one condition.
    Explanations only: the fix inserts a rule before the deciding one."""
    by_ref = {p.ref: p for p in policies}
    deciding = None
    for text in decided_by:
        m = _RULE_REF.match(text)
        if m and m["ref"] in by_ref and by_ref[m["ref"]].tier == tier:
            deciding = (by_ref[m["ref"]], int(m["idx"]))
    if deciding is None:
        return []
    decider, at = deciding
    admits = {"allow"} | ({"pass"} if tier == "baseline" or below_admin == "allow" else set())
    out: list[NearMiss] = []
    d = key.direction
    for policy in policies:
        if policy.priority > decider.priority or (policy.priority == decider.priority
                                                  and policy is not decider):
            continue   # evaluated after it (or, at the same priority, undefined)
        for rule in policy.rules:
            if (rule.direction != d or rule.action not in admits
                    or (policy is decider and rule.index >= at)):
                continue
            matching = _matching_peers(rule, key)
            peer_ok, ports_ok = bool(matching), _ports_match(rule, key)
            if peer_ok == ports_ok:
                continue
            name = f' "{rule.name}"' if rule.name else ""
            head = f"{_q(policy.ref)} {d} rule {rule.index}{name} ({rule.action.capitalize()})"
            miss = (_port_miss(policy, rule, key, manifests.get(policy.ref),
                               f"{head} matches {key.peer_name}") if peer_ok else
                    _peer_miss(policy, rule, key, f"{head} admits {key.proto}/{key.port}"
                               if key.port is not None else f"{head} admits the port"))
            if miss is not None:
                out.append(replace(miss, repair=None))
    out.sort(key=lambda m: (m.cost, m.policy, -1 if m.rule is None else m.rule))
    return out[:PER_KEY]


def explain_key(policies: list[Policy], manifests: dict[str, dict[str, Any]],
                key: Key) -> list[NearMiss]:
    """The near misses of one denied key among the policies isolating its subject."""
    out: list[NearMiss] = []
    d = key.direction
    for policy in policies:
        if policy.dialect != "networkpolicy":
            continue
        rules = [r for r in policy.rules if r.direction == d and r.action == "allow"]
        if not rules:
            written = ((manifests.get(policy.ref) or {}).get("spec") or {}).get("policyTypes")
            why = (f"{_q('policyTypes')} lists {d.capitalize()}" if written
                   else f"a NetworkPolicy without {_q('policyTypes')} isolates ingress")
            out.append(NearMiss(policy.ref, None, "policy_types",
                                f"{_q(policy.ref)} isolates {d} because {why}, with no {d} "
                                f"rule: it admits no traffic "
                                f"{'from' if d == 'egress' else 'to'} these pods",
                                POLICY_TYPES_COST))
            continue
        for rule in rules:
            matching = _matching_peers(rule, key)
            peer_ok, ports_ok = bool(matching), _ports_match(rule, key)
            if peer_ok == ports_ok:
                continue   # both hold (not denied) or both fail (not near)
            head = f"{_q(policy.ref)} {d} rule {rule.index}"
            if peer_ok:
                miss = _port_miss(policy, rule, key, manifests.get(policy.ref),
                                  f"{head} matches {key.peer_name}")
                if miss is not None and all(_broad(p) for p in matching):
                    # the port added there would be open to everyone the rule admits: an
                    # explanation, not the repair a fix should make
                    miss = replace(miss, cost=miss.cost + 1, repair=None)
            else:
                miss = _peer_miss(policy, rule, key,
                                  f"{head} admits {key.proto}/{key.port}"
                                  if key.port is not None else f"{head} admits the port")
            if miss is not None:
                out.append(miss)
    out.sort(key=lambda m: (m.cost, m.policy, -1 if m.rule is None else m.rule))
    return out[:PER_KEY]


def _peer_name(row: dict[str, Any]) -> str:
    if row["peer_kind"] == "pod" and row["peer_ns"]:
        wl = row["peer_wl"] or row["peer_pod"] or "?"
        return f"{row['peer_ns']}/{wl.partition('/')[2] or wl}"
    return row["peer_ip"] or f"the {row['peer_kind']} peer"


def create(con: duckdb.DuckDBPyConnection) -> None:
    """The empty `near_miss` table, before the result views that read it are made (find()
    fills it meanwhile, on a cursor of its own)."""
    con.register("near_miss_empty", pa.table({f.name: pa.array([], f.type) for f in SCHEMA}))
    db.run(con, "CREATE OR REPLACE TABLE near_miss AS SELECT * FROM near_miss_empty")
    con.unregister("near_miss_empty")


def find(con: duckdb.DuckDBPyConnection, candidate: PolicySet) -> int:
    """Fills `near_miss` (made by create()); returns how many keys got at least one."""
    # ingress sees the source as a Service's source NAT left it (backends.py)
    services = db.one(con, "SELECT count(*) FROM duckdb_tables() "
                           "WHERE table_name = 'conn_backend'")[0]
    rows = db.rows(con, DENIED_KEYS_SQL.replace(
        "__INGRESS_PEER__", "coalesce(b.peer_ep, c.src_ep)" if services else "c.src_ep"
    ).replace("__BACKEND_JOIN__", "LEFT JOIN conn_backend b ON b.conn_id = ck.conn_id "
                                  "AND b.b_ep = ck.member" if services else ""))
    by_ref = {p.ref: p for p in candidate.policies}
    idents = sorted({int(r["peer_ident"]) for r in rows
                     if r["peer_kind"] == "pod" and r["peer_ident"] >= 0})
    labels: dict[int, dict[str, str]] = {i: {} for i in idents}
    ident_ns: dict[int, str] = {}
    if idents:
        for i, k, v in con.execute("SELECT ident_id, key, value FROM ident_label "
                                   "WHERE ident_id IN (SELECT unnest($ids))",
                                   {"ids": idents}).fetchall():
            labels[i][k] = v
        ident_ns = dict(con.execute("SELECT ident_id, namespace FROM ident WHERE ident_id "
                                    "IN (SELECT unnest($ids))", {"ids": idents}).fetchall())
    ns_labels: dict[str, dict[str, str]] = {}
    for ns, k, v in con.execute("SELECT namespace, key, value FROM ns_label").fetchall():
        ns_labels.setdefault(ns, {})[k] = v
    profs: dict[int, list[tuple[str, str, int]]] = {}
    for prof, name, proto, port in con.execute(
            "SELECT prof_id, name, proto, port FROM prof_port").fetchall():
        profs.setdefault(prof, []).append((name, PROTOCOL_NAMES.get(proto, str(proto)), port))
    out: dict[str, list[Any]] = {f.name: [] for f in SCHEMA}
    found = 0
    world_only, cidr_nodes = (bool(v) for v in db.one(
        con, "SELECT cidr_world_only, cidr_nodes FROM dataplane"))
    for r in rows:
        pod = r["peer_kind"] == "pod" and r["peer_ident"] >= 0
        ns = ident_ns.get(int(r["peer_ident"])) if pod else None
        key = Key(direction=r["direction"],
                  proto=PROTOCOL_NAMES.get(r["proto"]) if r["proto"] >= 0 else None,
                  port=int(r["dst_port"]) if r["dst_port"] >= 0 else None,
                  peer_kind=r["peer_kind"], peer_labels=labels.get(int(r["peer_ident"]))
                  if pod else None, peer_ns=ns or (r["peer_ns"] if pod else None),
                  peer_ns_labels=ns_labels.get(ns or "", {}), peer_ip=r["peer_ip"],
                  peer_name=_peer_name(r), dst_ports=profs.get(int(r["dst_prof"]), []),
                  cidr_world_only=world_only, cidr_nodes=cidr_nodes)
        policies = [by_ref[ref] for ref in r["refs"] if ref in by_ref]
        misses = (explain_key(policies, candidate.manifests, key)
                  if r["tier"] == "networkpolicy" else
                  explain_first_match(policies, list(r["decided_by"] or []), r["tier"],
                                      r["below_admin"], candidate.manifests, key))
        found += bool(misses)
        for rank, m in enumerate(misses):
            for name, value in (("key_id", r["key_id"]), ("rank", rank),
                                ("direction", r["direction"]), ("policy", m.policy),
                                ("rule", m.rule), ("condition", m.condition),
                                ("detail", m.detail), ("cost", m.cost),
                                ("repair", json.dumps(m.repair) if m.repair else None)):
                out[name].append(value)
    con.register("near_miss_arrow", pa.table(out, schema=SCHEMA))
    db.run(con, "INSERT INTO near_miss SELECT * FROM near_miss_arrow")
    con.unregister("near_miss_arrow")
    if db.one(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'svc_member'")[0]:
        db.run(con, SERVICE_SQL)
    return found
