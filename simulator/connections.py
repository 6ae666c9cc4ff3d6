"""Flow records -> distinct connections, in DuckDB.

1. `tuples`: one scan of all flow records, grouped on the raw address/port/protocol
   columns. Ephemeral client ports are folded to -1 so that a connection's records
   collapse however many source ports its clients used; the cost from here on is driven
   by distinct tuples, not records.
2. `tuple_ep`: each tuple's source and destination become endpoints: the pod, node or
   service that held the address over the tuple's time span, else `unresolved` (inside a
   pod CIDR) or `external`. A tuple whose span straddles a change of holder is re-read at
   record granularity and resolved per record (`split_ambiguous`).
3. `conns`: tuples are oriented initiator -> responder (replies folded into the
   connection they answer) and grouped into connections.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from . import db
from .ingest.schema import IDENTITY_COLUMNS

EPHEMERAL_MIN = 32768

# How a tuple's direction was decided, strongest first. The last two are guesses.
DIRECTION_SOURCES = ("flow flag", "tcp flags", "declared port", "port heuristic",
                     "as recorded")
GUESSED = DIRECTION_SOURCES[3:]


def _group_columns(has_identity: bool) -> str:
    cols = ["skip_reason", "src_ip", "dst_ip", "sp", "dp", "proto", "observed", "is_reply",
            "syn_ack"]
    return ", ".join(cols + (list(IDENTITY_COLUMNS) if has_identity else []))


def tuples_sql(records: str, server_ports: Sequence[int], has_identity: bool,
               extra_key: str = "", where: str = "") -> str:
    """Group records into tuples. server_ports: declared container ports in the
    ephemeral range, which must not be folded."""
    keep = ", ".join(str(p) for p in sorted(set(server_ports))) or "-1"
    identity = "" if has_identity else ", " + ", ".join(
        f"NULL::VARCHAR AS {c}" for c in IDENTITY_COLUMNS)
    return f"""
    WITH records AS ({records}),
    folded AS (
        SELECT *,
            CASE WHEN src_port >= {EPHEMERAL_MIN} AND dst_port < {EPHEMERAL_MIN}
                      AND is_reply IS DISTINCT FROM true
                      AND coalesce(tcp_flags & 18, 0) <> 18
                      AND src_port NOT IN ({keep})
                 THEN -1 ELSE src_port END AS sp,
            CASE WHEN dst_port >= {EPHEMERAL_MIN} AND src_port < {EPHEMERAL_MIN}
                      AND is_reply IS DISTINCT FROM false
                      AND coalesce(tcp_flags & 18, 0) <> 2
                      AND dst_port NOT IN ({keep})
                 THEN -1 ELSE dst_port END AS dp,
            tcp_flags & 18 AS syn_ack
        FROM records
    ),
    kept AS (SELECT * FROM folded {where})
    SELECT {_group_columns(has_identity)}{extra_key}{identity},
        count(*) AS records,
        sum(packets) AS packets,
        sum(bytes) AS bytes,
        min(t_start) AS t_first,
        max(t_start) AS t_last_start,
        max(coalesce(t_end, t_start)) AS t_last
    FROM kept
    GROUP BY ALL"""


# Records stamped before this (epoch 0 and the like) carry no real time: they resolve to
# whoever holds the address in the snapshot.
TIME_KNOWN_FROM = 946_684_800.0  # 2000-01-01

# Endpoint of each tuple side. Needs: tuples, ip_info, holder, pod_cidr, flow_pod.
RESOLVE_SQL = """
CREATE OR REPLACE TABLE tuple_ep AS
WITH sides AS (
    SELECT tuple_id, 'src' AS side, src_ip AS ip_raw, src_namespace AS f_ns,
           src_pod AS f_pod, src_workload AS f_workload, src_labels AS f_labels,
           t_first, t_last_start
    FROM tuples WHERE skip_reason IS NULL
    UNION ALL
    SELECT tuple_id, 'dst', dst_ip, dst_namespace, dst_pod, dst_workload, dst_labels,
           t_first, t_last_start
    FROM tuples WHERE skip_reason IS NULL
),
addressed AS (
    SELECT s.*, i.ip, i.family, i.key, i.in_pod_cidr
    FROM sides s LEFT JOIN ip_info i ON i.ip_raw = s.ip_raw
),
-- Holders that held the address for the tuple's whole time span; the best one wins:
-- live pods before finished ones, and the most recently created (it took the address).
covering AS (
    SELECT a.tuple_id, a.side,
           arg_min(h.holder_id, (h.prio, -h.created)) AS holder_id
    FROM addressed a
    JOIN holder h ON h.ip = a.ip
        AND ((h.created <= a.t_first AND a.t_last_start < h.deleted) OR a.t_last_start < $epoch)
    WHERE a.f_pod IS NULL
    GROUP BY a.tuple_id, a.side
),
-- Holders that held it for part of the span only: the address changed hands inside it.
partial AS (
    SELECT DISTINCT a.tuple_id, a.side
    FROM addressed a
    JOIN holder h ON h.ip = a.ip AND h.created <= a.t_last_start AND a.t_first < h.deleted
    WHERE a.f_pod IS NULL AND a.t_first >= $epoch
      AND NOT (h.created <= a.t_first AND a.t_last_start < h.deleted)
)
SELECT
    a.tuple_id, a.side, a.ip, a.family, a.key,
    p.tuple_id IS NOT NULL AS ambiguous,
    CASE WHEN a.f_pod IS NOT NULL THEN 'pod'
         WHEN a.ip IS NULL THEN 'invalid'
         WHEN h.kind IS NOT NULL THEN h.kind
         WHEN a.in_pod_cidr THEN 'unresolved'
         ELSE 'external' END AS kind,
    CASE WHEN a.f_pod IS NOT NULL THEN coalesce(a.f_ns, 'default') || '/' || a.f_pod
         WHEN h.kind IS NOT NULL THEN h.ep_name
         ELSE a.ip END AS ep_name,
    CASE WHEN a.f_pod IS NOT NULL THEN coalesce(a.f_ns, 'default') ELSE h.namespace END
        AS namespace,
    coalesce(a.f_pod, h.pod) AS pod,
    CASE WHEN a.f_pod IS NOT NULL THEN coalesce(a.f_workload, cp.workload, 'Pod/' || a.f_pod)
         ELSE h.workload END AS workload,
    coalesce(h.node, cp.node) AS node,
    CASE WHEN a.f_pod IS NOT NULL THEN coalesce(a.f_ns, 'default') || '/' || a.f_pod
         ELSE h.pod_ref END AS pod_ref,
    CASE WHEN a.f_pod IS NOT NULL THEN fp.ident_id ELSE h.ident_id END AS ident_id,
    a.f_pod IS NOT NULL AND fp.ident_id IS NULL AS bad_labels
