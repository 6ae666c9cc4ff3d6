"""AWS VPC flow logs, Parquet delivery (field names with underscores)."""

from __future__ import annotations

REQUIRED = ("srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets", "bytes",
            "start", "end", "action", "log_status")


def matches(columns: dict[str, str]) -> bool:
    return all(c in columns for c in ("srcaddr", "dstaddr", "dstport", "protocol", "start"))


def _cols(columns: dict[str, str]) -> dict[str, str]:
    def col(name: str) -> str:
        return f'"{name}"' if name in columns else "NULL"

    src, dst = col("srcaddr"), col("dstaddr")
    # pkt-srcaddr/pkt-dstaddr are the addresses on the packet (the pod IP behind an ENI's
    # primary address, a NAT or a transit gateway); '-' when absent.
    if "pkt_srcaddr" in columns:
        src = f"COALESCE(NULLIF(\"pkt_srcaddr\", '-'), {src})"
    if "pkt_dstaddr" in columns:
        dst = f"COALESCE(NULLIF(\"pkt_dstaddr\", '-'), {dst})"
    return {
        "src": f"NULLIF(trim(CAST({src} AS VARCHAR)), '-')",
        "dst": f"NULLIF(trim(CAST({dst} AS VARCHAR)), '-')",
        "sport": f"TRY_CAST({col('srcport')} AS INTEGER)",
        "dport": f"TRY_CAST({col('dstport')} AS INTEGER)",
        "proto": f"TRY_CAST({col('protocol')} AS INTEGER)",
        "status": f"upper(CAST({col('log_status')} AS VARCHAR))",
        "start": f"TRY_CAST({col('start')} AS DOUBLE)",
    }


def _skip_reason(c: dict[str, str]) -> str:
    return f"""CASE
        WHEN {c['status']} = 'NODATA' THEN 'NODATA record (no traffic in the window)'
        WHEN {c['status']} = 'SKIPDATA' THEN 'SKIPDATA record (AWS dropped records)'
        WHEN {c['src']} IS NULL OR {c['dst']} IS NULL THEN 'missing address'
        WHEN {c['proto']} IS NULL THEN 'missing or invalid protocol'
        WHEN {c['proto']} IN (6, 17, 132) AND ({c['sport']} IS NULL OR {c['dport']} IS NULL)
            THEN 'missing or invalid port'
        WHEN {c['sport']} NOT BETWEEN 0 AND 65535 OR {c['dport']} NOT BETWEEN 0 AND 65535
            THEN 'port out of range'
        WHEN {c['start']} IS NULL THEN 'missing or invalid start time'
    END"""


def select(reader: str, columns: dict[str, str]) -> str:
    c = _cols(columns)
    flags = 'TRY_CAST("tcp_flags" AS INTEGER)' if "tcp_flags" in columns else "NULL::INTEGER"
    end = 'TRY_CAST("end" AS DOUBLE)' if "end" in columns else "NULL::DOUBLE"
    action = 'upper(CAST("action" AS VARCHAR))' if "action" in columns else "NULL"
    identity = ", ".join(f"NULL::VARCHAR AS {side}_{f}" for side in ("src", "dst")
                         for f in ("namespace", "pod", "workload", "labels", "namespace_labels"))
    return f"""
        SELECT
            {c['start']} AS t_start,
            {end} AS t_end,
            {c['src']} AS src_ip,
            {c['dst']} AS dst_ip,
            coalesce({c['sport']}, 0) AS src_port,
            coalesce({c['dport']}, 0) AS dst_port,
            {c['proto']} AS proto,
            TRY_CAST({'"packets"' if 'packets' in columns else 'NULL'} AS BIGINT) AS packets,
            TRY_CAST({'"bytes"' if 'bytes' in columns else 'NULL'} AS BIGINT) AS bytes,
            CASE {action} WHEN 'ACCEPT' THEN 'allowed' WHEN 'REJECT' THEN 'denied'
                ELSE 'unknown' END AS observed,
            NULL::BOOLEAN AS is_reply,
            {flags} AS tcp_flags,
            {_skip_reason(c)} AS skip_reason,
            {identity}
        FROM {reader}"""


def skip_reason(columns: dict[str, str]) -> str:
    return _skip_reason(_cols(columns))
