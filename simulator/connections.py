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
from typing import Any

import duckdb

from . import backends, db, ipnet
from .ingest.checks import REJECTS_SCAN, REJECTS_TABLE
from .ingest.sources import FlowSource, any_float

# How a tuple's direction was decided, strongest first. The last two are guesses.
DIRECTION_SOURCES = ("flow flag", "tcp flags", "declared port", "port heuristic",
                     "as recorded")
GUESSED = DIRECTION_SOURCES[3:]
# What a connection's side can be (an `invalid` address is skipped, never an endpoint).
ENDPOINT_KINDS = ("pod", "node", "service", "external", "unresolved")


# Records stamped before this (epoch 0 and the like) carry no real time: they resolve to
# whoever holds the address in the snapshot.
TIME_KNOWN_FROM = 946_684_800.0  # 2000-01-01

# Endpoint of each tuple side. Needs: tuples, ip_info, holder, pod_cidr, flow_pod.
# Resolved once per side key (an address and the identity a flow gave it) over the time span
# of all its tuples, not once per tuple side: that is exact when every holder of the address
# held it for the whole span or not at all in it. Keys where an address changed hands inside
# the span (or with tuples on both sides of TIME_KNOWN_FROM, or without a time) are resolved
# per tuple side, as before. A side key's id is a hash of its columns, checked unique before
# use, so that tuples find theirs without a join (split sides get negative ids). Writes
# side_key, tuple_side (per tuple: the resolved endpoint of each side), side_res (the
# resolved endpoints) and the view tuple_ep (per tuple side).
RESOLVE_SQL = """
CREATE OR REPLACE TABLE side_key AS
WITH sides AS (
    SELECT src_ip AS ip_raw, src_namespace AS f_ns, src_pod AS f_pod,
           src_workload AS f_workload, src_labels AS f_labels, lower(src_kind) AS f_kind,
           t_first, t_last_start
    FROM tuples WHERE skip_reason IS NULL
    UNION ALL
    SELECT dst_ip, dst_namespace, dst_pod, dst_workload, dst_labels, lower(dst_kind),
           t_first, t_last_start
    FROM tuples WHERE skip_reason IS NULL
)
SELECT {side_hash} AS skey, ip_raw, f_ns, f_pod, f_workload, f_labels, f_kind,
    min(t_first) AS t_first, max(t_last_start) AS t_last_start,
    bool_or(t_first IS NULL OR t_last_start IS NULL) AS null_time
FROM sides
GROUP BY ip_raw, f_ns, f_pod, f_workload, f_labels, f_kind;

-- the same hash of the same columns: no join back to side_key
CREATE OR REPLACE TABLE tuple_side AS
SELECT tuple_id,
    {src_hash} AS src_res,
    {dst_hash} AS dst_res
FROM tuples WHERE skip_reason IS NULL;

-- keys whose tuples are resolved one by one (see above); a flow-named pod never is
CREATE OR REPLACE TABLE split_key AS
SELECT k.skey FROM side_key k
WHERE k.f_pod IS NULL AND (
    k.null_time
    OR (k.t_first < $epoch AND k.t_last_start >= $epoch)
    OR (k.t_first >= $epoch AND EXISTS (
        SELECT 1 FROM ip_info i JOIN holder h ON h.ip = i.ip
        WHERE i.ip_raw = k.ip_raw
          AND h.created <= k.t_last_start AND k.t_first < h.deleted
          AND NOT (h.created <= k.t_first AND k.t_last_start < h.deleted))));

CREATE OR REPLACE TABLE split_side AS
SELECT -row_number() OVER () AS rid, tuple_id, side, skey
FROM (
    SELECT tuple_id, 'src' AS side, src_res AS skey FROM tuple_side
    WHERE src_res IN (SELECT skey FROM split_key)
    UNION ALL
    SELECT tuple_id, 'dst', dst_res FROM tuple_side
    WHERE dst_res IN (SELECT skey FROM split_key)
);

CREATE OR REPLACE TABLE side_res AS
WITH res_in AS (
    SELECT skey AS rid, ip_raw, f_ns, f_pod, f_workload, f_labels, f_kind,
           t_first, t_last_start
    FROM side_key WHERE skey NOT IN (SELECT skey FROM split_key)
    UNION ALL
    SELECT p.rid, k.ip_raw, k.f_ns, k.f_pod, k.f_workload, k.f_labels, k.f_kind,
           t.t_first, t.t_last_start
    FROM split_side p JOIN side_key k USING (skey) JOIN tuples t USING (tuple_id)
),
addressed AS (
    SELECT s.*, i.ip, i.family, i.key, i.in_pod_cidr
    FROM res_in s LEFT JOIN ip_info i ON i.ip_raw = s.ip_raw
),
-- Holders that held the address for the whole time span; the best one wins: live pods
-- before finished ones, and the most recently created (it took the address).
covering AS (
    SELECT a.rid, arg_min(h.holder_id, (h.prio, -h.created)) AS holder_id
    FROM addressed a
    JOIN holder h ON h.ip = a.ip
        AND ((h.created <= a.t_first AND a.t_last_start < h.deleted) OR a.t_last_start < $epoch)
    WHERE a.f_pod IS NULL
    GROUP BY a.rid
),
-- Holders that held it for part of the span only: the address changed hands inside it.
partial AS (
    SELECT DISTINCT a.rid
    FROM addressed a
    JOIN holder h ON h.ip = a.ip AND h.created <= a.t_last_start AND a.t_first < h.deleted
    WHERE a.f_pod IS NULL AND a.t_first >= $epoch
      AND NOT (h.created <= a.t_first AND a.t_last_start < h.deleted)
),
-- A side is a flow-named pod when the flow names it, or when the flow only gives its
-- identity (a remote pod Hubble knows by labels) and the snapshot does not know the IP.
decided AS (
    SELECT a.*, c.holder_id,
        a.f_pod IS NOT NULL OR coalesce(a.f_kind = 'pod' AND c.holder_id IS NULL, false)
            AS fpod
    FROM addressed a LEFT JOIN covering c USING (rid)
)
SELECT
    a.rid AS res_id, a.ip, a.family, a.key,
    p.rid IS NOT NULL AS ambiguous,
    -- an address that does not parse is skipped even where a flow names the pod: it
    -- could not be matched against any ipBlock
    CASE WHEN a.ip IS NULL THEN 'invalid'
         WHEN a.fpod THEN 'pod'
         WHEN h.kind IS NOT NULL THEN h.kind
         WHEN a.f_kind IN ('node', 'host') THEN 'node'
         WHEN a.f_kind = 'external' THEN 'external'
         WHEN a.in_pod_cidr THEN 'unresolved'
         ELSE 'external' END AS kind,
    CASE WHEN a.fpod THEN coalesce(a.f_ns, 'default') || '/' || coalesce(a.f_pod, a.ip)
         WHEN h.kind IS NOT NULL THEN h.ep_name
         WHEN a.f_kind = 'host' THEN 'host/' || a.ip
         WHEN a.f_kind = 'node' THEN 'node/' || a.ip
         ELSE a.ip END AS ep_name,
    CASE WHEN a.fpod THEN coalesce(a.f_ns, 'default') ELSE h.namespace END AS namespace,
    CASE WHEN a.fpod THEN a.f_pod ELSE h.pod END AS pod,
    CASE WHEN a.fpod THEN coalesce(a.f_workload, cp.workload,
            -- <deployment>-<pod-template-hash>-<suffix>, in Kubernetes' name alphabet
            'Deployment/' || regexp_extract(a.f_pod,
                '^(.+)-[bcdfghjklmnpqrstvwxz2-9]{6,10}-[bcdfghjklmnpqrstvwxz2-9]{5}$', 1)
                                                                        .nullif(''),
            'Pod/' || a.f_pod,
            -- a pod known by its labels only (aggregated records): the workload they name
            CASE WHEN json_valid(a.f_labels) THEN coalesce(
                json_extract_string(a.f_labels, '$."app.kubernetes.io/name"'),
                json_extract_string(a.f_labels, '$.app'),
                json_extract_string(a.f_labels, '$."k8s-app"')) END)
         ELSE h.workload END AS workload,
    -- a flow's "host" is the node it was observed on: the pod's own node
    CASE WHEN h.kind IS NULL AND a.f_kind = 'host' THEN '(observing node)'
         ELSE coalesce(h.node, cp.node) END AS node,
    CASE WHEN a.fpod THEN coalesce(a.f_ns, 'default') || '/' || a.f_pod
         ELSE h.pod_ref END AS pod_ref,
    -- a flow that names a pod but not its labels (a field mask): the snapshot's labels
    CASE WHEN a.fpod AND a.f_labels IS NULL THEN coalesce(cp.ident_id, fp.ident_id)
         WHEN a.fpod THEN fp.ident_id ELSE h.ident_id END AS ident_id,
    a.fpod AND fp.ident_id IS NULL AS bad_labels
FROM decided a
LEFT JOIN holder h ON h.holder_id = a.holder_id
LEFT JOIN partial p ON p.rid = a.rid
LEFT JOIN flow_pod fp ON a.fpod AND fp.namespace = coalesce(a.f_ns, 'default')
    AND fp.pod IS NOT DISTINCT FROM a.f_pod AND fp.labels IS NOT DISTINCT FROM a.f_labels
-- the snapshot fills what a flow-named pod lacks (its node, its owner)
LEFT JOIN (SELECT pod_ref, any_value(node) AS node, any_value(workload) AS workload,
                  any_value(ident_id) AS ident_id
           FROM holder WHERE kind = 'pod' GROUP BY pod_ref) cp
    ON a.f_pod IS NOT NULL AND cp.pod_ref = coalesce(a.f_ns, 'default') || '/' || a.f_pod;

UPDATE tuple_side SET src_res = p.rid FROM split_side p
WHERE p.tuple_id = tuple_side.tuple_id AND p.side = 'src';

UPDATE tuple_side SET dst_res = p.rid FROM split_side p
WHERE p.tuple_id = tuple_side.tuple_id AND p.side = 'dst';

CREATE OR REPLACE VIEW tuple_ep AS
SELECT ts.tuple_id, 'src' AS side, r.* EXCLUDE (res_id)
FROM tuple_side ts JOIN side_res r ON r.res_id = ts.src_res
UNION ALL
SELECT ts.tuple_id, 'dst' AS side, r.* EXCLUDE (res_id)
FROM tuple_side ts JOIN side_res r ON r.res_id = ts.dst_res
"""

