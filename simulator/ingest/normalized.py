"""The project's own normalized flow table (schema.FLOW_SCHEMA), Parquet or CSV."""

from __future__ import annotations

from ..protocols import PROTO_NUMBER_SQL
from .schema import IDENTITY_COLUMNS, NORMALIZED_REQUIRED

REQUIRED = NORMALIZED_REQUIRED

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL")


def matches(columns: dict[str, str]) -> bool:
    return all(c in columns for c in REQUIRED)


def _epoch(col: str, columns: dict[str, str]) -> str:
    if col not in columns:
        return "NULL::DOUBLE"
    t = columns[col].upper()
    if t.startswith(_NUMERIC):
        return f'CAST("{col}" AS DOUBLE)'  # epoch seconds
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f'epoch(CAST("{col}" AS TIMESTAMPTZ))'
    return f'epoch(TRY_CAST("{col}" AS TIMESTAMPTZ))'


def _text(col: str, columns: dict[str, str]) -> str:
    if col not in columns:
        return "NULL::VARCHAR"
    if columns[col].upper().startswith(("MAP", "STRUCT")):
        return f'CAST(to_json("{col}") AS VARCHAR)'
    return f'NULLIF(CAST("{col}" AS VARCHAR), \'\')'


def _int(col: str, columns: dict[str, str], cast: str = "INTEGER") -> str:
    return f'TRY_CAST("{col}" AS {cast})' if col in columns else f"NULL::{cast}"


def raw_columns(columns: dict[str, str]) -> dict[str, str]:
    raw = {
        "r_src": _text("src_ip", columns),
        "r_dst": _text("dst_ip", columns),
        "src_port": f"coalesce({_int('src_port', columns)}, 0)",
        "dst_port": _int("dst_port", columns),
        "r_proto": _text("protocol", columns),
        "r_verdict": _text("verdict", columns),
        "r_trace": _text("policy_trace", columns),
        "is_reply": 'TRY_CAST("is_reply" AS BOOLEAN)' if "is_reply" in columns
        else "NULL::BOOLEAN",
        "tcp_flags": _int("tcp_flags", columns),
        "r_bad_time": f"{_epoch('start_time', columns)} IS NULL",
    }
    raw.update({c: _text(c, columns) for c in IDENTITY_COLUMNS})
    return raw


def measures(columns: dict[str, str]) -> dict[str, str]:
    return {
        "packets": f"coalesce({_int('packets', columns, 'BIGINT')}, 1)",
        "bytes": f"coalesce({_int('bytes', columns, 'BIGINT')}, 0)",
        "t_start": _epoch("start_time", columns),
        "t_end": _epoch("end_time", columns),
    }


_PROTO = PROTO_NUMBER_SQL.format(col="trim(r_proto)")


def post_columns() -> dict[str, str]:
    verdict = "upper(trim(r_verdict))"
    return {
        "src_ip": "trim(r_src)",
        "dst_ip": "trim(r_dst)",
        "proto": _PROTO,
        "policy_trace": "r_trace",
        "observed": f"""CASE
            WHEN {verdict} IN ('ALLOWED', 'ALLOW', 'ACCEPT', 'FORWARDED') THEN 'allowed'
            WHEN {verdict} IN ('DENIED', 'DENY', 'REJECT', 'DROPPED') THEN 'denied'
            ELSE 'unknown' END""",
        "skip_reason": f"""CASE
            WHEN r_src IS NULL OR r_dst IS NULL THEN 'missing address'
            WHEN {_PROTO} IS NULL THEN 'missing or invalid protocol'
            WHEN {_PROTO} IN (6, 17, 132) AND dp IS NULL THEN 'missing or invalid port'
            WHEN sp NOT BETWEEN -1 AND 65535 OR dp NOT BETWEEN -1 AND 65535
                THEN 'port out of range'
            WHEN r_bad_time THEN 'missing or invalid start_time'
        END""",
        **{c: c for c in IDENTITY_COLUMNS},
    }
