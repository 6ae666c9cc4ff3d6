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


def build_result(con: duckdb.DuckDBPyConnection, has_baseline_set: bool) -> None:
    _create_enums(con)
    how = "CASE c.how " + " ".join(
        f"WHEN {i} THEN '{name}'" for i, name in enumerate(DIRECTION_SOURCES)) + " END"
    guessed = _sql_list(GUESSED)
    lists = ", ".join(f"{c}::policy_ref[] AS {c}" for c in EXPLAINED[1:])
    db.run(con, f"""CREATE OR REPLACE TABLE explanation AS
                    SELECT ekey, ikey, pset, reason::reason_text AS reason, {lists}
                    FROM pair_verdict""")
    if has_baseline_set:
        baseline = """b.verdict AS baseline, b.egress AS baseline_egress,
            b.ingress AS baseline_ingress, b.tier AS baseline_tier,
            b.egress_tier AS baseline_egress_tier, b.ingress_tier AS baseline_ingress_tier"""
        join = """LEFT JOIN pair_verdict b ON b.ekey = ck.ekey AND b.ikey = ck.ikey
                      AND b.pset = 'baseline'"""
        base_expl = "xb.reason AS baseline_reason, " + ", ".join(
            f"xb.{c} AS baseline_{c}" for c in EXPLAINED[1:])
        base_join = """LEFT JOIN explanation xb ON xb.ekey = r.ekey AND xb.ikey = r.ikey
                           AND xb.pset = 'baseline'"""
    else:
        # Without a baseline set, the baseline is what the dataplane did.
        baseline = """CASE c.observed WHEN 'denied' THEN 'deny' ELSE 'allow' END AS baseline,
            NULL::VARCHAR AS baseline_egress, NULL::VARCHAR AS baseline_ingress,
            NULL::VARCHAR AS baseline_tier, NULL::VARCHAR AS baseline_egress_tier,
            NULL::VARCHAR AS baseline_ingress_tier"""
        join = ""
        base_expl = ("CASE r.observed " + " ".join(
            f"WHEN '{k}' THEN '{v}'" for k, v in OBSERVED_REASONS.items() if k)
            + f" ELSE '{OBSERVED_REASONS[None]}' END::reason_text AS baseline_reason, "
            + ", ".join(f"NULL::policy_ref[] AS baseline_{c}" for c in EXPLAINED[1:]))
        base_join = ""
    unresolved = _sql_list(UNRESOLVED_KINDS)
    db.run(con, f"""
    CREATE OR REPLACE TABLE result AS
    WITH joined AS (
        SELECT c.*, {how} AS direction, ck.ekey, ck.ikey,
            s.ip AS src_ip, s.kind AS src_kind, s.namespace AS src_namespace,
            s.pod AS src_pod, s.workload AS src_workload, s.node AS src_node,
            d.ip AS dst_ip, d.kind AS dst_kind, d.namespace AS dst_namespace,
            d.pod AS dst_pod, d.workload AS dst_workload, d.node AS dst_node,
            {baseline},
            k.verdict AS candidate, k.tier AS candidate_tier,
            k.egress_tier AS candidate_egress_tier, k.ingress_tier AS candidate_ingress_tier,
            k.egress AS candidate_egress, k.ingress AS candidate_ingress
        FROM conns c
        JOIN ep s ON s.ep_id = c.src_ep
        JOIN ep d ON d.ep_id = c.dst_ep
        JOIN conn_key ck ON ck.conn_id = c.conn_id
        JOIN pair_verdict k ON k.ekey = ck.ekey AND k.ikey = ck.ikey
            AND k.pset = 'candidate'
        {join}
    )
    SELECT
        conn_id, src_ep, dst_ep, ekey, ikey,
        src_ip, dst_ip, dst_port, {PROTO_NAME_SQL.format(col='proto')} AS protocol,
        src_kind::endpoint_kind AS src_kind, dst_kind::endpoint_kind AS dst_kind,
        src_namespace, src_pod, src_workload,
        dst_namespace, dst_pod, dst_workload,
        flows, packets, bytes,
        to_timestamp(first_seen) AS first_seen, to_timestamp(last_seen) AS last_seen,
        observed::observed_verdict AS observed, observed_policies,
        baseline::verdict AS baseline, candidate::verdict AS candidate,
        CASE
            WHEN src_kind IN ({unresolved}) OR dst_kind IN ({unresolved})
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
        candidate_egress::verdict AS candidate_egress,
        candidate_ingress::verdict AS candidate_ingress,
        baseline_egress::verdict AS baseline_egress,
        baseline_ingress::verdict AS baseline_ingress,
        candidate_tier::decision_tier AS candidate_tier,
        baseline_tier::decision_tier AS baseline_tier,
        candidate_egress_tier::decision_tier AS candidate_egress_tier,
        candidate_ingress_tier::decision_tier AS candidate_ingress_tier,
        baseline_egress_tier::decision_tier AS baseline_egress_tier,
        baseline_ingress_tier::decision_tier AS baseline_ingress_tier
    FROM joined
    """)
    cand_expl = ", ".join(f"xk.{c} AS candidate_{c}" for c in EXPLAINED[1:])
    db.run(con, f"""
    CREATE OR REPLACE VIEW {FULL_RESULT} AS
    WITH x AS (
        SELECT r.*, xk.reason AS candidate_reason, {cand_expl}, {base_expl}
        FROM result r
        JOIN explanation xk ON xk.ekey = r.ekey AND xk.ikey = r.ikey
            AND xk.pset = 'candidate'
        {base_join}
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
        baseline_egress_decided_by, baseline_ingress_decided_by
    FROM x""")
    db.run(con, f"CREATE OR REPLACE VIEW {PUBLIC_RESULT} AS "
                f"SELECT * EXCLUDE (conn_id, src_ep, dst_ep) FROM {FULL_RESULT}")
