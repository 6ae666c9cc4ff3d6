"""Connections grouped by workload pair and port, for the changes a reader acts on
(break, newly allowed), with a sample flow, a sentence saying why, and their connections.

Writes `report_members` (conn_id -> group key) for the fixes that replay a group."""

from __future__ import annotations

import json
from typing import Any

import duckdb

from .. import db
from ..diff import FULL_RESULT
from .text import RuleNames, reason_sentence

GROUPED_CHANGES = ("break", "newly_allowed")
GROUP_PREFIX = {"break": "B", "newly_allowed": "N"}

# A workload is the pod's owner (or the pod itself); other endpoints group by kind
# (all external addresses are one side, all nodes another), but for a host-network pod a
# node's connection names (diff.py): that pod's workload.
_SIDE = """
    CASE WHEN {s}_kind = 'pod' OR ({s}_kind = 'node' AND {s}_pod IS NOT NULL)
         THEN {s}_namespace END AS {s}_ns,
    CASE WHEN {s}_kind = 'pod' OR ({s}_kind = 'node' AND {s}_pod IS NOT NULL)
         THEN coalesce({s}_workload, {s}_pod) END AS {s}_wl"""

MEMBERS_SQL = f"""
CREATE OR REPLACE TEMP TABLE report_members AS
SELECT conn_id, change, protocol, dst_port,
    src_kind, src_ns, src_wl, dst_kind, dst_ns, dst_wl,
    concat_ws(chr(31), change, src_kind, coalesce(src_ns, ''), coalesce(src_wl, ''),
              dst_kind, coalesce(dst_ns, ''), coalesce(dst_wl, ''), protocol,
              coalesce(dst_port::VARCHAR, '')) AS gkey
FROM (SELECT *, {_SIDE.format(s='src')}, {_SIDE.format(s='dst')} FROM result)
WHERE change IN ('break', 'newly_allowed')
"""

GROUPS_SQL = """
CREATE OR REPLACE TEMP TABLE report_groups AS
WITH agg AS (
    SELECT m.gkey, m.change,
        any_value(m.src_kind) AS src_kind, any_value(m.src_ns) AS src_ns,
        any_value(m.src_wl) AS src_wl, any_value(m.dst_kind) AS dst_kind,
        any_value(m.dst_ns) AS dst_ns, any_value(m.dst_wl) AS dst_wl,
        any_value(m.protocol) AS protocol, any_value(m.dst_port) AS dst_port,
        count(*) AS connections, sum(r.flows)::BIGINT AS flows,
        -- some sources (Azure NSG v1, pcaps cut short) record no byte or packet counts
        {sat_bytes} AS bytes,
        {sat_packets} AS packets,
        min(r.first_seen) AS first_seen, max(r.last_seen) AS last_seen,
        count(DISTINCT r.src_pod) AS src_pods, count(DISTINCT r.dst_pod) AS dst_pods,
        count(DISTINCT r.src_ip) AS src_addresses, count(DISTINCT r.dst_ip) AS dst_addresses,
        -- the Services the connections reached their destination through
        list(DISTINCT r.dst_service ORDER BY r.dst_service)
            FILTER (WHERE r.dst_service IS NOT NULL) AS services,
        -- the busiest connection, ties broken as the members' list orders them (conn_id
        -- follows a parallel grouping's order, which differs from run to run)
        arg_min(r.conn_id, (-r.flows, r.src_ip, r.dst_ip, r.first_seen)) AS sample_conn
    FROM report_members m JOIN result r USING (conn_id)
    GROUP BY m.gkey, m.change
)
SELECT *, row_number() OVER (PARTITION BY change ORDER BY flows DESC, gkey) AS rank
FROM agg
"""

