"""Baseline vs candidate per connection: the change class and the result table every
output reads (`result`)."""

from __future__ import annotations

import duckdb

from . import db
from .connections import DIRECTION_SOURCES, ENDPOINT_KINDS, GUESSED
from .protocols import PROTO_NAME_SQL

UNRESOLVED_KINDS = ("unresolved", "service")
CHANGES = ("break", "newly_allowed", "still_allowed", "still_denied", "unresolved")
# `result` holds one row per connection with the run's internal ids; every written table
# reads this view of it, which adds the explanation columns.
PUBLIC_RESULT = "result_public"


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


# The explanation columns (reason sentences, lists of policy names) depend only on a
# connection's pair of evaluation keys: they are kept once per pair in `explanation` and
# joined in by the `result_full` view, instead of being copied to every connection.
EXPLAINED = ("reason", "egress_isolated_by", "egress_allowed_by", "ingress_isolated_by",
             "ingress_allowed_by", "egress_decided_by", "ingress_decided_by")
# The tier that decided a verdict (see evaluate.py): the admin tier, NetworkPolicies, the
# baseline, or none (allowed by default).
DECISION_TIERS = ("admin", "networkpolicy", "baseline", "default")
FULL_RESULT = "result_full"


# Columns of few values are stored as ENUMs (db.enum_type): writing the connections table
# is then a third faster.
ENUMS = {
    "endpoint_kind": ENDPOINT_KINDS,
    "verdict": ("allow", "deny", "unknown"),
    "observed_verdict": ("allowed", "denied", "unknown"),
    "change_class": CHANGES,
    "direction_source": DIRECTION_SOURCES,
    "decision_tier": DECISION_TIERS,
}
# Without a baseline set, the baseline reason is what the flow records say.
OBSERVED_REASONS = {"allowed": "observed: allowed in the flow records",
                    "denied": "observed: denied in the flow records",
                    None: "observed: no verdict recorded, assumed allowed"}


def _create_enums(con: duckdb.DuckDBPyConnection) -> None:
    for name, values in ENUMS.items():
        db.enum_type(con, name, "SELECT unnest([" + _sql_list(values) + "])")
    # per run: the policies the lists name, and the reason sentences
    lists = " UNION ".join(f"SELECT unnest({c}) FROM pair_verdict" for c in EXPLAINED[1:])
    db.enum_type(con, "policy_ref",
                 f"SELECT * FROM ({lists}) AS t(v) WHERE v IS NOT NULL")
    db.enum_type(con, "reason_text", f"""
        SELECT reason FROM pair_verdict WHERE reason IS NOT NULL
        UNION SELECT unnest([{_sql_list(tuple(OBSERVED_REASONS.values()))}])""")


# Per pair of keys: the verdict columns `result` copies to each of its connections, cast
# to their ENUMs once per pair instead of once per connection.
# suffix of the result column -> (pair_verdict's column, its ENUM)
PAIR_VERDICT_COLUMNS = {"": ("verdict", "verdict"), "_egress": ("egress", "verdict"),
                        "_ingress": ("ingress", "verdict"), "_tier": ("tier", "decision_tier"),
                        "_egress_tier": ("egress_tier", "decision_tier"),
                        "_ingress_tier": ("ingress_tier", "decision_tier")}


def _pair_columns(alias: str, name: str) -> str:
    return ", ".join(f"{alias}.{source}::{enum} AS {name}{suffix}"
                     for suffix, (source, enum) in PAIR_VERDICT_COLUMNS.items())


NEAR_MISS_PAIR_SQL = """
CREATE OR REPLACE VIEW near_miss_pair AS
WITH hit AS (   -- the near misses of each denied direction (pair_result, not
                --  pair_verdict: the fixes' replay replaces the evaluation tables)
    SELECT k.ekey, k.ikey, n.* FROM pair_result k
    JOIN near_miss n ON n.key_id = k.ekey AND n.direction = 'egress'
    WHERE k.candidate_egress = 'deny'
    UNION ALL
    SELECT k.ekey, k.ikey, n.* FROM pair_result k
    JOIN near_miss n ON n.key_id = k.ikey AND n.direction = 'ingress'
    WHERE k.candidate_ingress = 'deny'
)
-- per pair, the smallest change first
SELECT ekey, ikey, list({'direction': direction, 'policy': policy, 'rule': rule,
    'condition': condition, 'detail': detail, 'cost': cost}
    ORDER BY cost, direction, rank) AS candidate_near_miss
FROM hit GROUP BY ekey, ikey
"""


