"""Cilium Hubble flows: `hubble observe -o json|jsonpb` lines (bare Flow objects or the
`{"flow": {...}, "node_name", "time"}` wrapper) and Hubble exporter files.

Identity comes from the flow: namespace, pod name, workloads and labels. Labels carry a
source prefix (`k8s:`); Cilium's bookkeeping labels (`io.kubernetes.pod.namespace`,
`io.cilium.k8s.policy.*`) are not pod labels, and `io.cilium.k8s.namespace.labels.<k>`
are the namespace's labels. Reserved identities (`reserved:world`, `host`, …) make the
endpoint external or a node. Hubble reports packets (not totals) and may report one packet
at several observation points: per connection and direction, the busiest observation
point counts the packets, and the other sightings are counted as skipped duplicates.
L7, policy-verdict and status lines are counted by kind and not replayed.
"""

from __future__ import annotations

import json

from .checks import epoch_sql, l4_checks, names_sql, port_sql

# An endpoint's labels follow from its address and pod name: carried, not grouped on.
CARRIED = ("r_src_labels", "r_dst_labels")
DUPLICATE_REASON = "same packet at another observation point"
_STATUS = "Hubble status or lost-events line (not a flow)"
_L7 = "L7 event (DNS/HTTP/Kafka), counted not replayed"
_VERDICT_EVENT = "policy-verdict event, counted not replayed"
# Skipped by design: the L3/L4 flows of the same traffic are replayed.
BENIGN_REASONS = (DUPLICATE_REASON, _STATUS, _L7, _VERDICT_EVENT)
REQUIRED = "Hubble flow JSON lines (hubble observe -o json/jsonpb, exporter files)"

# ports as raw JSON: a typed reader would truncate 80.5 to 80 and drop 10^20 to NULL
_PORTS = "STRUCT(source_port JSON, destination_port JSON)"
_TCP = ('STRUCT(source_port JSON, destination_port JSON, flags STRUCT("SYN" BOOLEAN, '
        '"ACK" BOOLEAN, "FIN" BOOLEAN, "RST" BOOLEAN))')
_ICMP = "STRUCT(type INTEGER, code INTEGER)"
_L4 = (f'STRUCT("TCP" {_TCP}, "UDP" {_PORTS}, "SCTP" {_PORTS}, "ICMPv4" {_ICMP}, '
       f'"ICMPv6" {_ICMP})')
_ENDPOINT = ("STRUCT(namespace VARCHAR, pod_name VARCHAR, labels VARCHAR[], "
             "workloads STRUCT(name VARCHAR, kind VARCHAR)[])")
# The Flow fields we read; the same fields stand at the top level of a bare Flow line.
_FLOW_FIELDS = {
    "time": "VARCHAR", "verdict": "VARCHAR", "drop_reason_desc": "VARCHAR",
    "IP": "STRUCT(source VARCHAR, destination VARCHAR)", "l4": _L4,
    "source": _ENDPOINT, "destination": _ENDPOINT, "Type": "VARCHAR",
    "is_reply": "BOOLEAN", "reply": "BOOLEAN",
    "event_type": "STRUCT(type INTEGER, sub_type INTEGER)",
    "trace_observation_point": "VARCHAR",
    "source_names": "VARCHAR[]", "destination_names": "VARCHAR[]",
    "source_service": "STRUCT(name VARCHAR, namespace VARCHAR)",
    "destination_service": "STRUCT(name VARCHAR, namespace VARCHAR)",
    **{f"{d}_{v}_by": "STRUCT(name VARCHAR, namespace VARCHAR, kind VARCHAR)[]"
       for d in ("ingress", "egress") for v in ("allowed", "denied")},
}
_FLOW = "STRUCT(" + ", ".join(f'"{k}" {v}' for k, v in _FLOW_FIELDS.items()) + ")"
_COLUMNS = {"flow": _FLOW, "node_status": "JSON", "lost_events": "JSON", **_FLOW_FIELDS}


def _field(path: str, shape: str = "mixed") -> str:
    """A Flow field, from the wrapper or from a bare Flow line (shape: what the file's
    first lines are: wrapped, bare or mixed)."""
    head, _, rest = path.partition(".")
    tail = f".{rest}" if rest else ""
    if shape == "wrapped":
        return f'flow."{head}"{tail}'
    if shape == "bare":
        return f'"{head}"{tail}'
    return f'coalesce(flow."{head}"{tail}, "{head}"{tail})'


def observation_point(params: dict[str, str]) -> str:
    """One packet may be reported at several observation points (and on both nodes)."""
    return "r_point"


def sniff(head: str) -> bool:
    for line in head.splitlines():
        line = line.strip()
        if not line:
            continue
        if not line.startswith("{"):
            return False
        try:
            obj = json.loads(line)
        except ValueError:
            # a line cut at the end of the sniffed head: judge by its keys
            return '"flow":' in line or ('"verdict":' in line and '"IP":' in line)
        if not isinstance(obj, dict):
            return False
        if "flow" in obj or "node_status" in obj or "lost_events" in obj:
            return True
        return "verdict" in obj and ("IP" in obj or "source" in obj or "l4" in obj)
    return False


