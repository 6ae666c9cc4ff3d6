"""Evaluate every distinct connection against compiled policy sets, in DuckDB.

Selectors are matched per identity (namespace + label set) and per namespace, CIDRs per
distinct address, and only then joined to connections; nothing here runs per flow.
Reads: conns, ep, ident, ident_label, ns, ns_label, pod_port, np_* (policy/tables.py).
Writes: pair_verdict (per pair of egress/ingress evaluation keys and policy set: the
verdict, per-direction verdicts, reasons and policy lists), conn_key (conn_id -> its two
keys), and the views verdicts (the same per connection) and rule_hits.
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
-- Distinct ipBlocks (range and exceptions): a `0.0.0.0/0 except ...` repeated in every
-- namespace is one block. peer_block: which block each ipBlock peer is.
CREATE OR REPLACE TABLE cidr_peer AS
WITH ex AS (
    SELECT peer_id, list(lo || '-' || hi ORDER BY lo, hi) AS excepts
    FROM np_except GROUP BY peer_id
)
SELECT p.peer_id, p.lo, p.hi, coalesce(ex.excepts, []) AS excepts
FROM np_peer p LEFT JOIN ex USING (peer_id)
WHERE p.kind = 'cidr';

CREATE OR REPLACE TABLE np_block AS
SELECT row_number() OVER (ORDER BY lo, hi, excepts) AS block_id, lo, hi, excepts
FROM (SELECT DISTINCT lo, hi, excepts FROM cidr_peer);

CREATE OR REPLACE TABLE peer_block AS
SELECT c.peer_id, b.block_id FROM cidr_peer c JOIN np_block b USING (lo, hi, excepts);

CREATE OR REPLACE TABLE block_except AS
SELECT DISTINCT pb.block_id, e.lo, e.hi
FROM np_except e JOIN peer_block pb USING (peer_id);

-- Per distinct address: the blocks it lies in (outside their exceptions). Addresses with
-- the same blocks form a class; a connection's peer is evaluated by its class.
CREATE OR REPLACE TABLE addr_block AS
WITH k AS (SELECT DISTINCT key FROM ep WHERE key IS NOT NULL),
inside AS (SELECT k.key, b.block_id FROM k JOIN np_block b ON k.key BETWEEN b.lo AND b.hi),
excepted AS (
    SELECT k.key, e.block_id FROM k JOIN block_except e ON k.key BETWEEN e.lo AND e.hi
)
SELECT key, list(block_id ORDER BY block_id) AS blocks
FROM (SELECT * FROM inside EXCEPT SELECT * FROM excepted)
GROUP BY key;

CREATE OR REPLACE TABLE addr_cls AS
WITH cls AS (
    SELECT blocks, row_number() OVER (ORDER BY blocks) AS cls_id
    FROM (SELECT DISTINCT blocks FROM addr_block)
)
SELECT a.key, c.cls_id FROM addr_block a JOIN cls c USING (blocks);

CREATE OR REPLACE TABLE cls_block AS
SELECT DISTINCT c.cls_id, unnest(a.blocks) AS block_id
FROM addr_cls c JOIN addr_block a USING (key);

-- Pods declaring the same named ports share a port profile (named ports resolve per pod).
CREATE OR REPLACE TABLE pod_prof AS
WITH p AS (
    SELECT pod_ref, list_sort(list_distinct(list(name || '/' || proto || '/' || port)))
        AS ports
    FROM pod_port WHERE name IS NOT NULL AND proto IS NOT NULL AND port IS NOT NULL
    GROUP BY pod_ref
),
prof AS (
    SELECT ports, row_number() OVER (ORDER BY ports) AS prof_id
    FROM (SELECT DISTINCT ports FROM p)
)
SELECT p.pod_ref, prof.prof_id FROM p JOIN prof USING (ports);

CREATE OR REPLACE TABLE prof_port AS
SELECT DISTINCT f.prof_id, pp.name, pp.proto, pp.port
FROM pod_port pp JOIN pod_prof f USING (pod_ref)
WHERE pp.name IS NOT NULL;

-- What a key takes from each endpoint, once per endpoint (connections then join on ids).
CREATE OR REPLACE TABLE ep_attr AS
SELECT e.ep_id, e.kind, coalesce(e.ident_id, -1) AS ident, e.node,
    coalesce(c.cls_id, -1) AS cls,
    coalesce(CASE WHEN e.kind = 'pod' THEN pf.prof_id END, -1) AS prof
FROM ep e
LEFT JOIN addr_cls c ON c.key = e.key
LEFT JOIN pod_prof pf ON pf.pod_ref = e.pod_ref;

-- Per connection, what each direction's verdict depends on (its key): the subject's kind
-- (and, for a pod, its identity), the peer's kind, identity and address class, the
-- destination's port profile, port and protocol, and whether the peer is the subject pod's
-- own node. Keys have no NULLs (-1, false) so that they join on equality.
CREATE OR REPLACE TABLE conn_dkey AS
WITH c AS (
    SELECT c.conn_id, coalesce(c.dst_port, -1) AS dst_port, coalesce(c.proto, -1) AS proto,
        s.kind AS s_kind, s.ident AS s_ident, s.node AS s_node, s.cls AS s_cls,
        d.kind AS d_kind, d.ident AS d_ident, d.node AS d_node, d.cls AS d_cls,
        d.prof AS d_prof
    FROM __CONNS__ c
    JOIN ep_attr s ON s.ep_id = c.src_ep
    JOIN ep_attr d ON d.ep_id = c.dst_ep
)
SELECT conn_id,
    s_kind AS e_subj_kind,
    CASE WHEN s_kind = 'pod' THEN s_ident ELSE -1 END AS e_subj_ident,
    false AS e_own_node,
    CASE WHEN s_kind = 'pod' THEN d_kind ELSE '' END AS e_peer_kind,
    CASE WHEN s_kind = 'pod' AND d_kind = 'pod' THEN d_ident ELSE -1 END AS e_peer_ident,
    CASE WHEN s_kind = 'pod' THEN d_cls ELSE -1 END AS e_peer_cls,
    CASE WHEN s_kind = 'pod' THEN d_prof ELSE -1 END AS e_dst_prof,
    CASE WHEN s_kind = 'pod' THEN dst_port ELSE -1 END AS e_dst_port,
    CASE WHEN s_kind = 'pod' THEN proto ELSE -1 END AS e_proto,
    d_kind AS i_subj_kind,
    CASE WHEN d_kind = 'pod' THEN d_ident ELSE -1 END AS i_subj_ident,
    coalesce(d_kind = 'pod' AND s_kind = 'node'
             AND (s_node = d_node OR s_node = '(observing node)'), false) AS i_own_node,
    CASE WHEN d_kind = 'pod' THEN s_kind ELSE '' END AS i_peer_kind,
    CASE WHEN d_kind = 'pod' AND s_kind = 'pod' THEN s_ident ELSE -1 END AS i_peer_ident,
    CASE WHEN d_kind = 'pod' THEN s_cls ELSE -1 END AS i_peer_cls,
    CASE WHEN d_kind = 'pod' THEN d_prof ELSE -1 END AS i_dst_prof,
    CASE WHEN d_kind = 'pod' THEN dst_port ELSE -1 END AS i_dst_port,
    CASE WHEN d_kind = 'pod' THEN proto ELSE -1 END AS i_proto
FROM c;

CREATE OR REPLACE TABLE dir_key AS
SELECT row_number() OVER () AS key_id, * FROM (
    SELECT DISTINCT 'egress' AS direction, e_subj_kind AS subj_kind,
        e_subj_ident AS subj_ident, e_own_node AS own_node, e_peer_kind AS peer_kind,
        e_peer_ident AS peer_ident, e_peer_cls AS peer_cls, e_dst_prof AS dst_prof,
        e_dst_port AS dst_port, e_proto AS proto
    FROM conn_dkey
    UNION
    SELECT DISTINCT 'ingress', i_subj_kind, i_subj_ident, i_own_node, i_peer_kind,
        i_peer_ident, i_peer_cls, i_dst_prof, i_dst_port, i_proto
    FROM conn_dkey
);

CREATE OR REPLACE TABLE conn_key AS
SELECT c.conn_id, e.key_id AS ekey, i.key_id AS ikey
FROM conn_dkey c
JOIN dir_key e ON e.direction = 'egress' AND e.subj_kind = c.e_subj_kind
    AND e.subj_ident = c.e_subj_ident AND e.own_node = c.e_own_node
    AND e.peer_kind = c.e_peer_kind AND e.peer_ident = c.e_peer_ident
    AND e.peer_cls = c.e_peer_cls AND e.dst_prof = c.e_dst_prof
    AND e.dst_port = c.e_dst_port AND e.proto = c.e_proto
JOIN dir_key i ON i.direction = 'ingress' AND i.subj_kind = c.i_subj_kind
    AND i.subj_ident = c.i_subj_ident AND i.own_node = c.i_own_node
    AND i.peer_kind = c.i_peer_kind AND i.peer_ident = c.i_peer_ident
    AND i.peer_cls = c.i_peer_cls AND i.dst_prof = c.i_dst_prof
    AND i.dst_port = c.i_dst_port AND i.proto = c.i_proto;

-- the rules of the policies that isolate the key's subject pod in its direction
CREATE OR REPLACE TABLE key_rule AS
SELECT k.key_id, ti.pset, r.rule_id
FROM dir_key k
JOIN target_ident ti ON ti.ident_id = k.subj_ident AND ti.direction = k.direction
JOIN np_rule r ON r.pset = ti.pset AND r.pol_id = ti.pol_id AND r.direction = ti.direction
WHERE k.subj_kind = 'pod';

CREATE OR REPLACE TABLE key_hits AS
WITH kr AS (
    SELECT kr.key_id, kr.rule_id, k.peer_kind, k.peer_ident, k.peer_cls, k.dst_prof,
        NULLIF(k.dst_port, -1) AS dst_port, NULLIF(k.proto, -1) AS proto
    FROM key_rule kr JOIN dir_key k USING (key_id)
),
peer_ok AS (
    SELECT kr.key_id, kr.rule_id
    FROM kr JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'any'
    UNION
    SELECT kr.key_id, kr.rule_id
    FROM kr
    JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'pods'
    JOIN peer_ident pi ON pi.peer_id = p.peer_id AND pi.ident_id = kr.peer_ident
    WHERE kr.peer_kind = 'pod'
    UNION
    SELECT kr.key_id, kr.rule_id
    FROM kr
    JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'cidr'
    JOIN peer_block pb ON pb.peer_id = p.peer_id
    JOIN cls_block cb ON cb.cls_id = kr.peer_cls AND cb.block_id = pb.block_id
),
-- pod peers that could match a peer we could not resolve (for 'unknown' verdicts)
peer_maybe AS (
    SELECT DISTINCT kr.key_id, kr.rule_id
    FROM kr JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'pods'
    WHERE kr.peer_kind IN ('unresolved', 'service')
),
port_ok AS (
    SELECT DISTINCT kr.key_id, kr.rule_id
    FROM kr JOIN np_port pt ON pt.rule_id = kr.rule_id
    WHERE pt.proto IS NULL
       OR (pt.proto = kr.proto AND pt.name IS NULL
           AND (pt.lo IS NULL OR kr.dst_port BETWEEN pt.lo AND pt.hi))
       OR (pt.proto = kr.proto AND pt.name IS NOT NULL
           AND EXISTS (SELECT 1 FROM prof_port pp
                       WHERE pp.prof_id = kr.dst_prof AND pp.name = pt.name
                         AND pp.proto = pt.proto AND pp.port = kr.dst_port))
)
SELECT po.key_id, po.rule_id, 'allow' AS hit
FROM peer_ok po JOIN port_ok pt USING (key_id, rule_id)
UNION ALL
SELECT pm.key_id, pm.rule_id, 'maybe'
FROM peer_maybe pm JOIN port_ok pt USING (key_id, rule_id);

CREATE OR REPLACE TABLE key_verdict AS
WITH isolation AS (   -- depends on the subject's identity only
    SELECT ti.ident_id, ti.direction, ti.pset, list(p.ref ORDER BY p.ref) AS isolated_by
    FROM target_ident ti JOIN np_pol p ON p.pset = ti.pset AND p.pol_id = ti.pol_id
    GROUP BY ti.ident_id, ti.direction, ti.pset
),
admission AS (
    SELECT h.key_id, r.pset,
        list(p.ref || ' ' || r.direction || '[' || r.rule_idx || ']'
             ORDER BY p.ref, r.rule_idx) FILTER (WHERE h.hit = 'allow') AS allowed_by,
        bool_or(h.hit = 'maybe') AS maybe
    FROM key_hits h
    JOIN np_rule r ON r.rule_id = h.rule_id
    JOIN np_pol p ON p.pset = r.pset AND p.pol_id = r.pol_id
    GROUP BY ALL
)
SELECT k.key_id, ps.pset,
    CASE
        WHEN k.subj_kind IN ('node', 'external') THEN 'allow'
        WHEN k.subj_kind <> 'pod' THEN 'unknown'
        WHEN k.own_node THEN 'allow'
        WHEN i.isolated_by IS NULL THEN 'allow'
        WHEN len(a.allowed_by) > 0 THEN 'allow'
        WHEN a.maybe THEN 'unknown'
        ELSE 'deny'
    END AS verdict,
    CASE
        WHEN k.subj_kind IN ('node', 'external')
            THEN k.direction || ': ' || k.subj_kind || ' endpoint, no policy applies'
        WHEN k.subj_kind <> 'pod'
            THEN k.direction || ': ' || k.subj_kind || ' endpoint, policies not known'
        WHEN k.own_node
            THEN 'ingress: from the pod''s own node (kubelet probes), always allowed'
        WHEN i.isolated_by IS NULL THEN k.direction || ': not isolated'
        WHEN len(a.allowed_by) > 0
            THEN k.direction || ': allowed by ' || array_to_string(a.allowed_by, ', ')
        WHEN a.maybe THEN k.direction || ': isolated by '
            || array_to_string(i.isolated_by, ', ')
            || '; a pod-selector rule might admit the unresolved peer'
        ELSE k.direction || ': isolated by ' || array_to_string(i.isolated_by, ', ')
            || '; no ' || k.direction || ' rule admits it'
    END AS reason,
    coalesce(i.isolated_by, []) AS isolated_by,
    coalesce(a.allowed_by, []) AS allowed_by
FROM dir_key k
CROSS JOIN (SELECT unnest($psets) AS pset) ps
LEFT JOIN isolation i ON k.subj_kind = 'pod' AND i.ident_id = k.subj_ident
    AND i.direction = k.direction AND i.pset = ps.pset
LEFT JOIN admission a ON a.key_id = k.key_id AND a.pset = ps.pset;

-- per distinct pair of keys, then per connection
CREATE OR REPLACE TABLE pair_verdict AS
SELECT p.ekey, p.ikey, e.pset,
    CASE WHEN e.verdict = 'deny' OR i.verdict = 'deny' THEN 'deny'
         WHEN e.verdict = 'unknown' OR i.verdict = 'unknown' THEN 'unknown'
         ELSE 'allow' END AS verdict,
    -- lead with the direction that decides
    CASE WHEN i.verdict = 'deny' AND e.verdict <> 'deny' THEN i.reason || '; ' || e.reason
         ELSE e.reason || '; ' || i.reason END AS reason,
    e.verdict AS egress, e.isolated_by AS egress_isolated_by, e.allowed_by AS egress_allowed_by,
    i.verdict AS ingress, i.isolated_by AS ingress_isolated_by,
    i.allowed_by AS ingress_allowed_by
FROM (SELECT DISTINCT ekey, ikey FROM conn_key) p
JOIN key_verdict e ON e.key_id = p.ekey
JOIN key_verdict i ON i.key_id = p.ikey AND i.pset = e.pset;

-- views: the result table copies what it needs once; a copy per connection here cost
-- as much again (the lists of policy names)
CREATE OR REPLACE VIEW verdicts AS
SELECT c.conn_id, v.* EXCLUDE (ekey, ikey)
FROM conn_key c JOIN pair_verdict v USING (ekey, ikey);

CREATE OR REPLACE VIEW rule_hits AS
SELECT c.conn_id, 'egress' AS direction, h.rule_id, h.hit
FROM conn_key c JOIN key_hits h ON h.key_id = c.ekey
UNION ALL
SELECT c.conn_id, 'ingress', h.rule_id, h.hit
FROM conn_key c JOIN key_hits h ON h.key_id = c.ikey;
"""


