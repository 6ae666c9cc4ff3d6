"""Evaluate every distinct connection against compiled policy sets, in DuckDB.

Selectors are matched per identity (namespace + label set) and per namespace, CIDRs per
distinct address, and only then joined to connections; nothing here runs per flow.
Reads: conns, ep, ident, ident_label, ns, ns_label, pod_port, np_* (policy/tables.py).
Writes: pair_verdict (per pair of egress/ingress evaluation keys and policy set: the
verdict, per-direction verdicts, reasons and policy lists), conn_key (conn_id -> its two
keys), and the views verdicts (the same per connection) and rule_hits. The per-set
tables are views of their parts (PER_SET_TABLES).
"""

from __future__ import annotations

import functools
import re
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


# __LABELS__ and __IDENTS__: sel_label and ident, or only the identities a replay judges
MATCH_SQL = f"""
-- sel_label: a pod's labels and the identity labels Cilium derives (catalog.py)
CREATE OR REPLACE TABLE pod_sel_match AS
{_selector_match_sql('__LABELS__', '__IDENTS__', 'ident_id')};
CREATE OR REPLACE TABLE ns_sel_match AS {_selector_match_sql('ns_label', 'ns', 'namespace')};

-- which policies select which identities, per direction they apply in (isolates: and
-- make the pod default-deny there)
CREATE OR REPLACE TABLE target_ident AS
SELECT t.pset, t.pol_id, t.direction, i.ident_id, t.isolates
FROM np_target t
JOIN pod_sel_match m ON m.sel_id = t.pod_sel_id
JOIN ident i ON i.ident_id = m.subj
LEFT JOIN ns_sel_match n ON n.sel_id = t.ns_sel_id AND n.subj = i.namespace
WHERE i.namespace = t.ns_fixed OR n.sel_id IS NOT NULL;

CREATE OR REPLACE TABLE node_sel_match AS {_selector_match_sql('node_label', 'nident', 'nident')};

-- host policies (Cilium's nodeSelector): the node label sets they select
CREATE OR REPLACE TABLE target_node AS
SELECT t.pset, t.pol_id, t.direction, m.subj AS nident, t.isolates
FROM np_target t JOIN node_sel_match m ON m.sel_id = t.node_sel_id;

-- a key's subject (a pod identity, or a node label set) -> the policies applying to it
CREATE OR REPLACE VIEW target_subj AS
SELECT 'pod' AS subj_kind, ident_id AS subj, pset, pol_id, direction, isolates
FROM target_ident
UNION ALL
SELECT 'node', nident, pset, pol_id, direction, isolates FROM target_node;

-- node peers (of the cluster-scoped policies): the node label sets they select
CREATE OR REPLACE TABLE peer_node AS
SELECT p.peer_id, m.subj AS nident
FROM np_peer p JOIN node_sel_match m ON m.sel_id = p.pod_sel_id
WHERE p.kind = 'nodes';

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
WITH k AS (SELECT DISTINCT key FROM __ADDRESSED__ WHERE key IS NOT NULL),
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

-- Each distinct set of DNS names a destination was resolved from (Hubble records them) is
-- a class; a domainNames peer matches a class by any of its names (`*.x` stands for one
-- or more whole labels before x).
CREATE OR REPLACE TABLE names_cls AS
SELECT names, row_number() OVER (ORDER BY names) AS names_id
FROM (SELECT DISTINCT dst_names AS names FROM __CONNS__ WHERE dst_names IS NOT NULL);

CREATE OR REPLACE TABLE domain_match AS
WITH n AS (SELECT names_id, unnest(string_split(names, ',')) AS name FROM names_cls)
SELECT DISTINCT p.peer_id, n.names_id
FROM np_peer p JOIN n ON regexp_full_match(n.name, p.pattern)
WHERE p.kind = 'domain';

-- What a key takes from each endpoint, once per endpoint (connections then join on ids).
-- ident: a pod's identity, or a node's label set (-1: unknown)
-- api: an address behind default/kubernetes (Cilium's kube-apiserver entity)
CREATE OR REPLACE TABLE ep_attr AS
SELECT e.ep_id, e.kind,
    coalesce(CASE WHEN e.kind = 'node' THEN ni.nident ELSE e.ident_id END, -1) AS ident,
    e.node, coalesce(c.cls_id, -1) AS cls,
    coalesce(CASE WHEN e.kind = 'pod' THEN pf.prof_id END, -1) AS prof,
    e.family, e.ip IN (SELECT ip FROM apiserver_ip) AS api
FROM ep e
LEFT JOIN addr_cls c ON c.key = e.key
LEFT JOIN pod_prof pf ON pf.pod_ref = e.pod_ref
LEFT JOIN (SELECT node, any_value(nident) AS nident FROM node_ident GROUP BY node) ni
    ON e.kind = 'node' AND ni.node = CAST(e.node AS VARCHAR);

-- Per connection, what each direction's verdict depends on (its key): the subject's kind
-- and identity (a pod's, or a node's label set: host policies), the peer's kind,
-- identity and address class, the destination's port profile, port and protocol,
-- whether the peer is the subject pod's own node, what else Cilium's entities need of
-- the peer (bits: 1 the subject pod's own node, 2 an IPv6 address, 4 an API server
-- address), and (egress to a non-pod) the class of names the destination was resolved
-- from. Keys have no NULLs (-1, false) so that they join on equality.
CREATE OR REPLACE TABLE conn_dkey AS
WITH c AS (
    SELECT c.conn_id, c.member, coalesce(c.dst_port, -1) AS dst_port,
        coalesce(c.proto, -1) AS proto,
        s.kind AS s_kind, s.ident AS s_ident, s.node AS s_node, s.cls AS s_cls,
        d.kind AS d_kind, d.ident AS d_ident, d.node AS d_node, d.cls AS d_cls,
        d.prof AS d_prof, coalesce(nc.names_id, -1) AS names,
        s.kind IN ('pod', 'node') AS s_judged, d.kind IN ('pod', 'node') AS d_judged,
        coalesce(s.node = d.node OR s.node = '(observing node)'
                 OR d.node = '(observing node)', false) AS same_node,
        s.family AS s_family, d.family AS d_family, s.api AS s_api, d.api AS d_api,
        -- the source as the destination's ingress sees it: the node a Service's traffic
        -- was source-NATed to, else the source itself
        q.kind AS q_kind, q.ident AS q_ident, q.cls AS q_cls, q.family AS q_family,
        q.api AS q_api,
        coalesce(q.node = d.node OR q.node = '(observing node)'
                 OR d.node = '(observing node)', false) AS q_same_node,
        c.peer_ep <> c.src_ep AS source_nat
    FROM __CONNS_X__ c
    JOIN ep_attr s ON s.ep_id = c.src_ep
    JOIN ep_attr d ON d.ep_id = c.dst_ep
    __PEER_JOIN__
    LEFT JOIN names_cls nc ON nc.names = c.dst_names
),
e AS (   -- the entity bits of each side, as the other side sees it
    SELECT *,
        CASE WHEN same_node AND s_kind = 'pod' THEN 1 ELSE 0 END
            + CASE WHEN d_family = 6 THEN 2 ELSE 0 END
            + CASE WHEN d_api THEN 4 ELSE 0 END AS d_ents,
        CASE WHEN q_same_node AND d_kind = 'pod' THEN 1 ELSE 0 END
            + CASE WHEN q_family = 6 THEN 2 ELSE 0 END
            + CASE WHEN q_api THEN 4 ELSE 0 END
            -- 8: a node whose address is not known (a forwarding node)
            + CASE WHEN q_kind = 'node' AND q_family IS NULL THEN 8 ELSE 0 END
            -- 16: the source as a Service's source NAT left it (a node, not the client)
            + CASE WHEN source_nat THEN 16 ELSE 0 END AS s_ents
    FROM c
)
SELECT conn_id, member,
    s_kind AS e_subj_kind,
    CASE WHEN s_judged THEN s_ident ELSE -1 END AS e_subj_ident,
    false AS e_own_node,
    CASE WHEN s_judged THEN d_kind ELSE '' END AS e_peer_kind,
    CASE WHEN s_judged AND d_kind IN ('pod', 'node') THEN d_ident ELSE -1 END
        AS e_peer_ident,
    CASE WHEN s_judged THEN d_cls ELSE -1 END AS e_peer_cls,
    CASE WHEN s_judged THEN d_prof ELSE -1 END AS e_dst_prof,
    CASE WHEN s_judged THEN dst_port ELSE -1 END AS e_dst_port,
    CASE WHEN s_judged THEN proto ELSE -1 END AS e_proto,
    CASE WHEN s_judged AND d_kind IN ('external', 'unresolved', 'service')
         THEN names ELSE -1 END AS e_names,
    CASE WHEN s_judged THEN d_ents ELSE 0 END AS e_peer_ents,
    d_kind AS i_subj_kind,
    CASE WHEN d_judged THEN d_ident ELSE -1 END AS i_subj_ident,
    -- ingress from the pod's own node: always allowed, unless the CNI profile says not
    coalesce(d_kind = 'pod' AND q_kind = 'node' AND q_same_node
             AND (SELECT own_node_allowed FROM dataplane), false) AS i_own_node,
    CASE WHEN d_judged THEN q_kind ELSE '' END AS i_peer_kind,
    CASE WHEN d_judged AND q_kind IN ('pod', 'node') THEN q_ident ELSE -1 END
        AS i_peer_ident,
    CASE WHEN d_judged THEN q_cls ELSE -1 END AS i_peer_cls,
    CASE WHEN d_judged THEN d_prof ELSE -1 END AS i_dst_prof,
    CASE WHEN d_judged THEN dst_port ELSE -1 END AS i_dst_port,
    CASE WHEN d_judged THEN proto ELSE -1 END AS i_proto,
    -1 AS i_names,
    CASE WHEN d_judged THEN s_ents ELSE 0 END AS i_peer_ents
FROM e;

CREATE OR REPLACE TABLE dir_key AS
SELECT row_number() OVER () AS key_id, * FROM (
    SELECT DISTINCT 'egress' AS direction, e_subj_kind AS subj_kind,
        e_subj_ident AS subj_ident, e_own_node AS own_node, e_peer_kind AS peer_kind,
        e_peer_ident AS peer_ident, e_peer_cls AS peer_cls, e_dst_prof AS dst_prof,
        e_dst_port AS dst_port, e_proto AS proto, e_names AS names,
        e_peer_ents AS peer_ents
    FROM conn_dkey
    UNION
    SELECT DISTINCT 'ingress', i_subj_kind, i_subj_ident, i_own_node, i_peer_kind,
        i_peer_ident, i_peer_cls, i_dst_prof, i_dst_port, i_proto, i_names, i_peer_ents
    FROM conn_dkey
);

-- conn_key_all: every (egress, ingress) pair a connection is judged by: one, or one per
-- backend of the Service it reached (member: the backend endpoint, else -1)
CREATE OR REPLACE TABLE conn_key_all AS
SELECT c.conn_id, c.member, e.key_id AS ekey, i.key_id AS ikey
FROM conn_dkey c
JOIN dir_key e ON e.direction = 'egress' AND e.subj_kind = c.e_subj_kind
    AND e.subj_ident = c.e_subj_ident AND e.own_node = c.e_own_node
    AND e.peer_kind = c.e_peer_kind AND e.peer_ident = c.e_peer_ident
    AND e.peer_cls = c.e_peer_cls AND e.dst_prof = c.e_dst_prof
    AND e.dst_port = c.e_dst_port AND e.proto = c.e_proto AND e.names = c.e_names
    AND e.peer_ents = c.e_peer_ents
JOIN dir_key i ON i.direction = 'ingress' AND i.subj_kind = c.i_subj_kind
    AND i.subj_ident = c.i_subj_ident AND i.own_node = c.i_own_node
    AND i.peer_kind = c.i_peer_kind AND i.peer_ident = c.i_peer_ident
    AND i.peer_cls = c.i_peer_cls AND i.dst_prof = c.i_dst_prof
    AND i.dst_port = c.i_dst_port AND i.proto = c.i_proto AND i.names = c.i_names
    AND i.peer_ents = c.i_peer_ents;

__CONN_KEY__;

-- which keys are judged under which set: every key under every set, or (replaying
-- suggested fixes, one set per fix) only the keys of the connections each set is for
CREATE OR REPLACE TABLE key_scope AS
__SCOPE__;

-- the rules of the policies that apply to the key's subject (a pod, or a node a host
-- policy selects) in its direction
CREATE OR REPLACE TABLE key_rule AS
SELECT k.key_id, ti.pset, r.rule_id
FROM dir_key k
JOIN target_subj ti ON ti.subj_kind = k.subj_kind AND ti.subj = k.subj_ident
    AND ti.direction = k.direction
JOIN key_scope ks ON ks.key_id = k.key_id AND ks.pset = ti.pset
JOIN np_rule r ON r.pset = ti.pset AND r.pol_id = ti.pol_id AND r.direction = ti.direction;

-- Cilium's fromRequires/toRequires: per key and set, whether the requirements of the
-- subject's allow (deny) rules leave its endpoint peers unmatched: the peer is not a pod
-- meeting every one of them
CREATE OR REPLACE TABLE key_unmet AS
SELECT DISTINCT kr.key_id, kr.pset, r.action = 'require-deny' AS for_deny
FROM key_rule kr
JOIN np_rule r ON r.rule_id = kr.rule_id AND r.action IN ('require', 'require-deny')
JOIN dir_key k ON k.key_id = kr.key_id
JOIN np_peer p ON p.rule_id = r.rule_id
LEFT JOIN peer_ident pi ON pi.peer_id = p.peer_id AND pi.ident_id = k.peer_ident
    AND k.peer_kind = 'pod'
WHERE pi.peer_id IS NULL;

-- which rules match each key: 'match', or 'maybe' where the key lacks what the peer
-- needs (a pod behind an unresolved address, a node of unknown labels, a destination
-- name the flow did not record; `why` says which)
CREATE OR REPLACE TABLE key_hits AS
WITH kr AS (
    SELECT kr.key_id, kr.rule_id, k.peer_kind, k.peer_ident, k.peer_cls, k.dst_prof,
        NULLIF(k.dst_port, -1) AS dst_port, NULLIF(k.proto, -1) AS proto, k.names,
        -- the peer's entities (Cilium's; `?`: not known)
        CASE k.peer_kind
            WHEN 'pod' THEN ['cluster']
            WHEN 'node' THEN ['cluster', CASE WHEN k.peer_ents & 1 = 1 THEN 'host'
                                              ELSE 'remote-node' END]
            WHEN 'external' THEN ['world', CASE WHEN k.peer_ents & 2 = 2 THEN 'world-ipv6'
                                                ELSE 'world-ipv4' END]
            ELSE ['?'] END
            -- Cilium counts the API server in the cluster entity, even where its address
            -- is outside the cluster (a managed control plane)
            || CASE WHEN k.peer_ents & 4 = 4 THEN ['kube-apiserver', 'cluster'] ELSE [] END
            AS ents,
        k.peer_ents,
        -- an endpoint peer of this rule fails the subject's requirements
        u.key_id IS NOT NULL AS unmet
    FROM key_rule kr JOIN dir_key k USING (key_id)
    JOIN np_rule r ON r.rule_id = kr.rule_id AND r.action NOT IN ('require', 'require-deny')
    LEFT JOIN key_unmet u ON u.key_id = kr.key_id AND u.pset = kr.pset
        AND u.for_deny = (r.action = 'deny')
),
peer_ok AS (
    SELECT kr.key_id, kr.rule_id
    FROM kr JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'any'
    UNION
    SELECT kr.key_id, kr.rule_id
    FROM kr
    JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'pods'
    JOIN peer_ident pi ON pi.peer_id = p.peer_id AND pi.ident_id = kr.peer_ident
    WHERE kr.peer_kind = 'pod' AND NOT (p.requirable AND kr.unmet)
    UNION
    SELECT kr.key_id, kr.rule_id
    FROM kr
    JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'cidr'
    JOIN peer_block pb ON pb.peer_id = p.peer_id
    JOIN cls_block cb ON cb.cls_id = kr.peer_cls AND cb.block_id = pb.block_id
    -- world_only: Cilium's CIDR peers; under a CNI whose CIDR rules never select cluster
    -- endpoints (cni.py), every ipBlock
    WHERE NOT (p.world_only OR (SELECT cidr_world_only FROM dataplane))
       OR kr.peer_kind = 'external'
       -- Cilium's policy-cidr-match-mode: nodes
       OR (kr.peer_kind = 'node' AND (SELECT cidr_nodes FROM dataplane))
    UNION
    SELECT kr.key_id, kr.rule_id
    FROM kr JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'entity'
    WHERE (p.pattern = 'all' OR list_contains(kr.ents, p.pattern))
      AND NOT (p.requirable AND kr.unmet)
    UNION
    SELECT kr.key_id, kr.rule_id
    FROM kr
    JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'nodes'
    JOIN peer_node pn ON pn.peer_id = p.peer_id AND pn.nident = kr.peer_ident
    WHERE kr.peer_kind = 'node' AND NOT (p.remote_only AND kr.peer_ents & 1 = 1)
    UNION
    SELECT kr.key_id, kr.rule_id
    FROM kr
    JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'domain'
    JOIN domain_match dm ON dm.peer_id = p.peer_id AND dm.names_id = kr.names
),
peer_maybe AS (
    SELECT kr.key_id, kr.rule_id, 'unresolved peer' AS why
    FROM kr JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'pods'
    WHERE kr.peer_kind IN ('unresolved', 'service')
    UNION
    SELECT kr.key_id, kr.rule_id, 'node labels unknown'
    FROM kr JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'nodes'
    WHERE kr.peer_kind = 'node' AND kr.peer_ident = -1
      AND NOT (p.remote_only AND kr.peer_ents & 1 = 1)
    UNION
    SELECT kr.key_id, kr.rule_id, 'destination name unknown'
    FROM kr JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'domain'
    WHERE kr.peer_kind IN ('external', 'unresolved', 'service') AND kr.names = -1
    UNION
    -- an address not resolved: which entity it is, or whether it is outside the cluster
    -- (a CIDR rule's condition), is not known
    SELECT kr.key_id, kr.rule_id, 'unresolved peer'
    FROM kr JOIN np_peer p ON p.rule_id = kr.rule_id
    WHERE kr.peer_kind IN ('unresolved', 'service')
      AND ((p.kind = 'entity' AND p.pattern <> 'all')
           OR (p.kind = 'cidr' AND (p.world_only
                                    OR (SELECT cidr_world_only FROM dataplane))))
    UNION
    -- a Service's client source-NATed by a node that is not known: its address is not
    SELECT kr.key_id, kr.rule_id, 'client hidden by source NAT'
    FROM kr JOIN np_peer p ON p.rule_id = kr.rule_id AND p.kind = 'cidr'
    WHERE kr.peer_kind = 'node' AND kr.peer_ents & 8 = 8
),
port_ok AS (
    SELECT DISTINCT kr.key_id, kr.rule_id
    FROM kr JOIN np_port pt ON pt.rule_id = kr.rule_id
    WHERE (pt.proto IS NULL AND pt.name IS NULL)
       OR (pt.name IS NULL AND pt.proto = kr.proto
           AND (pt.lo IS NULL OR kr.dst_port BETWEEN pt.lo AND pt.hi))
       -- a named port: the destination pod's, by name and the flow's protocol
       OR (pt.name IS NOT NULL AND (pt.proto IS NULL OR pt.proto = kr.proto)
           AND EXISTS (SELECT 1 FROM prof_port pp
                       WHERE pp.prof_id = kr.dst_prof AND pp.name = pt.name
                         AND pp.proto = kr.proto AND pp.port = kr.dst_port))
)
SELECT po.key_id, po.rule_id, 'match' AS hit, NULL AS why
FROM (SELECT DISTINCT * FROM peer_ok) po JOIN port_ok pt USING (key_id, rule_id)
UNION ALL
SELECT pm.key_id, pm.rule_id, 'maybe', any_value(pm.why)
FROM peer_maybe pm JOIN port_ok pt USING (key_id, rule_id)
GROUP BY pm.key_id, pm.rule_id;

-- every hit with its rule and policy; rule_ref: how lists of rules name it; label: how
-- a reason does (a Cilium rule by its section and what it says)
CREATE OR REPLACE TABLE key_hit_rule AS
SELECT h.key_id, h.rule_id, h.hit, h.why, r.pset, r.pol_id, r.rule_idx, r.action,
    r.direction, p.tier, p.priority, p.ref,
    CASE WHEN p.dialect = 'cilium' THEN p.ref || ' ' || r.name
         ELSE p.ref || ' ' || r.direction || '[' || r.rule_idx || ']' END AS rule_ref,
    CASE WHEN p.dialect = 'cilium'
            THEN p.display || ' ' || r.name || coalesce(' (' || r.detail || ')', '')
         WHEN p.tier = 'namespace' THEN p.ref || ' ' || r.direction || '[' || r.rule_idx || ']'
         ELSE p.kind || ' ' || split_part(p.ref, '/', 2)
              || CASE WHEN p.kind = 'BaselineAdminNetworkPolicy' THEN ''
                      ELSE ' (priority ' || p.priority || ')' END
              || ' ' || r.direction || ' rule ' || r.rule_idx
              || coalesce(' "' || r.name || '"', '') END AS label
FROM key_hits h
JOIN np_rule r USING (rule_id)
JOIN np_pol p ON p.pset = r.pset AND p.pol_id = r.pol_id;

-- The first-match tiers (admin, baseline): per key, set and tier, the first matching rule
-- of each policy; of the policies at the lowest priority with one, what they say. Two
-- that disagree there: the API leaves it undefined ('ambiguous'); a rule before the
-- first match that might match: not known ('maybe').
CREATE OR REPLACE TABLE key_first AS
WITH per_pol AS (
    SELECT key_id, pset, tier, priority, pol_id,
        min(rule_idx) FILTER (WHERE hit = 'match') AS first_match,
        min(rule_idx) FILTER (WHERE hit = 'maybe') AS first_maybe
    FROM key_hit_rule WHERE tier <> 'namespace'
    GROUP BY ALL
),
outcome AS (
    SELECT o.key_id, o.pset, o.tier, o.priority,
        CASE WHEN o.first_maybe < coalesce(o.first_match, 1 << 30) THEN 'maybe'
             ELSE m.action END AS outcome,
        CASE WHEN o.first_maybe < coalesce(o.first_match, 1 << 30) THEN y.why END AS why,
        CASE WHEN o.first_maybe < coalesce(o.first_match, 1 << 30) THEN y.label
             ELSE m.label END AS label,
        CASE WHEN o.first_maybe < coalesce(o.first_match, 1 << 30) THEN y.rule_ref
             ELSE m.rule_ref END AS rule_ref
    FROM per_pol o
    LEFT JOIN key_hit_rule m ON m.key_id = o.key_id AND m.pset = o.pset
        AND m.pol_id = o.pol_id AND m.rule_idx = o.first_match AND m.hit = 'match'
    LEFT JOIN key_hit_rule y ON y.key_id = o.key_id AND y.pset = o.pset
        AND y.pol_id = o.pol_id AND y.rule_idx = o.first_maybe AND y.hit = 'maybe'
),
top AS (
    SELECT key_id, pset, tier, min(priority) AS priority FROM outcome GROUP BY ALL
)
SELECT o.key_id, o.pset, o.tier,
    CASE WHEN bool_or(o.outcome = 'maybe') THEN 'maybe'
         WHEN count(DISTINCT o.outcome) > 1 THEN 'ambiguous'
         ELSE any_value(o.outcome) END AS decision,
    any_value(o.why) FILTER (WHERE o.outcome = 'maybe') AS why,
    array_to_string(list(o.label ORDER BY o.label), ' and ') AS labels,
    list(o.rule_ref ORDER BY o.rule_ref) AS rule_refs
FROM outcome o JOIN top t USING (key_id, pset, tier, priority)
GROUP BY ALL;

-- The NetworkPolicy tier (where Cilium's policies act too): the policies that isolate the
-- subject; the allow rules that match (a union); the deny rules that match, which win
-- over every allow, in any policy, isolated or not.
CREATE OR REPLACE TABLE key_verdict AS
WITH isolation AS (   -- a cluster-scoped (admin, baseline) policy isolates nothing
    SELECT ti.subj_kind, ti.subj, ti.direction, ti.pset,
        list(p.ref ORDER BY p.ref) AS isolated_by,
        list(p.display ORDER BY p.ref) AS isolated_names
    FROM target_subj ti JOIN np_pol p ON p.pset = ti.pset AND p.pol_id = ti.pol_id
    WHERE p.tier = 'namespace' AND ti.isolates
    GROUP BY ALL
),
-- Cilium's enable-policy: always isolates every pod (its agent configuration, no policy)
agent AS (SELECT isolate_all FROM dataplane),
admission AS (
    SELECT key_id, pset,
        list(rule_ref ORDER BY ref, rule_idx) FILTER (WHERE hit = 'match') AS allowed_by,
        list(label ORDER BY ref, rule_idx) FILTER (WHERE hit = 'match') AS allowed_labels,
        bool_or(hit = 'maybe') AS maybe,
        any_value(why) FILTER (WHERE hit = 'maybe') AS maybe_why,
        list(label ORDER BY ref, rule_idx) FILTER (WHERE hit = 'maybe') AS maybe_labels
    FROM key_hit_rule WHERE tier = 'namespace' AND action = 'allow'
    GROUP BY ALL
),
denial AS (
    SELECT key_id, pset,
        list(label ORDER BY ref, rule_idx) FILTER (WHERE hit = 'match') AS denied_by,
        list(rule_ref ORDER BY ref, rule_idx) FILTER (WHERE hit = 'match') AS deny_refs,
        list(label ORDER BY ref, rule_idx) FILTER (WHERE hit = 'maybe') AS deny_maybe_by,
        any_value(why) FILTER (WHERE hit = 'maybe') AS deny_why
    FROM key_hit_rule WHERE tier = 'namespace' AND action = 'deny'
    GROUP BY ALL
),
d AS (
    SELECT k.key_id, k.direction, k.subj_kind, k.own_node, k.peer_ents, ps.pset,
        CASE WHEN i.isolated_by IS NULL AND ag.isolate_all AND k.subj_kind = 'pod'
             THEN ['cilium-config'] ELSE i.isolated_by END AS isolated_by,
        CASE WHEN i.isolated_by IS NULL AND ag.isolate_all AND k.subj_kind = 'pod'
             THEN ['cilium-config (enable-policy: always)']
             ELSE i.isolated_names END AS isolated_names,
        a.allowed_by, a.allowed_labels, a.maybe, a.maybe_why,
        a.maybe_labels, coalesce(len(dn.denied_by), 0) > 0 AS denied, dn.denied_by,
        dn.deny_refs, coalesce(len(dn.deny_maybe_by), 0) > 0 AS deny_maybe,
        dn.deny_maybe_by, dn.deny_why,
        ad.decision AS adm, ad.labels AS adm_labels, ad.why AS adm_why,
        ad.rule_refs AS adm_refs,
        bl.decision AS bas, bl.labels AS bas_labels, bl.why AS bas_why,
        bl.rule_refs AS bas_refs,
        -- the tier that decides: the admin tier unless it passes or matches nothing,
        -- then NetworkPolicies (and Cilium's) if one isolates the subject or a deny rule
        -- matches, then the baseline, then none
        CASE WHEN k.subj_kind NOT IN ('pod', 'node') OR k.own_node THEN 'default'
             WHEN ad.decision IN ('allow', 'deny', 'maybe', 'ambiguous') THEN 'admin'
             WHEN i.isolated_by IS NOT NULL OR (ag.isolate_all AND k.subj_kind = 'pod')
                  OR len(dn.denied_by) > 0
                  OR len(dn.deny_maybe_by) > 0 THEN 'networkpolicy'
             WHEN bl.decision IN ('allow', 'deny', 'maybe', 'ambiguous') THEN 'baseline'
             ELSE 'default' END AS tier
    FROM dir_key k
    JOIN key_scope ps USING (key_id)
    CROSS JOIN agent ag
    LEFT JOIN isolation i ON i.subj_kind = k.subj_kind AND i.subj = k.subj_ident
        AND i.direction = k.direction AND i.pset = ps.pset
    LEFT JOIN admission a ON a.key_id = k.key_id AND a.pset = ps.pset
    LEFT JOIN denial dn ON dn.key_id = k.key_id AND dn.pset = ps.pset
    LEFT JOIN key_first ad ON ad.key_id = k.key_id AND ad.pset = ps.pset
        AND ad.tier = 'admin'
    LEFT JOIN key_first bl ON bl.key_id = k.key_id AND bl.pset = ps.pset
        AND bl.tier = 'baseline'
),
-- what the first-match tier said, in words
said AS (
    SELECT *,
        CASE tier WHEN 'admin' THEN adm WHEN 'baseline' THEN bas END AS decision,
        CASE tier WHEN 'admin' THEN adm_labels WHEN 'baseline' THEN bas_labels END AS labels,
        CASE tier WHEN 'admin' THEN adm_why WHEN 'baseline' THEN bas_why END AS why
    FROM d
)
SELECT key_id, pset, tier,
    CASE
        WHEN subj_kind = 'external' OR (subj_kind = 'node' AND tier = 'default') THEN 'allow'
        WHEN subj_kind NOT IN ('pod', 'node') THEN 'unknown'
        WHEN own_node THEN 'allow'
        WHEN tier IN ('admin', 'baseline') THEN CASE decision
            WHEN 'allow' THEN 'allow' WHEN 'deny' THEN 'deny' ELSE 'unknown' END
        WHEN tier = 'networkpolicy' THEN CASE
            WHEN denied THEN 'deny' WHEN deny_maybe THEN 'unknown'
            WHEN isolated_by IS NULL THEN 'allow'
            WHEN len(allowed_by) > 0 THEN 'allow' WHEN maybe THEN 'unknown' ELSE 'deny' END
        ELSE 'allow'
    END AS verdict,
    CASE
        WHEN subj_kind = 'node' AND tier = 'default'
            THEN direction || ': a node (or a host-network pod on it), no policy applies'
        WHEN subj_kind = 'external'
            THEN direction || ': ' || subj_kind || ' endpoint, no policy applies'
        WHEN subj_kind = 'service'
            THEN direction || ': a Service address not followed to a backend (no ready '
                || 'endpoint for this port in the snapshot at the flow''s time), '
                || 'policies not known'
        WHEN subj_kind NOT IN ('pod', 'node')
            THEN direction || ': ' || subj_kind || ' endpoint, policies not known'
        WHEN own_node
            THEN 'ingress: from the pod''s own node (kubelet probes), always allowed'
        ELSE direction || ': '
            -- an admin Pass that handed the connection on
            || CASE WHEN adm = 'pass' THEN 'passed by ' || adm_labels || ' to the '
                    || CASE WHEN tier = 'networkpolicy' THEN 'NetworkPolicy tier; '
                            ELSE 'next tier; ' END ELSE '' END
            || CASE
                WHEN tier IN ('admin', 'baseline') THEN CASE decision
                    WHEN 'allow' THEN 'allowed by ' || labels
                    WHEN 'deny' THEN 'denied by ' || labels
                    WHEN 'ambiguous' THEN 'ambiguous priority: ' || labels
                        || ' match at the same priority and disagree; the API leaves the '
                        || 'outcome undefined'
                    ELSE why || ': ' || labels || ' might match' END
                    || CASE WHEN tier = 'baseline' THEN ' (no NetworkPolicy isolates it)'
                            ELSE '' END
                WHEN tier = 'networkpolicy' THEN CASE
                    WHEN denied THEN 'denied by ' || array_to_string(denied_by, ', ')
                        || ' (a deny rule wins over every allow)'
                    WHEN deny_maybe THEN deny_why || ': '
                        || array_to_string(deny_maybe_by, ', ') || ' might deny it'
                    WHEN isolated_by IS NULL THEN 'not isolated; no deny rule matches'
                    WHEN len(allowed_by) > 0
                        THEN 'allowed by ' || array_to_string(allowed_labels, ', ')
                    WHEN maybe_why = 'unresolved peer' AND NOT list_contains(
                            list_transform(maybe_labels, lambda x: x LIKE 'Cilium%'), true)
                        THEN 'isolated by ' || array_to_string(isolated_names, ', ')
                        || '; a pod-selector rule might admit the unresolved peer'
                    WHEN maybe THEN 'isolated by ' || array_to_string(isolated_names, ', ')
                        || '; ' || maybe_why || ': ' || array_to_string(maybe_labels, ', ')
                        || ' might admit it'
                    ELSE 'isolated by ' || array_to_string(isolated_names, ', ')
                        || '; no ' || direction || ' rule admits it' END
                WHEN bas = 'pass' THEN 'not isolated; passed by ' || bas_labels
                    || ' to the default (allowed)'
                ELSE 'not isolated'
            END
    END
    -- a Service's traffic source-NATed to a node on its way to the backend
    || CASE WHEN direction = 'ingress' AND peer_ents & 16 = 16 AND subj_kind = 'pod'
            THEN ' (the client is hidden by the Service''s source NAT: the backend sees a '
                 || 'node)' ELSE '' END AS reason,
    -- why an unknown verdict is unknown
    CASE
        WHEN subj_kind = 'external' OR (subj_kind = 'node' AND tier = 'default') OR own_node
            THEN NULL
        WHEN subj_kind = 'service' THEN 'service not followed'
        WHEN subj_kind NOT IN ('pod', 'node') THEN 'endpoint not resolved'
        WHEN tier IN ('admin', 'baseline') AND decision = 'ambiguous' THEN 'ambiguous priority'
        WHEN tier IN ('admin', 'baseline') AND decision = 'maybe' THEN why
        WHEN tier = 'networkpolicy' AND denied THEN NULL
        WHEN tier = 'networkpolicy' AND deny_maybe THEN deny_why
        WHEN tier = 'networkpolicy' AND isolated_by IS NOT NULL
             AND coalesce(len(allowed_by), 0) = 0 AND maybe THEN maybe_why
    END AS undecided,
    -- what the tiers below the admin tier say (an admin Pass would leave it to them)
    CASE
        WHEN subj_kind = 'external' OR (subj_kind = 'node' AND tier = 'default') OR own_node
            THEN 'allow'
        WHEN subj_kind NOT IN ('pod', 'node') THEN 'unknown'
        WHEN denied THEN 'deny'
        WHEN deny_maybe THEN 'unknown'
        WHEN isolated_by IS NOT NULL THEN CASE
            WHEN len(allowed_by) > 0 THEN 'allow' WHEN maybe THEN 'unknown' ELSE 'deny' END
        WHEN bas IN ('allow', 'deny') THEN bas
        WHEN bas IN ('maybe', 'ambiguous') THEN 'unknown'
        ELSE 'allow'
    END AS below_admin,
    coalesce(isolated_by, []) AS isolated_by,
    coalesce(allowed_by, []) AS allowed_by,
    -- the first-match rules that decided, or passed it on; the deny rules that decided
    CASE WHEN subj_kind NOT IN ('pod', 'node') OR own_node THEN []
         WHEN tier = 'networkpolicy' AND denied
             THEN list_concat(coalesce(adm_refs, []), deny_refs)
         ELSE list_concat(coalesce(adm_refs, []),
                          CASE WHEN tier = 'baseline' OR (tier = 'default' AND bas = 'pass')
                               THEN bas_refs ELSE [] END) END AS decided_by,
    -- isolated and no allow rule admits (near misses explain these), or a deny rule won
    coalesce(tier = 'networkpolicy' AND denied, false) AS by_deny_rule
FROM said;

-- per distinct pair of keys, then per connection
CREATE OR REPLACE TABLE pair_verdict AS
SELECT p.ekey, p.ikey, e.pset,
    CASE WHEN e.verdict = 'deny' OR i.verdict = 'deny' THEN 'deny'
         WHEN e.verdict = 'unknown' OR i.verdict = 'unknown' THEN 'unknown'
         ELSE 'allow' END AS verdict,
    -- lead with the direction that decides
    CASE WHEN i.verdict = 'deny' AND e.verdict <> 'deny' THEN i.reason || '; ' || e.reason
         ELSE e.reason || '; ' || i.reason END AS reason,
    -- the tier that decided: a denying (else an undecided) direction's, the egress first;
    -- of an allowed connection, the strongest tier either direction was allowed in
    CASE WHEN e.verdict = 'deny' THEN e.tier WHEN i.verdict = 'deny' THEN i.tier
         WHEN e.verdict = 'unknown' THEN e.tier WHEN i.verdict = 'unknown' THEN i.tier
         WHEN 'admin' IN (e.tier, i.tier) THEN 'admin'
         WHEN 'networkpolicy' IN (e.tier, i.tier) THEN 'networkpolicy'
         WHEN 'baseline' IN (e.tier, i.tier) THEN 'baseline'
         ELSE 'default' END AS tier,
    e.verdict AS egress, e.isolated_by AS egress_isolated_by, e.allowed_by AS egress_allowed_by,
    e.decided_by AS egress_decided_by, e.tier AS egress_tier,
    i.verdict AS ingress, i.isolated_by AS ingress_isolated_by,
    i.allowed_by AS ingress_allowed_by, i.decided_by AS ingress_decided_by,
    CASE WHEN e.verdict = 'unknown' THEN e.undecided ELSE i.undecided END AS undecided,
    i.tier AS ingress_tier, e.below_admin AS egress_below_admin,
    i.below_admin AS ingress_below_admin
FROM (SELECT DISTINCT ekey, ikey FROM conn_key_all) p
JOIN key_verdict e ON e.key_id = p.ekey
JOIN key_verdict i ON i.key_id = p.ikey AND i.pset = e.pset;

-- views: the result table copies what it needs once; a copy per connection here cost
-- as much again (the lists of policy names)
CREATE OR REPLACE VIEW verdicts AS
SELECT c.conn_id, v.* EXCLUDE (ekey, ikey)
FROM conn_key c JOIN pair_verdict v USING (ekey, ikey);

CREATE OR REPLACE VIEW rule_hits AS
SELECT __DISTINCT__ * FROM (
    SELECT c.conn_id, 'egress' AS direction, h.rule_id, h.hit
    FROM conn_key_all c JOIN key_hits h ON h.key_id = c.ekey
    UNION ALL
    SELECT c.conn_id, 'ingress', h.rule_id, h.hit
    FROM conn_key_all c JOIN key_hits h ON h.key_id = c.ikey);
"""


