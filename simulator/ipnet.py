"""IP addresses and CIDRs as sortable keys, so CIDR membership is a range join in SQL.

A key is the family digit and the address as fixed-width lowercase hex ("4" + 8 digits,
"6" + 32 digits): string order equals numeric order within a family, and no IPv4 key lies
between IPv6 bounds or the reverse, so a CIDR match is a pure range join. IPv4 keys are
computed in SQL (vectorised); IPv6 text has too many spellings for SQL, so distinct IPv6
strings go through Python's ipaddress once each.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import duckdb

from . import db

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_RE = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"


@dataclass(frozen=True)
class CidrRange:
    family: int  # 4 or 6
    lo: str
    hi: str
    text: str


def key_of(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    width = 8 if addr.version == 4 else 32
    return f"{addr.version}{int(addr):0{width}x}"


def canonical_ip(text: str) -> str | None:
    """The canonical spelling of an IP address, or None if it is not one."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def parse_cidr(text: str) -> CidrRange:
    """Parse a CIDR; host bits are masked as the API server does. Raises ValueError."""
    if "/" not in text:
        raise ValueError("not a CIDR (missing /prefix)")
    net = ipaddress.ip_network(text.strip(), strict=False)
    return CidrRange(net.version, key_of(net.network_address), key_of(net.broadcast_address),
                     str(net))


def _ipv6_canon(text: str) -> str | None:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        return None


def _ipv6_key(text: str) -> str | None:
    try:
        return key_of(ipaddress.IPv6Address(text))
    except ValueError:
        return None


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Define ip_canon(s), ip_family(s) and ip_key(s) on a DuckDB connection."""
    con.create_function("ipv6_canon", _ipv6_canon, ["VARCHAR"], "VARCHAR",
                        side_effects=False)
    con.create_function("ipv6_key", _ipv6_key, ["VARCHAR"], "VARCHAR", side_effects=False)
    db.run(con, f"""
        CREATE OR REPLACE MACRO ip_family(s) AS
            CASE WHEN regexp_full_match(s, '{IPV4_RE}') THEN 4
                 WHEN contains(s, ':') AND ipv6_key(s) IS NOT NULL THEN 6 END;
        CREATE OR REPLACE MACRO ip_canon(s) AS
            CASE ip_family(s) WHEN 4 THEN s WHEN 6 THEN ipv6_canon(s) END;
        CREATE OR REPLACE MACRO ip_key(s) AS
            CASE ip_family(s)
                WHEN 4 THEN printf('4%02x%02x%02x%02x',
                    split_part(s, '.', 1)::INT, split_part(s, '.', 2)::INT,
                    split_part(s, '.', 3)::INT, split_part(s, '.', 4)::INT)
                WHEN 6 THEN ipv6_key(s) END;
    """)