# What the report needs of the policies after later evaluations replace the tables above:
# which identities each policy selects, and how much observed traffic each rule admitted.
USAGE_SQL = """
CREATE OR REPLACE TABLE policy_use AS
SELECT p.pset, p.ref, p.namespace, t.direction, t.ident_id
FROM np_pol p LEFT JOIN target_ident t ON t.pset = p.pset AND t.pol_id = p.pol_id;

-- counted per key: a connection has one key per direction and a rule one direction, so
-- the connections a rule admitted are the sum over the keys it admitted
CREATE OR REPLACE TABLE rule_use AS
WITH key_conns AS (
    SELECT ekey AS key_id, count(*) AS n FROM conn_key GROUP BY ekey
    UNION ALL
    SELECT ikey, count(*) FROM conn_key GROUP BY ikey
),
rule_conns AS (
    SELECT h.rule_id, sum(k.n) AS n
    FROM (SELECT DISTINCT key_id, rule_id FROM key_hits WHERE hit = 'allow') h
    JOIN key_conns k USING (key_id)
    GROUP BY h.rule_id
)
SELECT p.pset, p.ref, r.direction, r.rule_idx,
    coalesce(sum(rc.n), 0)::BIGINT AS connections
FROM np_rule r
JOIN np_pol p ON p.pset = r.pset AND p.pol_id = r.pol_id
LEFT JOIN rule_conns rc ON rc.rule_id = r.rule_id
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
