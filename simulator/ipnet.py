"""IP addresses and CIDRs as sortable keys, so CIDR membership is a range join in SQL.

A key is the family digit and the address as fixed-width lowercase hex ("4" + 8 digits,
"6" + 32 digits): string order equals numeric order within a family, and no IPv4 key lies
between IPv6 bounds or the reverse, so a CIDR match is a pure range join. IPv4 keys are
computed in SQL (vectorised); IPv6 text has too many spellings for SQL, so each distinct
IPv6 string goes through Python's ipaddress once.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # manifests are read before DuckDB and Arrow are imported
    import duckdb
    import pyarrow as pa

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


# an IPv4 address already in canonical spelling (no leading zeros): most of a snapshot's
_CANONICAL_V4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                           r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


def canonical_ip(text: str) -> str | None:
    """The canonical spelling of an IP address, or None if it is not one."""
    if _CANONICAL_V4.fullmatch(text):
        return text
    if "%" in text:  # an IPv6 zone id: a link, not an address a policy can match
        return None
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


# the same few CIDRs recur in every namespace's policies, and in every replayed fix
@lru_cache(maxsize=8192)
def parse_cidr(text: str) -> CidrRange:
    """Parse a CIDR; host bits are masked as the API server does. Raises ValueError."""
    if "/" not in text:
        raise ValueError("not a CIDR (missing /prefix)")
    if "%" in text:  # an IPv6 zone id names a link, not a range of addresses
        raise ValueError("not a CIDR (a zone id)")
    net = ipaddress.ip_network(text.strip(), strict=False)
    return CidrRange(net.version, key_of(net.network_address), key_of(net.broadcast_address),
                     str(net))


def ipv6_table(texts: list[str]) -> pa.Table:
    """(ip_raw, ip, key) for IPv6 spellings; ip and key are null when not an address."""
    import pyarrow as pa

    ips: list[str | None] = []
    keys: list[str | None] = []
    for text in texts:
        try:
            if "%" in text:  # a zone id names a link, not an address a policy can match
                raise ValueError(text)
            addr = ipaddress.IPv6Address(text)
        except ValueError:
            ips.append(None)
            keys.append(None)
            continue
        ips.append(str(addr))
        keys.append(key_of(addr))
    return pa.table({"ip_raw": pa.array(texts, pa.string()), "ip": pa.array(ips, pa.string()),
                     "key": pa.array(keys, pa.string())})


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Define ipv4_key(s): the key of a canonical dotted-quad IPv4 address, else null."""
    from . import db

    db.run(con, f"""
        CREATE OR REPLACE MACRO ipv4_key(s) AS
            CASE WHEN regexp_full_match(s, '{IPV4_RE}')
                 -- one split and integer arithmetic: printf per octet took twice as long
                 THEN '4' || lower(lpad(to_hex(list_reduce(
                    list_transform(string_split(s, '.'), lambda x: x::UBIGINT),
                    lambda a, b: a * 256 + b)), 8, '0')) END
    """)
