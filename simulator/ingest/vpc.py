"""AWS VPC flow logs, Parquet delivery (field names with underscores).

Per record only cheap, raw columns are read and grouped on; text clean-up, the verdict
mapping and the skip reasons are computed once per group (see sources.FlowSource)."""

from __future__ import annotations

from .checks import l4_checks

REQUIRED = ("srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets", "bytes",
            "start", "end", "action", "log_status")


def matches(columns: dict[str, str]) -> bool:
    return all(c in columns for c in ("srcaddr", "dstaddr", "dstport", "protocol", "start"))


def _col(columns: dict[str, str], name: str, default: str = "NULL") -> str:
    return f'"{name}"' if name in columns else default


DUPLICATE_REASON = "same traffic recorded at the other interface (flow-direction)"


def _is_integer(type_: str | None) -> bool:
    return (type_ or "").upper() in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT",
                                     "USMALLINT", "UINTEGER", "UBIGINT", "HUGEINT")


def observation_point(columns: dict[str, str]) -> str | None:
    """Traffic between two logged interfaces is recorded twice, egress at the sender and
    ingress at the receiver: with flow-direction known, counted once."""
    return "r_flow_dir" if "flow_direction" in columns else None


def raw_columns(columns: dict[str, str]) -> dict[str, str]:
    """name -> expression over the file's columns, evaluated per record."""
    c = lambda n, d="NULL": _col(columns, n, d)  # noqa: E731
    return {
        "r_src": f"CAST({c('srcaddr')} AS VARCHAR)",
        "r_dst": f"CAST({c('dstaddr')} AS VARCHAR)",
        # pkt-srcaddr/pkt-dstaddr: the address on the packet (the pod behind an ENI's
        # primary address, a NAT or a transit gateway); '-' when the same.
        "r_pkt_src": f"CAST({c('pkt_srcaddr')} AS VARCHAR)",
        "r_pkt_dst": f"CAST({c('pkt_dstaddr')} AS VARCHAR)",
        "src_port": f"TRY_CAST({c('srcport')} AS INTEGER)",
        "dst_port": f"TRY_CAST({c('dstport')} AS INTEGER)",
        # an integer protocol column is grouped on as it is: casting every record to text
        # costs more than the whole per-group clean-up
        "r_proto": (f"{c('protocol')}" if _is_integer(columns.get("protocol"))
                    else f"CAST({c('protocol')} AS VARCHAR)"),
        "r_action": f"CAST({c('action')} AS VARCHAR)",
        "r_status": f"CAST({c('log_status')} AS VARCHAR)",
        "is_reply": "NULL::BOOLEAN",
        "tcp_flags": f"TRY_CAST({c('tcp_flags')} AS INTEGER)",
        **({"r_flow_dir": "CAST(\"flow_direction\" AS VARCHAR)"}
           if "flow_direction" in columns else {}),
    }


def measures(columns: dict[str, str]) -> dict[str, str]:
    return {
        "packets": f"TRY_CAST({_col(columns, 'packets')} AS BIGINT)",
        "bytes": f"TRY_CAST({_col(columns, 'bytes')} AS BIGINT)",
        "t_start": f"TRY_CAST({_col(columns, 'start')} AS DOUBLE)",
        "t_end": f"TRY_CAST({_col(columns, 'end')} AS DOUBLE)",
    }


_SRC = "NULLIF(trim(coalesce(NULLIF(trim(r_pkt_src), '-'), r_src)), '-')"
_DST = "NULLIF(trim(coalesce(NULLIF(trim(r_pkt_dst), '-'), r_dst)), '-')"
_PROTO = "TRY_CAST(NULLIF(trim(CAST(r_proto AS VARCHAR)), '-') AS INTEGER)"


def post_columns() -> dict[str, str]:
    """name -> expression over raw_columns(), evaluated per group."""
    status = "upper(trim(r_status))"
    return {
        "src_ip": _SRC,
        "dst_ip": _DST,
        "proto": _PROTO,
        "observed": """CASE upper(trim(r_action)) WHEN 'ACCEPT' THEN 'allowed'
                       WHEN 'REJECT' THEN 'denied' ELSE 'unknown' END""",
        "skip_reason": f"""CASE
            WHEN {status} = 'NODATA' THEN 'NODATA record (no traffic in the window)'
            WHEN {status} = 'SKIPDATA' THEN 'SKIPDATA record (AWS dropped records)'
            WHEN {_SRC} IS NULL OR {_DST} IS NULL THEN 'missing address'
            {l4_checks(_PROTO)}
        END""",
    }
