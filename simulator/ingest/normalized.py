"""The project's own normalized flow table (schema.FLOW_SCHEMA), Parquet or CSV."""

from __future__ import annotations

from ..protocols import PROTO_NUMBER_SQL
from .schema import IDENTITY_COLUMNS, NORMALIZED_REQUIRED

REQUIRED = NORMALIZED_REQUIRED

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE")


def matches(columns: dict[str, str]) -> bool:
    return all(c in columns for c in REQUIRED)


def _epoch(col: str, columns: dict[str, str]) -> str:
    if col not in columns:
        return "NULL::DOUBLE"
    t = columns[col].upper()
    if t.startswith(_NUMERIC) or t.startswith("DECIMAL"):
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


def skip_reason(columns: dict[str, str]) -> str:
    proto = PROTO_NUMBER_SQL.format(col='"protocol"')
    return f"""CASE
        WHEN {_text('src_ip', columns)} IS NULL OR {_text('dst_ip', columns)} IS NULL
            THEN 'missing address'
        WHEN {proto} IS NULL THEN 'missing or invalid protocol'
        WHEN {proto} IN (6, 17, 132) AND {_int('dst_port', columns)} IS NULL
            THEN 'missing or invalid port'
        WHEN {_int('src_port', columns)} NOT BETWEEN 0 AND 65535
            OR {_int('dst_port', columns)} NOT BETWEEN 0 AND 65535 THEN 'port out of range'
        WHEN {_epoch('start_time', columns)} IS NULL THEN 'missing or invalid start_time'
    END"""


def select(reader: str, columns: dict[str, str]) -> str:
    verdict = f"upper({_text('verdict', columns)})"
    identity = ",\n            ".join(f"{_text(c, columns)} AS {c}" for c in IDENTITY_COLUMNS)
    return f"""
        SELECT
            {_epoch('start_time', columns)} AS t_start,
            {_epoch('end_time', columns)} AS t_end,
            trim({_text('src_ip', columns)}) AS src_ip,
            trim({_text('dst_ip', columns)}) AS dst_ip,
            coalesce({_int('src_port', columns)}, 0) AS src_port,
            coalesce({_int('dst_port', columns)}, 0) AS dst_port,
            {PROTO_NUMBER_SQL.format(col='"protocol"')} AS proto,
            coalesce({_int('packets', columns, 'BIGINT')}, 1) AS packets,
            coalesce({_int('bytes', columns, 'BIGINT')}, 0) AS bytes,
            CASE WHEN {verdict} IN ('ALLOWED', 'ALLOW', 'ACCEPT', 'FORWARDED') THEN 'allowed'
                 WHEN {verdict} IN ('DENIED', 'DENY', 'REJECT', 'DROPPED') THEN 'denied'
                 ELSE 'unknown' END AS observed,
            {'TRY_CAST("is_reply" AS BOOLEAN)' if 'is_reply' in columns else 'NULL::BOOLEAN'}
                AS is_reply,
            {_int('tcp_flags', columns)} AS tcp_flags,
            {skip_reason(columns)} AS skip_reason,
            {identity}
        FROM {reader}"""
