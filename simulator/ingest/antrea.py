"""Antrea flow records from the Flow Aggregator.

Forms read (detected from content, both the format "antrea"):
- `antctl get flowrecords -o json`: a JSON array of records with the IPFIX element names
  as keys (sourceIPv4Address, destinationTransportPort, ...); one object a line and
  pretty-printed objects are read too.
- The flowLogger CSV (`/tmp/antrea-flows.log`, no header line), in either column layout:
  30 columns with destinationServiceIP (Antrea < 1.13, `flowlogger-csv-COLUMNS.txt`), or
  without it and with appProtocolName and httpVals before egressNodeName (later Antrea;
  httpVals may itself hold commas). A line's layout is told by its 15th field: the
  service IP, or the service port (digits). Protocol, rule actions and policy types are
  names when the aggregator's prettyPrint is on (TCP, Drop, K8sNetworkPolicy) and numbers
  when it is off.

A record is one conntrack connection, source = initiator (is_reply false); replies are
the reverse counters, added to packets and bytes. Observed: denied when the ingress or
egress rule action is Drop or Reject (2, 3), else allowed (the connection was committed).
Policy names and rule names are read, not carried to the outputs (no result column).

Identity: a side with a pod name is that pod (namespace, pod name; labels when the
aggregator added sourcePodLabels/destinationPodLabels); without one it is resolved by IP,
except that flowType 3 (to external) and 4 (from external) mark the far side external.
"""

from __future__ import annotations

import gzip
import ipaddress
import re
import zlib
from pathlib import Path

from . import jsonform, vpc_text
from .checks import counter_sql, counter_sum_sql, epoch_sql, l4_checks, port_sql, proto_sql

REQUIRED = ("Antrea flow records: `antctl get flowrecords -o json` output, or the Flow "
            "Aggregator flowLogger CSV (no header: flowStartSeconds,flowEndSeconds,"
            "sourceIP,destinationIP,...)")

OLD_CSV_FIELDS = 30  # with destinationServiceIP
NEW_CSV_FIELDS = 31  # with appProtocolName, httpVals (httpVals may add commas)

_JSON_KEYS = {"sourceIPv4Address", "sourceIPv6Address", "destinationIPv4Address",
              "destinationIPv6Address"}
_JSON_PORTS = {"sourceTransportPort", "destinationTransportPort", "protocolIdentifier"}
_DIGITS = re.compile(r"\d+\Z")


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _csv_line(line: str) -> bool:
    f = line.strip().split(",")
    if len(f) < OLD_CSV_FIELDS:
        return False
    new = bool(_DIGITS.match(f[14]))
    return ((len(f) >= NEW_CSV_FIELDS if new else len(f) == OLD_CSV_FIELDS)
            and all(_DIGITS.match(x) for x in (f[0], f[1], f[4], f[5]))
            and _ip(f[2]) and _ip(f[3]))


def _form(head: str) -> str | None:
    if _table_header(head):
        return "table"
    for line in head.splitlines():
        if not line.strip():
            continue
        if _csv_line(line):
            return "csv"
        break
    keys = jsonform.first_keys(head)
    if keys and keys & _JSON_KEYS and len(keys & _JSON_PORTS) >= 2 and not keys & {
            "flow", "verdict", "logEvents"}:
        return "json"
    return None


def sniff(head: str) -> bool:
    return _form(head) is not None


