"""AWS VPC flow logs, Parquet delivery (field names with underscores).

Per record only cheap, raw columns are read and grouped on; text clean-up, the verdict
mapping and the skip reasons are computed once per group (see sources.FlowSource)."""

from __future__ import annotations

from collections.abc import Callable

from .checks import counter_sql, epoch_sql, family, l4_checks, port_sql, proto_sql

REQUIRED = ("srcaddr", "dstaddr", "srcport", "dstport", "protocol", "packets", "bytes",
            "start", "end", "action", "log_status")


def matches(columns: dict[str, str]) -> bool:
    return all(c in columns for c in ("srcaddr", "dstaddr", "dstport", "protocol", "start"))


def _col(columns: dict[str, str], name: str, default: str = "NULL") -> str:
    return f'"{name}"' if name in columns else default


DUPLICATE_REASON = "same traffic recorded at the other interface (flow-direction)"
NODATA_REASON = "NODATA record (no traffic in the window)"
# Skipped by design, nothing left unjudged: a window without traffic, a second sighting.
BENIGN_REASONS = (NODATA_REASON, DUPLICATE_REASON)


# Per record, the action and the log status are small codes: all that the per-group
# expressions need of them (grouping 10M records on two codes instead of two strings
# saved 0.1 CPU-s). The usual spellings are compared as they are; only another one
# (' accept', 'Reject') pays for trim and upper.
ACTIONS = {"ACCEPT": 1, "REJECT": 2}  # else 0: no verdict recorded
STATUSES = {"OK": 0, "NODATA": 1, "SKIPDATA": 2}  # else 0


def code_sql(text: str | None, codes: dict[str, int]) -> str:
    """The code of `text` (a VARCHAR expression; None: the field is absent, code 0)."""
    if text is None:
        return "0::UTINYINT"
    exact = " ".join(f"WHEN '{k}' THEN {v}" for k, v in codes.items())
    return (f"CASE {text} {exact} ELSE CASE upper(trim({text})) {exact} ELSE 0 END END"
            "::UTINYINT")


def _is_integer(type_: str | None) -> bool:
    return (type_ or "").upper() in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT",
                                     "USMALLINT", "UINTEGER", "UBIGINT", "HUGEINT")


def _typed(columns: dict[str, str], name: str,
           strict: Callable[[str, str | None], str], absent: str) -> str:
    return strict(f'"{name}"', columns[name]) if name in columns else absent


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
        "src_port": _typed(columns, "srcport", port_sql, "NULL::INTEGER"),
        "dst_port": _typed(columns, "dstport", port_sql, "NULL::INTEGER"),
        # an integer protocol column is grouped on as it is: casting every record to text
        # costs more than the whole per-group clean-up
        "r_proto": (f"{c('protocol')}" if _is_integer(columns.get("protocol"))
                    # a float column: 6.0 is 6, 6.5 is no protocol (-1), decided per record
                    else proto_sql('"protocol"', columns["protocol"])
                    if family(columns.get("protocol")) == "float"
                    else f"CAST({c('protocol')} AS VARCHAR)"),
        "r_action": code_sql('CAST("action" AS VARCHAR)' if "action" in columns else None,
                             ACTIONS),
        "r_status": code_sql('CAST("log_status" AS VARCHAR)' if "log_status" in columns
                             else None, STATUSES),
        "is_reply": "NULL::BOOLEAN",
        "tcp_flags": f"TRY_CAST({c('tcp_flags')} AS INTEGER)",
        **({"r_flow_dir": "CAST(\"flow_direction\" AS VARCHAR)"}
           if "flow_direction" in columns else {}),
    }


def measures(columns: dict[str, str]) -> dict[str, str]:
    return {
        "packets": _typed(columns, "packets", counter_sql, "NULL::BIGINT"),
        "bytes": _typed(columns, "bytes", counter_sql, "NULL::BIGINT"),
        "t_start": _typed(columns, "start", epoch_sql, "NULL::DOUBLE"),
        "t_end": _typed(columns, "end", epoch_sql, "NULL::DOUBLE"),
    }


_SRC = "NULLIF(trim(coalesce(NULLIF(trim(r_pkt_src), '-'), r_src)), '-')"
_DST = "NULLIF(trim(coalesce(NULLIF(trim(r_pkt_dst), '-'), r_dst)), '-')"
# per group: the raw protocol as text (an integer column's value or the text field)
_PROTO = proto_sql("r_proto")


def proto_for(columns: dict[str, str]) -> str:
    """`proto` of a group: r_proto is an integer already where the file's protocol column
    is a number (see raw_columns), and then no text of it is made per group."""
    numeric = _is_integer(columns.get("protocol")) or family(columns.get("protocol")) == "float"
    return proto_sql("r_proto", "INTEGER") if numeric else _PROTO


def post_columns() -> dict[str, str]:
    """name -> expression over raw_columns(), evaluated per group."""
    return {
        "src_ip": _SRC,
        "dst_ip": _DST,
        "proto": _PROTO,
        "observed": f"""CASE r_action WHEN {ACTIONS['ACCEPT']} THEN 'allowed'
                        WHEN {ACTIONS['REJECT']} THEN 'denied' ELSE 'unknown' END""",
        "skip_reason": f"""CASE
            WHEN r_status = {STATUSES['NODATA']} THEN '{NODATA_REASON}'
            WHEN r_status = {STATUSES['SKIPDATA']} THEN 'SKIPDATA record (AWS dropped records)'
            WHEN {_SRC} IS NULL OR {_DST} IS NULL THEN 'missing address'
            {l4_checks("proto")}
        END""",
    }