# What the report needs of the policies after later evaluations replace the tables above:
# which identities each policy selects, and how much observed traffic each rule admitted.
USAGE_SQL = """
CREATE OR REPLACE TABLE policy_use AS
SELECT p.pset, p.ref, p.namespace, t.direction, t.ident_id
FROM np_pol p LEFT JOIN target_ident t ON t.pset = p.pset AND t.pol_id = p.pol_id;

-- Per rule: the connections it matched, and those it decided (a NetworkPolicy rule: in a
-- key the NetworkPolicy tier decided; a first-match rule: the one that decided or passed).
-- A rule that matched but never decided is shadowed: by the first-match rule or the
-- NetworkPolicy isolation that decided instead (the commonest). Counted per key: a
-- connection has one key per direction and a rule one direction.
CREATE OR REPLACE TABLE rule_use AS
WITH key_conns AS (
    SELECT ekey AS key_id, count(*) AS n FROM conn_key_all GROUP BY ekey
    UNION ALL
    SELECT ikey, count(*) FROM conn_key_all GROUP BY ikey
),
matched AS (
    SELECT DISTINCT h.key_id, h.rule_id, h.pset, h.tier AS pol_tier, h.rule_ref
    FROM key_hit_rule h WHERE h.hit = 'match'
),
judged AS (
    SELECT m.rule_id, k.n,
        CASE WHEN m.pol_tier = 'namespace' THEN v.tier = 'networkpolicy'
             ELSE list_contains(v.decided_by, m.rule_ref) END AS decided,
        CASE WHEN v.tier = 'networkpolicy'
                 THEN 'the NetworkPolicy tier (' || v.isolated_by[1] || ')'
             WHEN v.tier = 'admin' THEN v.decided_by[1]
             ELSE v.decided_by[-1] END AS decider
    FROM matched m
    JOIN key_verdict v ON v.key_id = m.key_id AND v.pset = m.pset
    JOIN key_conns k ON k.key_id = m.key_id
),
per_rule AS (
    SELECT rule_id, sum(n) AS matched, coalesce(sum(n) FILTER (WHERE decided), 0) AS decided,
        arg_max(decider, n) FILTER (WHERE NOT decided) AS shadowed_by
    FROM judged GROUP BY rule_id
)
SELECT p.pset, p.ref, r.direction, r.rule_idx, r.name,
    coalesce(pr.decided, 0)::BIGINT AS connections,
    coalesce(pr.matched, 0)::BIGINT AS matched,
    CASE WHEN coalesce(pr.decided, 0) = 0 THEN pr.shadowed_by END AS shadowed_by
FROM np_rule r
JOIN np_pol p ON p.pset = r.pset AND p.pol_id = r.pol_id
LEFT JOIN per_rule pr ON pr.rule_id = r.rule_id
WHERE r.action NOT IN ('require', 'require-deny')   -- conditions, not rules of their own
"""