def describe(head: str, path: object, **options: str) -> dict[str, str]:
    """Whether the lines are wrapped ({"flow": …}) or bare Flow objects: a file of one
    shape reads its fields directly instead of trying both places."""
    shapes = set()
    for line in head.splitlines()[:-1]:  # the last line of the head may be cut short
        line = line.strip()
        if line.startswith("{"):
            shapes.add("wrapped" if line.startswith('{"flow"') else
                       "bare" if '"flow":' not in line[:200] else "mixed")
    return {"shape": shapes.pop() if len(shapes) == 1 else "mixed"}


def _read(files: list[str]) -> str:
    listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    cols = "{" + ", ".join(f"'{k}': '{v}'" for k, v in _COLUMNS.items()) + "}"
    return (f"read_json({listed}, format = 'newline_delimited', columns = {cols}, "
            "filename = true, ignore_errors = true, maximum_object_size = 16777216)")


def reader(files: list[str], params: dict[str, str], numbered: bool) -> str:
    if numbered:
        return (f"(SELECT *, 'line ' || row_number() OVER (PARTITION BY filename) AS place "
                f"FROM {_read(files)})")
    return _read(files)


def _ports(end: str, shape: str) -> str:
    """The port of the L4 header present (0 for ICMP and the like, which have none)."""
    value = (f"coalesce({_field(f'l4.TCP.{end}', shape)}, {_field(f'l4.UDP.{end}', shape)}, "
             f"{_field(f'l4.SCTP.{end}', shape)})")
    return f"coalesce({port_sql(value, 'JSON')}, 0)"


def raw_columns(params: dict[str, str]) -> dict[str, str]:
    shape = params.get("shape", "mixed")

    def _f(path: str) -> str:
        return _field(path, shape)

    flags = _f("l4.TCP.flags")
    raw = {
        "r_src": _f("IP.source"),
        "r_dst": _f("IP.destination"),
        "src_port": _ports("source_port", shape),
        "dst_port": _ports("destination_port", shape),
        "r_proto": f"""CASE WHEN {_f('l4.TCP')} IS NOT NULL THEN 6
                            WHEN {_f('l4.UDP')} IS NOT NULL THEN 17
                            WHEN {_f('l4.SCTP')} IS NOT NULL THEN 132
                            WHEN {_f('l4.ICMPv4')} IS NOT NULL THEN 1
                            WHEN {_f('l4.ICMPv6')} IS NOT NULL THEN 58 END""",
        "r_verdict": _f("verdict"),
        # is_reply is explicit when present; the older `reply` is omitted when false
        "is_reply": f"coalesce({_f('is_reply')}, CASE WHEN {_f('reply')} THEN true END)",
        "tcp_flags": f"""CASE WHEN {flags} IS NOT NULL THEN
            (CASE WHEN {flags}."FIN" THEN 1 ELSE 0 END)
            + (CASE WHEN {flags}."SYN" THEN 2 ELSE 0 END)
            + (CASE WHEN {flags}."RST" THEN 4 ELSE 0 END)
            + (CASE WHEN {flags}."ACK" THEN 16 ELSE 0 END) END""",
        "r_point": f"coalesce({_f('trace_observation_point')}, '')",
        "r_trace": "NULLIF(concat_ws('; ', " + ", ".join(
            f"CASE WHEN len({_f(f'{d}_{v}_by')}) > 0 THEN '{d} {v} by ' || "
            f"array_to_string(list_transform({_f(f'{d}_{v}_by')}, lambda p: "
            "coalesce(p.namespace || '/', '') || p.name), ', ') END"
            for d in ("ingress", "egress") for v in ("allowed", "denied")) + "), '')",
        "r_event": f"""CASE WHEN node_status IS NOT NULL OR lost_events IS NOT NULL
                                THEN 'status'
                            WHEN {_f('Type')} = 'L7' OR {_f('event_type.type')} = 129 THEN 'l7'
                            WHEN {_f('event_type.type')} = 5 THEN 'policy-verdict' END""",
    }
    for side, field in (("src", "source"), ("dst", "destination")):
        # a remote endpoint may come with labels only; its namespace is among them
        ns_label = (f"list_filter({_f(field + '.labels')}, "
                    "lambda x: starts_with(x, 'k8s:io.kubernetes.pod.namespace='))[1][33:]")
        raw[f"{side}_namespace"] = (f"coalesce(NULLIF({_f(field + '.namespace')}, ''), "
                                    f"{ns_label})")
        raw[f"{side}_pod"] = f"NULLIF({_f(field + '.pod_name')}, '')"
        workload = _f(field + ".workloads")
        raw[f"{side}_workload"] = (f"{workload}[1].kind || '/' || {workload}[1].name")
        raw[f"r_{side}_labels"] = _f(field + ".labels")
        # the DNS names Cilium's DNS proxy saw the address resolved from
        raw[f"r_{side}_names"] = names_sql(_f(f"{field}_names"))
        # the Service whose address the side was (a post-DNAT flow: the backend's Service)
        name, ns = _f(f"{field}_service.name"), _f(f"{field}_service.namespace")
        raw[f"r_{side}_service"] = (f"CASE WHEN NULLIF({name}, '') IS NOT NULL THEN "
                                    f"coalesce(NULLIF({ns}, ''), 'default') || '/' || "
                                    f"{name} END")
    return raw


