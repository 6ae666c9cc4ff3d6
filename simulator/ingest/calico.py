"""Calico Enterprise / Calico Cloud flow logs.

Forms read (all detected from content, all the same format "calico"):
- JSON, one object a line (the flow log file, or records exported from Elasticsearch,
  bare or in elasticdump's `{"_source": {...}}` wrapper), pretty-printed objects one after
  another, or a JSON array of them. The same field names in Calico open source's
  Whisker/Goldmane JSON are read too (`protocol`, RFC 3339 times, long endpoint types,
  labels as a list or one " | "-joined string): best effort, no published sample.
- The space-delimited form of the fluentd filter (`startTime endTime srcType ...`, 24
  fields, `-` for no value), with its header line or in that default order.

A record is a connection aggregated over a window (start_time..end_time); `source_*` is
the initiator, so every record is a request (is_reply false) and replies are in the
counters (packets and bytes are in + out of the reporting end).

Reporters: the same connection is logged by the source's node (reporter src) and by the
destination's (dst) when both ends are Calico endpoints. A dst record is skipped (and
counted) when a src record of the same endpoints, port and protocol overlaps its window;
if that dst record denied the connection (ingress policy), the src record is taken as
denied. Host-forwarded records (reporter `fwd`) stand alone.

Identity: `wep` endpoints are pods (namespace, name, labels; `projectcalico.org/*`
bookkeeping labels dropped), `hep` nodes, `pub` networks external; `pvt` networks and
NetworkSets are left to IP resolution. Under name aggregation a pod's name is `-` and its
`name_aggr` a prefix (`nginx-86c57db685-*`):
- with an IP, the pod is found by its IP (in --cluster) or else named `<ns>/<ip>`;
- without an IP (aggregated away), the pod is named by its `name_aggr` and evaluated by
  namespace and labels. The pipeline needs an address per endpoint, so it gets a stable
  placeholder in the IPv6 discard prefix 100::/64 (RFC 6666), the last 64 bits taken from
  md5(type/namespace/name). Such an address never matches an IPv4 ipBlock (and only an
  IPv6 one that covers 100::/64, e.g. ::/0); it shows as the endpoint's IP in the outputs.
  A host endpoint without an IP gets one the same way.
  A network (`net`/`ns`) without an IP cannot be evaluated against ipBlocks: such
  records are skipped as 'aggregated record without IP (network-level aggregation)'.

Policy traces (`policies`: the enforced policies' names and actions) become the
connection's `observed_policies`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from . import jsonform, vpc_text
from .checks import counter_sql, counter_sum_sql, epoch_sql, l4_checks, port_sql, proto_sql

REQUIRED = ("Calico Enterprise/Cloud flow log JSON (source_*/dest_* fields, action, "
            "reporter) or its space-delimited form (startTime endTime srcType ...)")

# --- detection ------------------------------------------------------------------------------

_SOURCE_KEYS = {"source_ip", "source_name", "source_name_aggr", "source_namespace",
                "source_type"}
_DEST_KEYS = {"dest_ip", "dest_name", "dest_name_aggr", "dest_namespace", "dest_type"}
_FOREIGN_KEYS = {"flow", "verdict", "IP", "logEvents", "logGroup", "messageType"}

# The space-delimited form's fields, in the documented order.
TEXT_FIELDS = ("startTime", "endTime", "srcType", "srcNamespace", "srcName", "srcLabels",
               "dstType", "dstNamespace", "dstName", "dstLabels", "srcIP", "dstIP", "proto",
               "srcPort", "dstPort", "numFlows", "numFlowsStarted", "numFlowsCompleted",
               "reporter", "packetsIn", "packetsOut", "bytesIn", "bytesOut", "action")
_TYPES = {"wep", "hep", "ns", "net"}


def _json_keys(head: str) -> set[str] | None:
    keys = jsonform.first_keys(head)
    if keys and "_source" in keys:
        keys = jsonform.first_keys(head, wrapper="_source")
    return keys


def _text_form(head: str) -> str | None:
    """'header' or 'records' when the first line is the space-delimited form."""
    for line in head.splitlines():
        tokens = line.split()
        if not tokens:
            continue
        if {"startTime", "srcIP", "dstIP", "action"} <= set(tokens) and all(
                t.isalnum() for t in tokens):
            return "header"
        if (len(tokens) == len(TEXT_FIELDS) and tokens[0].isdigit() and tokens[1].isdigit()
                and tokens[2] in _TYPES and tokens[6] in _TYPES
                and tokens[-1].lower() in ("allow", "deny")):
            return "records"
        return None
    return None


def sniff(head: str) -> bool:
    if _text_form(head):
        return True
    keys = _json_keys(head)
    if not keys or keys & _FOREIGN_KEYS:
        return False
    return bool(keys & _SOURCE_KEYS) and bool(keys & _DEST_KEYS) and bool(
        keys & {"action", "reporter"})


def describe(head: str, path: Path) -> dict[str, str]:
    form = _text_form(head)
    if form is None:
        top = jsonform.first_keys(head) or set()
        wrapped = "_source" in top and not top & (_SOURCE_KEYS | _DEST_KEYS)
        return {"form": "json", "layout": jsonform.layout(head) or "newline_delimited",
                "wrapped": "true" if wrapped else "false"}
    if form == "header":
        header = next(line.split() for line in head.splitlines() if line.split())
    else:
        header = list(TEXT_FIELDS)
    return {"form": "text", "fields": " ".join(header),
            "header": " ".join(header) if form == "header" else "",
            "compression": vpc_text.compression(path)}


# --- reading: every form to one record shape ------------------------------------------------

_FIELDS = {
    "start_time": "VARCHAR", "end_time": "VARCHAR",
    "proto": "VARCHAR", "protocol": "VARCHAR", "action": "VARCHAR", "reporter": "VARCHAR",
    "packets_in": "VARCHAR", "packets_out": "VARCHAR", "bytes_in": "VARCHAR",
    "bytes_out": "VARCHAR", "policies": "JSON",
    "dest_service_name": "VARCHAR", "dest_service_namespace": "VARCHAR",
    **{f"{side}_{c}": t for side in ("source", "dest") for c, t in (
        ("ip", "VARCHAR"), ("port", "VARCHAR"), ("name", "VARCHAR"),
        ("name_aggr", "VARCHAR"), ("namespace", "VARCHAR"), ("type", "VARCHAR"),
        ("labels", "JSON"))},
}
_JSON_COLUMNS = {**_FIELDS, "_source": "STRUCT(" + ", ".join(
    f'"{k}" {v}' for k, v in _FIELDS.items()) + ")"}


def _nz(x: str) -> str:
    """Text with `-` and blanks as NULL."""
    return f"NULLIF(NULLIF(trim(CAST({x} AS VARCHAR)), '-'), '')"


def _epoch(x: str) -> str:
    return epoch_sql(x)


def _type(t: str, ns: str, name: str) -> str:
    """wep | hep | ns | net; a record without a type (Whisker) is a pod when it has a
    namespace and is not a pub/pvt network."""
    lt = f"lower({_nz(t)})"
    return f"""CASE
        WHEN {lt} IN ('wep', 'workloadendpoint') THEN 'wep'
        WHEN {lt} IN ('hep', 'hostendpoint') THEN 'hep'
        WHEN {lt} IN ('ns', 'networkset') THEN 'ns'
        WHEN {lt} IN ('net', 'network') THEN 'net'
        WHEN {lt} IS NULL AND {_nz(ns)} IS NOT NULL
             AND coalesce({_nz(name)}, '') NOT IN ('pub', 'pvt') THEN 'wep'
        ELSE {lt} END"""


def _json_labels(x: str) -> str:
    """{"labels": ["k=v", ...]} (Enterprise), ["k=v", ...] (Goldmane), "k=v | k=v"
    (Whisker), or a plain {"k": "v"} object -> list of k=v."""
    return f"""CASE json_type({x})
        WHEN 'OBJECT' THEN CASE WHEN json_exists({x}, '$.labels')
            THEN TRY_CAST(json_extract({x}, '$.labels') AS VARCHAR[])
            ELSE list_transform(json_keys({x}), lambda k: k || '=' ||
                 json_extract_string({x}, '$."' || k || '"')) END
        WHEN 'ARRAY' THEN TRY_CAST({x} AS VARCHAR[])
        WHEN 'VARCHAR' THEN list_filter(list_transform(string_split({x} ->> '$', '|'),
                                                       lambda s: trim(s)),
                                        lambda s: s <> '')
    END"""


def _side(reporter: str) -> str:
    r = f"lower(trim({reporter}))"
    return f"""CASE WHEN {r} IN ('src', 'out') OR starts_with({r}, 'src') THEN 'src'
                    WHEN {r} IN ('dst', 'in') OR starts_with({r}, 'dst') THEN 'dst' END"""


def _record(get: Callable[[str], str], labels: Callable[[str], str],
            bad_first: str = "NULL") -> str:
    """The common record shape from field accessors: get(name) -> raw text expression,
    labels(side) -> list of k=v; bad_first: a reason the record is malformed, if any."""
    cols = {
        "t0": _epoch(get("start_time")),
        "t1": _epoch(get("end_time")),
        "proto": _nz(f"coalesce({get('proto')}, {get('protocol')})"),
        "action": f"lower({_nz(get('action'))})",
        "side": _side(get("reporter")),
        "pk": counter_sum_sql(counter_sql(get("packets_in")), counter_sql(get("packets_out"))),
        "octets": counter_sum_sql(counter_sql(get("bytes_in")), counter_sql(get("bytes_out"))),
    }
    pol = get("policies")
    # "idx|tier|namespace/tier.name|action|rule": name and action of each enforced policy
    cols["trace"] = (f"CASE WHEN {pol} IS NOT NULL THEN NULLIF(array_to_string(list_transform("
                     f"CAST(coalesce(json_extract({pol}, '$.enforced_policies'), "
                     f"json_extract({pol}, '$.all_policies')) AS VARCHAR[]), "
                     "lambda x: split_part(x, '|', 3) || ' ' || split_part(x, '|', 4)), "
                     "', '), '') END")
    for s, side in (("s", "source"), ("d", "dest")):
        name = _nz(get(f"{side}_name"))
        aggr = _nz(get(f"{side}_name_aggr"))
        cols[f"{s}_ip"] = _nz(get(f"{side}_ip"))
        cols[f"{s}_port"] = _nz(get(f"{side}_port"))
        # an aggregated name carries a '*' (the space-delimited form has no name_aggr)
        cols[f"{s}_name"] = f"CASE WHEN NOT contains({name}, '*') THEN {name} END"
        cols[f"{s}_aggr"] = f"coalesce({aggr}, CASE WHEN contains({name}, '*') THEN {name} END)"
        cols[f"{s}_ns"] = _nz(get(f"{side}_namespace"))
        cols[f"{s}_type"] = _type(get(f"{side}_type"), get(f"{side}_namespace"),
                                  f"coalesce({aggr}, {name})")
        cols[f"{s}_labels"] = labels(side)
    # the Service the connection was sent to (`-` when none): the record's destination is
    # its backend
    svc = _nz(get("dest_service_name"))
    cols["svc"] = (f"CASE WHEN {svc} IS NOT NULL THEN coalesce("
                   f"{_nz(get('dest_service_namespace'))}, 'default') || '/' || {svc} END")
    cols["bad"] = f"""coalesce({bad_first}, CASE WHEN {cols['action']} IS NULL
                            AND {cols['proto']} IS NULL AND {cols['s_ip']} IS NULL
                            AND {cols['d_ip']} IS NULL AND {_nz(get('source_name'))} IS NULL
                       THEN 'malformed line or not a Calico flow record' END)"""
    return ",\n".join(f"{e} AS {n}" for n, e in cols.items())


def _json_base(files: list[str], params: dict[str, str], numbered: bool) -> str:
    wrapped = params.get("wrapped") == "true"

    def get(name: str) -> str:
        return f'coalesce("_source"."{name}", "{name}")' if wrapped else f'"{name}"'

    def labels(side: str) -> str:
        return _json_labels(get(f"{side}_labels"))

    extra = ", filename, place" if numbered else ""
    src = jsonform.read_json_sql(files, _JSON_COLUMNS, params.get("layout",
                                                                  "newline_delimited"),
                                 numbered)
    return f"SELECT {_record(get, labels)}{extra} FROM {src}"


_TEXT_NAMES = {
    "startTime": "start_time", "endTime": "end_time", "proto": "proto",
    "reporter": "reporter", "action": "action", "packetsIn": "packets_in",
    "packetsOut": "packets_out", "bytesIn": "bytes_in", "bytesOut": "bytes_out",
    **{f"{a}{b}": f"{side}_{c}" for a, side in (("src", "source"), ("dst", "dest"))
       for b, c in (("IP", "ip"), ("Port", "port"), ("Name", "name"), ("Namespace", "namespace"),
                    ("Type", "type"), ("Labels", "labels"))},
}


def _text_base(files: list[str], params: dict[str, str], numbered: bool) -> str:
    fields = params["fields"].split()
    pos = {_TEXT_NAMES[f]: i + 1 for i, f in reversed(list(enumerate(fields)))
           if f in _TEXT_NAMES}

    def get(name: str) -> str:
        return f"f[{pos[name]}]" if name in pos else "NULL::VARCHAR"

    def labels(side: str) -> str:
        # `-`, or k=v pairs in any bracketing ([a=b,c=d], {"labels":["a=b"]}, a=b,c=d)
        x = get(f"{side}_labels")
        return (f"CASE WHEN {_nz(x)} IS NOT NULL THEN "
                f"regexp_extract_all({x}, '[^\\s,\\[\\]{{}}\"]+=[^\\s,\\[\\]{{}}\"]*') END")

    header = params.get("header") or " ".join(fields)
    lines = vpc_text.reader(files, {"header": header, "compression": params["compression"]},
                            numbered)
    extra = ", filename, place" if numbered else ""
    bad = (f"CASE WHEN len(f) <> {len(fields)} THEN 'wrong number of fields (' || len(f) "
           f"|| ', expected {len(fields)})' END")
    return f"SELECT {_record(get, labels, bad)}{extra} FROM {lines}"


def _key(p: str) -> str:
    parts = [f"{p}.s_ip", f"coalesce({p}.s_name, {p}.s_aggr)", f"{p}.s_ns", f"{p}.s_port",
             f"{p}.d_ip", f"coalesce({p}.d_name, {p}.d_aggr)", f"{p}.d_ns", f"{p}.d_port",
             f"lower({p}.proto)"]
    return "concat_ws(chr(31), " + ", ".join(f"coalesce({x}, '')" for x in parts) + ")"


def reader(files: list[str], params: dict[str, str], numbered: bool) -> str:
    base = (_text_base if params.get("form") == "text" else _json_base)(files, params,
                                                                       numbered)
    overlap = "coalesce(o.t0 <= b.t1 AND b.t0 <= o.t1, true)"
    return f"""(WITH b AS MATERIALIZED (SELECT *, {_key('r')} AS k FROM ({base}) r)
        SELECT b.* EXCLUDE (k),
            coalesce(b.side = 'dst' AND EXISTS (
                SELECT 1 FROM b o WHERE o.side = 'src' AND o.k = b.k AND {overlap}),
                false) AS dup,
            coalesce(b.side = 'src' AND EXISTS (
                SELECT 1 FROM b o WHERE o.side = 'dst' AND o.k = b.k AND o.action = 'deny'
                AND {overlap}), false) AS denied_at_dst
        FROM b)"""


DUPLICATE_REASON = "same connection reported by both ends (counted once, as reporter=src)"
BENIGN_REASONS = (DUPLICATE_REASON,)

# --- record and group expressions -----------------------------------------------------------

def raw_columns(params: dict[str, str]) -> dict[str, str]:
    raw = {
        "r_src": "s_ip", "r_dst": "d_ip",
        "src_port": port_sql("s_port"),
        "dst_port": port_sql("d_port"),
        "r_proto": "proto", "r_action": "action", "r_denied_at_dst": "denied_at_dst",
        "r_dup": "dup", "r_bad": "bad", "r_trace": "trace", "r_svc": "svc",
        "is_reply": "false", "tcp_flags": "NULL::INTEGER",
    }
    for s in ("s", "d"):
        for c in ("name", "aggr", "ns", "type", "labels"):
            raw[f"r_{s}_{c}"] = f"{s}_{c}"
    return raw


def measures(params: dict[str, str]) -> dict[str, str]:
    return {"packets": "pk", "bytes": "octets", "t_start": "t0", "t_end": "t1"}


_PROTO = proto_sql("r_proto", names={"ICMP6": 58, "IPV6-ICMP": 58})
_DEPLOYMENT = r"'^(.+)-[bcdfghjklmnpqrstvwxz2-9]{6,10}-(\*|[bcdfghjklmnpqrstvwxz2-9]{5})$'"


def _placeholder(s: str) -> str:
    """A stable address in 100::/64 for a pod or host endpoint aggregated without IP."""
    m = (f"md5(r_{s}_type || '/' || coalesce(r_{s}_ns, '') || '/' || "
         f"coalesce(r_{s}_name, r_{s}_aggr))")
    return (f"CASE WHEN (r_{s}_type = 'wep' AND r_{s}_ns IS NOT NULL OR r_{s}_type = 'hep') "
            f"AND coalesce(r_{s}_name, r_{s}_aggr) IS NOT NULL THEN '100::' || "
            f"substr({m}, 1, 4) || ':' || substr({m}, 5, 4) || ':' || substr({m}, 9, 4) "
            f"|| ':' || substr({m}, 13, 4) END")


def _labels_json(labels: str) -> str:
    keep = (f"list_filter({labels}, lambda x: contains(x, '=') "
            "AND NOT starts_with(x, 'projectcalico.org/'))")
    entries = (f"list_transform({keep}, lambda x: struct_pack(key := split_part(x, '=', 1), "
               "value := x[length(split_part(x, '=', 1)) + 2:]))")
    return (f"CASE WHEN {labels} IS NOT NULL THEN "
            f"CAST(to_json(map_from_entries({entries})) AS VARCHAR) END")


def post_columns() -> dict[str, str]:
    post = {
        "src_ip": f"coalesce(r_src, {_placeholder('s')})",
        "dst_ip": f"coalesce(r_dst, {_placeholder('d')})",
        "proto": _PROTO,
        "policy_trace": "r_trace",
        "dst_service": "r_svc",
        "observed": """CASE WHEN r_action = 'deny' OR r_denied_at_dst THEN 'denied'
                            WHEN r_action = 'allow' THEN 'allowed' ELSE 'unknown' END""",
    }
    no_ip = []
    for s, side, ip in (("s", "src", "r_src"), ("d", "dst", "r_dst")):
        wep = f"r_{s}_type = 'wep'"
        no_ip.append(f"{ip} IS NULL AND {_placeholder(s)} IS NULL")
        post[f"{side}_namespace"] = f"CASE WHEN {wep} THEN r_{s}_ns END"
        post[f"{side}_pod"] = (f"CASE WHEN {wep} THEN coalesce(r_{s}_name, "
                               f"CASE WHEN {ip} IS NULL THEN r_{s}_aggr END) END")
        post[f"{side}_workload"] = (f"CASE WHEN {wep} THEN 'Deployment/' || NULLIF("
                                    f"regexp_extract(coalesce(r_{s}_name, r_{s}_aggr), "
                                    f"{_DEPLOYMENT}, 1), '') END")
        post[f"{side}_labels"] = f"CASE WHEN {wep} THEN {_labels_json(f'r_{s}_labels')} END"
        post[f"{side}_namespace_labels"] = "NULL::VARCHAR"
        post[f"{side}_kind"] = f"""CASE WHEN {wep} THEN 'pod'
            WHEN r_{s}_type = 'hep' THEN 'node'
            WHEN coalesce(r_{s}_aggr, r_{s}_name) = 'pub' THEN 'external' END"""
    post["skip_reason"] = f"""CASE
        WHEN r_bad IS NOT NULL THEN r_bad
        WHEN r_dup THEN '{DUPLICATE_REASON}'
        WHEN ({no_ip[0]}) AND (r_s_type IN ('net', 'ns')
                               OR coalesce(r_s_aggr, r_s_name) IN ('pub', 'pvt'))
          OR ({no_ip[1]}) AND (r_d_type IN ('net', 'ns')
                               OR coalesce(r_d_aggr, r_d_name) IN ('pub', 'pvt'))
            THEN 'aggregated record without IP (network-level aggregation)'
        WHEN ({no_ip[0]}) OR ({no_ip[1]}) THEN 'missing address'
        {l4_checks("proto")}
    END"""
    return post