_SAMPLE_COLUMNS = """s.src_ip, s.dst_ip, s.src_pod, s.dst_pod, s.flows AS sample_flows,
    s.candidate, s.baseline, s.direction_guessed,
    s.candidate_egress, s.candidate_ingress,
    s.candidate_egress_isolated_by, s.candidate_egress_allowed_by,
    s.candidate_ingress_isolated_by, s.candidate_ingress_allowed_by,
    s.baseline_egress, s.baseline_ingress,
    s.baseline_egress_isolated_by, s.baseline_egress_allowed_by,
    s.baseline_ingress_isolated_by, s.baseline_ingress_allowed_by,
    s.candidate_egress_tier, s.candidate_ingress_tier,
    s.baseline_egress_tier, s.baseline_ingress_tier,
    s.candidate_egress_decided_by, s.candidate_ingress_decided_by,
    s.baseline_egress_decided_by, s.baseline_ingress_decided_by,
    s.src_workload, s.dst_workload, s.src_namespace, s.dst_namespace"""

CONNECTION_COLUMNS = """r.src_ip, r.src_pod, r.dst_ip, r.dst_pod, r.dst_port, r.protocol,
    r.flows::BIGINT AS flows, r.bytes::BIGINT AS bytes, r.first_seen, r.last_seen,
    r.direction, r.direction_guessed, r.observed"""


def entity(kind: str, namespace: str | None, workload: str | None) -> dict[str, Any]:
    """One side of a group: a workload (namespace + owner) or a kind of endpoint."""
    if kind == "pod" or (kind == "node" and workload):
        # "Deployment/api"; a bare pod is its own workload
        owner_kind, slash, name = (workload or "").partition("/")
        if not slash:
            owner_kind, name = "", owner_kind
        # a node's port a host-network pod serves: that pod is its node for policy
        label = (f"{namespace}/{name}" if kind == "pod"
                 else f"host-network pod {namespace}/{name} (its node)")
        return {"kind": kind, "namespace": namespace, "workload": workload,
                "owner_kind": owner_kind or None, "label": label}
    # the same words as the namespace matrix and the blast radius use
    return {"kind": kind, "namespace": None, "workload": None, "owner_kind": None,
            "label": f"({kind})"}


def build_groups(con: duckdb.DuckDBPyConnection, *, limit: int, per_group: int,
                 total_flows: int, has_baseline_set: bool,
                 rules: dict[str, RuleNames] | None = None) -> dict[str, dict[str, Any]]:
    """{change: {"total": groups, "groups": [...biggest `limit` groups]}}. rules: how
    each policy set's rule references read."""
    db.run(con, MEMBERS_SQL)
    db.run(con, GROUPS_SQL.replace("{sat_bytes}", db.saturated_sum("r.bytes"))
           .replace("{sat_packets}", db.saturated_sum("r.packets")))
    out: dict[str, dict[str, Any]] = {}
    for change in GROUPED_CHANGES:
        total = int(db.one(con, f"SELECT count(*) FROM report_groups "
                                f"WHERE change = '{change}'")[0])
        groups = db.rows(con, f"""
            SELECT g.*, {_SAMPLE_COLUMNS}
            FROM report_groups g JOIN {FULL_RESULT} s ON s.conn_id = g.sample_conn
            WHERE g.change = '{change}' AND g.rank <= {int(limit)}
            ORDER BY g.rank""")
        members = db.rows(con, f"""
            WITH ranked AS (
                SELECT g.rank, r.*, row_number() OVER (
                    PARTITION BY g.rank ORDER BY r.flows DESC, r.src_ip, r.dst_ip) AS n
                FROM report_groups g
                JOIN report_members m ON m.gkey = g.gkey
                JOIN result r ON r.conn_id = m.conn_id
                WHERE g.change = '{change}' AND g.rank <= {int(limit)}
            )
            SELECT rank, {CONNECTION_COLUMNS} FROM ranked r
            WHERE n <= {int(per_group)} ORDER BY rank, n""")
        misses = _near_misses(con, change, limit) if change == "break" else {}
        by_rank: dict[int, list[dict[str, Any]]] = {}
        for m in members:
            by_rank.setdefault(int(m.pop("rank")), []).append(m)
        out[change] = {"total": total, "shown": len(groups),
                       "groups": [_group(change, g, by_rank.get(int(g["rank"]), []),
                                         total_flows, has_baseline_set, rules or {})
                                  | {"near_misses": misses.get(int(g["rank"]), [])}
                                  for g in groups]}
    return out