# A connection's one pair of keys; or, for one that reached a Service, the backends'
# pairs: one when they share it, else a pair of its own (-gid) whose verdict is the
# backends' verdicts together (SERVICE_VERDICT_SQL).
CONN_KEY_SQL = "CREATE OR REPLACE VIEW conn_key AS SELECT conn_id, ekey, ikey FROM conn_key_all"
CONN_KEY_SERVICE_SQL = """
CREATE OR REPLACE TABLE svc_group AS
WITH m AS (
    SELECT conn_id, list_sort(list_distinct(list([member, ekey, ikey]))) AS members,
        count(DISTINCT (ekey, ikey)) AS pairs, min(ekey) AS ekey0, min(ikey) AS ikey0
    FROM conn_key_all WHERE member <> -1 GROUP BY conn_id
)
SELECT *, dense_rank() OVER (ORDER BY members) AS gid FROM m;

CREATE OR REPLACE TABLE svc_member AS
SELECT DISTINCT gid, m[1] AS b_ep, m[2] AS ekey, m[3] AS ikey
FROM (SELECT gid, unnest(members) AS m FROM svc_group WHERE pairs > 1);

CREATE OR REPLACE TABLE conn_key AS
SELECT conn_id, ekey, ikey FROM conn_key_all WHERE member = -1
UNION ALL
SELECT conn_id, CASE WHEN pairs = 1 THEN ekey0 ELSE -gid END,
    CASE WHEN pairs = 1 THEN ikey0 ELSE -gid END
FROM svc_group"""

