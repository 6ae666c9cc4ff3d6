"""Following Services: a connection addressed to a Service (its ClusterIP, a load-balancer
or external IP, or a node address on a nodePort) is judged at its backends, as the
dataplane delivers it after DNAT.

A Service port leads to the endpoints of its EndpointSlices (legacy Endpoints when that is
all the snapshot holds) under the same port name and protocol, each with the port it
serves on: a named targetPort is already resolved per backend there. An endpoint counts
for a connection when it is ready, its pod held the address while the connection was
seen, and (when the pod's Ready condition has a time) it was ready by the connection's
last record. NodePort, load-balancer and external-IP traffic of a Service with
`externalTrafficPolicy: Cluster` reaches the backend from a node (source NAT): the node
the flow addressed, or for a load-balancer or external IP "a forwarding node" whose
address is not known. Evaluation (evaluate.py) judges each backend; verdicts that agree
stand, verdicts that disagree leave the connection unresolved.

Reads: ep (ep_rows), conns, holder, svc_addr, svc_port, svc_backend, pod_ready.
Writes: svc_cand (before the endpoints are made: the endpoints backends can be),
conn_backend (conn_id -> each backend endpoint, its port and the ingress peer) and
conn_service (per followed or Service-addressed connection: the Service, its port and
the backend that stands for the connection in reports).
"""

from __future__ import annotations

import duckdb

from . import db, ipnet

# A node that forwarded load-balancer traffic (source NAT): which one is not recorded.
FORWARDING_NODE = "(forwarding node)"

CANDIDATES_SQL = """
CREATE OR REPLACE TABLE svc_cand AS
WITH b AS (SELECT DISTINCT ip, pod_ref FROM svc_backend WHERE ready),
held AS (
    SELECT h.holder_id, h.ep_name, h.ip, h.kind, h.namespace, h.pod, h.workload, h.node,
        h.pod_ref, h.ident_id
    FROM b JOIN holder h ON h.ip = b.ip AND h.kind IN ('pod', 'node')
        -- an endpoint naming its pod: that pod's hold of the address only
        AND (b.pod_ref IS NULL OR h.kind <> 'pod' OR h.pod_ref = b.pod_ref)
),
-- addresses no pod or node held: an endpoint outside the cluster (manual slices)
bare AS (
    SELECT DISTINCT NULL::BIGINT AS holder_id, b.ip AS ep_name, b.ip, 'external' AS kind,
        NULL AS namespace, NULL AS pod, NULL AS workload, NULL AS node, NULL AS pod_ref,
        NULL::INTEGER AS ident_id
    FROM b WHERE b.ip NOT IN (SELECT ip FROM held)
),
-- the node a load-balancer's traffic came through, its address unknown
forwarding AS (
    SELECT NULL::BIGINT, 'node/' || $fwd, $fwd, 'node', NULL, NULL, NULL, NULL, NULL,
        NULL::INTEGER
    WHERE EXISTS (SELECT 1 FROM svc_addr WHERE via <> 'ClusterIP' AND NOT local)
)
SELECT c.*,
    CASE WHEN c.ip = $fwd THEN NULL WHEN k4 IS NOT NULL THEN 4 ELSE 6 END AS family,
    coalesce(k4, v6.key) AS key
FROM (SELECT *, ipv4_key(ip) AS k4
      FROM (SELECT * FROM held UNION ALL SELECT * FROM bare
            UNION ALL SELECT * FROM forwarding)) c
LEFT JOIN svc_ipv6 v6 ON v6.ip_raw = c.ip
"""

# The ep_rows a backend adds (orient() makes its ENUMs include their names).
EXTRA_ENDPOINTS = """
SELECT ep_name, ip, kind, family, key, namespace, pod, workload, node, pod_ref, ident_id
FROM svc_cand c
WHERE NOT EXISTS (SELECT 1 FROM side_res r WHERE r.ep_name = c.ep_name AND r.ip = c.ip
                                             AND r.kind <> 'invalid' AND NOT r.bad_labels)
"""

