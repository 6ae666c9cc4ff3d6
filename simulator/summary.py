"""The run's summary as plain data: what was read, skipped, resolved and what changes.
Every output (terminal, JSON) renders this one dict."""

from __future__ import annotations

from typing import Any

import duckdb

from . import db
from .cluster import Cluster
from .diff import CHANGES, FULL_RESULT
from .policy.loader import PolicySet

TOP_N = 10
SKIP_EXAMPLES = 6
_UNMAPPED = "'unresolved', 'service'"


def _policy_set(p: PolicySet | None) -> dict[str, Any] | None:
    if p is None:
        return None
    kinds: dict[str, int] = {}
    for pol in p.policies:
        kinds[pol.kind] = kinds.get(pol.kind, 0) + 1
    return {"files": len(p.files), "policies": len(p.policies), "kinds": kinds,
            "ignored": dict(sorted(p.ignored.items())), "notes": list(p.notes),
            "replaced": list(p.replaced),
            "not_enforced": dict(sorted(p.not_enforced.items()))}


def _conflicts(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    # only flows that name pods can contradict the snapshot; most sources name none, and
    # the query re-resolves every tuple side
    if not db.one(con, "SELECT EXISTS (SELECT 1 FROM tuples WHERE src_pod IS NOT NULL "
                       "OR dst_pod IS NOT NULL)")[0]:
        return {"pods": 0, "examples": []}
    rows = con.execute(CONFLICTS_SQL).fetchall()
    return {"pods": len({r[0] for r in rows}),
            "examples": [f"{pod}: {what}" for pod, what in rows[:TOP_N]]}


def workload_pairs_sql(change: str, limit: int | None = TOP_N) -> str:
    """Connections of one change class grouped by workload pair, biggest first."""
    return f"""
        SELECT
            coalesce(src_namespace || '/', '') || coalesce(src_workload, src_ip) AS source,
            coalesce(dst_namespace || '/', '') || coalesce(dst_workload, dst_ip) AS destination,
            protocol || coalesce('/' || dst_port, '') AS port,
            count(*) AS connections, sum(flows)::BIGINT AS flows,
            {db.saturated_sum('bytes')} AS bytes,
            min(first_seen) AS first_seen, max(last_seen) AS last_seen,
            arg_max(candidate_reason, flows) AS candidate_reason,
            -- the rule that almost admits the busiest connection (near_miss.py)
            arg_max(candidate_near_miss[1].detail, flows) AS closest,
            arg_max(baseline_reason, flows) AS baseline_reason
        FROM {FULL_RESULT} WHERE change = '{change}'
        GROUP BY ALL ORDER BY flows DESC, source, destination, port
        {f'LIMIT {limit}' if limit else ''}"""


# Where a flow's own identity for a pod and the cluster snapshot disagree: a label both know
# with different values, or an address the snapshot gives to another pod at that time.
CONFLICTS_SQL = """
WITH flow_pods AS (
    SELECT DISTINCT te.pod_ref, te.ip, te.ident_id, t.t_first, t.t_last_start
    FROM tuple_ep te JOIN tuples t USING (tuple_id)
    WHERE te.kind = 'pod' AND te.pod_ref IS NOT NULL
      AND CASE te.side WHEN 'src' THEN t.src_pod ELSE t.dst_pod END IS NOT NULL
),
snapshot AS (
    SELECT pod_ref, any_value(ident_id) AS ident_id FROM holder
    WHERE kind = 'pod' GROUP BY pod_ref
),
label_conflicts AS (
    SELECT DISTINCT f.pod_ref,
        'label ' || fl.key || ': flow says ' || fl.value || ', snapshot ' || sl.value AS what
    FROM flow_pods f JOIN snapshot s USING (pod_ref)
    JOIN ident_label fl ON fl.ident_id = f.ident_id
    JOIN ident_label sl ON sl.ident_id = s.ident_id AND sl.key = fl.key
    WHERE fl.value <> sl.value
),
address_conflicts AS (
    SELECT DISTINCT f.pod_ref,
        'address ' || f.ip || ' belongs to ' || h.pod_ref || ' in the snapshot' AS what
    FROM flow_pods f JOIN holder h ON h.ip = f.ip AND h.kind = 'pod'
        AND h.created <= f.t_first AND f.t_last_start < h.deleted
    WHERE h.pod_ref <> f.pod_ref
)
SELECT pod_ref, what FROM label_conflicts
UNION ALL SELECT pod_ref, what FROM address_conflicts
ORDER BY pod_ref, what
"""


def build_summary(con: duckdb.DuckDBPyConnection, *, sources: list[Any], cluster: Cluster,
                  candidate: PolicySet, baseline: PolicySet | None,
                  accounting: tuple[list[dict[str, Any]], list[str]], resplit: int,
                  bad_label_pods: int, skipped_files: list[dict[str, str]] | None = None
                  ) -> dict[str, Any]:
    # what was read and skipped: the accounting's per-file counts are the one source
    skipped: dict[str, int] = {}
    for f in accounting[0]:
        for reason, n in f["skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + n
    total = sum(f["records"] for f in accounting[0])
    # bytes: None when no record of the class counted them (Hubble, some Antrea exports)
    by_change = {r["change"]: {k: (None if v is None and k == "bytes" else int(v or 0))
                               for k, v in r.items() if k != "change"}
                 for r in db.rows(con, """
        SELECT change, count(*) AS connections, sum(flows) AS flows, sum(bytes) AS bytes
        FROM result GROUP BY 1""")}
    zero = {"connections": 0, "flows": 0, "bytes": 0}
    counts = db.one(con, f"""
        SELECT count(*), coalesce(sum(flows), 0),
               count(*) FILTER (WHERE direction_guessed),
               count(*) FILTER (WHERE baseline_agrees IS NOT NULL),
               count(*) FILTER (WHERE NOT baseline_agrees),
               count(*) FILTER (WHERE src_kind = 'pod' OR dst_kind = 'pod'),
               coalesce(sum(flows) FILTER (WHERE src_kind IN ({_UNMAPPED})
                                           OR (dst_kind IN ({_UNMAPPED}) AND NOT followed)),
                        0)
        FROM result""")
    # egress of a node to outside addresses, in flow logs that cannot show the pod behind
    # the node's source NAT
    snat = db.rows(con, f"""
        SELECT count(*) AS connections, coalesce(sum(flows), 0)::BIGINT AS flows,
            list(struct_pack(src_ip := src_ip, dst_ip := dst_ip, dst_port := dst_port,
                             protocol := protocol) ORDER BY flows DESC, src_ip, dst_ip
                )[1:3] AS examples
        FROM result WHERE src_kind = 'node' AND dst_kind = 'external'
          AND {'true' if any(s.hides_snat for s in sources) else 'false'}""")[0]
    # connections addressed to a Service: followed to its backends, or not
    services = db.one(con, """
        SELECT count(*) FILTER (WHERE followed), coalesce(sum(flows) FILTER (WHERE followed), 0),
            count(*) FILTER (WHERE NOT followed AND dst_kind = 'service'),
            coalesce(sum(flows) FILTER (WHERE NOT followed AND dst_kind = 'service'), 0),
            count(*) FILTER (WHERE dst_service IS NOT NULL AND dst_kind <> 'service'
                             AND NOT followed)
        FROM result""")
    unresolved = db.rows(con, """
        SELECT ip, kind, sum(flows)::BIGINT AS flows FROM (
            SELECT src_ip AS ip, src_kind AS kind, flows FROM result
            WHERE src_kind IN ('unresolved', 'service')
            UNION ALL
            SELECT dst_ip, dst_kind, flows FROM result
            WHERE dst_kind IN ('unresolved', 'service') AND NOT followed)
        GROUP BY ALL ORDER BY flows DESC, ip""")
    # why the candidate's unknown verdicts are unknown (ambiguous priorities, names the
    # flows did not record, ...), with the busiest examples
    undecided = {r["why"]: {"connections": int(r["connections"]), "flows": int(r["flows"]),
                            "examples": r["examples"]}
                 for r in db.rows(con, f"""
        SELECT coalesce(pv.undecided, 'endpoint not resolved') AS why,
            count(*) AS connections, sum(r.flows) AS flows,
            list(struct_pack(src_ip := r.src_ip, dst_ip := r.dst_ip, dst_port := r.dst_port,
                             protocol := r.protocol, flows := r.flows::BIGINT)
                 ORDER BY r.flows DESC, r.src_ip, r.dst_ip)[1:{TOP_N}] AS examples
        FROM result r JOIN pair_verdict pv ON pv.ekey = r.ekey AND pv.ikey = r.ikey
            AND pv.pset = 'candidate'
        WHERE r.candidate = 'unknown' GROUP BY 1 ORDER BY 2 DESC, 1""")}
    return {
        "inputs": {
            "flows": [{"format": s.format, "files": [s.label(f) for f in s.files]}
                      for s in sources],
            "skipped_files": list(skipped_files or []),
            "cluster": {"files": cluster.files, "pods": len(cluster.pods),
                        "namespaces": len(cluster.namespaces), "nodes": len(cluster.nodes),
                        "services": len(cluster.services),
                        "ignored": dict(sorted(cluster.ignored_kinds.items())),
                        "skipped": len(cluster.skipped),
                        "skipped_examples": cluster.skipped[:SKIP_EXAMPLES]},
            "candidate": _policy_set(candidate),
            "baseline": _policy_set(baseline),
            "baseline_source": "policies" if baseline is not None else "observed verdicts",
        },
        "flows": {
            "read": total,
            "skipped": dict(sorted(skipped.items())),
            "skipped_examples": accounting[1][:SKIP_EXAMPLES],
            "files": accounting[0],
            "evaluated": int(counts[1]),
            "resplit_tuples": resplit,
            "pods_with_bad_labels": bad_label_pods,
        },
        "connections": {
            "total": int(counts[0]),
            "direction_guessed": int(counts[2]),
            "with_pod": int(counts[5]),
            "unmapped_flows": int(counts[6]),
            "by_change": {c: by_change.get(c, dict(zero)) for c in CHANGES},
            "undecided": undecided,
            "source_hidden_by_snat": {"connections": int(snat["connections"]),
                                      "flows": int(snat["flows"]),
                                      "examples": snat["examples"]},
            "services": {"followed": int(services[0]), "followed_flows": int(services[1]),
                         "not_followed": int(services[2]),
                         "not_followed_flows": int(services[3]),
                         "named_by_flows": int(services[4])},
        },
        "unresolved_endpoints": {
            "addresses": len(unresolved),
            "top": [{k: (str(v) if k != "flows" else int(v)) for k, v in r.items()}
                    for r in unresolved[:TOP_N]],
        },
        "identity_conflicts": _conflicts(con),
        "calibration": {
            "compared": int(counts[3]),
            "disagreements": int(counts[4]),
            "examples": db.rows(con, """
                SELECT src_ip, dst_ip, dst_port, protocol, observed, baseline, baseline_reason
                FROM result_full WHERE NOT baseline_agrees ORDER BY flows DESC LIMIT 10"""),
        },
        "top_breaks": db.rows(con, workload_pairs_sql("break")),
        "top_newly_allowed": db.rows(con, workload_pairs_sql("newly_allowed")),
    }