# every address the tuples name: side_key has them all, a few per address
IP_RAW_SQL = "CREATE OR REPLACE TABLE ip_raw AS SELECT DISTINCT ip_raw FROM side_key"

# Needs ip_raw and ipv6 (ipnet.ipv6_table of its IPv6-looking strings).
IP_INFO_SQL = """
CREATE OR REPLACE TABLE ip_info AS
WITH v4 AS (SELECT ip_raw, ipv4_key(ip_raw) AS k4 FROM ip_raw),
parsed AS (
    SELECT r.ip_raw,
        CASE WHEN r.k4 IS NOT NULL THEN r.ip_raw ELSE v6.ip END AS ip,
        CASE WHEN r.k4 IS NOT NULL THEN 4 WHEN v6.key IS NOT NULL THEN 6 END AS family,
        coalesce(r.k4, v6.key) AS key
    FROM v4 r LEFT JOIN ipv6 v6 USING (ip_raw)
),
-- pod CIDRs merged into disjoint ranges, so that the range starting last at or before an
-- address is the only one that can hold it
edges AS (
    SELECT lo, hi, max(hi) OVER (ORDER BY lo, hi ROWS BETWEEN UNBOUNDED PRECEDING
                                                     AND 1 PRECEDING) AS reach
    FROM pod_cidr
),
islands AS (
    SELECT lo, hi, sum(CASE WHEN reach IS NULL OR lo > reach THEN 1 ELSE 0 END)
        OVER (ORDER BY lo, hi ROWS UNBOUNDED PRECEDING) AS island
    FROM edges
),
merged AS (SELECT min(lo) AS lo, max(hi) AS hi FROM islands GROUP BY island)
SELECT p.*, coalesce(p.key <= m.hi, false) AS in_pod_cidr
FROM parsed p ASOF LEFT JOIN merged m ON p.key >= m.lo
"""