def is_headless_csv(path: Path) -> bool:
    """A `.csv` file that is a flowLogger CSV: read as text (it has no header line), not
    as a table (sources._describe asks before taking a .csv file as a table). Past a
    byte-order mark, any of the first few lines decides (a stray first line is one bad
    record, not another format)."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(8192)
        if raw[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as gz:
                raw = gz.read(8192)
    except (OSError, EOFError, zlib.error):
        return False
    lines = [x for x in raw.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()
             if x.strip()]
    return any(_csv_line(x) for x in lines[:4])


def describe(head: str, path: Path) -> dict[str, str]:
    form = _form(head)
    if form == "table":
        return {"form": "table", "header": _table_header(head) or "",
                "compression": vpc_text.compression(path)}
    if form == "csv":
        return {"form": "csv", "compression": vpc_text.compression(path)}
    return {"form": "json", "layout": jsonform.layout(head) or "array"}


# --- reading: both forms to one record shape ------------------------------------------------

_TEXT = ("sourceIPv4Address", "sourceIPv6Address", "destinationIPv4Address",
         "destinationIPv6Address", "sourceTransportPort", "destinationTransportPort",
         "protocolIdentifier", "sourcePodName", "sourcePodNamespace", "sourceNodeName",
         "destinationPodName", "destinationPodNamespace", "destinationNodeName",
         "flowStartSeconds", "flowEndSeconds", "flowType",
         "ingressNetworkPolicyName", "ingressNetworkPolicyNamespace",
         "ingressNetworkPolicyRuleName", "ingressNetworkPolicyRuleAction",
         "egressNetworkPolicyName", "egressNetworkPolicyNamespace",
         "egressNetworkPolicyRuleName", "egressNetworkPolicyRuleAction",
         "packetTotalCount", "reversePacketTotalCount", "octetTotalCount",
         "reverseOctetTotalCount")
_JSON_COLUMNS = {**{k: "VARCHAR" for k in _TEXT},
                 "sourcePodLabels": "JSON", "destinationPodLabels": "JSON"}


def _nz(x: str) -> str:
    return f"NULLIF(trim(CAST({x} AS VARCHAR)), '')"


def _epoch(x: str) -> str:
    return epoch_sql(x)


def _labels(x: str) -> str:
    """Pod labels: a JSON object, or a string holding one (as the aggregator writes)."""
    return f"""CASE json_type({x}) WHEN 'OBJECT' THEN CAST({x} AS VARCHAR)
                   WHEN 'VARCHAR' THEN NULLIF(trim({x} ->> '$'), '') END"""


def _json_base(files: list[str], params: dict[str, str], numbered: bool) -> str:
    src = jsonform.read_json_sql(files, _JSON_COLUMNS, params.get("layout", "array"),
                                 numbered)
    def total(a: str, b: str) -> str:
        return counter_sum_sql(counter_sql(a), counter_sql(b))

    cols = {
        "s_ip": f"coalesce({_nz('sourceIPv4Address')}, {_nz('sourceIPv6Address')})",
        "d_ip": f"coalesce({_nz('destinationIPv4Address')}, {_nz('destinationIPv6Address')})",
        "s_port": "sourceTransportPort", "d_port": "destinationTransportPort",
        "proto": _nz("protocolIdentifier"),
        "s_pod": _nz("sourcePodName"), "s_ns": _nz("sourcePodNamespace"),
        "d_pod": _nz("destinationPodName"), "d_ns": _nz("destinationPodNamespace"),
        "s_labels": _labels("sourcePodLabels"), "d_labels": _labels("destinationPodLabels"),
        "flow_type": _nz("flowType"),
        "in_action": _nz("ingressNetworkPolicyRuleAction"),
        "eg_action": _nz("egressNetworkPolicyRuleAction"),
        "trace": "NULLIF(concat_ws('; ', " + ", ".join(
            f"CASE WHEN {_nz(d + 'NetworkPolicyName')} IS NOT NULL THEN '{d} ' || "
            f"CASE {_nz(d + 'NetworkPolicyRuleAction')} WHEN '1' THEN 'allow' "
            "WHEN '2' THEN 'drop' WHEN '3' THEN 'reject' "
            f"ELSE lower(coalesce({_nz(d + 'NetworkPolicyRuleAction')}, 'matched')) END"
            " || ' by ' || "
            f"coalesce({_nz(d + 'NetworkPolicyNamespace')} || '/', '') || "
            f"{_nz(d + 'NetworkPolicyName')} END" for d in ("ingress", "egress")) + "), '')",
        "t0": _epoch("flowStartSeconds"), "t1": _epoch("flowEndSeconds"),
        "pk": total("packetTotalCount", "reversePacketTotalCount"),
        "octets": total("octetTotalCount", "reverseOctetTotalCount"),
        "bad": """CASE WHEN sourceIPv4Address IS NULL AND sourceIPv6Address IS NULL
                         AND destinationIPv4Address IS NULL AND destinationIPv6Address IS NULL
                         AND protocolIdentifier IS NULL AND flowStartSeconds IS NULL
                    THEN 'malformed or not an Antrea flow record' END""",
    }
    extra = ", filename, place" if numbered else ""
    return "SELECT " + ", ".join(f"{e} AS {n}" for n, e in cols.items()) + extra + \
        f" FROM {src}"


def _lines(files: list[str], params: dict[str, str], numbered: bool, expr: str) -> str:
    """Each line of the files as `expr` (over `line`) named f; with its place when
    numbered."""
    src = vpc_text.lines_sql(files, params.get("compression", "auto"), numbered)
    if numbered:
        return f"(SELECT {expr} AS f, filename, 'line ' || lineno AS place FROM {src})"
    return f"(SELECT {expr} AS f FROM {src})"


def _csv_base(files: list[str], params: dict[str, str], numbered: bool) -> str:
    lines = _lines(files, params, numbered, "string_split(trim(line, ' ' || chr(13)), ',')")
    # o: 1 in the old layout (a destinationServiceIP column at 15), else 0
    o = "(CASE WHEN regexp_full_match(f[15], '\\d+') THEN 0 ELSE 1 END)"

    def at(i: int) -> str:  # field i of the old layout (1-based) past the service IP
        return f"NULLIF(f[{i} - 1 + {o}], '')"

    cols = {
        "s_ip": "NULLIF(f[3], '')", "d_ip": "NULLIF(f[4], '')",
        "s_port": "f[5]", "d_port": "f[6]", "proto": "NULLIF(f[7], '')",
        "s_pod": "NULLIF(f[8], '')", "s_ns": "NULLIF(f[9], '')",
        "d_pod": "NULLIF(f[11], '')", "d_ns": "NULLIF(f[12], '')",
        "s_labels": "NULL::VARCHAR", "d_labels": "NULL::VARCHAR",
        "flow_type": "NULL::VARCHAR",
        "in_action": at(21), "eg_action": at(26), "trace": "NULL::VARCHAR",
        "t0": epoch_sql("f[1]"), "t1": epoch_sql("f[2]"),
        "pk": "NULL::BIGINT", "octets": "NULL::BIGINT",
        "bad": f"""CASE WHEN len(f) < {OLD_CSV_FIELDS} OR ({o} = 1 AND len(f) <> {OLD_CSV_FIELDS})
                    THEN 'wrong number of fields (' || len(f) || ', expected '
                         || '{OLD_CSV_FIELDS}, or {NEW_CSV_FIELDS} and more)' END""",
    }
    extra = ", filename, place" if numbered else ""
    return ("SELECT " + ", ".join(f"{e} AS {n}" for n, e in cols.items()) + extra +
            f" FROM {lines} WHERE f[1] <> ''")


# `antctl get flowrecords` without -o: a fixed-width table under this header
TABLE_COLUMNS = ("SRC_IP", "DST_IP", "SPORT", "DPORT", "PROTO", "SRC_POD", "DST_POD",
                 "SRC_NS", "DST_NS", "SERVICE")


def _table_header(head: str) -> str | None:
    for line in head.splitlines()[:5]:
        if line.split()[:2] == ["SRC_IP", "DST_IP"]:
            return line.rstrip("\r\n")
    return None


def _table_base(files: list[str], params: dict[str, str], numbered: bool) -> str:
    """Cells are cut at the header's column starts (a cell may be empty)."""
    header = params["header"]
    starts = {name: header.index(name) for name in header.split()}
    order = sorted(starts.values())

    def cell(name: str) -> str:
        if name not in starts:
            return "NULL::VARCHAR"
        a = starts[name]
        b = next((x for x in order if x > a), None)
        width = f", {b - a}" if b is not None else ""
        return f"NULLIF(trim(substr(f, {a + 1}{width})), '')"

    lines = _lines(files, params, numbered, "rtrim(line, ' ' || chr(13))")
    cols = {
        "s_ip": cell("SRC_IP"), "d_ip": cell("DST_IP"),
        "s_port": cell("SPORT"), "d_port": cell("DPORT"), "proto": cell("PROTO"),
        "s_pod": cell("SRC_POD"), "s_ns": cell("SRC_NS"),
        "d_pod": cell("DST_POD"), "d_ns": cell("DST_NS"),
        "s_labels": "NULL::VARCHAR", "d_labels": "NULL::VARCHAR",
        "flow_type": "NULL::VARCHAR", "in_action": "NULL::VARCHAR",
        "eg_action": "NULL::VARCHAR", "trace": "NULL::VARCHAR",
        "t0": "NULL::DOUBLE", "t1": "NULL::DOUBLE", "pk": "NULL::BIGINT",
        "octets": "NULL::BIGINT",
        "bad": f"""CASE WHEN starts_with(f, '$') THEN 'command line, not a record'
                        WHEN {cell('SRC_IP')} IS NULL OR {cell('DST_IP')} IS NULL
                        THEN 'malformed table row' END""",
    }
    extra = ", filename, place" if numbered else ""
    return ("SELECT " + ", ".join(f"{e} AS {n}" for n, e in cols.items()) + extra +
            f" FROM {lines} WHERE trim(f) <> '' AND NOT starts_with(f, 'SRC_IP ')")