# The verdict of a connection whose Service backends are judged by different pairs of
# keys: what they agree on; where some allow and some deny, unknown ("service backends
# disagree"), each backend's verdict named.
SERVICE_VERDICT_SQL = """
CREATE OR REPLACE TABLE pair_verdict_svc AS
WITH m AS (
    SELECT g.gid, e.ep_name AS backend, v.*,
        CASE v.verdict WHEN 'deny' THEN 0 WHEN 'unknown' THEN 1 ELSE 2 END AS rank
    FROM svc_member g
    JOIN pair_verdict v ON v.ekey = g.ekey AND v.ikey = g.ikey
    JOIN ep e ON e.ep_id = g.b_ep
),
agg AS (
    SELECT gid, pset,
        bool_or(verdict = 'allow') AND bool_or(verdict = 'deny') AS disagree,
        count(DISTINCT verdict) = 1 AS agree,
        count(DISTINCT reason) = 1 AS same_reason,
        any_value(verdict) AS one_verdict, any_value(reason) AS one_reason,
        string_agg(backend || ' ' || verdict || ' (' || reason || ')', '; '
                   ORDER BY backend) AS each,
        arg_min(tier, rank) AS tier, arg_min(egress_tier, rank) AS egress_tier,
        arg_min(ingress_tier, rank) AS ingress_tier,
        arg_min(undecided, rank) FILTER (WHERE verdict = 'unknown') AS undecided,
        CASE WHEN count(DISTINCT egress) = 1 THEN any_value(egress) ELSE 'unknown' END
            AS egress,
        CASE WHEN count(DISTINCT ingress) = 1 THEN any_value(ingress) ELSE 'unknown' END
            AS ingress,
        CASE WHEN count(DISTINCT egress_below_admin) = 1 THEN any_value(egress_below_admin)
             ELSE 'unknown' END AS egress_below_admin,
        CASE WHEN count(DISTINCT ingress_below_admin) = 1
             THEN any_value(ingress_below_admin) ELSE 'unknown' END AS ingress_below_admin,
        list_sort(list_distinct(flatten(list(egress_isolated_by)))) AS egress_isolated_by,
        list_sort(list_distinct(flatten(list(egress_allowed_by)))) AS egress_allowed_by,
        list_sort(list_distinct(flatten(list(egress_decided_by)))) AS egress_decided_by,
        list_sort(list_distinct(flatten(list(ingress_isolated_by)))) AS ingress_isolated_by,
        list_sort(list_distinct(flatten(list(ingress_allowed_by)))) AS ingress_allowed_by,
        list_sort(list_distinct(flatten(list(ingress_decided_by)))) AS ingress_decided_by
    FROM m GROUP BY gid, pset
)
SELECT -gid AS ekey, -gid AS ikey, pset,
    CASE WHEN agree THEN one_verdict ELSE 'unknown' END AS verdict,
    CASE WHEN agree AND same_reason THEN one_reason
         WHEN agree THEN 'every Service backend: ' || each
         WHEN disagree THEN 'service backends disagree: ' || each
         ELSE 'a Service backend''s verdict is not known: ' || each END AS reason,
    tier, egress, egress_isolated_by, egress_allowed_by, egress_decided_by, egress_tier,
    ingress, ingress_isolated_by, ingress_allowed_by, ingress_decided_by,
    CASE WHEN agree AND one_verdict <> 'unknown' THEN NULL
         WHEN disagree THEN 'service backends disagree' ELSE undecided END AS undecided,
    ingress_tier, egress_below_admin, ingress_below_admin
FROM agg"""

