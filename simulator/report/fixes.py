"""The smallest policy change that keeps a breaking group's traffic, in the tier that
denied it, and its blast radius.

Per denied direction, by the tier that decided it (see evaluate.py):
- NetworkPolicy tier: one rule added to a policy that already isolates the pod, so the
  set of isolated pods stays the same and the change can only admit more;
- admin tier: a rule inserted just before the denying rule of each AdminNetworkPolicy
  (or Admin ClusterNetworkPolicy) that decided: a Pass where the tiers below would then
  admit the traffic (the rest of the guardrail keeps its effect), else an Allow/Accept.
  Editing a cluster-scoped policy needs cluster-admin rights;
- baseline tier: an Allow/Accept inserted before the denying baseline rule; and, as an
  alternative a namespace owner can apply, a NetworkPolicy that selects the pods and
  admits the traffic (it isolates them: its blast radius says what else it then denies).

The blast radius is the replay of the observed traffic through the whole tiered candidate
set with the fix applied (blast.py).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import yaml

from .. import db
from ..cni import AGENT_REF
from ..documents import Document
from ..errors import PolicyError
from ..policy import cilium_v2, netpol_v1
from ..policy.ir import Policy
from ..policy.loader import DIALECTS, PolicySet
from ..policy.npapi import Notes
from . import blast
from .fix_rules import (
    ALLOW_WORD,
    PORT_PROTOCOLS,
    cilium_rule,
    clean_manifest,
    cluster_rule,
    insert_rule,
    merge_rules,
    np_rule,
    peer_side,
    repair_rule,
    stable_labels,
)

BLAST_ITEMS = 10
FIX_NAME = "netpol-simulator-fix-{}"
CLUSTER_ADMIN_NOTE = ("editing a cluster-scoped policy needs cluster-admin rights (or the "
                      "team that owns the guardrail)")
# libyaml's emitter when present: the pure-Python one took most of the report's time
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_RULE_REF = re.compile(r"^(?P<ref>.+) (?P<direction>ingress|egress)\[(?P<idx>\d+)\]$")

DENIED_SQL = """
WITH m AS (
    SELECT m.gkey, r.ekey, r.ikey, r.candidate_egress, r.candidate_ingress,
        r.candidate_egress_tier, r.candidate_ingress_tier
    FROM report_members m JOIN result r USING (conn_id)
    WHERE m.gkey IN (SELECT unnest($keys))
),
v AS (
    SELECT m.*, pv.* EXCLUDE (ekey, ikey, pset)
    FROM m JOIN pair_verdict pv ON pv.ekey = m.ekey AND pv.ikey = m.ikey
        AND pv.pset = 'candidate'
)
SELECT gkey, 'egress' AS direction, candidate_egress_tier::VARCHAR AS tier,
    egress_isolated_by AS isolated_by, egress_decided_by AS decided_by,
    egress_below_admin AS below, count(*) AS n
FROM v WHERE candidate_egress = 'deny' GROUP BY ALL
UNION ALL
SELECT gkey, 'ingress', candidate_ingress_tier::VARCHAR, ingress_isolated_by,
    ingress_decided_by, ingress_below_admin, count(*)
