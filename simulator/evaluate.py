"""Evaluate every distinct connection against compiled policy sets, in DuckDB.

Selectors are matched per identity (namespace + label set) and per namespace, CIDRs per
distinct address, and only then joined to connections; nothing here runs per flow.
Reads: conns, ep, ident, ident_label, ns, ns_label, pod_port, np_* (policy/tables.py).
Writes: verdicts (conn_id, pset, verdict, per-direction verdicts and reasons).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from . import db


def _selector_match_sql(labels: str, subjects: str, subject_id: str) -> str:
    """(sel_id, subj) for every subject whose labels satisfy every requirement."""
    return f"""
    WITH positive_hits AS (   -- In / Exists requirements a present label satisfies
        SELECT r.sel_id, l.{subject_id} AS subj, count(DISTINCT r.req_idx) AS hits
        FROM np_req r JOIN {labels} l ON l.key = r.key
        WHERE (r.op = 'In' AND list_contains(r.vals, l.value)) OR r.op = 'Exists'
        GROUP BY ALL
    ),
    violations AS (           -- NotIn / DoesNotExist requirements a present label breaks
        SELECT DISTINCT r.sel_id, l.{subject_id} AS subj
        FROM np_req r JOIN {labels} l ON l.key = r.key
        WHERE (r.op = 'NotIn' AND list_contains(r.vals, l.value)) OR r.op = 'DoesNotExist'
    ),
    candidates AS (
        SELECT p.sel_id, p.subj FROM positive_hits p JOIN np_sel s USING (sel_id)
        WHERE p.hits = s.n_pos
        UNION ALL
        SELECT s.sel_id, x.{subject_id} FROM np_sel s CROSS JOIN {subjects} x
        WHERE s.n_pos = 0
    )
    SELECT c.sel_id, c.subj FROM candidates c ANTI JOIN violations v USING (sel_id, subj)
    """


MATCH_SQL = f"""
CREATE OR REPLACE TABLE pod_sel_match AS {_selector_match_sql('ident_label', 'ident', 'ident_id')};
CREATE OR REPLACE TABLE ns_sel_match AS {_selector_match_sql('ns_label', 'ns', 'namespace')};

-- which policies select which identities, per direction they isolate
CREATE OR REPLACE TABLE target_ident AS
SELECT t.pset, t.pol_id, t.direction, i.ident_id
FROM np_target t
JOIN pod_sel_match m ON m.sel_id = t.pod_sel_id
JOIN ident i ON i.ident_id = m.subj
LEFT JOIN ns_sel_match n ON n.sel_id = t.ns_sel_id AND n.subj = i.namespace
WHERE i.namespace = t.ns_fixed OR n.sel_id IS NOT NULL;

-- pod peers: identities matched (namespace AND pod selector)
CREATE OR REPLACE TABLE peer_ident AS
SELECT p.peer_id, i.ident_id
FROM np_peer p
JOIN pod_sel_match m ON m.sel_id = p.pod_sel_id
JOIN ident i ON i.ident_id = m.subj
LEFT JOIN ns_sel_match n ON n.sel_id = p.ns_sel_id AND n.subj = i.namespace
WHERE p.kind = 'pods' AND (i.namespace = p.ns_fixed OR n.sel_id IS NOT NULL);
"""

EVAL_SQL = """
CREATE OR REPLACE TABLE conn_dir AS
WITH c AS (
    SELECT c.conn_id, c.dst_port, c.proto,
        s.kind AS s_kind, s.ident_id AS s_ident, s.node AS s_node, s.ip AS s_ip,
        s.key AS s_key,
        d.kind AS d_kind, d.ident_id AS d_ident, d.node AS d_node, d.ip AS d_ip,
        d.key AS d_key,
        d.pod_ref AS dst_pod_ref
    FROM __CONNS__ c JOIN ep s ON s.ep_id = c.src_ep JOIN ep d ON d.ep_id = c.dst_ep
)
SELECT conn_id, 'ingress' AS direction, d_kind AS subj_kind, d_ident AS subj_ident,
       d_node AS subj_node, s_kind AS peer_kind, s_ident AS peer_ident, s_ip AS peer_ip,
       s_key AS peer_key, s_node AS peer_node, d_kind AS dst_kind, dst_pod_ref, dst_port,
       proto
FROM c
UNION ALL
SELECT conn_id, 'egress', s_kind, s_ident, s_node, d_kind, d_ident, d_ip, d_key, d_node,
       d_kind, dst_pod_ref, dst_port, proto
FROM c;

-- policies that isolate the subject pod in this direction
CREATE OR REPLACE TABLE dir_pol AS
SELECT cd.conn_id, cd.direction, ti.pset, ti.pol_id
FROM conn_dir cd
JOIN target_ident ti ON ti.ident_id = cd.subj_ident AND ti.direction = cd.direction
WHERE cd.subj_kind = 'pod';