# The endpoint names every connection row repeats are ENUMs (db.enum_type; one type per
# column, made of the run's values).
NAME_ENUMS = ("namespace", "pod", "workload", "node")

# Distinct endpoints (a pod, node or service, or an external/unresolved address), each
# with the address it was seen with; tuples and connections refer to them by ep_id.
ENDPOINTS_SQL = """
CREATE OR REPLACE TABLE ep_rows AS
SELECT ep_name, ip, any_value(kind) AS kind, any_value(family) AS family,
       any_value(key) AS key, any_value(namespace)::ep_namespace AS namespace,
       any_value(pod)::ep_pod AS pod, any_value(workload)::ep_workload AS workload,
       any_value(node)::ep_node AS node,
       any_value(pod_ref) AS pod_ref, any_value(ident_id) AS ident_id
FROM (SELECT ep_name, ip, kind, family, key, namespace, pod, workload, node, pod_ref,
             ident_id
      FROM side_res
      WHERE kind <> 'invalid' AND NOT bad_labels
      {extra_endpoints})
GROUP BY ep_name, ip;

CREATE OR REPLACE VIEW ep AS SELECT rowid AS ep_id, * FROM ep_rows;

-- each resolved tuple side's endpoint
CREATE OR REPLACE TABLE res_ep AS
SELECT r.res_id, e.ep_id
FROM side_res r JOIN ep e ON e.ep_name = r.ep_name AND e.ip = r.ip;

-- the ports each pod endpoint declares (orientation joins on ids, not on pod names)
CREATE OR REPLACE TABLE ep_port AS
SELECT DISTINCT e.ep_id, p.proto, p.port FROM ep e JOIN pod_port p USING (pod_ref)
UNION
-- a node serves the ports its host-network pods declare
SELECT e.ep_id, h.proto, h.port
FROM ep e JOIN hostnet_port h ON h.node = CAST(e.node AS VARCHAR)
WHERE e.kind = 'node'
UNION
-- a Service's address serves its ports (pre-DNAT records)
SELECT e.ep_id, p.proto, p.port
FROM ep e JOIN svc_addr a ON a.ip = e.ip JOIN svc_port p ON p.svc = a.svc
WHERE e.kind = 'service'
"""

