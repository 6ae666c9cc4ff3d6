"""The project's own normalized flow table (schema.FLOW_SCHEMA), Parquet or CSV."""

from __future__ import annotations

from collections.abc import Callable

from .checks import counter_sql, epoch_sql, family, l4_checks, names_sql, port_sql, proto_sql
from .schema import IDENTITY_COLUMNS, NORMALIZED_REQUIRED

REQUIRED = NORMALIZED_REQUIRED



def matches(columns: dict[str, str]) -> bool:
    return all(c in columns for c in REQUIRED)


def _epoch(col: str, columns: dict[str, str]) -> str:
    """Epoch seconds from a number (seconds), a timestamp or text holding either."""
    return epoch_sql(f'"{col}"', columns[col]) if col in columns else "NULL::DOUBLE"


def _text(col: str, columns: dict[str, str]) -> str:
    if col not in columns:
        return "NULL::VARCHAR"
    if columns[col].upper().startswith(("MAP", "STRUCT")):
        return f'CAST(to_json("{col}") AS VARCHAR)'
    return f'NULLIF(CAST("{col}" AS VARCHAR), \'\')'


def _int(col: str, columns: dict[str, str], cast: str = "INTEGER") -> str:
    return f'TRY_CAST("{col}" AS {cast})' if col in columns else f"NULL::{cast}"


def _strict(col: str, columns: dict[str, str], strict: Callable[[str, str | None], str],
            absent: str) -> str:
    return strict(f'"{col}"', columns[col]) if col in columns else absent


def raw_columns(columns: dict[str, str]) -> dict[str, str]:
    raw = {
        "r_src": _text("src_ip", columns),
        "r_dst": _text("dst_ip", columns),
        "src_port": f"coalesce({_strict('src_port', columns, port_sql, 'NULL::INTEGER')}, 0)",
        "dst_port": _strict("dst_port", columns, port_sql, "NULL::INTEGER"),
        # a float column: 6.0 is 6, 6.5 is no protocol (-1), decided per record
        "r_proto": (proto_sql('"protocol"', columns["protocol"])
                    if family(columns.get("protocol")) == "float"
                    else _text("protocol", columns)),
        "r_verdict": _text("verdict", columns),
        "r_trace": _text("policy_trace", columns),
        **{f"r_{c}": (names_sql(f'string_split({_text(c, columns)}, \',\')')
                      if c in columns else "NULL::VARCHAR")
           for c in ("src_names", "dst_names")},
        **{f"r_{c}": _text(c, columns) for c in ("src_service", "dst_service")},
        "is_reply": 'TRY_CAST("is_reply" AS BOOLEAN)' if "is_reply" in columns
        else "NULL::BOOLEAN",
        "tcp_flags": _int("tcp_flags", columns),
        "r_no_time": f"{_epoch('start_time', columns)} IS NULL",
    }
    raw.update({c: _text(c, columns) for c in IDENTITY_COLUMNS})
    return raw


def measures(columns: dict[str, str]) -> dict[str, str]:
    # counters a table does not give are unknown (n/a), never 0
    return {
        "packets": _strict("packets", columns, counter_sql, "NULL::BIGINT"),
        "bytes": _strict("bytes", columns, counter_sql, "NULL::BIGINT"),
        "t_start": _epoch("start_time", columns),
        "t_end": _epoch("end_time", columns),
    }


_PROTO = proto_sql("r_proto")


def post_columns() -> dict[str, str]:
    verdict = "upper(trim(r_verdict))"
    return {
        "src_ip": "trim(r_src)",
        "dst_ip": "trim(r_dst)",
        "proto": _PROTO,
        "policy_trace": "r_trace",
        "src_names": "r_src_names",
        "dst_names": "r_dst_names",
        "src_service": "r_src_service",
        "dst_service": "r_dst_service",
        "observed": f"""CASE
            WHEN {verdict} IN ('ALLOWED', 'ALLOW', 'ACCEPT', 'FORWARDED') THEN 'allowed'
            WHEN {verdict} IN ('DENIED', 'DENY', 'REJECT', 'DROPPED') THEN 'denied'
            ELSE 'unknown' END""",
        "skip_reason": f"""CASE
            WHEN r_src IS NULL OR r_dst IS NULL THEN 'missing address'
            {l4_checks("proto")}
            WHEN r_no_time THEN 'missing start_time'
        END""",
        **{c: c for c in IDENTITY_COLUMNS},
    }