def reader(files: list[str], params: dict[str, str], numbered: bool) -> str:
    base = {"csv": _csv_base, "table": _table_base}.get(params.get("form", ""), _json_base)
    return f"({base(files, params, numbered)})"


# --- record and group expressions -----------------------------------------------------------

def raw_columns(params: dict[str, str]) -> dict[str, str]:
    return {
        "r_src": "s_ip", "r_dst": "d_ip",
        "src_port": port_sql("s_port"),
        "dst_port": port_sql("d_port"),
        "r_proto": "proto", "r_in_action": "in_action", "r_eg_action": "eg_action",
        "r_flow_type": "flow_type", "r_bad": "bad", "r_trace": "trace",
        "is_reply": "false", "tcp_flags": "NULL::INTEGER",
        "r_s_pod": "s_pod", "r_s_ns": "s_ns", "r_s_labels": "s_labels",
        "r_d_pod": "d_pod", "r_d_ns": "d_ns", "r_d_labels": "d_labels",
    }


def measures(params: dict[str, str]) -> dict[str, str]:
    return {"packets": "pk", "bytes": "octets", "t_start": "t0", "t_end": "t1"}


_PROTO = proto_sql("r_proto", names={"ICMP6": 58, "IPV6-ICMP": 58})
_DENY = "('2', '3', 'DROP', 'REJECT')"


