"""Azure NSG flow logs (versions 1 and 2) and VNet flow logs (flowLogVersion 4).

Both are blobs (`PT1H.json`) holding `{"records": [...]}`; a file may also hold several
such objects one after another (pretty-printed or one a line). Every flow tuple is one
record:
- NSG (`category` NetworkSecurityGroupFlowEvent): `records[].properties.flows[]` is
  `{rule, flows[{mac, flowTuples[]}]}`; a tuple is `epoch seconds, src, dst, sport, dport,
  protocol (T|U), direction (I|O), decision (A|D)`, and in version 2 also `state (B|C|E),
  packets src→dst, bytes src→dst, packets dst→src, bytes dst→src` (empty for B).
- VNet (`category` FlowLogFlowEvent): `records[].flowRecords.flows[]` is
  `{aclID, flowGroups[{rule, flowTuples[]}]}`; a tuple is `epoch milliseconds, src, dst,
  sport, dport, protocol (IANA number), direction (I|O), state (B|C|E|D), encryption
  (X|NX|NX_…), packets sent, bytes sent, packets received, bytes received`.

A tuple covers a connection and src is the side that started it (the local VM for O,
the remote side for I), so every record is a request (is_reply false); the counters of
both directions are added to packets and bytes. Observed: NSG decision A is allowed and D
denied; VNet state D (deny) is denied, B/C/E (a flow that was set up) allowed. The rule
(and the NSG name or the VNet log's aclID) becomes the policy trace, e.g. `inbound denied
by rule DefaultRule_DenyAllInBound (NSG FABRIKAMVM1-NSG)`.

There is no Kubernetes identity: endpoints are resolved by IP (with --cluster). A
connection logged at both ends' NICs is two sightings under different rules; both are
read (its verdict is unaffected, its record count doubled).

Malformed tuples (wrong field count, unknown decision or state, bad timestamp or
address) are skipped and counted; an object that does not parse is one skipped record.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..ipnet import IPV4_RE
from . import jsonform
from .checks import counter_sql, counter_sum_sql, epoch_sql, l4_checks, port_sql, proto_sql

REQUIRED = ('Azure NSG flow log or VNet flow log JSON ({"records": [...]} with category '
            "NetworkSecurityGroupFlowEvent / FlowLogFlowEvent)")

_NSG = "NetworkSecurityGroupFlowEvent"
_VNET = "FlowLogFlowEvent"

# --- detection ------------------------------------------------------------------------------

_RECORDS_OPEN = re.compile(r'\A\{\s*"records"\s*:\s*\[\s*\{')


def _first_record(head: str) -> dict | None:
    """The first record of the head's first object, when the head holds it whole."""
    text = head.lstrip("\ufeff \t\r\n")
    try:
        obj = json.JSONDecoder().raw_decode(text)[0]
    except ValueError:
        m = _RECORDS_OPEN.match(text)
        if not m:
            return None
        try:
            rec = json.JSONDecoder().raw_decode(text[m.end() - 1:])[0]
        except ValueError:
            return None
        return rec if isinstance(rec, dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("records"), list):
        return None
    recs = obj["records"]
    return recs[0] if recs and isinstance(recs[0], dict) else None


def _is_azure_record(rec: dict) -> bool:
    props = rec.get("properties")
    return (rec.get("category") in (_NSG, _VNET) or isinstance(rec.get("flowRecords"), dict)
            or isinstance(props, dict) and isinstance(props.get("flows"), list))


def sniff(head: str) -> bool:
    text = head.lstrip("\ufeff \t\r\n")
    if not _RECORDS_OPEN.match(text):
        return False  # Hubble, CloudWatch envelopes, Calico and Antrea JSON open otherwise
    rec = _first_record(head)
    if rec is not None:
        return _is_azure_record(rec)
    # a first record larger than the head: its opening names the category or the shape
    start = text[:8192]
    return bool(re.search(rf'"category"\s*:\s*"({_NSG}|{_VNET})"', start)
                or re.search(r'"flowRecords"\s*:\s*\{', start)
                or re.search(r'"properties"\s*:\s*\{[^{}]*"flows"\s*:\s*\[', start))


def describe(head: str, path: Path) -> dict[str, str]:
    return {"layout": jsonform.layout(head) or "unstructured"}


# --- reading: one row per flow tuple ---------------------------------------------------------