ALL_KEYS = """SELECT k.key_id, ps.pset
FROM dir_key k CROSS JOIN (SELECT unnest($psets) AS pset) ps"""
SCOPED_KEYS = """SELECT c.ekey AS key_id, s.pset FROM {scope} s JOIN conn_key_all c USING (conn_id)
UNION
SELECT c.ikey, s.pset FROM {scope} s JOIN conn_key_all c USING (conn_id)"""


def evaluate(con: duckdb.DuckDBPyConnection, psets: Sequence[str],
             conns: str = "conns", scope: str | None = None) -> None:
    """Verdicts of the connections in `conns` (a table or view shaped like `conns`)
    under the registered policy sets named in `psets`; replaces the tables above.
    scope: a table of (conn_id, pset) to judge each connection only under those sets."""
    judge(con, psets, conns, scope, match=True)


def match_selectors(con: duckdb.DuckDBPyConnection, only: str | None = None) -> None:
    """Which identities, namespaces and nodes each registered selector matches: what each
    policy selects (target_ident) and each peer admits. only: a table of the ident_ids
    that matter (a replay's endpoints); the others are left unmatched."""
    labels, idents = "sel_label", "ident"
    if only is not None:
        labels, idents = (f"(SELECT * FROM {t} SEMI JOIN {only} USING (ident_id))"
                          for t in (labels, idents))
    db.run(con, MATCH_SQL.replace("__LABELS__", labels).replace("__IDENTS__", idents))


