"""The smallest policy change that keeps a breaking group's traffic, and its blast radius.

A fix adds one rule to a policy that already isolates the denied side (egress of the
source, ingress of the destination): the set of isolated pods stays the same, so the
change can only admit more. The rule names the peer by its workload's stable labels
(never per-pod hashes or names) and the port by the name the destination pod declares.

The blast radius is found by replaying every connection the candidate does not allow with
the added rules as a policy set of their own: a connection becomes allowed when each
denied direction is admitted by a rule of the fix. Everything that becomes allowed apart
from the group itself is the blast radius. This replaces the evaluation tables, so it
runs after everything else has read them.
"""

from __future__ import annotations

import copy
import ipaddress
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import yaml

from .. import db, evaluate
from ..cluster import NS_NAME_LABEL
from ..documents import Document
from ..errors import PolicyError
from ..policy.ir import Policy
from ..policy.loader import PolicySet
from ..policy.netpol_v1 import API_VERSION, KIND, compile_networkpolicy
from ..policy.tables import register_policy_tables

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
BLAST_ITEMS = 10
SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp",
                 "managedFields", "selfLink")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
FIX_NAME = "netpol-simulator-fix-{}"
# libyaml's emitter when present: the pure-Python one took most of the report's time
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


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


def _peer(side: dict[str, Any], info: dict[str, Any], policy_ns: str | None) -> list[Any]:
    if side["kind"] == "pod":
        peer: dict[str, Any] = {"podSelector": (
            {"matchLabels": info["labels"]} if info["labels"] else {})}
        if side["namespace"] != policy_ns:
            peer["namespaceSelector"] = {"matchLabels": {NS_NAME_LABEL: side["namespace"]}}
        return [peer]
    return [{"ipBlock": {"cidr": c}} for c in ip_blocks(info["addresses"])]


