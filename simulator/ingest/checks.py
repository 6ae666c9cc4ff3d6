"""Skip-reason rules that every format shares, as SQL CASE branches over the grouped
columns (sp, dp: the folded ports)."""

from __future__ import annotations


def l4_checks(proto: str) -> str:
    """Protocol and ports: missing, invalid or out of range."""
    return f"""WHEN {proto} IS NULL THEN 'missing or invalid protocol'
            WHEN {proto} IN (6, 17, 132) AND (sp IS NULL OR dp IS NULL)
                THEN 'missing or invalid port'
            WHEN sp NOT BETWEEN -1 AND 65535 OR dp NOT BETWEEN -1 AND 65535
                THEN 'port out of range'"""