def post_columns() -> dict[str, str]:
    post = {
        "src_ip": "trim(r_src)",
        "dst_ip": "trim(r_dst)",
        "proto": _PROTO,
        "policy_trace": "r_trace",
        "observed": f"""CASE WHEN upper(r_in_action) IN {_DENY} OR upper(r_eg_action) IN {_DENY}
                             THEN 'denied' ELSE 'allowed' END""",
        "skip_reason": f"""CASE
            WHEN r_bad IS NOT NULL THEN r_bad
            WHEN r_src IS NULL OR r_dst IS NULL THEN 'missing address'
            {l4_checks("proto")}
        END""",
    }
    for s, side, external in (("s", "src", "4"), ("d", "dst", "3")):
        post[f"{side}_namespace"] = f"CASE WHEN r_{s}_pod IS NOT NULL THEN r_{s}_ns END"
        post[f"{side}_pod"] = f"r_{s}_pod"
        post[f"{side}_workload"] = "NULL::VARCHAR"
        post[f"{side}_labels"] = f"CASE WHEN r_{s}_pod IS NOT NULL THEN r_{s}_labels END"
        post[f"{side}_namespace_labels"] = "NULL::VARCHAR"
        post[f"{side}_kind"] = f"""CASE WHEN r_{s}_pod IS NOT NULL THEN 'pod'
            WHEN r_flow_type = '{external}' THEN 'external' END"""
    return post
