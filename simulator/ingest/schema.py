"""The normalized flow schema (the project's own flow table) and the record shape every
format is mapped to inside the pipeline."""

from __future__ import annotations

import pyarrow as pa

_TS = pa.timestamp("us", tz="UTC")

# The normalized flow table users can write (Parquet or CSV) and `simulate` reads.
# Required: start_time, src_ip, dst_ip, dst_port, protocol. Everything else optional.
FLOW_SCHEMA = pa.schema([
    pa.field("start_time", _TS, nullable=False),
    pa.field("end_time", _TS),
    pa.field("src_ip", pa.string(), nullable=False),
    pa.field("dst_ip", pa.string(), nullable=False),
    pa.field("src_port", pa.int32()),
    pa.field("dst_port", pa.int32()),
    pa.field("protocol", pa.string(), nullable=False),  # TCP|UDP|SCTP|ICMP|ICMPv6|<number>
    pa.field("packets", pa.int64()),
    pa.field("bytes", pa.int64()),
    pa.field("verdict", pa.string()),  # observed: allowed|denied|unknown
    pa.field("is_reply", pa.bool_()),  # null: unknown, inferred from ports
    pa.field("tcp_flags", pa.int32()),  # OR of TCP flags seen (FIN=1, SYN=2, RST=4, ACK=16)
    # Identity, for sources that carry it (Hubble). Labels are JSON objects as text.
    pa.field("src_namespace", pa.string()),
    pa.field("src_pod", pa.string()),
    pa.field("src_workload", pa.string()),
    pa.field("src_labels", pa.string()),
    pa.field("src_namespace_labels", pa.string()),
    # What a non-pod endpoint is, when the source knows: node | host (the node the flow
    # was observed on: a pod's own node) | external.
    pa.field("src_kind", pa.string()),
    pa.field("dst_namespace", pa.string()),
    pa.field("dst_pod", pa.string()),
    pa.field("dst_workload", pa.string()),
    pa.field("dst_labels", pa.string()),
    pa.field("dst_namespace_labels", pa.string()),
    pa.field("dst_kind", pa.string()),
    # What the dataplane says decided it, e.g. "ingress allowed by ns/policy".
    pa.field("policy_trace", pa.string()),
    # The DNS names the address was resolved from (Hubble's source_names and
    # destination_names), comma-separated: what domainNames peers match.
    pa.field("src_names", pa.string()),
    pa.field("dst_names", pa.string()),
    # The Service ("namespace/name") whose address the flow's side was, when the source
    # records it (Hubble's source_service and destination_service): a post-DNAT record
    # names the backend's address and this its Service.
    pa.field("src_service", pa.string()),
    pa.field("dst_service", pa.string()),
])
# Columns of the tuple and record queries that only some sources fill (NULL elsewhere).
OPTIONAL_TEXT_COLUMNS = ("policy_trace", "src_names", "dst_names", "src_service",
                         "dst_service")
NORMALIZED_REQUIRED = ("start_time", "src_ip", "dst_ip", "dst_port", "protocol")
IDENTITY_COLUMNS = tuple(f"{side}_{c}" for side in ("src", "dst")
                         for c in ("namespace", "pod", "workload", "labels", "namespace_labels",
                                   "kind"))