FROM v WHERE candidate_ingress = 'deny' GROUP BY ALL
"""


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
            "idents": list(s["idents"] or []),
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


def _first_rules(decided_by: list[tuple[list[str], Any]], tier: str,
                 by_ref: dict[str, Policy]) -> dict[str, int]:
    """policy ref -> its earliest rule (written position) that decided one of the
    connections, among the first-match policies of `tier`."""
    first: dict[str, int] = {}
    for refs, _ in decided_by:
        for text in refs or ():
            m = _RULE_REF.match(text)
            if m is None:
                continue
            policy = by_ref.get(m["ref"])
            if policy is None or policy.tier != tier:
                continue
            first[m["ref"]] = min(first.get(m["ref"], 1 << 30), int(m["idx"]))
    return first


class _Fixer:
    """Builds the edits of one group's fix (and of its alternative)."""

    def __init__(self, candidate: PolicySet, size: dict[str, int]) -> None:
        self.candidate = candidate
        self.by_ref = {p.ref: p for p in candidate.policies}
        self.size = size
        self.deny_rules: list[str] = []  # of the group being fixed
        self.con: duckdb.DuckDBPyConnection | None = None
        self.idents: dict[int, tuple[str, dict[str, str]]] | None = None
        self.isolated: dict[str, set[int]] = {}
        # policy ref -> the identities it selects, for the NetworkPolicy tier's policies
        self.selects: dict[str, set[int]] = {}
        # (namespace, name) of every policy there is or a fix creates
        self.taken = {(p.namespace, p.name) for p in candidate.policies}

    def _isolated_already(self, namespace: str, labels: dict[str, str],
                          direction: str) -> bool:
        """Whether every pod of the namespace with these labels is isolated in the
        direction by the candidate: a new policy selecting them then isolates no one."""
        if self.con is None:
            return False
        if self.idents is None:   # read once: every identity's namespace and labels
            self.idents = {}
            for i, ns, k, v in self.con.execute("""
                    SELECT i.ident_id, i.namespace, l.key, l.value
                    FROM ident i LEFT JOIN ident_label l USING (ident_id)""").fetchall():
                entry = self.idents.setdefault(int(i), (str(ns), {}))
                if k is not None:
                    entry[1][k] = v
        if direction not in self.isolated:
            self.isolated[direction] = {int(i) for (i,) in self.con.execute("""
                SELECT DISTINCT t.ident_id FROM target_ident t
                JOIN np_pol p ON p.pset = t.pset AND p.pol_id = t.pol_id
                WHERE t.pset = 'candidate' AND p.tier = 'namespace' AND t.isolates
                    AND t.direction = $d""", {"d": direction}).fetchall()}
        chosen = [i for i, (ns, have) in self.idents.items() if ns == namespace
                  and all(have.get(k) == v for k, v in labels.items())]
        return bool(chosen) and all(i in self.isolated[direction] for i in chosen)

    def _unique(self, namespace: str, name: str) -> str:
        """The name, or the name with a number, that no policy of the namespace has."""
        out, n = name, 2
        while (namespace, out) in self.taken:
            out, n = f"{name}-{n}", n + 1
        self.taken.add((namespace, out))
        return out

    def edits(self, g: dict[str, Any], rows: dict[str, list[dict[str, Any]]],
              sides: dict[str, dict[str, Any]]) -> tuple[list[dict[str, Any]],
                                                         list[dict[str, Any]], list[str]]:
        """(edits, the alternative's edits or [], problems)."""
        edits: list[dict[str, Any]] = []
        alternative: list[dict[str, Any]] = []
        problems: list[str] = []
        has_baseline = False
        for direction in ("egress", "ingress"):
            by_tier: dict[str, list[dict[str, Any]]] = {}
            for r in rows.get(direction, []):
                by_tier.setdefault(r["tier"], []).append(r)
            tier_edits = []
            if "networkpolicy" in by_tier:
                # a Cilium deny rule that matched: no allow overrides it
                denied = sorted({ref for r in by_tier["networkpolicy"]
                                 for ref in r["decided_by"] or ()})
                if denied:
                    self.deny_rules += denied
                isolated = [r for r in by_tier["networkpolicy"] if not r["decided_by"]]
                if isolated:
                    tier_edits += self._np_edits(g, direction, isolated, sides)
            if "admin" in by_tier:
                tier_edits += self._first_match_edits(g, direction, by_tier["admin"], sides,
                                                      "admin", problems)
            edits += tier_edits
            alternative += tier_edits
            if "baseline" in by_tier:
                has_baseline = True
                edits += self._first_match_edits(g, direction, by_tier["baseline"], sides,
                                                 "baseline", problems)
                alternative.append(self._new_np(g, direction, sides))
        return edits, alternative if has_baseline else [], problems

    def _np_edits(self, g: dict[str, Any], direction: str, rows: list[dict[str, Any]],
                  sides: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """The rule a near miss points to, repaired; else a new policy for the workload
        alone; adding to an existing policy only where the workload has no stable label
        to select it by (a new policy selecting all its namespace would isolate more)."""
        repair = self._repair(g, direction, sum(int(r["n"]) for r in rows), sides)
        if repair is not None:
            return [repair]
        refs = {ref for r in rows for ref in r["isolated_by"] or ()}
        # the Cilium agent's enable-policy: always isolates too: admitted the same way
        cilium = [ref for ref in refs if ref == AGENT_REF or (
            self.candidate.manifests.get(ref) or {}).get("apiVersion") == cilium_v2.API_VERSION]
        if cilium and len(cilium) == len(refs):
            # Cilium's allows are a union: a policy of its own for the workload, which
            # isolates nothing more (enableDefaultDeny off)
            return [self._new_cnp(g, direction, sides)]
        subject = "src" if direction == "egress" else "dst"
        own = set(sides[subject].get("idents") or ())
        # a policy that selects only this workload's pods: a rule added there admits
        # nothing for other pods (least privilege, and where a reader looks)
        narrow = [ref for ref in sorted(refs) if ref not in cilium and own
                  and self.selects.get(ref, {-1}) <= own]
        if narrow:
            return self._cover_edits(g, direction, [{**r, "isolated_by": [
                x for x in r["isolated_by"] or () if x in narrow]} for r in rows], sides)
        if sides[subject]["labels"] and self._isolated_already(
                g["source" if subject == "src" else "destination"]["namespace"],
                sides[subject]["labels"], direction):
            # every pod it selects is isolated already: the new policy only admits
            return [{**self._new_np(g, direction, sides, _allow_name(g, direction)),
                     "for_isolated": True}]
        return self._cover_edits(g, direction, rows, sides)

    def _repair(self, g: dict[str, Any], direction: str, denied: int,
                sides: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """An edit of the rule the best near miss names, when that near miss holds for
        every denied connection of the group in this direction."""
        for m in g.get("near_misses") or []:
            if (m["direction"] != direction or not m.get("repair") or m["rule"] is None
                    or int(m["connections"]) < denied):
                continue
            manifest = self.candidate.manifests.get(m["policy"])
            if manifest is None or manifest.get("kind") != netpol_v1.KIND:
                continue
            change = dict(m["repair"])
            if change.pop("add_peer", None):
                # the observed peer by its most specific stable selector
                change["add_peers"] = np_rule(g, direction, _namespace_of(manifest),
                                              sides)["to" if direction == "egress" else "from"]
            rule = repair_rule(clean_manifest(manifest), direction, int(m["rule"]), change)
            if rule is None:
                continue
            port = change.get("add_port")
            words = (f"add {port['protocol']}/{port['port']}" if port
                     else "add the peer " + str(g["destination" if direction == "egress"
                                                  else "source"]["label"]))
            return {"policy": m["policy"], "kind": netpol_v1.KIND, "words": words,
                    "namespace": _namespace_of(manifest), "tier": "networkpolicy",
                    "direction": direction, "action": "allow", "at": None,
                    "repair_of": int(m["rule"]), "change": change, "rule": rule,
                    "near_miss": m["detail"]}
        return None

    def _cover_edits(self, g: dict[str, Any], direction: str, rows: list[dict[str, Any]],
                     sides: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        lists = [(tuple(r["isolated_by"] or ()), int(r["n"])) for r in rows]
        preferred = {ref for refs, _ in lists for ref in refs
                     if _mentions_port(self.by_ref.get(ref), direction, g["port"],
                                       sides["dst"].get("port_name"))}
        out = []
        for ref in _cover(lists, self.size, preferred):
            manifest = self.candidate.manifests.get(ref)
            if manifest is None:
                continue
            if manifest.get("apiVersion") == cilium_v2.API_VERSION:
                if not any(e["kind"] == cilium_v2.CNP for e in out):
                    out.append(self._new_cnp(g, direction, sides))
                continue
            ns = _namespace_of(manifest)
            out.append({"policy": ref, "kind": netpol_v1.KIND, "namespace": ns,
                        "tier": "networkpolicy", "direction": direction,
                        "action": "allow", "at": None,
                        "rule": np_rule(g, direction, ns, sides)})
        return out

    def _first_match_edits(self, g: dict[str, Any], direction: str,
                           rows: list[dict[str, Any]], sides: dict[str, dict[str, Any]],
                           tier: str, problems: list[str]) -> list[dict[str, Any]]:
        first = _first_rules([(r["decided_by"], r["n"]) for r in rows], tier, self.by_ref)
        # an admin Pass keeps the guardrail's other decisions and the tiers below in
        # force; only where those tiers would deny too does the fix have to Allow
        passes = tier == "admin" and all(r["below"] == "allow" for r in rows)
        out = []
        for ref, at in sorted(first.items()):
            manifest = self.candidate.manifests.get(ref)
            if manifest is None:
                continue
            kind = str(manifest.get("kind"))
            action = "Pass" if passes else ALLOW_WORD.get(kind, "Allow")
            rule = cluster_rule(g, direction, sides, manifest, action,
                                FIX_NAME.format(g["id"].lower()))
            if isinstance(rule, str):
                problems.append(rule)
                continue
            out.append({"policy": ref, "kind": kind, "namespace": None, "tier": tier,
                        "direction": direction, "action": "pass" if passes else "allow", "at": at,
                        "rule": rule})
        return out

    def _new_cnp(self, g: dict[str, Any], direction: str,
                 sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
        ns, labels, name = _new_policy_subject(g, direction, sides)
        rule = cilium_rule(g, direction, sides)
        manifest = {"apiVersion": cilium_v2.API_VERSION, "kind": cilium_v2.CNP,
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"endpointSelector": {"matchLabels": labels} if labels else {},
                             direction: [rule],
                             "enableDefaultDeny": {direction: False}}}
        return {"policy": f"{ns}/{name}", "kind": cilium_v2.CNP, "namespace": ns,
                "tier": "networkpolicy", "direction": direction, "action": "allow",
                "at": None, "rule": rule, "new": manifest}

    def _new_np(self, g: dict[str, Any], direction: str, sides: dict[str, dict[str, Any]],
                name: str | None = None) -> dict[str, Any]:
        ns, labels, default_name = _new_policy_subject(g, direction, sides)
        name = self._unique(ns, name or default_name)
        manifest = {"apiVersion": netpol_v1.API_VERSION, "kind": netpol_v1.KIND,
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"podSelector": {"matchLabels": labels} if labels else {},
                             "policyTypes": [direction.capitalize()],
                             direction: [np_rule(g, direction, ns, sides)]}}
        return {"policy": f"{ns}/{name}", "kind": netpol_v1.KIND, "namespace": ns,
                "tier": "networkpolicy", "direction": direction, "action": "allow",
                "at": None, "rule": manifest["spec"][direction][0], "new": manifest}


def _namespace_of(manifest: dict[str, Any]) -> str:
    return str((manifest.get("metadata") or {}).get("namespace") or "default")


def _dns_part(text: str, limit: int) -> str:
    """A piece of a policy name: lower-case letters, digits and '-' only."""
    part = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return part[:limit].strip("-") or "x"


def _allow_name(g: dict[str, Any], direction: str) -> str:
    """A new policy named after what it admits: allow-<subject>-to-<peer>-<proto>-<port>
    (or -from- for ingress)."""
    def short(ent: dict[str, Any]) -> str:
        if ent["kind"] != "pod" or not ent.get("workload"):
            return ent["kind"]
        return str(ent["workload"]).rpartition("/")[2]
    src, dst = g["source"], g["destination"]
    subject, peer = (src, dst) if direction == "egress" else (dst, src)
    port = str(g["protocol"]) + (f"-{g['port']}" if g["port"] is not None else "")
    return (f"allow-{_dns_part(short(subject), 20)}-{'to' if direction == 'egress' else 'from'}"
            f"-{_dns_part(short(peer), 20)}-{_dns_part(port, 12)}")


def _new_policy_subject(g: dict[str, Any], direction: str,
                        sides: dict[str, dict[str, Any]]) -> tuple[str, dict[str, str], str]:
    """A new policy for the denied side: its namespace, the workload's stable labels and
    the policy's name. The name says the direction: a connection denied both ways (a pod
    to itself, or to a pod of the same labels) gets a new policy for each."""
    subject = "src" if direction == "egress" else "dst"
    ent = g["source" if subject == "src" else "destination"]
    return (str(ent["namespace"]), sides[subject]["labels"],
            FIX_NAME.format(g["id"].lower()) + f"-{direction}")


def _apply(edits: list[dict[str, Any]], candidate: PolicySet) -> dict[str, dict[str, Any]]:
    """ref -> the manifest as the fix leaves it (edited copies, new policies)."""
    out: dict[str, dict[str, Any]] = {}
    for e in edits:
        if "new" in e:
            out[e["policy"]] = e["new"]
            continue
        manifest = out.setdefault(e["policy"], clean_manifest(candidate.manifests[e["policy"]]))
        if "repair_of" in e:
            repair_rule(manifest, e["direction"], e["repair_of"], e["change"])
        else:
            insert_rule(manifest, e["direction"], e["at"], e["rule"])
    return out


def _compile(ref_manifests: dict[str, dict[str, Any]], fix_no: int) -> dict[str, Policy]:
    out = {}
    for ref, manifest in ref_manifests.items():
        key = (str(manifest.get("apiVersion")), str(manifest.get("kind")))
        compiled = DIALECTS[key](Document(manifest, Path("(suggested fix)"), fix_no), Notes())
        # a fix's manifest is one rule set (Cilium's `specs` are never written)
        out[ref] = compiled[0] if isinstance(compiled, list) else compiled
    return out


def _plan(edits: list[dict[str, Any]], compiled: dict[str, Policy]) -> blast.Plan:
    plan = blast.Plan()
    for e in edits:
        policy = compiled[e["policy"]]
        plan.directions.add(e["direction"])
        if "new" in e:
            plan.added.append(policy)
            if e.get("for_isolated"):
                plan.keeps_isolation.add(policy.ref)
            continue
        plan.replaced[e["policy"]] = policy
        same_dir = [i for i, r in enumerate(policy.rules) if r.direction == e["direction"]]
        # the inserted (or repaired) rule's position among the policy's rules of its
        # direction
        at = (e["repair_of"] if "repair_of" in e
              else len(same_dir) - 1 if e["at"] is None else e["at"])
        plan.new_rules.append((policy, same_dir[at]))
    return plan


def _document(g: dict[str, Any], edits: list[dict[str, Any]],
              manifests: dict[str, dict[str, Any]],
              sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    notes = []
    for side, label in (("src", "source"), ("dst", "destination")):
        ent = g["source" if side == "src" else "destination"]
        named = any(peer_side(g, e["direction"]) == side for e in edits)
        if named and ent["kind"] == "pod" and not sides[side]["labels"]:
            notes.append(f"the {label} pods share no stable label: the rule admits every pod "
                         f"of namespace {ent['namespace']}")
    if g["protocol"] not in PORT_PROTOCOLS:
        notes.append(f"a policy cannot name {g['protocol']}: the rule admits every "
                     "protocol and port between these peers")
    tiers = sorted({e["tier"] for e in edits})
    if any(e["tier"] in ("admin", "baseline") for e in edits):
        notes.append(CLUSTER_ADMIN_NOTE)
    if any(e["action"] == "pass" for e in edits):
        notes.append("the Pass hands this traffic to the NetworkPolicy and baseline tiers, "
                     "which admit it; the guardrail's other rules keep their effect")
    if any("new" in e and e["kind"] == netpol_v1.KIND and not e.get("for_isolated")
           for e in edits):
        d = next(e["direction"] for e in edits if "new" in e and not e.get("for_isolated"))
        notes.append(f"a new NetworkPolicy isolates the pods it selects for {d}: every "
                     f"other {d} connection of theirs is then denied unless a "
                     "NetworkPolicy admits it (see what it closes)")
    return {
        "edits": [{**{k: v for k, v in e.items() if k != "new"}, "new_policy": "new" in e}
                  for e in edits],
        "tiers": tiers,
        "yaml": _dump(manifests.values()),
        "notes": notes,
    }


def suggest_fixes(con: duckdb.DuckDBPyConnection, groups: list[dict[str, Any]],
                  candidate: PolicySet) -> tuple[dict[str, str], list[str]]:
    """Attach `fix` to every break group: the edits, the ready-to-apply YAML of each
    edited policy, and the blast radius found by replaying the traffic; a break decided
    by a baseline rule also gets `fix.alternative`, the NetworkPolicy way. Returns every
    fix together: policy ref -> its YAML as all the fixes leave it (each policy edited by
    all of them), in the order to apply; and why a policy so edited would not validate."""
    if not groups:
        return {}, []
    _DUMPED.clear()
    chosen: list[dict[str, Any]] = []
    keys = [g["gkey"] for g in groups]
    size = {r: int(n) for r, n in con.execute("""
        SELECT ref, count(DISTINCT ident_id) FROM policy_use WHERE pset = 'candidate'
        GROUP BY ref""").fetchall()}
    denied: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in db.rows(con, DENIED_SQL, {"keys": keys}):
        denied.setdefault((r["gkey"], r["direction"]), []).append(r)
    info = _side_info(con, keys)
    fixer = _Fixer(candidate, size)
    fixer.con = con
    fixer.selects = {ref: set(ids) for ref, ids in con.execute("""
        SELECT p.ref, list(DISTINCT t.ident_id)
        FROM target_ident t JOIN np_pol p ON p.pset = t.pset AND p.pol_id = t.pol_id
        WHERE t.pset = 'candidate' AND p.tier = 'namespace' GROUP BY p.ref""").fetchall()}
    plans: list[blast.Plan] = []
    plan_of: dict[str, int] = {}        # fix YAML -> plan, for fixes that are the same
    targets: list[tuple[dict[str, Any], dict[str, Any], str]] = []  # (group, fix, yaml)
    first_with: dict[str, str] = {}
    for fix_no, g in enumerate(groups):
        sides = {s: info.get((g["gkey"], s), {"labels": {}, "addresses": []})
                 for s in ("src", "dst")}
        rows = {d: denied.get((g["gkey"], d), []) for d in ("egress", "ingress")}
        fixer.deny_rules = []
        edits, alternative, problems = fixer.edits(g, rows, sides)
        chosen += edits
        docs = [("fix", edits)] + ([("alternative", alternative)] if alternative else [])
        for which, some in docs:
            manifests = _apply(some, candidate)
            doc = _document(g, some, manifests, sides)
            if which == "fix":
                g["fix"] = doc
                if problems:
                    doc["problem"] = "; ".join(problems)
                # a deny rule decided: no allow anywhere overrides it
                doc["deny_rules"] = sorted(set(fixer.deny_rules))
                if doc["deny_rules"]:
                    doc["notes"].insert(0, "denied by the deny rule "
                                        + ", ".join(doc["deny_rules"]) + ": a deny wins over "
                                        "every allow, so only editing that deny rule can "
                                        "admit this traffic")
            else:
                g["fix"]["alternative"] = doc
            if not manifests:
                continue
            try:
                compiled = _compile(manifests, fix_no)
            except PolicyError as err:
                doc["problem"] = f"the suggested rule does not validate: {err}"
                continue
            plan_no = plan_of.get(doc["yaml"])
            if plan_no is None:
                plan_no = plan_of[doc["yaml"]] = len(plans)
                plans.append(_plan(some, compiled))
            targets.append((g, doc, str(plan_no)))
        # one edit often repairs several groups (a DNS rule for the whole namespace)
        same = first_with.setdefault(g["fix"]["yaml"], g["id"])
        g["fix"]["same_as"] = None if same == g["id"] else same
    moved = blast.replay(con, plans, candidate.policies)
    for g, doc, plan_no in targets:
        _state_effect(g, doc, moved.get(int(plan_no), []))
    for g in groups:
        for doc in (g["fix"], g["fix"].get("alternative")):
            if doc is not None and "restores" not in doc:
                doc["restores"] = {"connections": 0, "of": g["connections"],
                                   "other_breaks": 0}
                doc["also_opens"] = None
                doc["blast_radius"] = None
    combined = _combine(chosen, candidate)
    invalid = _shadowing(chosen)
    for ref, manifest in combined.items():
        try:
            _compile({ref: manifest}, 0)
        except PolicyError as err:   # e.g. more rules than a cluster-scoped policy holds
            invalid.append(f"{ref} with every fix does not validate ({err}): apply the fix "
                           "files in smaller batches")
    texts = {ref: _dump([m]) for ref, m in combined.items()}
    _DUMPED.clear()
    return texts, invalid


_DUMPED: dict[str, str] = {}   # a manifest's JSON -> its YAML, for one report


def _dump(manifests: Any) -> str:
    """The manifests as one YAML stream. A manifest several fixes (and all.yaml) share
    is dumped once: the YAML emitter is the slow part of a report with many fixes."""
    out = []
    for m in manifests:
        key = json.dumps(m, sort_keys=False, default=str)
        text = _DUMPED.get(key)
        if text is None:
            text = _DUMPED[key] = yaml.dump(m, Dumper=_Dumper, sort_keys=False,
                                            default_flow_style=False, allow_unicode=True)
        out.append(text)
    return "---\n".join(out)


def _shadowing(edits: list[dict[str, Any]]) -> list[str]:
    """Where all the fixes together may not do what each does alone: in one policy, a Pass
    inserted before an earlier rule than another fix's Allow. A connection both match is
    passed on (each Pass was judged for its own group's traffic only)."""
    out = []
    places: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for e in edits:
        if e.get("at") is not None and e.get("action") in ("pass", "allow"):
            places.setdefault((e["policy"], e["direction"]), []).append((e["at"], e["action"]))
    for (ref, direction), found in sorted(places.items()):
        passes = [at for at, action in found if action == "pass"]
        allows = [at for at, action in found if action == "allow"]
        if passes and allows and min(passes) < max(allows):
            out.append(f"{ref} with every fix: a Pass before {direction} rule {min(passes)} "
                       f"precedes an Allow before rule {max(allows)}; traffic both match is "
                       "passed on: rerun with all.yaml to check")
    return out


def _combine(edits: list[dict[str, Any]], candidate: PolicySet) -> dict[str, dict[str, Any]]:
    """Every fix's edits applied together: rule repairs first, then the added rules
    (appended in order, then inserted before their rules from the last position back,
    so every position still names the rule as written), new policies last; an edit
    several fixes share is made once."""
    unique: dict[str, dict[str, Any]] = {}
    for e in edits:
        unique.setdefault(json.dumps({k: v for k, v in e.items() if k != "near_miss"},
                                     sort_keys=True, default=str), e)
    todo = list(unique.values())
    out: dict[str, dict[str, Any]] = {}

    def manifest(ref: str) -> dict[str, Any]:
        return out.setdefault(ref, clean_manifest(candidate.manifests[ref]))
    # one rule repaired by two fixes, one adding ports and one peers, would admit every
    # new peer on every new port: the second kind of change goes into a copy of the rule
    kinds: dict[tuple[str, str, int], str] = {}
    for e in todo:
        if "repair_of" not in e:
            continue
        place = (e["policy"], e["direction"], e["repair_of"])
        kind = "ports" if e["change"].get("add_port") else "peers"
        if kinds.setdefault(place, kind) == kind:
            repair_rule(manifest(e["policy"]), e["direction"], e["repair_of"], e["change"])
            continue
        copy_of = clean_manifest(candidate.manifests[e["policy"]])
        rule = repair_rule(copy_of, e["direction"], e["repair_of"], e["change"])
        if rule is not None:
            insert_rule(manifest(e["policy"]), e["direction"], None, rule)
    # the rules added at one place of one policy, merged where they share peers or ports
    # (a rule per group would soon pass the API's limit of rules per policy)
    places: dict[tuple[str, str, int | None], list[dict[str, Any]]] = {}
    for e in todo:
        if "repair_of" not in e and "new" not in e:
            places.setdefault((e["policy"], e["direction"], e["at"]), []).append(e["rule"])
    for (ref, direction, at), rules in places.items():
        if at is None:
            for rule in merge_rules(rules, direction):
                insert_rule(manifest(ref), direction, None, rule)
    for (ref, direction, at), rules in sorted(
            ((k, v) for k, v in places.items() if k[2] is not None),
            key=lambda kv: -int(kv[0][2] or 0)):
        # a Pass placed first would hand on the traffic another fix's Allow is for (the
        # Pass was judged for its own group's pods only): the Allows go first
        merged = sorted(merge_rules(rules, direction), key=lambda r: r.get("action") == "Pass")
        for rule in reversed(merged):
            insert_rule(manifest(ref), direction, at, rule)
    for e in todo:
        if "new" in e:
            out[e["policy"]] = e["new"]
    return out


def _state_effect(g: dict[str, Any], doc: dict[str, Any], found: list[dict[str, Any]]) -> None:
    own = sum(r["connections"] for r in found
              if r["gkey"] == g["gkey"] and r["effect"] == "opens")
    others = [r for r in found if r["gkey"] != g["gkey"]]
    opens = [r for r in others if r["effect"] == "opens"]
    closes = [r for r in found if r["effect"] == "closes"]
    opens_today = [r for r in opens if r["change"] != "break"]
    doc["restores"] = {"connections": own, "of": g["connections"],
                       "other_breaks": sum(r["connections"] for r in opens
                                           if r["change"] == "break")}
    # observed traffic the candidate denies (and not as a break) that the fix admits: a
    # fix that opens any is marked
    doc["also_opens"] = {
        "connections": sum(r["connections"] for r in opens_today),
        "flows": sum(r["flows"] for r in opens_today),
        "pairs": [{k: r[k] for k in ("source", "destination", "port", "connections",
                                     "flows")} for r in opens_today[:BLAST_ITEMS]]}
    doc["blast_radius"] = {
        "connections": sum(r["connections"] for r in opens),
        "flows": sum(r["flows"] for r in opens),
        # breaks elsewhere that the fix also repairs, and traffic denied today it opens
        "restores_other_breaks": sum(r["connections"] for r in opens
                                     if r["change"] == "break"),
        "opens_denied_today": sum(r["connections"] for r in opens if r["change"] != "break"),
        # traffic the candidate allows that the fix would deny (a new isolation, a Pass)
        "closes": sum(r["connections"] for r in closes),
        "closes_flows": sum(r["flows"] for r in closes),
        "items": [{k: r[k] for k in ("effect", "change", "source", "destination", "port",
                                     "connections", "flows")}
                  for r in (opens[:BLAST_ITEMS] + closes[:BLAST_ITEMS])],
    }