FROM addressed a
LEFT JOIN covering c USING (tuple_id, side)
LEFT JOIN holder h ON h.holder_id = c.holder_id
LEFT JOIN partial p ON p.tuple_id = a.tuple_id AND p.side = a.side
LEFT JOIN flow_pod fp ON a.f_pod IS NOT NULL AND fp.namespace = coalesce(a.f_ns, 'default')
    AND fp.pod = a.f_pod AND fp.labels IS NOT DISTINCT FROM a.f_labels
-- the snapshot fills what a flow-named pod lacks (its node, its owner)
LEFT JOIN (SELECT pod_ref, any_value(node) AS node, any_value(workload) AS workload
           FROM holder WHERE kind = 'pod' GROUP BY pod_ref) cp
    ON a.f_pod IS NOT NULL AND cp.pod_ref = coalesce(a.f_ns, 'default') || '/' || a.f_pod
"""

IP_INFO_SQL = """
CREATE OR REPLACE TABLE ip_info AS
WITH raw AS (
    SELECT DISTINCT ip_raw FROM (
        SELECT src_ip AS ip_raw FROM tuples WHERE skip_reason IS NULL
        UNION ALL SELECT dst_ip FROM tuples WHERE skip_reason IS NULL)
),
parsed AS (
    SELECT ip_raw, ip_canon(ip_raw) AS ip, ip_family(ip_raw) AS family, ip_key(ip_raw) AS key
    FROM raw
)
SELECT p.*, EXISTS (SELECT 1 FROM pod_cidr c
                    WHERE c.family = p.family AND p.key BETWEEN c.lo AND c.hi) AS in_pod_cidr