# Orient every tuple initiator -> responder and group into connections.
CONNS_SQL = """
CREATE OR REPLACE TABLE conn_rows AS
WITH t AS (
    SELECT t.tuple_id, t.sp, t.dp, t.proto, t.is_reply, t.syn_ack, t.records, t.packets,
        t.bytes, t.t_first, t.t_last, t.observed, t.policy_trace, t.src_names, t.dst_names,
        t.src_service, t.dst_service, s.ep_id AS s_ep, d.ep_id AS d_ep
    FROM tuples t
    JOIN tuple_side ts ON ts.tuple_id = t.tuple_id
    JOIN res_ep s ON s.res_id = ts.src_res
    JOIN res_ep d ON d.res_id = ts.dst_res
    WHERE t.skip_reason IS NULL
),
decided AS (
    SELECT t.*,
        CASE
            -- a reply flag is believed unless the ports say the opposite (a "request"
            -- to an ephemeral port from a server port, or the reverse)
            WHEN t.is_reply IS NOT NULL
                 AND NOT (NOT t.is_reply AND t.dp = -1 AND t.sp <> -1)
                 AND NOT (t.is_reply AND t.sp = -1 AND t.dp <> -1)
                THEN struct_pack(reply := t.is_reply, how := 0)
            WHEN t.proto = 6 AND t.syn_ack = 2 THEN struct_pack(reply := false, how := 1)
            WHEN t.proto = 6 AND t.syn_ack = 18 THEN struct_pack(reply := true, how := 1)
            -- a declared port serves, unless the other side sends from a privileged port
            -- (clients don't): then it is a reply that hit a declared port by chance
            WHEN dd.port IS NOT NULL AND sd.port IS NULL
                 AND NOT (t.sp BETWEEN 1 AND 1023 AND t.dp >= 1024)
                THEN struct_pack(reply := false, how := 2)
            WHEN sd.port IS NOT NULL AND dd.port IS NULL
                 AND NOT (t.dp BETWEEN 1 AND 1023 AND t.sp >= 1024)
                THEN struct_pack(reply := true, how := 2)
            WHEN t.sp = -1 AND t.dp <> -1 THEN struct_pack(reply := false, how := 3)
            WHEN t.dp = -1 AND t.sp <> -1 THEN struct_pack(reply := true, how := 3)
            WHEN t.dp < 1024 AND t.sp >= 1024 THEN struct_pack(reply := false, how := 3)
            WHEN t.sp < 1024 AND t.dp >= 1024 THEN struct_pack(reply := true, how := 3)
        END AS dir0
    FROM t
    LEFT JOIN ep_port dd ON dd.ep_id = t.d_ep AND dd.proto = t.proto AND dd.port = t.dp
    LEFT JOIN ep_port sd ON sd.ep_id = t.s_ep AND sd.proto = t.proto AND sd.port = t.sp
),
-- the reverse tuple is looked up only for the few that nothing above decided (among
-- `decided`, which holds every tuple once: reading `t` again would make DuckDB keep all
-- of it in memory instead of streaming it)
reverse AS (
    SELECT a.tuple_id, min(b.t_first) AS rev_first
    FROM decided a JOIN decided b ON a.s_ep = b.d_ep AND a.d_ep = b.s_ep AND a.sp = b.dp
        AND a.dp = b.sp AND a.proto = b.proto
    WHERE a.dir0 IS NULL
    GROUP BY a.tuple_id
),
directed AS (
    SELECT d.* EXCLUDE (dir0),
        CASE
            WHEN d.dir0 IS NOT NULL THEN d.dir0
            -- both directions seen: the lower port serves; equal ports, the earlier opens
            WHEN r.tuple_id IS NOT NULL AND d.sp <> d.dp
                THEN struct_pack(reply := d.sp < d.dp, how := 3)
            WHEN r.tuple_id IS NOT NULL
                THEN struct_pack(reply := d.t_first > r.rev_first, how := 3)
            ELSE struct_pack(reply := false, how := 4)
        END AS dir
    FROM decided d
    LEFT JOIN reverse r ON r.tuple_id = d.tuple_id
),
oriented AS (
    SELECT records, packets, bytes, t_first, t_last, observed, proto, policy_trace,
        CASE WHEN dir.reply THEN src_names ELSE dst_names END AS server_names,
        CASE WHEN dir.reply THEN src_service ELSE dst_service END AS server_service,
        dir.reply AS reply, dir.how AS how,
        CASE WHEN dir.reply THEN d_ep ELSE s_ep END AS src_ep,
        CASE WHEN dir.reply THEN s_ep ELSE d_ep END AS dst_ep,
        CASE WHEN dir.reply THEN sp ELSE dp END AS server_port
    FROM directed
)
SELECT
    src_ep, dst_ep, NULLIF(server_port, -1) AS dst_port, proto,
    sum(records)::BIGINT AS flows,
    (sum(records) FILTER (WHERE reply))::BIGINT AS reply_flows,
    {sat_packets} AS packets, {sat_bytes} AS bytes,
    min(t_first) AS first_seen, max(t_last) AS last_seen,
    CASE WHEN bool_or(observed = 'allowed') THEN 'allowed'
         WHEN bool_or(observed = 'denied' AND NOT reply) THEN 'denied'
         ELSE 'unknown' END AS observed,
    min(how) AS how,
    {observed_policies} AS observed_policies,
    {dst_names} AS dst_names,
    {flow_service} AS flow_service
FROM oriented
GROUP BY src_ep, dst_ep, server_port, proto;

CREATE OR REPLACE VIEW conns AS SELECT rowid AS conn_id, * FROM conn_rows
"""