def build_result(con: duckdb.DuckDBPyConnection, has_baseline_set: bool) -> None:
    _create_enums(con)
    how = "CASE c.how " + " ".join(
        f"WHEN {i} THEN '{name}'" for i, name in enumerate(DIRECTION_SOURCES)) + " END"
    guessed = _sql_list(GUESSED)
    # one row per pair of keys with both sets' explanations side by side: the result view
    # joins it once
    cand_lists = ", ".join(f"k.{c}::policy_ref[] AS candidate_{c}" for c in EXPLAINED[1:])
    if has_baseline_set:
        base_lists = "b.reason::reason_text AS baseline_reason, " + ", ".join(
            f"b.{c}::policy_ref[] AS baseline_{c}" for c in EXPLAINED[1:])
        base_pair = _pair_columns("b", "baseline")
        base_join = """LEFT JOIN pair_verdict b ON b.ekey = k.ekey AND b.ikey = k.ikey
                           AND b.pset = 'baseline'"""
    else:
        base_lists = base_pair = "NULL AS no_baseline_set"
        base_join = ""
    db.run(con, f"""CREATE OR REPLACE TABLE explanation AS
                    SELECT k.ekey, k.ikey, k.reason::reason_text AS candidate_reason,
                        {cand_lists}, {base_lists}
                    FROM pair_verdict k {base_join}
                    WHERE k.pset = 'candidate'""")
    db.run(con, f"""CREATE OR REPLACE TABLE pair_result AS
                    SELECT k.ekey, k.ikey, {_pair_columns("k", "candidate")}, {base_pair}
                    FROM pair_verdict k {base_join}
                    WHERE k.pset = 'candidate'""")
    # near misses are found while this runs (near_miss.py): read when the outputs are
    db.run(con, NEAR_MISS_PAIR_SQL)
    if has_baseline_set:
        baseline = ", ".join(f"pr.baseline{s}" for s in PAIR_VERDICT_COLUMNS)
        base_expl = "xk.baseline_reason, " + ", ".join(
            f"xk.baseline_{c}" for c in EXPLAINED[1:])
    else:
        # Without a baseline set, the baseline is what the dataplane did.
        baseline = ("CASE c.observed WHEN 'denied' THEN 'deny' ELSE 'allow' END::verdict "
                    "AS baseline, " + ", ".join(f"NULL::{enum} AS baseline{s}"
                                               for s, (_, enum) in PAIR_VERDICT_COLUMNS.items()
                                               if s))
        base_expl = ("CASE r.observed " + " ".join(
            f"WHEN '{k}' THEN '{v}'" for k, v in OBSERVED_REASONS.items() if k)
            + f" ELSE '{OBSERVED_REASONS[None]}' END::reason_text AS baseline_reason, "
            + ", ".join(f"NULL::policy_ref[] AS baseline_{c}" for c in EXPLAINED[1:]))
    candidate = ", ".join(f"pr.candidate{s}" for s in PAIR_VERDICT_COLUMNS)
    unresolved = _sql_list(UNRESOLVED_KINDS)
    db.run(con, f"""
    CREATE OR REPLACE TABLE result AS
    WITH endpoint AS (   -- cast once per endpoint, not per connection
        SELECT ep_id, ip, kind::endpoint_kind AS kind, namespace, pod, workload, node
        FROM ep
    ),
    joined AS (
        SELECT c.*, {how} AS direction, ck.ekey, ck.ikey,
            s.ip AS src_ip, s.kind AS src_kind, s.namespace AS src_namespace,
            s.pod AS src_pod, s.workload AS src_workload, s.node AS src_node,
            d.ip AS dst_ip,
            -- a connection followed through a Service names its backend: one pod, or
            -- several of one workload (then no pod), beside the Service
            CASE WHEN b.ep_id IS NULL THEN d.kind ELSE b.kind END AS dst_kind,
            -- a node's port a host-network pod serves on: that pod, on its node
            CASE WHEN b.ep_id IS NULL THEN coalesce(d.namespace, hn.namespace)
                 ELSE b.namespace END AS dst_namespace,
            CASE WHEN b.ep_id IS NULL THEN coalesce(d.pod, hn.pod)
                 WHEN cs.one_backend THEN b.pod END AS dst_pod,
            CASE WHEN b.ep_id IS NULL THEN coalesce(hn.workload, d.workload)
                 ELSE b.workload END AS dst_workload,
            CASE WHEN b.ep_id IS NULL THEN d.node WHEN cs.one_backend THEN b.node END
                AS dst_node,
            cs.svc AS dst_service, cs.svc_port AS dst_service_port,
            coalesce(cs.followed, false) AS followed,
            {baseline}, {candidate}
        FROM conns c
        JOIN endpoint s ON s.ep_id = c.src_ep
        JOIN endpoint d ON d.ep_id = c.dst_ep
        LEFT JOIN conn_service cs ON cs.conn_id = c.conn_id
        LEFT JOIN endpoint b ON b.ep_id = cs.rep_ep
        LEFT JOIN (SELECT node, proto, port, any_value(namespace)::ep_namespace AS namespace,
                          any_value(pod)::ep_pod AS pod,
                          any_value(workload)::ep_workload AS workload
                   FROM hostnet_port GROUP BY ALL) hn
            ON d.kind = 'node' AND hn.node = CAST(d.node AS VARCHAR) AND hn.proto = c.proto
            AND hn.port = c.dst_port
        JOIN conn_key ck ON ck.conn_id = c.conn_id
        JOIN pair_result pr ON pr.ekey = ck.ekey AND pr.ikey = ck.ikey
    )
    SELECT
        conn_id, src_ep, dst_ep, ekey, ikey,
        src_ip, dst_ip, dst_port, {PROTO_NAME_SQL.format(col='proto')} AS protocol,
        src_kind, dst_kind,
        src_namespace, src_pod, src_workload,
        dst_namespace, dst_pod, dst_workload,
        flows, packets, bytes,
        to_timestamp(first_seen) AS first_seen, to_timestamp(last_seen) AS last_seen,
        observed::observed_verdict AS observed, observed_policies,
        baseline, candidate,
        CASE
            WHEN src_kind IN ({unresolved})
                 OR (dst_kind IN ({unresolved}) AND NOT followed)
                 OR baseline = 'unknown' OR candidate = 'unknown' THEN 'unresolved'
            WHEN baseline = 'allow' AND candidate = 'deny' THEN 'break'
            WHEN baseline = 'deny' AND candidate = 'allow' THEN 'newly_allowed'
            WHEN baseline = 'allow' THEN 'still_allowed'
            ELSE 'still_denied'
        END::change_class AS change,
        direction::direction_source AS direction, direction IN ({guessed}) AS direction_guessed,
        coalesce(reply_flows, 0) AS reply_flows, src_node, dst_node, dst_names,
        CASE WHEN {'true' if has_baseline_set else 'false'} AND observed <> 'unknown'
                  AND baseline <> 'unknown'
             THEN (observed = 'allowed') = (baseline = 'allow') END AS baseline_agrees,
        candidate_egress, candidate_ingress, baseline_egress, baseline_ingress,
        candidate_tier, baseline_tier, candidate_egress_tier, candidate_ingress_tier,
        baseline_egress_tier, baseline_ingress_tier, dst_service, dst_service_port,
        followed
    FROM joined
    """)
    cand_expl = "xk.candidate_reason, nm.candidate_near_miss, " + ", ".join(
        f"xk.candidate_{c}" for c in EXPLAINED[1:])
    db.run(con, f"""
    CREATE OR REPLACE VIEW {FULL_RESULT} AS
    WITH x AS (
        SELECT r.*, {cand_expl}, {base_expl}
        FROM result r
        JOIN explanation xk ON xk.ekey = r.ekey AND xk.ikey = r.ikey
        LEFT JOIN near_miss_pair nm ON nm.ekey = r.ekey AND nm.ikey = r.ikey
    )
    SELECT conn_id, src_ep, dst_ep,
        src_ip, dst_ip, dst_port, protocol, src_kind, dst_kind, src_namespace, src_pod,
        src_workload, dst_namespace, dst_pod, dst_workload, flows, packets, bytes,
        first_seen, last_seen, observed, observed_policies, baseline, candidate, change,
        baseline_reason, candidate_reason, direction, direction_guessed, reply_flows,
        src_node, dst_node, dst_names, baseline_agrees,
        candidate_egress, candidate_ingress,
        candidate_egress_isolated_by, candidate_egress_allowed_by,
        candidate_ingress_isolated_by, candidate_ingress_allowed_by,
        baseline_egress, baseline_ingress,
        baseline_egress_isolated_by, baseline_egress_allowed_by,
        baseline_ingress_isolated_by, baseline_ingress_allowed_by,
        candidate_tier, baseline_tier,
        candidate_egress_tier, candidate_ingress_tier,
        baseline_egress_tier, baseline_ingress_tier,
        candidate_egress_decided_by, candidate_ingress_decided_by,
        baseline_egress_decided_by, baseline_ingress_decided_by,
        dst_service, dst_service_port, candidate_near_miss
    FROM x""")
    db.run(con, f"CREATE OR REPLACE VIEW {PUBLIC_RESULT} AS "
                f"SELECT * EXCLUDE (conn_id, src_ep, dst_ep) FROM {FULL_RESULT}")