def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _objects_sql(files: list[str], layout: str) -> str:
    """(filename, bi, records): each top-level object of the files, numbered from 1, with
    its records (NULL when it does not parse or has no records array).

    A pretty-printed blob is read whole as text, so that one still being written (its end
    missing) is one bad object, not an error: DuckDB cannot skip parse errors in it. Blobs
    the user gzipped, and one object a line, go through read_json."""
    text = [f for f in files if layout == "unstructured" and not f.endswith(".gz")]
    other = [f for f in files if f not in text]
    parts = []
    if other:
        listed = "[" + ", ".join(_sql_str(f) for f in other) + "]"
        parts.append(
            f"SELECT filename, row_number() OVER (PARTITION BY filename) AS bi, records "
            f"FROM read_json({listed}, format = {_sql_str(layout)}, "
            "columns = {'records': 'JSON[]'}, filename = true, ignore_errors = true, "
            "maximum_object_size = 268435456)")
    if text:
        listed = "[" + ", ".join(_sql_str(f) for f in text) + "]"
        body = "trim(content, chr(65279) || ' ' || chr(9) || chr(10) || chr(13))"
        many = "'[' || regexp_replace(" + body + r", '\}\s*\{', '},{', 'g') || ']'"
        parts.append(f"""
            SELECT filename, bi, CASE WHEN json_type(o -> '$.records') = 'ARRAY'
                                      THEN o -> '$.records[*]' END AS records
            FROM (SELECT filename, unnest(objs) AS o, generate_subscripts(objs, 1) AS bi
                  FROM (SELECT filename, CASE
                      WHEN json_valid({body}) THEN [CAST({body} AS JSON)]
                      WHEN json_valid({many}) THEN CAST(CAST({many} AS JSON) AS JSON[])
                      ELSE [NULL::JSON] END AS objs
                  FROM read_text({listed})))""")
    return " UNION ALL ".join(parts)


def reader(files: list[str], params: dict[str, str], numbered: bool) -> str:
    # f: the tuple's fields; nsg: the record is an NSG flow log (else VNet)
    n = "len(f)"
    state = "upper(trim(f[8]))"
    cols = {
        "ts": epoch_sql("f[1]"),
        "s_ip": "trim(f[2])", "d_ip": "trim(f[3])",
        "s_port": port_sql("f[4]"), "d_port": port_sql("f[5]"),
        "proto": "trim(f[6])", "dir": "upper(trim(f[7]))",
        # NSG: decision A|D; VNet: flow state B|C|E (set up: allowed) or D (denied)
        "decision": f"""CASE WHEN nsg THEN CASE WHEN {state} IN ('A', 'D') THEN {state} END
                        WHEN {state} = 'D' THEN 'D'
                        WHEN {state} IN ('B', 'C', 'E') THEN 'A' END""",
        "pk_s": f"CASE WHEN {n} >= 13 THEN {counter_sql('f[10]')} END",
        "by_s": f"CASE WHEN {n} >= 13 THEN {counter_sql('f[11]')} END",
        "pk_d": f"CASE WHEN {n} >= 13 THEN {counter_sql('f[12]')} END",
        "by_d": f"CASE WHEN {n} >= 13 THEN {counter_sql('f[13]')} END",
        "rule": "rule", "nsg": "nsg_name", "acl": "acl",
    }
    expected = ("CASE WHEN NOT nsg THEN [13] WHEN version = '1' THEN [8] "
                "WHEN version = '2' THEN [13] ELSE [8, 13] END")
    bad = f"""CASE
        WHEN f IS NULL THEN 'malformed or truncated JSON object, or no records array'
        WHEN NOT list_contains({expected}, {n}) THEN 'malformed flow tuple (' || {n}
            || ' fields, expected ' || array_to_string({expected}, ' or ') || ')'
        WHEN NOT regexp_full_match(trim(f[1]), '[0-9]{{1,15}}')
            THEN 'malformed flow tuple (timestamp)'
        WHEN nsg AND {state} NOT IN ('A', 'D') THEN 'malformed flow tuple (decision '
            || coalesce(f[8], '') || ', expected A or D)'
        WHEN NOT nsg AND {state} NOT IN ('B', 'C', 'E', 'D') THEN
            'malformed flow tuple (flow state ' || coalesce(f[8], '') || ', expected B, C, E or D)'
        WHEN NOT nsg AND {n} >= 13 AND list_contains(list_transform(f[10:13],
                lambda x: NOT regexp_full_match(trim(x), '[0-9]{{1,15}}')), true)
            THEN 'malformed flow tuple (counters)'
        WHEN nsg AND {n} >= 13 AND list_contains(list_transform(f[10:13],
                lambda x: trim(x) <> '' AND NOT regexp_full_match(trim(x), '[0-9]{{1,15}}')),
                true)
            THEN 'malformed flow tuple (counters)'
    END"""
    select = ",\n            ".join(f"{e} AS {c}" for c, e in cols.items())
    where = ("'records[' || (ri - 1) || ']' || CASE WHEN nsg "
             "THEN '.properties.flows[' || (i1 - 1) || '].flows[' || (i2 - 1) || ']' "
             "ELSE '.flowRecords.flows[' || (i1 - 1) || '].flowGroups[' || (i2 - 1) || ']' END "
             "|| '.flowTuples[' || (it - 1) || ']'")
    place = (f", CASE WHEN f IS NULL THEN 'object ' || bi ELSE "
             f"CASE WHEN bi > 1 THEN 'object ' || bi || ' ' ELSE '' END || {where} END "
             "AS place, filename" if numbered else "")
    return f"""(WITH blobs AS (
            {_objects_sql(files, params.get("layout", "unstructured"))}),
        recs AS (
            SELECT filename, bi, unnest(records) AS rec, generate_subscripts(records, 1) AS ri
            FROM blobs),
        rl AS (
            SELECT *, json_exists(rec, '$.properties.flows') AS nsg,
                   CAST(coalesce(rec ->> '$.properties.Version',
                                 rec ->> '$.flowLogVersion') AS VARCHAR) AS version,
                   NULLIF(regexp_extract(rec ->> '$.resourceId',
                          '(?i)/networksecuritygroups/([^/]+)', 1), '') AS nsg_name,
                   CASE WHEN json_exists(rec, '$.properties.flows')
                        THEN rec -> '$.properties.flows[*]'
                        ELSE rec -> '$.flowRecords.flows[*]' END AS l1
            FROM recs),
        g1 AS (
            SELECT * EXCLUDE (l1, rec), unnest(l1) AS e1, generate_subscripts(l1, 1) AS i1
            FROM rl),
        g1x AS (
            SELECT *, CASE WHEN nsg THEN e1 -> '$.flows[*]' ELSE e1 -> '$.flowGroups[*]' END
                   AS l2 FROM g1),
        g2 AS (
            SELECT * EXCLUDE (l2), unnest(l2) AS e2, generate_subscripts(l2, 1) AS i2
            FROM g1x),
        g2x AS (
            SELECT *, CASE WHEN nsg THEN e1 ->> '$.rule' ELSE e2 ->> '$.rule' END AS rule,
                   CASE WHEN NOT nsg THEN e1 ->> '$.aclID' END AS acl,
                   TRY_CAST(e2 -> '$.flowTuples' AS VARCHAR[]) AS tl
            FROM g2),
        tuples AS (
            SELECT * EXCLUDE (tl, e1, e2), string_split(unnest(tl), ',') AS f,
                   generate_subscripts(tl, 1) AS it
            FROM g2x
            UNION ALL BY NAME
            SELECT filename, bi, NULL::VARCHAR[] AS f FROM blobs WHERE records IS NULL)
        SELECT {select},
            {bad} AS bad{place}
        FROM tuples)"""