FROM parsed p
"""

# Orient every tuple initiator -> responder and group into connections.
CONNS_SQL = """
CREATE OR REPLACE TABLE conns AS
WITH t AS (
    SELECT t.*,
        s.kind AS s_kind, s.ep_name AS s_ep, s.ip AS s_ip, s.family AS s_family,
        s.key AS s_key, s.namespace AS s_ns, s.pod AS s_pod, s.workload AS s_workload,
        s.node AS s_node, s.pod_ref AS s_pod_ref, s.ident_id AS s_ident,
        d.kind AS d_kind, d.ep_name AS d_ep, d.ip AS d_ip, d.family AS d_family,
        d.key AS d_key, d.namespace AS d_ns, d.pod AS d_pod, d.workload AS d_workload,
        d.node AS d_node, d.pod_ref AS d_pod_ref, d.ident_id AS d_ident
    FROM tuples t
    JOIN tuple_ep s ON s.tuple_id = t.tuple_id AND s.side = 'src'
    JOIN tuple_ep d ON d.tuple_id = t.tuple_id AND d.side = 'dst'
    WHERE t.skip_reason IS NULL AND s.kind <> 'invalid' AND d.kind <> 'invalid'
      AND NOT s.bad_labels AND NOT d.bad_labels
),
declared AS (
    SELECT t.tuple_id,
        EXISTS (SELECT 1 FROM pod_port pp WHERE pp.pod_ref = t.d_pod_ref
                AND pp.proto = t.proto AND pp.port = t.dp) AS dst_declared,
        EXISTS (SELECT 1 FROM pod_port pp WHERE pp.pod_ref = t.s_pod_ref
                AND pp.proto = t.proto AND pp.port = t.sp) AS src_declared
    FROM t
),
reverse AS (
    SELECT a.tuple_id, min(b.t_first) AS rev_first
    FROM t a JOIN t b ON a.src_ip = b.dst_ip AND a.dst_ip = b.src_ip AND a.sp = b.dp
        AND a.dp = b.sp AND a.proto = b.proto
    GROUP BY a.tuple_id
),
directed AS (
    SELECT t.*,
        CASE
            WHEN t.is_reply IS NOT NULL THEN struct_pack(reply := t.is_reply, how := 0)
            WHEN t.proto = 6 AND t.syn_ack = 2 THEN struct_pack(reply := false, how := 1)
            WHEN t.proto = 6 AND t.syn_ack = 18 THEN struct_pack(reply := true, how := 1)
            WHEN dc.dst_declared AND NOT dc.src_declared
                THEN struct_pack(reply := false, how := 2)
            WHEN dc.src_declared AND NOT dc.dst_declared
                THEN struct_pack(reply := true, how := 2)
            WHEN t.sp = -1 AND t.dp <> -1 THEN struct_pack(reply := false, how := 3)
            WHEN t.dp = -1 AND t.sp <> -1 THEN struct_pack(reply := true, how := 3)
            WHEN t.dp < 1024 AND t.sp >= 1024 THEN struct_pack(reply := false, how := 3)
            WHEN t.sp < 1024 AND t.dp >= 1024 THEN struct_pack(reply := true, how := 3)
            -- both directions seen: the lower port serves; equal ports, the earlier opens
            WHEN r.tuple_id IS NOT NULL AND t.sp <> t.dp
                THEN struct_pack(reply := t.sp < t.dp, how := 3)
            WHEN r.tuple_id IS NOT NULL
                THEN struct_pack(reply := t.t_first > r.rev_first, how := 3)
            ELSE struct_pack(reply := false, how := 4)
        END AS dir
    FROM t JOIN declared dc USING (tuple_id) LEFT JOIN reverse r USING (tuple_id)
),
oriented AS (
    SELECT
        records, packets, bytes, t_first, t_last, observed, dir.reply AS reply, dir.how AS how,
        proto,
        CASE WHEN dir.reply THEN sp ELSE dp END AS server_port,
        CASE WHEN dir.reply THEN d_kind ELSE s_kind END AS src_kind,
        CASE WHEN dir.reply THEN d_ep ELSE s_ep END AS src_ep,
        CASE WHEN dir.reply THEN d_ip ELSE s_ip END AS src_ip,
        CASE WHEN dir.reply THEN d_family ELSE s_family END AS src_family,
        CASE WHEN dir.reply THEN d_key ELSE s_key END AS src_key,
        CASE WHEN dir.reply THEN d_ns ELSE s_ns END AS src_namespace,
        CASE WHEN dir.reply THEN d_pod ELSE s_pod END AS src_pod,
        CASE WHEN dir.reply THEN d_workload ELSE s_workload END AS src_workload,
        CASE WHEN dir.reply THEN d_node ELSE s_node END AS src_node,
        CASE WHEN dir.reply THEN d_pod_ref ELSE s_pod_ref END AS src_pod_ref,
        CASE WHEN dir.reply THEN d_ident ELSE s_ident END AS src_ident,
        CASE WHEN dir.reply THEN s_kind ELSE d_kind END AS dst_kind,
        CASE WHEN dir.reply THEN s_ep ELSE d_ep END AS dst_ep,
        CASE WHEN dir.reply THEN s_ip ELSE d_ip END AS dst_ip,
        CASE WHEN dir.reply THEN s_family ELSE d_family END AS dst_family,
        CASE WHEN dir.reply THEN s_key ELSE d_key END AS dst_key,
        CASE WHEN dir.reply THEN s_ns ELSE d_ns END AS dst_namespace,
        CASE WHEN dir.reply THEN s_pod ELSE d_pod END AS dst_pod,
        CASE WHEN dir.reply THEN s_workload ELSE d_workload END AS dst_workload,
        CASE WHEN dir.reply THEN s_node ELSE d_node END AS dst_node,
        CASE WHEN dir.reply THEN s_pod_ref ELSE d_pod_ref END AS dst_pod_ref,
        CASE WHEN dir.reply THEN s_ident ELSE d_ident END AS dst_ident
    FROM directed
)
SELECT
    row_number() OVER (ORDER BY src_ip, dst_ip, server_port, proto, src_ep, dst_ep)
        AS conn_id,
    src_kind, src_ep, src_ip, src_family, src_key, src_namespace, src_pod, src_workload,
    src_node, src_pod_ref, src_ident,
    dst_kind, dst_ep, dst_ip, dst_family, dst_key, dst_namespace, dst_pod, dst_workload,
    dst_node, dst_pod_ref, dst_ident,
    NULLIF(server_port, -1) AS dst_port, proto,
    sum(records)::BIGINT AS flows,
    (sum(records) FILTER (WHERE reply))::BIGINT AS reply_flows,
    sum(packets)::BIGINT AS packets, sum(bytes)::BIGINT AS bytes,
    min(t_first) AS first_seen, max(t_last) AS last_seen,
    CASE WHEN bool_or(observed = 'allowed') THEN 'allowed'
         WHEN bool_or(observed = 'denied' AND NOT reply) THEN 'denied'
         ELSE 'unknown' END AS observed,
    min(how) AS how