# The tables judged per policy set, from key_scope on. With two sets or more, two halves
# of the sets are judged at once on two cursors: these statements each run on one core
# (their tables are small, one row group), so both halves take the wall time of one. Each
# part writes its own tables (name_partN); the names themselves are views of the parts.
PER_SET_TABLES = ("key_scope", "key_rule", "key_unmet", "key_hits", "key_hit_rule",
                  "key_first", "key_verdict", "pair_verdict")
_PER_SET_NAME = re.compile(r"\b(" + "|".join(PER_SET_TABLES) + r")\b")


def _creates(statement: str) -> str | None:
    m = re.search(r"CREATE OR REPLACE (?:TEMP )?(?:TABLE|VIEW) (\w+)", statement)
    return m.group(1) if m else None


def _run_part(cur: duckdb.DuckDBPyConnection, *, statements: list[str], part: int) -> None:
    for statement in statements:
        db.run(cur, _PER_SET_NAME.sub(lambda m: f"{m.group(1)}_part{part}", statement))


def _judge_per_set(con: duckdb.DuckDBPyConnection, statements: list[str],
                   psets: Sequence[str]) -> None:
    """The statements after key_scope, for the sets in one part or two at once."""
    parts = ([list(psets[0::2]), list(psets[1::2])]
             if len(psets) > 1 and db.threads(con) > 1 else [list(psets)])
    for n, part in enumerate(parts):
        db.run(con, f"""CREATE OR REPLACE TABLE key_scope_part{n} AS
                        SELECT * FROM key_scope WHERE pset IN (SELECT unnest($sets))""",
               {"sets": part})
    db.in_parallel(con, [functools.partial(_run_part, statements=statements, part=n)
                         for n in range(len(parts))])
    for name in filter(None, map(_creates, statements)):
        union = " UNION ALL ".join(f"SELECT * FROM {name}_part{n}" for n in range(len(parts)))
        db.run(con, f"CREATE OR REPLACE VIEW {name} AS {union}")