# Most sources carry no policy trace; for them the list aggregate is not built at all.
TRACE_SQL = """array_to_string(list_sort(list_distinct(
        list(policy_trace) FILTER (WHERE policy_trace IS NOT NULL))), '; ')"""
# The names the server's address was resolved from, over the connection's records (only
# Hubble has them): NULL where no record says.
NAMES_SQL = """NULLIF(array_to_string(list_sort(list_distinct(flatten(
        list(string_split(server_names, ',')) FILTER (WHERE server_names IS NOT NULL)))),
        ','), '')"""


def orient(con: duckdb.DuckDBPyConnection) -> None:
    """Endpoints, and tuples oriented and grouped into connections (`conns`); the
    Services they reached followed to their backends (backends.py)."""
    db.run(con, "DROP TABLE IF EXISTS ep_rows")
    services = backends.present(con)
    if services:  # the endpoints backends can be are endpoints too
        backends.candidates(con)
    extra = f"UNION ALL {backends.EXTRA_ENDPOINTS}" if services else ""
    for c in NAME_ENUMS:
        # host-network pods are named on their node's connections (diff.py)
        also = f"UNION SELECT {c} FROM hostnet_port WHERE {c} IS NOT NULL"
        if services:
            also += f" UNION SELECT {c} FROM svc_cand WHERE {c} IS NOT NULL"
        db.enum_type(con, f"ep_{c}", f"""SELECT DISTINCT {c} FROM side_res
            WHERE {c} IS NOT NULL AND kind <> 'invalid' AND NOT bad_labels {also}""")
    db.run(con, ENDPOINTS_SQL.replace("{extra_endpoints}", extra))
    traced, named, serviced = db.one(
        con, "SELECT bool_or(policy_trace IS NOT NULL), "
             "bool_or(coalesce(src_names, dst_names) IS NOT NULL), "
             "bool_or(coalesce(src_service, dst_service) IS NOT NULL) FROM tuples")
    db.run(con, CONNS_SQL.replace("{observed_policies}", TRACE_SQL if traced else
                                  "NULL::VARCHAR")
           .replace("{dst_names}", NAMES_SQL if named else "NULL::VARCHAR")
           # the Service a post-DNAT record names (Hubble): the server side's
           .replace("{flow_service}", "any_value(server_service)" if serviced
                    else "NULL::VARCHAR")
           .replace("{sat_packets}", db.saturated_sum("packets"))
           .replace("{sat_bytes}", db.saturated_sum("bytes")))
    backends.follow(con, TIME_KNOWN_FROM, services=services, named=bool(serviced))