FOLLOW_SQL = """
CREATE OR REPLACE TABLE conn_backend AS
WITH c AS (
    SELECT c.conn_id, c.src_ep, c.dst_ep, c.dst_port, c.proto, c.first_seen, c.last_seen,
        d.kind AS d_kind, d.ip AS d_ip, d.family AS d_family, s.kind AS s_kind
    FROM conns c JOIN ep d ON d.ep_id = c.dst_ep JOIN ep s ON s.ep_id = c.src_ep
    WHERE d.kind IN ('service', 'node') AND c.dst_port IS NOT NULL
),
-- the Service port each connection reached
reached AS (
    SELECT c.*, a.svc, a.via, a.local, p.port_name, p.port AS svc_port
    FROM c JOIN svc_addr a ON a.ip = c.d_ip
    JOIN svc_port p ON p.svc = a.svc AND p.proto = c.proto AND p.port = c.dst_port
    WHERE c.d_kind = 'service'
    UNION ALL BY NAME
    SELECT c.*, p.svc, 'NodePort' AS via, p.local, p.port_name, p.port AS svc_port
    FROM c JOIN svc_port p ON p.node_port = c.dst_port AND p.proto = c.proto
    WHERE c.d_kind = 'node'
),
backend AS (
    SELECT r.conn_id, r.svc, r.svc_port, r.via, e.ep_id AS b_ep, b.port AS b_port,
        -- source NAT to a node: traffic from outside through a node port, a load balancer
        -- or an external IP of a Service whose externalTrafficPolicy is Cluster
        CASE WHEN r.via = 'ClusterIP' OR r.local OR r.s_kind = 'pod' THEN r.src_ep
             WHEN r.via = 'NodePort' THEN r.dst_ep
             ELSE (SELECT ep_id FROM ep WHERE ip = $fwd) END AS peer_ep
    FROM reached r
    JOIN svc_backend b ON b.svc = r.svc AND b.port_name = r.port_name
        AND b.proto = r.proto AND b.ready
    JOIN svc_cand sc ON sc.ip = b.ip
        AND (b.pod_ref IS NULL OR sc.kind <> 'pod' OR sc.pod_ref = b.pod_ref)
        -- a dual-stack Service: an IPv4 address leads to the IPv4 endpoints
        AND sc.family = r.d_family
    JOIN ep e ON e.ep_name = sc.ep_name AND e.ip = sc.ip
    LEFT JOIN holder h ON h.holder_id = sc.holder_id
    LEFT JOIN pod_ready pr ON pr.pod_ref = sc.pod_ref
    -- present while the connection was seen (records without a time: the snapshot's)
    WHERE (h.holder_id IS NULL OR r.last_seen < $epoch
           OR (h.created <= r.last_seen AND r.first_seen < h.deleted))
      -- and ready by its last record
      AND (pr.ready_since IS NULL OR r.last_seen < $epoch OR pr.ready_since <= r.last_seen)
)
SELECT DISTINCT * FROM backend;

CREATE OR REPLACE TABLE conn_service AS
WITH reached AS (   -- every Service-addressed connection, followed or not
    SELECT c.conn_id, a.svc, c.dst_port AS svc_port
    FROM conns c JOIN ep d ON d.ep_id = c.dst_ep AND d.kind = 'service'
    JOIN (SELECT ip, any_value(svc) AS svc FROM svc_addr GROUP BY ip) a ON a.ip = d.ip
    UNION ALL
    -- a post-DNAT record that names the Service: the Service port whose backend port it is
    SELECT c.conn_id, c.flow_service,
        (SELECT min(p.port) FROM svc_backend b JOIN svc_port p ON p.svc = b.svc
             AND p.port_name = b.port_name AND p.proto = b.proto
         WHERE b.svc = c.flow_service AND b.ip = d.ip AND b.port = c.dst_port
           AND b.proto = c.proto)
    FROM conns c JOIN ep d ON d.ep_id = c.dst_ep
    WHERE c.flow_service IS NOT NULL AND d.kind <> 'service'
),
followed AS (
    SELECT b.conn_id, any_value(b.svc) AS svc, any_value(b.svc_port) AS svc_port,
        -- the backend that stands for the connection in reports: the only one, or one
        -- of several of the same workload (named without its pod)
        CASE WHEN count(DISTINCT b.b_ep) = 1
                  OR (count(DISTINCT e.workload) = 1 AND count(DISTINCT e.kind) = 1
                      AND bool_and(e.workload IS NOT NULL))
             THEN min(b.b_ep) END AS rep_ep,
        count(DISTINCT b.b_ep) = 1 AS one_backend
    FROM conn_backend b JOIN ep e ON e.ep_id = b.b_ep
    GROUP BY b.conn_id
)
SELECT coalesce(f.conn_id, r.conn_id) AS conn_id, coalesce(f.svc, r.svc) AS svc,
    coalesce(f.svc_port, r.svc_port) AS svc_port, f.rep_ep,
    coalesce(f.one_backend, false) AS one_backend, f.conn_id IS NOT NULL AS followed
FROM followed f FULL JOIN reached r USING (conn_id)
"""


def present(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the snapshot holds any Service to follow."""
    return bool(db.one(con, "SELECT count(*) > 0 FROM svc_addr")[0]
                or db.one(con, "SELECT count(*) > 0 FROM svc_port "
                               "WHERE node_port IS NOT NULL")[0])


def candidates(con: duckdb.DuckDBPyConnection) -> None:
    """svc_cand: the endpoints a backend can be (before orient() makes the endpoints)."""
    v6 = [r[0] for r in con.execute(
        "SELECT DISTINCT ip FROM svc_backend WHERE contains(ip, ':')").fetchall()]
    con.register("svc_ipv6", ipnet.ipv6_table(v6))
    try:
        db.run(con, CANDIDATES_SQL, {"fwd": FORWARDING_NODE})
    finally:
        con.unregister("svc_ipv6")


def follow(con: duckdb.DuckDBPyConnection, epoch: float, *, services: bool,
           named: bool) -> None:
    """conn_backend and conn_service, after the connections are made. services: the
    snapshot holds Services; named: records name the Service of their destination."""
    statements = FOLLOW_SQL.split(";\n\n")
    empty(con)
    for statement in statements if services else statements[1:] if named else []:
        params = {k: v for k, v in (("fwd", FORWARDING_NODE), ("epoch", epoch))
                  if f"${k}" in statement}
        db.run(con, statement, params or None)


def empty(con: duckdb.DuckDBPyConnection) -> None:
    """The tables, empty (nothing to follow)."""
    db.run(con, """
        CREATE OR REPLACE TABLE conn_backend (conn_id BIGINT, svc VARCHAR, svc_port INTEGER,
            via VARCHAR, b_ep BIGINT, b_port INTEGER, peer_ep BIGINT);
        CREATE OR REPLACE TABLE conn_service (conn_id BIGINT, svc VARCHAR,
            svc_port INTEGER, rep_ep BIGINT, one_backend BOOLEAN, followed BOOLEAN)""")
