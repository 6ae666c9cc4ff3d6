"""Rollout readiness: per namespace, what the candidate changes there, the breaks its own
policies would cause and whether the suggested fixes repair them all, safest first, so a
rollout can go namespace by namespace.

A break belongs to the namespace whose policy denied it: the source's for egress, the
destination's for ingress; a break a cluster-scoped policy decided belongs to the cluster
(its own row, "cluster-scoped")."""

from __future__ import annotations

import json
from typing import Any

from ..policy.loader import PolicySet

CLUSTER = "(cluster-scoped)"
# safest first
STATUS_ORDER = {"safe": 0, "ready with fixes": 1, "blocked": 2}


def _policy_changes(candidate: PolicySet,
                    baseline: PolicySet | None) -> dict[str, dict[str, int]]:
    """namespace -> counts of policies added, changed, removed and unchanged."""
    def by_ns(pset: PolicySet | None) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for p in pset.policies if pset is not None else []:
            manifest = pset.manifests.get(p.ref) if pset is not None else None
            body = json.dumps((manifest or {}).get("spec"), sort_keys=True, default=str)
            out.setdefault(p.namespace or CLUSTER, {})[p.ref] = body
        return out
    cand, base = by_ns(candidate), by_ns(baseline)
    out: dict[str, dict[str, int]] = {}
    for ns in set(cand) | set(base):
        c, b = cand.get(ns, {}), base.get(ns, {})
        out[ns] = {"added": sum(r not in b for r in c),
                   "changed": sum(r in b and b[r] != c[r] for r in c),
                   "removed": sum(r not in c for r in b),
                   "unchanged": sum(r in b and b[r] == c[r] for r in c)}
    return out


def _home(ref: str) -> str:
    """Where a policy lives: `ns/name`, or `Kind/name` for a cluster-scoped one (kinds
    start with a capital, namespaces cannot)."""
    first = ref.split(" ", 1)[0].split("/", 1)[0]
    return CLUSTER if first[:1].isupper() else first


def _owners(g: dict[str, Any]) -> set[str]:
    """The namespaces (or the cluster) whose policies denied the group: a deny rule's
    home, else the isolated side's namespace unless only cluster-wide policies isolate
    it."""
    owners = set()
    for direction, side in (("egress", "source"), ("ingress", "destination")):
        v = g["verdicts"]["candidate"][direction]
        if v["verdict"] != "deny":
            continue
        if v["tier"] in ("admin", "baseline"):
            owners.add(CLUSTER)
        elif v.get("decided_by"):
            owners.update(_home(r) for r in v["decided_by"])
        elif v.get("isolated_by") and all(_home(r) == CLUSTER for r in v["isolated_by"]):
            owners.add(CLUSTER)
        elif g[side].get("namespace"):
            owners.add(str(g[side]["namespace"]))
    return owners


def _fixed(g: dict[str, Any]) -> bool:
    fix = g.get("fix") or {}
    return (bool(fix.get("edits")) and not fix.get("problem") and not fix.get("deny_rules")
            and (fix.get("restores") or {}).get("connections") == g["connections"])


def readiness(report: dict[str, Any], candidate: PolicySet,
              baseline: PolicySet | None) -> dict[str, Any]:
    """{"namespaces": [...safest first], "complete": whether every break group is in the
    report (the biggest MAX_GROUPS are)}."""
    changes = _policy_changes(candidate, baseline)
    rows: dict[str, dict[str, Any]] = {}

    def row(ns: str) -> dict[str, Any]:
        return rows.setdefault(ns, {
            "namespace": ns, "policies": changes.get(ns, {"added": 0, "changed": 0,
                                                          "removed": 0, "unchanged": 0}),
            "breaks": {"groups": 0, "connections": 0, "flows": 0}, "unfixed": [],
            "fixes": [], "newly_allowed": {"groups": 0, "connections": 0}})
    for ns, c in changes.items():
        if c["added"] or c["changed"] or c["removed"]:
            row(ns)
    for g in report["breaks"]["groups"]:
        for ns in _owners(g):
            r = row(ns)
            r["breaks"]["groups"] += 1
            r["breaks"]["connections"] += g["connections"]
            r["breaks"]["flows"] += g["flows"]
            (r["fixes"] if _fixed(g) else r["unfixed"]).append(g["id"])
    for g in report["newly_allowed"]["groups"]:
        ns = g["destination"].get("namespace") or g["source"].get("namespace")
        if ns in rows:
            rows[ns]["newly_allowed"]["groups"] += 1
            rows[ns]["newly_allowed"]["connections"] += g["connections"]
    for r in rows.values():
        r["status"] = ("safe" if not r["breaks"]["groups"] else
                       "blocked" if r["unfixed"] else "ready with fixes")
    ordered = sorted(rows.values(), key=lambda r: (
        STATUS_ORDER[r["status"]], r["breaks"]["connections"], r["namespace"] == CLUSTER,
        r["namespace"]))
    return {"namespaces": ordered,
            "complete": report["breaks"]["shown"] == report["breaks"]["total"]}