NEAR_MISSES_SQL = """
WITH k AS (   -- each member's denied directions' keys
    SELECT g.rank, r.conn_id, 'egress' AS direction, r.ekey AS key_id
    FROM report_groups g JOIN report_members m ON m.gkey = g.gkey
    JOIN result r ON r.conn_id = m.conn_id
    WHERE g.change = $change AND g.rank <= $limit AND r.candidate_egress = 'deny'
    UNION ALL
    SELECT g.rank, r.conn_id, 'ingress', r.ikey
    FROM report_groups g JOIN report_members m ON m.gkey = g.gkey
    JOIN result r ON r.conn_id = m.conn_id
    WHERE g.change = $change AND g.rank <= $limit AND r.candidate_ingress = 'deny'
)
SELECT k.rank, n.direction, n.policy, n.rule, n.condition, n.detail, n.repair,
    min(n.cost) AS cost, count(DISTINCT k.conn_id) AS connections
FROM k JOIN near_miss n ON n.key_id = k.key_id AND n.direction = k.direction
GROUP BY ALL
ORDER BY k.rank, cost, connections DESC, n.policy, n.rule NULLS LAST, n.detail
"""
NEAR_MISSES_PER_GROUP = 8


def _near_misses(con: duckdb.DuckDBPyConnection, change: str,
                 limit: int) -> dict[int, list[dict[str, Any]]]:
    """Per group rank: the rules that almost admit its connections (near_miss.py), the
    smallest change first."""
    out: dict[int, list[dict[str, Any]]] = {}
    for r in db.rows(con, NEAR_MISSES_SQL, {"change": change, "limit": int(limit)}):
        some = out.setdefault(int(r.pop("rank")), [])
        if len(some) < NEAR_MISSES_PER_GROUP:
            r["repair"] = json.loads(r["repair"]) if r["repair"] else None
            r["connections"] = int(r["connections"])
            some.append(r)
    return out


def _group(change: str, g: dict[str, Any], members: list[dict[str, Any]], total_flows: int,
           has_baseline_set: bool, rules: dict[str, RuleNames]) -> dict[str, Any]:
    src = entity(g["src_kind"], g["src_ns"], g["src_wl"])
    dst = entity(g["dst_kind"], g["dst_ns"], g["dst_wl"])
    src.update(pods=int(g["src_pods"]), addresses=int(g["src_addresses"]))
    dst.update(pods=int(g["dst_pods"]), addresses=int(g["dst_addresses"]))
    verdicts = {
        pset: {d: {"verdict": g[f"{pset}_{d}"],
                   "tier": g[f"{pset}_{d}_tier"],
                   "isolated_by": list(g[f"{pset}_{d}_isolated_by"] or []),
                   "allowed_by": list(g[f"{pset}_{d}_allowed_by"] or []),
                   "decided_by": list(g[f"{pset}_{d}_decided_by"] or []),
                   "decided_by_labels": rules[pset].of_tier(
                       g[f"{pset}_{d}_decided_by"] or [], g[f"{pset}_{d}_tier"])
                   if pset in rules else []}
               for d in ("egress", "ingress")}
        for pset in ("candidate", "baseline")}
    port = g["dst_port"]
    sample = {"src_ip": g["src_ip"], "src_pod": g["src_pod"], "dst_ip": g["dst_ip"],
              "dst_pod": g["dst_pod"], "port": port, "protocol": g["protocol"],
              "flows": int(g["sample_flows"]), "direction_guessed": bool(g["direction_guessed"])}
    return {
        "id": f"{GROUP_PREFIX[change]}{g['rank']}",
        "gkey": g["gkey"],
        "change": change,
        "source": src,
        "destination": dst,
        "protocol": g["protocol"],
        "port": int(port) if port is not None else None,
        "connections": int(g["connections"]),
        "flows": int(g["flows"]),
        "bytes": None if g["bytes"] is None else int(g["bytes"]),
        "packets": None if g["packets"] is None else int(g["packets"]),
        "share_of_flows": (int(g["flows"]) / total_flows) if total_flows else 0.0,
        "first_seen": g["first_seen"],
        "last_seen": g["last_seen"],
        "sample": sample,
        "services": list(g["services"] or []),
        "verdicts": verdicts,
        "reason": reason_sentence(change, src, dst, g["protocol"], port, verdicts,
                                  has_baseline_set, sample, rules),
        "connection_rows": members,
    }