def measures(params: dict[str, str]) -> dict[str, str]:
    shape = params.get("shape", "mixed")

    def _f(path: str) -> str:
        return _field(path, shape)

    # Hubble reports packets one by one and counts no bytes: bytes are unknown (n/a)
    t = epoch_sql(_f("time"))
    return {"packets": "1::BIGINT", "bytes": "NULL::BIGINT", "t_start": t, "t_end": t}


def _labels_json(labels: str, ns: bool) -> str:
    """Pod labels (ns=False) or the namespace's labels (ns=True) as a JSON object."""
    prefix = "k8s:io.cilium.k8s.namespace.labels." if ns else "k8s:"
    # the service account is part of the identity; it goes to catalog.register_flow_pods
    # under Cilium's own key space
    sa = "k8s:io.cilium.k8s.policy.serviceaccount="
    keep = (f"starts_with(x, '{prefix}')" if ns else
            "starts_with(x, 'k8s:') AND NOT starts_with(x, 'k8s:io.kubernetes.pod.namespace=')"
            f" AND (NOT starts_with(x, 'k8s:io.cilium.k8s.') OR starts_with(x, '{sa}'))")
    n = len(prefix) + 1
    key = (f"CASE WHEN starts_with(x, '{sa}') THEN 'cilium:' ELSE '' END "
           f"|| split_part(x[{n}:], '=', 1)")
    entries = (f"list_transform(list_filter({labels}, lambda x: {keep} AND contains(x, '=')), "
               f"lambda x: struct_pack(key := {key}, "
               f"value := x[{n} + length(split_part(x[{n}:], '=', 1)) + 1:]))")
    return f"CASE WHEN {labels} IS NOT NULL THEN CAST(to_json(map_from_entries({entries})) " \
           f"AS VARCHAR) END"


def _kind(labels: str) -> str:
    return f"""CASE
        WHEN list_contains({labels}, 'reserved:host') THEN 'host'
        WHEN list_has_any({labels}, ['reserved:remote-node', 'reserved:health'])
            THEN 'node'
        WHEN list_has_any({labels}, ['reserved:world', 'reserved:world-ipv4',
                                     'reserved:world-ipv6']) THEN 'external'
        WHEN list_contains({labels}, 'reserved:kube-apiserver') THEN 'node'
    END"""


def post_columns() -> dict[str, str]:
    verdict = "upper(r_verdict)"
    post = {
        # as written: an address with blanks around it is not an address
        "src_ip": "NULLIF(r_src, '')",
        "dst_ip": "NULLIF(r_dst, '')",
        "proto": "r_proto",
        "policy_trace": "r_trace",
        "src_names": "r_src_names",
        "dst_names": "r_dst_names",
        "src_service": "r_src_service",
        "dst_service": "r_dst_service",
        "observed": f"""CASE
            WHEN {verdict} IN ('FORWARDED', 'AUDIT', 'REDIRECTED', 'TRACED', 'TRANSLATED')
                THEN 'allowed'
            WHEN {verdict} = 'DROPPED' THEN 'denied'
            ELSE 'unknown' END""",
        "skip_reason": f"""CASE
            WHEN r_event = 'status' THEN '{_STATUS}'
            WHEN r_event = 'l7' THEN '{_L7}'
            WHEN r_event = 'policy-verdict' THEN '{_VERDICT_EVENT}'
            WHEN r_src IS NULL AND r_dst IS NULL AND r_verdict IS NULL AND r_proto IS NULL
                THEN 'malformed line or not a Hubble flow'
            WHEN NULLIF(trim(r_src), '') IS NULL OR NULLIF(trim(r_dst), '') IS NULL
                THEN 'missing address'
            WHEN r_proto IS NULL THEN 'missing or unknown L4 protocol'
            {l4_checks("proto")}
        END""",
    }
    for side in ("src", "dst"):
        labels = f"r_{side}_labels"
        post[f"{side}_namespace"] = f"{side}_namespace"
        post[f"{side}_pod"] = f"{side}_pod"
        post[f"{side}_workload"] = f"{side}_workload"
        post[f"{side}_labels"] = _labels_json(labels, ns=False)
        post[f"{side}_namespace_labels"] = _labels_json(labels, ns=True)
        post[f"{side}_kind"] = (f"CASE WHEN {side}_pod IS NOT NULL THEN NULL "
                                f"ELSE coalesce({_kind(labels)}, CASE WHEN {side}_namespace "
                                "IS NOT NULL THEN 'pod' END) END")
    return post