# Records skipped after grouping, for reasons only resolution can tell.
LATE_SKIPS_SQL = """
SELECT CASE WHEN bool_or(e.kind = 'invalid') THEN 'invalid IP address'
            ELSE 'labels are not a JSON object' END AS reason,
       any_value(t.records) AS records, any_value(t.src_id) AS src_id
FROM tuples t JOIN tuple_ep e USING (tuple_id)
WHERE e.kind = 'invalid' OR e.bad_labels
GROUP BY t.tuple_id
"""


def _union(sources: Sequence[FlowSource], server_ports: Sequence[int], **kw: Any) -> str:
    """Every source's tuples, tagged with the source's index (src_id) for accounting."""
    return "\nUNION ALL\n".join(f"SELECT {i} AS src_id, * FROM ({s.tuples_sql(server_ports, **kw)})"
                                for i, s in enumerate(sources))


def build_tuples(con: duckdb.DuckDBPyConnection, sources: Sequence[FlowSource],
                 server_ports: Sequence[int]) -> None:
    db.run(con, f"DROP TABLE IF EXISTS {REJECTS_TABLE}; DROP TABLE IF EXISTS {REJECTS_SCAN}")
    # ids are the table's row ids: numbering rows with a window costs a second pass
    with db.without_statistics(con, any_float(sources)):
        db.run(con, f"CREATE OR REPLACE TABLE tuple_rows AS {_union(sources, server_ports)}")
    db.run(con, "CREATE OR REPLACE VIEW tuples AS SELECT rowid AS tuple_id, * FROM tuple_rows")
    collect_rejects(con, sources)