CREATE OR REPLACE TABLE dir_rule AS
SELECT dp.conn_id, dp.direction, dp.pset, r.rule_id
FROM dir_pol dp
JOIN np_rule r ON r.pset = dp.pset AND r.pol_id = dp.pol_id AND r.direction = dp.direction;

CREATE OR REPLACE TABLE rule_hits AS
WITH peer_ok AS (
    SELECT dr.conn_id, dr.direction, dr.rule_id
    FROM dir_rule dr JOIN np_peer p ON p.rule_id = dr.rule_id AND p.kind = 'any'
    UNION
    SELECT dr.conn_id, dr.direction, dr.rule_id
    FROM dir_rule dr
    JOIN conn_dir cd USING (conn_id, direction)
    JOIN np_peer p ON p.rule_id = dr.rule_id AND p.kind = 'pods'
    JOIN peer_ident pi ON pi.peer_id = p.peer_id AND pi.ident_id = cd.peer_ident
    WHERE cd.peer_kind = 'pod'
    UNION
    -- ipBlock peers: checked on the rules that apply, not for every address and block
    -- (a 0.0.0.0/0 block in every namespace would pair with every external address)
    SELECT dr.conn_id, dr.direction, dr.rule_id
    FROM dir_rule dr
    JOIN conn_dir cd USING (conn_id, direction)
    JOIN np_peer p ON p.rule_id = dr.rule_id AND p.kind = 'cidr'
    WHERE cd.peer_key BETWEEN p.lo AND p.hi
      AND NOT EXISTS (SELECT 1 FROM np_except e WHERE e.peer_id = p.peer_id
                      AND cd.peer_key BETWEEN e.lo AND e.hi)
),
-- pod peers that could match a peer we could not resolve (for 'unknown' verdicts)
peer_maybe AS (
    SELECT DISTINCT dr.conn_id, dr.direction, dr.rule_id
    FROM dir_rule dr
    JOIN conn_dir cd USING (conn_id, direction)
    JOIN np_peer p ON p.rule_id = dr.rule_id AND p.kind = 'pods'
    WHERE cd.peer_kind IN ('unresolved', 'service')
),
port_ok AS (
    SELECT DISTINCT dr.conn_id, dr.direction, dr.rule_id
    FROM dir_rule dr
    JOIN conn_dir c USING (conn_id, direction)
    JOIN np_port pt ON pt.rule_id = dr.rule_id
    WHERE pt.proto IS NULL
       OR (pt.proto = c.proto AND pt.name IS NULL
           AND (pt.lo IS NULL OR c.dst_port BETWEEN pt.lo AND pt.hi))
       OR (pt.proto = c.proto AND pt.name IS NOT NULL AND c.dst_kind = 'pod'
           AND EXISTS (SELECT 1 FROM pod_port pp
                       WHERE pp.pod_ref = c.dst_pod_ref AND pp.name = pt.name
                         AND pp.proto = pt.proto AND pp.port = c.dst_port))
)
SELECT po.conn_id, po.direction, po.rule_id, 'allow' AS hit
FROM peer_ok po JOIN port_ok pt USING (conn_id, direction, rule_id)
UNION ALL
SELECT pm.conn_id, pm.direction, pm.rule_id, 'maybe'
FROM peer_maybe pm JOIN port_ok pt USING (conn_id, direction, rule_id);