FROM oriented
GROUP BY src_kind, src_ep, src_ip, src_family, src_key, src_namespace, src_pod,
    src_workload, src_node, src_pod_ref, src_ident,
    dst_kind, dst_ep, dst_ip, dst_family, dst_key, dst_namespace, dst_pod, dst_workload,
    dst_node, dst_pod_ref, dst_ident, server_port, proto
"""


# Records skipped after grouping, for reasons only resolution can tell.
LATE_SKIPS_SQL = """
SELECT CASE WHEN bool_or(e.kind = 'invalid') THEN 'invalid IP address'
            ELSE 'labels are not a JSON object' END AS reason,
       any_value(t.records) AS records
FROM tuples t JOIN tuple_ep e USING (tuple_id)
WHERE e.kind = 'invalid' OR e.bad_labels
GROUP BY t.tuple_id
"""


def build_tuples(con: duckdb.DuckDBPyConnection, records_sql: str,
                 server_ports: Sequence[int], has_identity: bool) -> None:
    db.run(con, "CREATE OR REPLACE TABLE tuples AS SELECT row_number() OVER () AS tuple_id, * "
                f"FROM ({tuples_sql(records_sql, server_ports, has_identity)})")


def resolve(con: duckdb.DuckDBPyConnection, records_sql: str,
            server_ports: Sequence[int], has_identity: bool) -> int:
    """Resolve tuple endpoints; re-split tuples whose addresses changed hands inside their
    time span. Returns the number of tuples re-split."""
    db.run(con, IP_INFO_SQL)
    db.run(con, RESOLVE_SQL, {"epoch": TIME_KNOWN_FROM})
    n = db.one(con, "SELECT count(DISTINCT tuple_id) FROM tuple_ep WHERE ambiguous")
    ambiguous = int(n[0]) if n else 0
    if ambiguous:
        keys = "src_ip, dst_ip, sp, dp, proto, observed, is_reply, syn_ack"
        db.run(con, f"""
            CREATE OR REPLACE TEMP TABLE ambiguous_keys AS
            SELECT DISTINCT {keys} FROM tuples
            WHERE tuple_id IN (SELECT tuple_id FROM tuple_ep WHERE ambiguous)""")
        same = " AND ".join(f"k.{c} IS NOT DISTINCT FROM folded.{c}" for c in keys.split(", "))
        split = tuples_sql(records_sql, server_ports, has_identity, extra_key=", t_start",
                           where=f"WHERE EXISTS (SELECT 1 FROM ambiguous_keys k WHERE {same})")
        max_id = db.one(con, "SELECT max(tuple_id) FROM tuples")[0]
        db.run(con, f"""
            DELETE FROM tuples WHERE tuple_id IN (SELECT tuple_id FROM tuple_ep WHERE ambiguous);
            INSERT INTO tuples BY NAME
            SELECT {max_id} + row_number() OVER () AS tuple_id, * EXCLUDE (t_start)
            FROM ({split}) s""")
        db.run(con, RESOLVE_SQL, {"epoch": TIME_KNOWN_FROM})
    return ambiguous