# The reasons of lines a line reader skipped (DuckDB's error types), as skip reasons.
REJECT_REASONS = {
    "INVALID ENCODING": "line not valid UTF-8",
    "MISSING COLUMNS": "malformed CSV line (too few columns)",
    "TOO MANY COLUMNS": "malformed CSV line (too many columns)",
    "UNQUOTED VALUE": "malformed CSV line (bad quoting)",
    "LINE SIZE OVER MAXIMUM": "line longer than 64 MiB",
}


def collect_rejects(con: duckdb.DuckDBPyConnection, sources: Sequence[FlowSource]) -> None:
    """`line_rejects`: the lines the tuple scan's line readers skipped, one row a line:
    (src_id, filename, line, idx: its rank among the file's skipped lines, reason).
    Taken right after the scan: later scans of the same files note them again."""
    files = [(i, f) for i, s in enumerate(sources) for f in s.files]
    found = db.one(con, f"""SELECT count(*) FROM duckdb_tables()
                            WHERE table_name = '{REJECTS_TABLE}'""")[0]
    if not found or not files:
        db.run(con, """CREATE OR REPLACE TABLE line_rejects (src_id INTEGER,
                       filename VARCHAR, line BIGINT, idx BIGINT, reason VARCHAR)""")
        return
    src_of = ", ".join(f"({i}, '{f.replace(chr(39), chr(39) * 2)}')" for i, f in files)
    reasons = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in REJECT_REASONS.items())
    db.run(con, f"""
        CREATE OR REPLACE TABLE line_rejects AS
        WITH lines AS (
            SELECT s.file_path AS filename, e.line, any_value(e.error_type) AS error_type
            FROM {REJECTS_TABLE} e JOIN {REJECTS_SCAN} s USING (scan_id, file_id)
            GROUP BY ALL
        )
        SELECT f.src_id, l.filename, l.line,
            row_number() OVER (PARTITION BY l.filename ORDER BY l.line) AS idx,
            CASE upper(CAST(l.error_type AS VARCHAR)) {reasons}
                 ELSE 'unreadable line (' || lower(CAST(l.error_type AS VARCHAR)) || ')'
            END AS reason
        FROM lines l JOIN (VALUES {src_of}) f(src_id, filename) USING (filename)""")


SIDE_COLUMNS = ("{p}_ip", "{p}_namespace", "{p}_pod", "{p}_workload", "{p}_labels",
                "lower({p}_kind)")
SIDE_KEY_COLUMNS = ("ip_raw", "f_ns", "f_pod", "f_workload", "f_labels", "f_kind")


def _side_hash(columns: Sequence[str], salt: int) -> str:
    return f"(hash({', '.join(columns)}, {salt}) >> 1)::BIGINT"


def _side_key_table(con: duckdb.DuckDBPyConnection) -> int:
    """side_key (RESOLVE_SQL's first statement): the salt its hashes are unique with."""
    statement = RESOLVE_SQL.split(";\n\n")[0]
    for salt in range(8):
        db.run(con, statement.replace("{side_hash}", _side_hash(SIDE_KEY_COLUMNS, salt)))
        if db.one(con, "SELECT count(DISTINCT skey) = count(*) FROM side_key")[0]:
            return salt
    # 8 collisions in a row among 63-bit hashes: not chance
    raise RuntimeError("side key hashes keep colliding")