CREATE OR REPLACE TABLE dir_verdict AS
WITH isolation AS (   -- depends on the subject's identity only
    SELECT ti.ident_id, ti.direction, ti.pset, list(p.ref ORDER BY p.ref) AS isolated_by
    FROM target_ident ti JOIN np_pol p ON p.pset = ti.pset AND p.pol_id = ti.pol_id
    GROUP BY ti.ident_id, ti.direction, ti.pset
),
admission AS (
    SELECT h.conn_id, h.direction, r.pset,
        list(p.ref || ' ' || r.direction || '[' || r.rule_idx || ']'
             ORDER BY p.ref, r.rule_idx) FILTER (WHERE h.hit = 'allow') AS allowed_by,
        bool_or(h.hit = 'maybe') AS maybe
    FROM rule_hits h
    JOIN np_rule r ON r.rule_id = h.rule_id
    JOIN np_pol p ON p.pset = r.pset AND p.pol_id = r.pol_id
    GROUP BY ALL
)
SELECT cd.conn_id, cd.direction, ps.pset,
    CASE
        WHEN cd.subj_kind IN ('node', 'external') THEN 'allow'
        WHEN cd.subj_kind <> 'pod' THEN 'unknown'
        WHEN cd.direction = 'ingress' AND cd.peer_kind = 'node'
             AND (cd.peer_node = cd.subj_node OR cd.peer_node = '(observing node)')
            THEN 'allow'
        WHEN i.isolated_by IS NULL THEN 'allow'
        WHEN len(a.allowed_by) > 0 THEN 'allow'
        WHEN a.maybe THEN 'unknown'
        ELSE 'deny'
    END AS verdict,
    CASE
        WHEN cd.subj_kind IN ('node', 'external')
            THEN cd.direction || ': ' || cd.subj_kind || ' endpoint, no policy applies'
        WHEN cd.subj_kind <> 'pod'
            THEN cd.direction || ': ' || cd.subj_kind || ' endpoint, policies not known'
        WHEN cd.direction = 'ingress' AND cd.peer_kind = 'node'
             AND (cd.peer_node = cd.subj_node OR cd.peer_node = '(observing node)')
            THEN 'ingress: from the pod''s own node (kubelet probes), always allowed'
        WHEN i.isolated_by IS NULL THEN cd.direction || ': not isolated'
        WHEN len(a.allowed_by) > 0
            THEN cd.direction || ': allowed by ' || array_to_string(a.allowed_by, ', ')
        WHEN a.maybe THEN cd.direction || ': isolated by '
            || array_to_string(i.isolated_by, ', ')
            || '; a pod-selector rule might admit the unresolved peer'
        ELSE cd.direction || ': isolated by ' || array_to_string(i.isolated_by, ', ')
            || '; no ' || cd.direction || ' rule admits it'
    END AS reason,
    coalesce(i.isolated_by, []) AS isolated_by,
    coalesce(a.allowed_by, []) AS allowed_by
FROM conn_dir cd
CROSS JOIN (SELECT unnest($psets) AS pset) ps
LEFT JOIN isolation i ON cd.subj_kind = 'pod' AND i.ident_id = cd.subj_ident
    AND i.direction = cd.direction AND i.pset = ps.pset
LEFT JOIN admission a ON a.conn_id = cd.conn_id AND a.direction = cd.direction
    AND a.pset = ps.pset;

CREATE OR REPLACE TABLE verdicts AS
SELECT e.conn_id, e.pset,
    CASE WHEN e.verdict = 'deny' OR i.verdict = 'deny' THEN 'deny'
         WHEN e.verdict = 'unknown' OR i.verdict = 'unknown' THEN 'unknown'
         ELSE 'allow' END AS verdict,
    -- lead with the direction that decides
    CASE WHEN i.verdict = 'deny' AND e.verdict <> 'deny' THEN i.reason || '; ' || e.reason
         ELSE e.reason || '; ' || i.reason END AS reason,
    e.verdict AS egress, e.isolated_by AS egress_isolated_by, e.allowed_by AS egress_allowed_by,
    i.verdict AS ingress, i.isolated_by AS ingress_isolated_by,
    i.allowed_by AS ingress_allowed_by
FROM dir_verdict e
JOIN dir_verdict i ON i.conn_id = e.conn_id AND i.pset = e.pset AND i.direction = 'ingress'
WHERE e.direction = 'egress';
"""


# What the report needs of the policies after later evaluations replace the tables above:
# which identities each policy selects, and how much observed traffic each rule admitted.
USAGE_SQL = """
CREATE OR REPLACE TABLE policy_use AS
SELECT p.pset, p.ref, p.namespace, t.direction, t.ident_id
FROM np_pol p LEFT JOIN target_ident t ON t.pset = p.pset AND t.pol_id = p.pol_id;

CREATE OR REPLACE TABLE rule_use AS
SELECT p.pset, p.ref, r.direction, r.rule_idx,
    count(DISTINCT h.conn_id) AS connections
FROM np_rule r
JOIN np_pol p ON p.pset = r.pset AND p.pol_id = r.pol_id
LEFT JOIN rule_hits h ON h.rule_id = r.rule_id AND h.hit = 'allow'
GROUP BY ALL
"""


def evaluate(con: duckdb.DuckDBPyConnection, psets: Sequence[str],
             conns: str = "conns") -> None:
    """Verdicts of the connections in `conns` (a table or view shaped like `conns`)
    under the registered policy sets named in `psets`; replaces the tables above."""
    db.run(con, MATCH_SQL)
    for statement in EVAL_SQL.replace("__CONNS__", conns).split(";\n\n"):
        if statement.strip():
            db.run(con, statement, {"psets": list(psets)} if "$psets" in statement else None)


def record_usage(con: duckdb.DuckDBPyConnection) -> None:
    for statement in USAGE_SQL.split(";\n\n"):
        db.run(con, statement)
