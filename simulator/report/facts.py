"""What the report says beside the groups: inputs, the traps the primer warns about, how
far the result can be trusted, and the namespace matrix."""

from __future__ import annotations

import re
from typing import Any

import duckdb

from .. import db
from ..diff import CHANGES
from ..policy.loader import PolicySet

LIST_LIMIT = 200
MATRIX_NAMESPACES = 40
DNS_PORT = 53


def flow_inputs(con: duckdb.DuckDBPyConnection, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each flow source with its files, records and the time range it covers."""
    spans = {int(i): (a, b) for i, a, b in con.execute("""
        SELECT src_id, to_timestamp(min(t_first)), to_timestamp(max(t_last)) FROM tuples
        WHERE skip_reason IS NULL GROUP BY src_id""").fetchall()}
    records = {f["file"]: int(f["records"]) for f in summary["flows"]["files"]}
    out = []
    for i, src in enumerate(summary["inputs"]["flows"]):
        first, last = spans.get(i, (None, None))
        out.append({"format": src["format"], "files": src["files"],
                    "records": sum(records.get(f, 0) for f in src["files"]),
                    "first_seen": first, "last_seen": last})
    return out


def dns_breaks(groups: list[dict[str, Any]]) -> list[str]:
    return [g["id"] for g in groups
            if g["port"] == DNS_PORT and g["protocol"] in ("UDP", "TCP")]


def unselected_pods(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Pods no candidate policy selects, per namespace: open in both directions."""
    return db.rows(con, f"""
        WITH pods AS (
            SELECT DISTINCT namespace, pod, ident_id FROM holder
            WHERE kind = 'pod' AND pod IS NOT NULL AND ident_id IS NOT NULL
            UNION
            SELECT DISTINCT namespace, pod, ident_id FROM ep
            WHERE kind = 'pod' AND pod IS NOT NULL AND ident_id IS NOT NULL
        ),
        selected AS (
            SELECT DISTINCT ident_id FROM policy_use
            WHERE pset = 'candidate' AND ident_id IS NOT NULL
        )
        SELECT namespace, count(*) AS pods, list(pod ORDER BY pod)[1:20] AS examples
        FROM pods ANTI JOIN selected USING (ident_id)
        GROUP BY namespace ORDER BY pods DESC, namespace LIMIT {LIST_LIMIT}""")


def policies_selecting_nothing(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute(f"""
        SELECT ref FROM policy_use WHERE pset = 'candidate'
        GROUP BY ref HAVING count(ident_id) = 0 ORDER BY ref LIMIT {LIST_LIMIT}""").fetchall()]


def dead_rules(con: duckdb.DuckDBPyConnection, candidate: PolicySet) -> dict[str, Any]:
    """Candidate rules that decided none of the observed connections: they matched none
    (dead), or every connection they matched was decided first by another rule or tier
    (shadowed, with the rule that decided instead)."""
    total, rows = 0, []
    for ref, direction, idx, name, shadowed_by in con.execute("""
            SELECT ref, direction, rule_idx, name, shadowed_by FROM rule_use
            WHERE pset = 'candidate' AND connections = 0
            ORDER BY ref, direction, rule_idx""").fetchall():
        total += 1
        if len(rows) < LIST_LIMIT:
            manifest = candidate.manifests.get(ref) or {}
            path = _CILIUM_RULE.fullmatch(name or "")
            if path:  # a Cilium rule, by its section path: [specs[i].]section[j]
                specs = manifest.get("specs")
                spec = (specs[int(path[1])] if path[1] is not None and isinstance(specs, list)
                        and int(path[1]) < len(specs) else manifest.get("spec"))
                direction, idx = path[2], int(path[3])
            else:
                spec = manifest.get("spec")
            section = spec.get(direction) if isinstance(spec, dict) else None
            rule = section[idx] if isinstance(section, list) and idx < len(section) else None
            rows.append({"policy": ref, "direction": direction, "index": int(idx),
                         "rule": rule, "shadowed_by": shadowed_by})
    return {"total": total, "rules": rows}


_CILIUM_RULE = re.compile(r"(?:specs\[(\d+)\]\.)?(ingress|egress|ingressDeny|egressDeny)"
                          r"\[(\d+)\]")


def trust(con: duckdb.DuckDBPyConnection, summary: dict[str, Any]) -> dict[str, Any]:
    totals = db.one(con, "SELECT coalesce(sum(flows), 0), coalesce(sum(bytes), 0) "
                         "FROM result")
    flows, bytes_ = int(totals[0]), int(totals[1])
    un = summary["connections"]["by_change"]["unresolved"]
    guessed = db.rows(con, """
        SELECT src_ip, dst_ip, dst_port, protocol, direction, flows::BIGINT AS flows,
            -- the workload beside the address: a reader knows workloads, not addresses
            src_namespace || '/' || src_workload AS src_workload,
            dst_namespace || '/' || dst_workload AS dst_workload
        FROM result WHERE direction_guessed ORDER BY flows DESC, src_ip, dst_ip LIMIT 20""")
    cal = summary["calibration"]
    return {
        "unresolved": {
            "addresses": summary["unresolved_endpoints"]["addresses"],
            "top": summary["unresolved_endpoints"]["top"],
            "connections": un["connections"], "flows": un["flows"], "bytes": un["bytes"],
            "share_of_flows": un["flows"] / flows if flows else 0.0,
            "share_of_bytes": (un["bytes"] or 0) / bytes_ if bytes_ else None,
        },
        "direction_guessed": {"connections": summary["connections"]["direction_guessed"],
                              "examples": guessed},
        "calibration": {**cal, "agreement": ((cal["compared"] - cal["disagreements"])
                                             / cal["compared"]) if cal["compared"] else None},
        "identity_conflicts": summary["identity_conflicts"],
        "skipped": summary["flows"]["skipped"],
        "skipped_examples": summary["flows"]["skipped_examples"],
    }


def namespace_matrix(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Source namespace x destination namespace: connections per change class. Endpoints
    outside pods count under their kind; namespaces beyond the busiest are '(other)'."""
    side = """CASE WHEN {s}_kind = 'pod' THEN coalesce({s}_namespace, '?')
                   ELSE '(' || {s}_kind || ')' END"""
    cells = db.rows(con, f"""
        WITH r AS (SELECT {side.format(s='src')} AS src, {side.format(s='dst')} AS dst,
                          change, candidate_tier::VARCHAR AS tier, flows FROM result),
        busiest AS (
            SELECT ns FROM (SELECT src AS ns, flows FROM r UNION ALL SELECT dst, flows FROM r)
            GROUP BY ns ORDER BY sum(flows) DESC, ns LIMIT {MATRIX_NAMESPACES}
        )
        SELECT CASE WHEN src IN (SELECT ns FROM busiest) THEN src ELSE '(other)' END AS src,
               CASE WHEN dst IN (SELECT ns FROM busiest) THEN dst ELSE '(other)' END AS dst,
               change, tier, count(*) AS connections, sum(flows)::BIGINT AS flows
        FROM r GROUP BY ALL""")
    matrix: dict[tuple[str, str], dict[str, int]] = {}
    # per cell, the tiers that decided its breaks (the candidate's)
    break_tiers: dict[tuple[str, str], dict[str, int]] = {}
    for c in cells:
        key = (c["src"], c["dst"])
        matrix.setdefault(key, {k: 0 for k in CHANGES})[c["change"]] += int(c["connections"])
        if c["change"] == "break":
            tiers = break_tiers.setdefault(key, {})
            tiers[c["tier"]] = tiers.get(c["tier"], 0) + int(c["connections"])
    names = sorted({k for pair in matrix for k in pair},
                   key=lambda n: (n.startswith("("), n))
    out = []
    for (src, dst), counts in sorted(matrix.items()):
        state = next((c for c in ("break", "newly_allowed", "unresolved") if counts[c]),
                     "unchanged")
        out.append({"source": src, "destination": dst, "state": state, "counts": counts,
                    "break_tiers": break_tiers.get((src, dst), {})})
    return {"namespaces": names, "cells": out}
