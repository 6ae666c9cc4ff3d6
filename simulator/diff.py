"""Baseline vs candidate per connection: the change class and the result table every
output reads (`result`)."""

from __future__ import annotations

import duckdb

from . import db
from .connections import DIRECTION_SOURCES, GUESSED
from .protocols import PROTO_NAME_SQL

UNRESOLVED_KINDS = ("unresolved", "service")
CHANGES = ("break", "newly_allowed", "still_allowed", "still_denied", "unresolved")
# `result` keeps the run's internal ids for the report; every written table reads this view.
PUBLIC_RESULT = "result_public"


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def build_result(con: duckdb.DuckDBPyConnection, has_baseline_set: bool) -> None:
    how = "CASE c.how " + " ".join(
        f"WHEN {i} THEN '{name}'" for i, name in enumerate(DIRECTION_SOURCES)) + " END"
    guessed = _sql_list(GUESSED)
    if has_baseline_set:
        baseline = """b.verdict AS baseline, b.reason AS baseline_reason,
            b.egress AS baseline_egress, b.ingress AS baseline_ingress,
            b.egress_isolated_by AS baseline_egress_isolated_by,
            b.egress_allowed_by AS baseline_egress_allowed_by,
            b.ingress_isolated_by AS baseline_ingress_isolated_by,
            b.ingress_allowed_by AS baseline_ingress_allowed_by"""
        join = "LEFT JOIN verdicts b ON b.conn_id = c.conn_id AND b.pset = 'baseline'"
    else:
        # Without a baseline set, the baseline is what the dataplane did.
        baseline = """CASE c.observed WHEN 'denied' THEN 'deny' ELSE 'allow' END AS baseline,
            CASE c.observed WHEN 'allowed' THEN 'observed: allowed in the flow records'
                WHEN 'denied' THEN 'observed: denied in the flow records'
                ELSE 'observed: no verdict recorded, assumed allowed' END AS baseline_reason,
            NULL::VARCHAR AS baseline_egress, NULL::VARCHAR AS baseline_ingress,
            NULL::VARCHAR[] AS baseline_egress_isolated_by,
            NULL::VARCHAR[] AS baseline_egress_allowed_by,
            NULL::VARCHAR[] AS baseline_ingress_isolated_by,
            NULL::VARCHAR[] AS baseline_ingress_allowed_by"""
        join = ""
    unresolved = _sql_list(UNRESOLVED_KINDS)
    db.run(con, f"""
    CREATE OR REPLACE TABLE result AS
    WITH joined AS (
        SELECT c.*, {how} AS direction,
            s.ip AS src_ip, s.kind AS src_kind, s.namespace AS src_namespace,
            s.pod AS src_pod, s.workload AS src_workload, s.node AS src_node,
            d.ip AS dst_ip, d.kind AS dst_kind, d.namespace AS dst_namespace,
            d.pod AS dst_pod, d.workload AS dst_workload, d.node AS dst_node,
            {baseline},
            k.verdict AS candidate, k.reason AS candidate_reason,
            k.egress AS candidate_egress, k.ingress AS candidate_ingress,
            k.egress_isolated_by AS candidate_egress_isolated_by,
            k.egress_allowed_by AS candidate_egress_allowed_by,
            k.ingress_isolated_by AS candidate_ingress_isolated_by,
            k.ingress_allowed_by AS candidate_ingress_allowed_by
        FROM conns c
        JOIN ep s ON s.ep_id = c.src_ep
        JOIN ep d ON d.ep_id = c.dst_ep
        JOIN verdicts k ON k.conn_id = c.conn_id AND k.pset = 'candidate'
        {join}
    )
    SELECT
        conn_id, src_ep, dst_ep,
        src_ip, dst_ip, dst_port, {PROTO_NAME_SQL.format(col='proto')} AS protocol,
        src_kind, dst_kind, src_namespace, src_pod, src_workload,
        dst_namespace, dst_pod, dst_workload,
        flows, packets, bytes,
        to_timestamp(first_seen) AS first_seen, to_timestamp(last_seen) AS last_seen,
        observed, observed_policies, baseline, candidate,
        CASE
            WHEN src_kind IN ({unresolved}) OR dst_kind IN ({unresolved})
                 OR baseline = 'unknown' OR candidate = 'unknown' THEN 'unresolved'
            WHEN baseline = 'allow' AND candidate = 'deny' THEN 'break'
            WHEN baseline = 'deny' AND candidate = 'allow' THEN 'newly_allowed'
            WHEN baseline = 'allow' THEN 'still_allowed'
            ELSE 'still_denied'
        END AS change,
        baseline_reason, candidate_reason,
        direction, direction IN ({guessed}) AS direction_guessed,
        coalesce(reply_flows, 0) AS reply_flows, src_node, dst_node,
        CASE WHEN {'true' if has_baseline_set else 'false'} AND observed <> 'unknown'
                  AND baseline <> 'unknown'
             THEN (observed = 'allowed') = (baseline = 'allow') END AS baseline_agrees,
        candidate_egress, candidate_ingress,
        candidate_egress_isolated_by, candidate_egress_allowed_by,
        candidate_ingress_isolated_by, candidate_ingress_allowed_by,
        baseline_egress, baseline_ingress,
        baseline_egress_isolated_by, baseline_egress_allowed_by,
        baseline_ingress_isolated_by, baseline_ingress_allowed_by
    FROM joined
    """)
    db.run(con, f"CREATE OR REPLACE VIEW {PUBLIC_RESULT} AS "
                "SELECT * EXCLUDE (conn_id, src_ep, dst_ep) FROM result")