def _tuple_sides(con: duckdb.DuckDBPyConnection, salt: int) -> None:
    """tuple_side (RESOLVE_SQL's second statement), hashed with side_key's salt."""
    db.run(con, RESOLVE_SQL.split(";\n\n")[1]
           .replace("{src_hash}", _side_hash([c.format(p="src") for c in SIDE_COLUMNS], salt))
           .replace("{dst_hash}", _side_hash([c.format(p="dst") for c in SIDE_COLUMNS], salt)))


def _resolve_sides(con: duckdb.DuckDBPyConnection) -> None:
    """The rest of RESOLVE_SQL, after _side_keys() and the address table ip_info."""
    for statement in RESOLVE_SQL.split(";\n\n")[2:]:
        db.run(con, statement, {"epoch": TIME_KNOWN_FROM} if "$epoch" in statement else None)


def _address_info(con: duckdb.DuckDBPyConnection) -> None:
    """ip_info: every address the tuples name, parsed, and whether a pod CIDR holds it."""
    db.run(con, IP_RAW_SQL)
    v6 = [r[0] for r in con.execute(
        "SELECT ip_raw FROM ip_raw WHERE contains(ip_raw, ':')").fetchall()]
    con.register("ipv6", ipnet.ipv6_table(v6))
    db.run(con, IP_INFO_SQL)
    con.unregister("ipv6")


def resolve(con: duckdb.DuckDBPyConnection, sources: Sequence[FlowSource],
            server_ports: Sequence[int]) -> int:
    """Resolve tuple endpoints; re-split tuples whose addresses changed hands inside their
    time span. Returns the number of tuples re-split."""
    salt = _side_key_table(con)
    # the addresses (on this connection: it registers an Arrow table) while the tuples'
    # sides are hashed, neither needing the other
    db.in_parallel(con, [_address_info, lambda c: _tuple_sides(c, salt)])
    _resolve_sides(con)
    n = db.one(con, "SELECT count(DISTINCT tuple_id) FROM tuple_ep WHERE ambiguous")
    ambiguous = int(n[0]) if n else 0
    if not ambiguous:
        return 0
    # Re-read only the records that touch a re-assigned address, grouped per record time,
    # and replace the straddling tuples with them.
    keys = ("src_ip", "dst_ip", "sp", "dp", "proto", "observed", "is_reply", "syn_ack")
    db.run(con, f"""
        CREATE OR REPLACE TEMP TABLE ambiguous_tuples AS
        SELECT tuple_id, {', '.join(keys)} FROM tuples
        WHERE tuple_id IN (SELECT tuple_id FROM tuple_ep WHERE ambiguous);
        CREATE OR REPLACE TEMP TABLE resplit_ips AS
        SELECT DISTINCT ip_raw FROM (SELECT src_ip AS ip_raw FROM ambiguous_tuples
                                     UNION ALL SELECT dst_ip FROM ambiguous_tuples)""")
    split = _union(sources, server_ports, by_time=True,
                   row_filter="({src_ip}) IN (SELECT ip_raw FROM resplit_ips) "
                              "OR ({dst_ip}) IN (SELECT ip_raw FROM resplit_ips)")
    same = " AND ".join(f"a.{c} IS NOT DISTINCT FROM s.{c}" for c in keys)
    with db.without_statistics(con, any_float(sources)):
        db.run(con, f"""
            DELETE FROM tuple_rows WHERE rowid IN (SELECT tuple_id FROM ambiguous_tuples);
            INSERT INTO tuple_rows BY NAME
            SELECT s.* EXCLUDE (t_start)
            FROM ({split}) s
            WHERE EXISTS (SELECT 1 FROM ambiguous_tuples a WHERE {same})""")
    _tuple_sides(con, _side_key_table(con))
    _resolve_sides(con)
    return ambiguous