def _rule(group: dict[str, Any], direction: str, policy_ns: str | None,
          sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    src, dst = sides["src"], sides["dst"]
    peer_side, info = ((group["destination"], dst) if direction == "egress"
                       else (group["source"], src))
    rule: dict[str, Any] = {"to" if direction == "egress" else "from":
                            _peer(peer_side, info, policy_ns)}
    if group["protocol"] in PORT_PROTOCOLS and group["port"] is not None:
        rule["ports"] = [{"protocol": group["protocol"],
                          "port": dst.get("port_name") or group["port"]}]
    return rule


def _mentions_port(policy: Policy | None, direction: str, port: int | None,
                   port_name: str | None) -> bool:
    """Whether a rule of the policy already names this port (any protocol): the policy
    meant for this traffic, where a reader expects the fix."""
    if policy is None or port is None:
        return False
    return any((pm.lo is not None and pm.lo <= port <= (pm.hi or pm.lo))
               or (port_name is not None and pm.name == port_name)
               for r in policy.rules if r.direction == direction for pm in r.ports)


def _cover(lists: list[tuple[tuple[str, ...], int]], size: dict[str, int],
           preferred: set[str]) -> list[str]:
    """Policies such that every connection's isolating list holds one: as few as possible,
    preferring a policy whose rules already name the port, then the one that selects the
    fewest identities (the narrowest change)."""
    left = list(lists)
    chosen: list[str] = []
    while left:
        weight: Counter[str] = Counter()
        for refs, n in left:
            for ref in refs:
                weight[ref] += n
        if not weight:
            break
        best = min(weight, key=lambda r: (-weight[r], r not in preferred, size.get(r, 0), r))
        chosen.append(best)
        left = [(refs, n) for refs, n in left if best not in refs]
    return chosen


def _clean_manifest(obj: dict[str, Any]) -> dict[str, Any]:
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


def _side_info(con: duckdb.DuckDBPyConnection, keys: list[str]) -> dict[tuple[str, str],
                                                                        dict[str, Any]]:
    """Per group key and side: the identities' label sets and the addresses; for the
    destination also the port name every destination pod declares for the port."""
    info: dict[tuple[str, str], dict[str, Any]] = {}
    sides = db.rows(con, """
        SELECT m.gkey, s.side, list(DISTINCT e.ident_id) FILTER (
                   WHERE e.ident_id IS NOT NULL AND e.kind = 'pod') AS idents,
               list(DISTINCT e.ip) AS addresses
        FROM report_members m JOIN result r USING (conn_id)
        CROSS JOIN (VALUES ('src'), ('dst')) s(side)
        JOIN ep e ON e.ep_id = CASE s.side WHEN 'src' THEN r.src_ep ELSE r.dst_ep END
        WHERE m.gkey IN (SELECT unnest($keys))
        GROUP BY ALL""", {"keys": keys})
    idents = sorted({i for s in sides for i in (s["idents"] or [])})
    labels: dict[int, dict[str, str]] = {i: {} for i in idents}
    if idents:
        for i, k, v in con.execute("SELECT ident_id, key, value FROM ident_label "
                                   "WHERE ident_id IN (SELECT unnest($ids))",
                                   {"ids": idents}).fetchall():
            labels[i][k] = v
    for s in sides:
        info[(s["gkey"], s["side"])] = {
            "labels": stable_labels([labels[i] for i in (s["idents"] or [])]),
            "addresses": list(s["addresses"] or []), "port_name": None}
    # a named port only when every destination pod declares that name for the port
    for gkey, pods, named, port_names in con.execute("""
        SELECT m.gkey, count(DISTINCT e.pod_ref), count(DISTINCT e.pod_ref) FILTER (
                   WHERE pp.name IS NOT NULL), list(DISTINCT pp.name) FILTER (
                   WHERE pp.name IS NOT NULL)
        FROM report_members m JOIN conns c USING (conn_id) JOIN ep e ON e.ep_id = c.dst_ep
        LEFT JOIN pod_port pp ON pp.pod_ref = e.pod_ref AND pp.proto = c.proto
             AND pp.port = c.dst_port AND pp.name IS NOT NULL AND pp.name <> ''
        WHERE m.gkey IN (SELECT unnest($keys)) AND e.kind = 'pod'
        GROUP BY m.gkey""", {"keys": keys}).fetchall():
        if pods and named == pods and port_names and len(port_names) == 1:
            info[(gkey, "dst")]["port_name"] = port_names[0]
    return info


def suggest_fixes(con: duckdb.DuckDBPyConnection, groups: list[dict[str, Any]],
                  candidate: PolicySet) -> None:
    """Attach `fix` to every break group: the edits, the ready-to-apply YAML of each
    edited policy, and the blast radius found by replaying the traffic."""
    if not groups:
        return
    keys = [g["gkey"] for g in groups]
    size = {r: int(n) for r, n in con.execute("""
        SELECT ref, count(DISTINCT ident_id) FROM policy_use WHERE pset = 'candidate'
        GROUP BY ref""").fetchall()}
    isolating: dict[tuple[str, str], list[tuple[tuple[str, ...], int]]] = {}
    for gkey, direction, refs, n in con.execute("""
        WITH m AS (
            SELECT m.gkey, r.* FROM report_members m JOIN result_full r USING (conn_id)
            WHERE m.gkey IN (SELECT unnest($keys))
        )
        SELECT gkey, 'egress', candidate_egress_isolated_by, count(*) FROM m
        WHERE candidate_egress = 'deny' GROUP BY ALL
        UNION ALL
        SELECT gkey, 'ingress', candidate_ingress_isolated_by, count(*) FROM m
        WHERE candidate_ingress = 'deny' GROUP BY ALL""", {"keys": keys}).fetchall():
        isolating.setdefault((gkey, direction), []).append((tuple(refs or ()), int(n)))
    info = _side_info(con, keys)
    by_ref = {p.ref: p for p in candidate.policies}
    synthetic: list[Policy] = []
    edit_rows: dict[str, list[Any]] = {"ref": [], "fix": [], "direction": [], "edited": []}
    first_with: dict[str, str] = {}
    for fix_no, g in enumerate(groups):
        sides = {"src": info.get((g["gkey"], "src"), {"labels": {}, "addresses": []}),
                 "dst": info.get((g["gkey"], "dst"), {"labels": {}, "addresses": []})}
        edits = []
        for direction in ("egress", "ingress"):
            lists = isolating.get((g["gkey"], direction), [])
            preferred = {ref for refs, _ in lists for ref in refs
                         if _mentions_port(by_ref.get(ref), direction, g["port"],
                                           sides["dst"].get("port_name"))}
            for ref in _cover(lists, size, preferred):
                manifest = candidate.manifests.get(ref)
                if manifest is None:
                    continue
                policy_ns = str((manifest.get("metadata") or {}).get("namespace") or "default")
                edits.append({"policy": ref, "namespace": policy_ns, "direction": direction,
                              "rule": _rule(g, direction, policy_ns, sides)})
        g["fix"] = _fix_document(g, edits, sides, candidate)
        # one edit often repairs several groups (a DNS rule for the whole namespace)
        g["fix"]["same_as"] = first_with.setdefault(g["fix"]["yaml"], g["id"])
        if g["fix"]["same_as"] == g["id"]:
            g["fix"]["same_as"] = None
        for e in edits:
            name = FIX_NAME.format(len(synthetic))
            spec_selector = ((candidate.manifests[e["policy"]].get("spec") or {})
                             .get("podSelector") or {})
            obj = {"apiVersion": API_VERSION, "kind": KIND,
                   "metadata": {"name": name, "namespace": e["namespace"]},
                   "spec": {"podSelector": spec_selector,
                            "policyTypes": [e["direction"].capitalize()],
                            e["direction"]: [e["rule"]]}}
            try:
                synthetic.append(compile_networkpolicy(
                    Document(obj, Path("(suggested fix)"), fix_no)))
            except PolicyError as err:
                g["fix"]["problem"] = f"the suggested rule does not validate: {err}"
                continue
            edit_rows["ref"].append(f"{e['namespace']}/{name}")
            edit_rows["fix"].append(fix_no)
            edit_rows["direction"].append(e["direction"])
            edit_rows["edited"].append(e["policy"])
    _blast_radius(con, groups, synthetic, edit_rows)


def _fix_document(g: dict[str, Any], edits: list[dict[str, Any]],
                  sides: dict[str, dict[str, Any]], candidate: PolicySet) -> dict[str, Any]:
    by_policy: dict[str, dict[str, Any]] = {}
    for e in edits:
        manifest = by_policy.setdefault(e["policy"],
                                        _clean_manifest(candidate.manifests[e["policy"]]))
        spec = manifest.setdefault("spec", {})
        if not isinstance(spec.get(e["direction"]), list):
            spec[e["direction"]] = []
        spec[e["direction"]].append(e["rule"])
    notes = []
    # the peer of an egress rule is the destination, of an ingress rule the source
    peers = {"dst" if e["direction"] == "egress" else "src" for e in edits}
    for side, label in (("src", "source"), ("dst", "destination")):
        ent = g["source" if side == "src" else "destination"]
        if side in peers and ent["kind"] == "pod" and not sides[side]["labels"]:
            notes.append(f"the {label} pods share no stable label: the rule admits every pod "
                         f"of namespace {ent['namespace']}")
    if g["protocol"] not in PORT_PROTOCOLS:
        notes.append(f"NetworkPolicy cannot name {g['protocol']}: the rule admits every "
                     "protocol and port between these peers")
    return {
        "edits": edits,
        "yaml": "---\n".join(yaml.dump(m, Dumper=_Dumper, sort_keys=False,
                                       default_flow_style=False, allow_unicode=True)
                             for m in by_policy.values()),
        "notes": notes,
    }


BLAST_SQL = """
WITH admitted AS (
    SELECT h.conn_id, e.fix, list(DISTINCT e.direction) AS dirs
    FROM rule_hits h
    JOIN np_rule r ON r.rule_id = h.rule_id
    JOIN np_pol p ON p.pset = r.pset AND p.pol_id = r.pol_id
    JOIN fix_edit e ON e.ref = p.ref AND e.direction = h.direction
    WHERE h.hit = 'allow'
    GROUP BY ALL
),
opened AS (
    SELECT a.fix, r.conn_id, r.change, r.flows,
        CASE WHEN r.src_kind = 'pod' THEN r.src_namespace || '/'
                  || regexp_replace(coalesce(r.src_workload, r.src_pod), '^[^/]*/', '')
             ELSE '(' || r.src_kind || ')' END AS source,
        CASE WHEN r.dst_kind = 'pod' THEN r.dst_namespace || '/'
                  || regexp_replace(coalesce(r.dst_workload, r.dst_pod), '^[^/]*/', '')
             ELSE '(' || r.dst_kind || ')' END AS destination,
        r.protocol || coalesce('/' || r.dst_port, '') AS port,
        m.gkey
    FROM admitted a JOIN result r USING (conn_id)
    LEFT JOIN report_members m USING (conn_id)
    WHERE (r.candidate_egress = 'allow' OR list_contains(a.dirs, 'egress'))
      AND (r.candidate_ingress = 'allow' OR list_contains(a.dirs, 'ingress'))
)
SELECT fix, gkey, change, source, destination, port,
    count(*) AS connections, sum(flows)::BIGINT AS flows
FROM opened GROUP BY ALL ORDER BY fix, flows DESC, source, destination, port
"""


def _blast_radius(con: duckdb.DuckDBPyConnection, groups: list[dict[str, Any]],
                  synthetic: list[Policy], edit_rows: dict[str, list[Any]]) -> None:
    con.register("fix_edit_arrow", pa.table({
        "ref": pa.array(edit_rows["ref"], pa.string()),
        "fix": pa.array(edit_rows["fix"], pa.int32()),
        "direction": pa.array(edit_rows["direction"], pa.string()),
        "edited": pa.array(edit_rows["edited"], pa.string())}))
    db.run(con, "CREATE OR REPLACE TEMP TABLE fix_edit AS SELECT * FROM fix_edit_arrow")
    con.unregister("fix_edit_arrow")
    # Only connections with a denied side that an edited policy selects can open up.
    db.run(con, """
        CREATE OR REPLACE TEMP TABLE fix_conns AS
        WITH edited AS (
            SELECT DISTINCT u.direction, u.ident_id
            FROM policy_use u JOIN fix_edit e ON e.edited = u.ref AND e.direction = u.direction
            WHERE u.pset = 'candidate'
        )
        SELECT c.* FROM conns c JOIN result r USING (conn_id)
        JOIN ep s ON s.ep_id = c.src_ep JOIN ep d ON d.ep_id = c.dst_ep
        WHERE r.candidate <> 'allow' AND (
            (r.candidate_egress <> 'allow'
             AND s.ident_id IN (SELECT ident_id FROM edited WHERE direction = 'egress'))
            OR (r.candidate_ingress <> 'allow'
             AND d.ident_id IN (SELECT ident_id FROM edited WHERE direction = 'ingress')))""")
    register_policy_tables(con, [("fix", synthetic)])
    evaluate.evaluate(con, ["fix"], conns="fix_conns")
    per_fix: dict[int, list[dict[str, Any]]] = {}
    for row in db.rows(con, BLAST_SQL):
        per_fix.setdefault(int(row.pop("fix")), []).append(row)
    for fix_no, g in enumerate(groups):
        found = per_fix.get(fix_no, [])
        own = sum(r["connections"] for r in found if r["gkey"] == g["gkey"])
        others = [r for r in found if r["gkey"] != g["gkey"]]
        g["fix"]["restores"] = {"connections": own, "of": g["connections"]}
        g["fix"]["blast_radius"] = {
            "connections": sum(r["connections"] for r in others),
            "flows": sum(r["flows"] for r in others),
            # breaks elsewhere that the fix also repairs, and traffic denied today it opens
            "restores_other_breaks": sum(r["connections"] for r in others
                                         if r["change"] == "break"),
            "opens_denied_today": sum(r["connections"] for r in others
                                      if r["change"] != "break"),
            "items": [{k: r[k] for k in ("change", "source", "destination", "port",
                                         "connections", "flows")}
                      for r in others[:BLAST_ITEMS]],
        }