def judge(con: duckdb.DuckDBPyConnection, psets: Sequence[str], conns: str = "conns",
          scope: str | None = None, match: bool = False, hits_only: bool = False) -> None:
    """evaluate() after match_selectors() (match: match the selectors here, on a cursor of
    its own while the keys are built: neither needs the other). hits_only: only which
    rules match each connection (key_hits, rule_hits), no verdicts."""
    # what the CNI profile says (cni.configure); the API's semantics when nothing did
    db.run(con, f"CREATE TABLE IF NOT EXISTS dataplane AS SELECT {DATAPLANE_DEFAULTS}")
    services = _has_backends(con)
    if services:  # a Service's connections are judged at each of its backends
        judged = f"""(SELECT c.conn_id, coalesce(b.b_ep, -1) AS member, c.src_ep,
            coalesce(b.peer_ep, c.src_ep) AS peer_ep, coalesce(b.b_ep, c.dst_ep) AS dst_ep,
            coalesce(b.b_port, c.dst_port) AS dst_port, c.proto, c.dst_names
            FROM {conns} c LEFT JOIN conn_backend b USING (conn_id))"""
        endpoints = f"SELECT src_ep AS ep_id FROM {judged} UNION SELECT peer_ep FROM " \
                    f"{judged} UNION SELECT dst_ep FROM {judged}"
    else:
        judged = (f"(SELECT conn_id, -1 AS member, src_ep, src_ep AS peer_ep, dst_ep, "
                  f"dst_port, proto, dst_names FROM {conns})")
        endpoints = f"SELECT src_ep AS ep_id FROM {conns} UNION SELECT dst_ep FROM {conns}"
    # the addresses to class: every endpoint's, or (a fix replay judging a few
    # connections) only those of the connections judged
    addressed = "ep" if conns == "conns" else (
        f"(SELECT e.key FROM ep e SEMI JOIN ({endpoints}) c USING (ep_id))")
    sql = (EVAL_SQL.replace("__CONNS_X__", judged).replace("__CONNS__", conns)
           .replace("__PEER_JOIN__", "JOIN ep_attr q ON q.ep_id = c.peer_ep" if services
                    else "")
           .replace("__CONN_KEY__", CONN_KEY_SERVICE_SQL if services else CONN_KEY_SQL)
           .replace("__DISTINCT__", "DISTINCT" if services else "")
           .replace("__ADDRESSED__", addressed)
           .replace("__SCOPE__", SCOPED_KEYS.format(scope=scope) if scope else ALL_KEYS))
    if not services:  # the source is the ingress side's peer
        sql = re.sub(r"\bq\.(\w+)", r"s.\1", sql)
    statements = [st for st in sql.split(";\n\n") if st.strip()]
    creates = [_creates(st) for st in statements]
    first = creates.index("key_scope") + 1
    last = creates.index("key_hits" if hits_only else "pair_verdict") + 1

    def shared(c: duckdb.DuckDBPyConnection) -> None:
        for statement in statements[:first]:
            db.run(c, statement, {"psets": list(psets)} if "$psets" in statement else None)

    only = None
    if match and conns != "conns":  # a replay: only its endpoints' identities matter
        only = "judged_ident"
        db.run(con, f"""CREATE OR REPLACE TABLE {only} AS
            SELECT DISTINCT e.ident_id FROM ep e SEMI JOIN ({endpoints}) c USING (ep_id)
            WHERE e.ident_id IS NOT NULL""")
    # the keys on this connection (a fix replay's connections are its temporary tables)
    db.in_parallel(con, [shared, functools.partial(match_selectors, only=only)] if match
                   else [shared])
    _judge_per_set(con, statements[first:last], psets)
    if services and not hits_only:
        db.run(con, SERVICE_VERDICT_SQL)
        parts = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE "
            "'pair\\_verdict\\_part%' ESCAPE '\\' ORDER BY table_name").fetchall()]
        union = " UNION ALL BY NAME ".join(f"SELECT * FROM {t}"
                                           for t in [*parts, "pair_verdict_svc"])
        db.run(con, f"CREATE OR REPLACE VIEW pair_verdict AS {union}")
    for statement, name in zip(statements, creates, strict=True):
        if name in ("rule_hits", *(() if hits_only else ("verdicts",))):
            db.run(con, statement)


DATAPLANE_DEFAULTS = ("false AS cidr_world_only, true AS own_node_allowed, false AS cidr_nodes, "
                      "false AS isolate_all")


def _has_backends(con: duckdb.DuckDBPyConnection) -> bool:
    found = db.one(con, "SELECT count(*) FROM duckdb_tables() "
                        "WHERE table_name = 'conn_backend'")[0]
    return bool(found) and bool(db.one(con, "SELECT count(*) > 0 FROM conn_backend")[0])


def record_usage(con: duckdb.DuckDBPyConnection) -> None:
    for statement in USAGE_SQL.split(";\n\n"):
        db.run(con, statement)


def ensure_usage(con: duckdb.DuckDBPyConnection) -> None:
    """record_usage(), once: only the reports read it, so a run that writes none skips
    it. Must come before any replay replaces the evaluation tables it reads."""
    if not db.one(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'rule_use'")[0]:
        record_usage(con)