# --- record and group expressions -----------------------------------------------------------

def raw_columns(params: dict[str, str]) -> dict[str, str]:
    return {
        "r_src": "s_ip", "r_dst": "d_ip", "src_port": "s_port", "dst_port": "d_port",
        "r_proto": "proto", "r_dir": "dir", "r_decision": "decision", "r_rule": "rule",
        "r_nsg": "nsg", "r_acl": "acl", "r_bad": "bad",
        "is_reply": "false", "tcp_flags": "NULL::INTEGER",
    }


def measures(params: dict[str, str]) -> dict[str, str]:
    # NSG tuples carry epoch seconds, VNet tuples epoch milliseconds
    t = "CASE WHEN ts > 100000000000 THEN ts / 1000 ELSE ts END"
    return {"packets": counter_sum_sql("pk_s", "pk_d"), "bytes": counter_sum_sql("by_s", "by_d"),
            "t_start": t, "t_end": t}


_PROTO = proto_sql("r_proto", names={"T": 6, "U": 17})


def _bad_ip(col: str) -> str:
    return (f"NOT (regexp_full_match({col}, '{IPV4_RE}') OR (contains({col}, ':') AND "
            f"regexp_full_match({col}, '[0-9A-Fa-f:.]+')))")


def post_columns() -> dict[str, str]:
    verdict = "CASE r_decision WHEN 'A' THEN 'allowed' WHEN 'D' THEN 'denied' END"
    direction = "CASE r_dir WHEN 'I' THEN 'inbound ' WHEN 'O' THEN 'outbound ' ELSE '' END"
    where = ("CASE WHEN r_nsg IS NOT NULL THEN ' (NSG ' || r_nsg || ')' "
             "WHEN r_acl IS NOT NULL THEN ' (ACL ' || r_acl || ')' ELSE '' END")
    return {
        "src_ip": "NULLIF(r_src, '')",
        "dst_ip": "NULLIF(r_dst, '')",
        "proto": _PROTO,
        "observed": f"coalesce({verdict}, 'unknown')",
        "policy_trace": (f"CASE WHEN NULLIF(r_rule, '') IS NOT NULL THEN {direction} || "
                         f"{verdict} || ' by rule ' || r_rule || {where} END"),
        "skip_reason": f"""CASE
            WHEN r_bad IS NOT NULL THEN r_bad
            WHEN NULLIF(r_src, '') IS NULL OR NULLIF(r_dst, '') IS NULL THEN 'missing address'
            WHEN {_bad_ip('r_src')} OR {_bad_ip('r_dst')} THEN 'invalid IP address'
            {l4_checks("proto")}
        END""",
    }
