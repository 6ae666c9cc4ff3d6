"""Packet captures: classic pcap (µs or ns, either byte order) and pcapng, gzip-compressed
or not.

A capture is read once, in Python, straight from the file format (no dissection library:
the headers are unpacked with struct), and its packets are aggregated into connections:
one entry per 5-tuple, both directions folded together. The initiator is the side that
sent a SYN without ACK (SCTP INIT, ICMP echo request), else the side that did not send
the SYN-ACK (INIT-ACK, echo reply), else the side of the first packet seen. A TCP
connection with neither SYN nor SYN-ACK was already open when the capture started
(mid-connection): its rows carry is_reply = NULL and the pipeline orients it by port, as
a guess.

The connections are written as one normalized-schema Parquet per capture (one row per
direction that sent packets; is_reply false for the initiator's, true for the reply's;
tcp_flags SYN=2 on the initiator's row and SYN-ACK=18 on the reply's when seen) and read
through the normalized format's SQL. Packets that cannot be replayed (ARP, LLDP, other
link types, non-first fragments, packets cut before their ports) and a capture cut short
or corrupt (read up to that point) become rows with a skip_reason, one row per packet
(written once with a count), so they show in the run summary's skipped counts.

Link types: Ethernet (802.1Q/QinQ VLAN tags), Linux cooked v1/v2 (SLL, SLL2), raw IP
(12, 14, 101, 228, 229), BSD loopback (0, 108), PPP (9, 50) and NFLOG (239). VXLAN
(UDP 4789 and 8472) and Geneve (UDP 6081) are decapsulated: the inner packet is the
flow. IPv6 extension headers (hop-by-hop, routing, fragment, destination options, AH,
mobility) are skipped to the L4 header.
"""

from __future__ import annotations

import gzip
import mmap
import os
import socket
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import scratch
from ..errors import InputError, UnusableInput
from . import normalized

REQUIRED = "a packet capture (pcap or pcapng, optionally gzip-compressed)"
OPTIONS = ("spool_dir",)

# pcap magic -> (byte order, fraction units per second)
_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000), b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000), b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_MAX_RECORD = 1 << 18  # libpcap's largest snap length; a larger file snaplen raises it

# What the Parquet holds (column -> DuckDB type, as normalized.raw_columns expects).
COLUMN_TYPES = {
    "start_time": "TIMESTAMP WITH TIME ZONE", "end_time": "TIMESTAMP WITH TIME ZONE",
    "src_ip": "VARCHAR", "dst_ip": "VARCHAR", "src_port": "INTEGER", "dst_port": "INTEGER",
    "protocol": "VARCHAR", "packets": "BIGINT", "bytes": "BIGINT", "is_reply": "BOOLEAN",
    "tcp_flags": "INTEGER",
}

_PROTO_NAMES = {6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP", 58: "ICMPv6"}
_ETHERTYPES = {0x0806: "ARP", 0x8035: "RARP", 0x88CC: "LLDP", 0x888E: "EAPOL",
               0x8847: "MPLS", 0x8848: "MPLS", 0x8863: "PPPoE discovery",
               0x8864: "PPPoE session", 0x88E5: "MACsec", 0x88F7: "PTP", 0x8809: "LACP",
               0x9000: "loopback test", 0x22F0: "AVTP", 0x8902: "CFM"}
_LINKTYPES = {271: "VSOCK", 147: "user", 127: "802.11 radiotap", 105: "802.11",
              220: "USB", 189: "USB", 187: "Bluetooth", 201: "Bluetooth", 8: "SLIP",
              104: "Cisco HDLC", 6: "Token Ring", 10: "FDDI"}
_VLAN = (0x8100, 0x88A8, 0x9100, 0x9200)
_VXLAN_PORTS = (4789, 8472)
_GENEVE_PORT = 6081
_IP6_EXT = (0, 43, 44, 51, 60, 135, 139, 140)

# Per-direction entry (a list, updated in place per packet):
_PK, _BY, _FS, _FF, _LS, _LF, _MARK, _PNO = range(8)
# _MARK bits: 1 FIN, 4 RST, 2 opened (SYN without ACK, SCTP INIT, ICMP echo request),
# 32 answered the opening (SYN-ACK, INIT-ACK, echo reply).
_OPEN, _ANSWER = 2, 32

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_IP4 = struct.Struct(">BxHxxHxB2x4s4s")   # vihl, total length, frag, proto, src, dst
_IP6 = struct.Struct(">B3xHBx16s16s")     # version, payload length, next header, src, dst
_PORTS = struct.Struct(">HH")
# Ethernet + IPv4 (no options) + the first 4 bytes of TCP/UDP: the fast path.
_FAST = struct.Struct(">12xHBxH2xHxB2x4s4sHH")
_FAST_LEN = _FAST.size  # 38

Parsed = tuple[int, bytes, int | None, bytes, int | None, int, int]


class _Stop(Exception):
    """The capture cannot be read past this point (reason names the byte offset)."""


# --- detection and the text-format interface --------------------------------------------

def sniff_bytes(raw: bytes) -> bool:
    return raw[:4] in _PCAP_MAGIC or raw[:4] == _PCAPNG_MAGIC


def sniff(head: str, spool_dir: str | None = None) -> bool:
    return False  # captures are binary: detected by sniff_bytes


def describe(head: str, path: Path, spool_dir: str | None = None) -> dict[str, str]:
    """Reads the whole capture and writes its connections as Parquet; returns the params
    (the converted file and its columns)."""
    out_dir = spool_dir or _own_spool()
    fd, out = tempfile.mkstemp(prefix=f"pcap-{Path(path).name[:40]}-", suffix=".parquet",
                               dir=out_dir)
    os.close(fd)
    try:
        stats = convert(Path(path), out, out_dir)
    except BaseException:
        os.unlink(out)
        raise
    params = {"parquet": out, "skip_reason": "VARCHAR", "place": "VARCHAR",
              "repeat": "BIGINT", **COLUMN_TYPES}
    if stats.get("warning"):
        params["warning"] = str(stats["warning"])
    return params


_SPOOL: list[str] = []


def _own_spool() -> str:
    if not _SPOOL:
        _SPOOL.append(scratch.make("netpol-pcap-"))
    return _SPOOL[0]


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def reader(files: list[str], params: dict[str, str], numbered: bool) -> str:
    # One capture per group: its converted Parquet is named in the params. A row of
    # skipped packets stands for `repeat` of them: expanded here so that the summary
    # counts packets, not rows; when numbered (examples of skipped records) it stays one
    # row, its place naming the first packet and the count.
    pq = f"read_parquet({_q(params['parquet'])})"
    name = _q(files[0] if files else "")
    if numbered:
        return (f"(SELECT * EXCLUDE (repeat, place), {name} AS filename, "
                f"place || CASE WHEN repeat > 1 THEN ' and ' || (repeat - 1) || ' more' "
                f"ELSE '' END AS place FROM {pq})")
    return (f"(SELECT * EXCLUDE (repeat, _n) FROM (SELECT *, unnest(range(repeat)) AS _n "
            f"FROM {pq}))")


def raw_columns(params: dict[str, str]) -> dict[str, str]:
    return {**normalized.raw_columns(params), "r_skip": "skip_reason"}


def measures(params: dict[str, str]) -> dict[str, str]:
    return normalized.measures(params)


def post_columns() -> dict[str, str]:
    post = dict(normalized.post_columns())
    post["skip_reason"] = f"coalesce(r_skip, {post['skip_reason']})"
    return post


# --- header parsing (the general path) ---------------------------------------------------

def _cut(what: str) -> str:
    return f"packet cut inside the {what} (snap length)"


def _l4(buf: Any, p: int, end: int, proto: int, src: bytes, dst: bytes,
        length: int, depth: int) -> Parsed | str:
    mark = 0
    sp: int | None
    dp: int | None
    if proto == 6:
        if p + 4 > end:
            return _cut("TCP header")
        sp, dp = _PORTS.unpack_from(buf, p)
        if p + 14 <= end:
            fl = buf[p + 13]
            mark = fl & 5
            if fl & 2:
                mark |= _ANSWER if fl & 16 else _OPEN
    elif proto == 17:
        if p + 4 > end:
            return _cut("UDP header")
        sp, dp = _PORTS.unpack_from(buf, p)
        if depth < 3:
            inner = _overlay(buf, p, end, dp, depth)
            if inner is not None:
                return inner
    elif proto == 132:
        if p + 4 > end:
            return _cut("SCTP header")
        sp, dp = _PORTS.unpack_from(buf, p)
        if p + 13 <= end:
            chunk = buf[p + 12]
            mark = _OPEN if chunk == 1 else _ANSWER if chunk == 2 else 0
    elif proto == 1 or proto == 58:
        sp = dp = None
        if p < end:
            t = buf[p]
            if t == (8 if proto == 1 else 128):
                mark = _OPEN
            elif t == (0 if proto == 1 else 129):
                mark = _ANSWER
    else:
        sp = dp = None
    return proto, src, sp, dst, dp, mark, length


def _overlay(buf: Any, p: int, end: int, dp: int, depth: int) -> Parsed | str | None:
    """The inner packet of a VXLAN or Geneve datagram (UDP header at p), else None."""
    if dp in _VXLAN_PORTS:
        if p + 16 <= end and buf[p + 8] & 0x08:
            return _ether(buf, p + 16, end, depth + 1)
    elif dp == _GENEVE_PORT and p + 16 <= end and buf[p + 8] >> 6 == 0:
        start = p + 16 + (buf[p + 8] & 0x3F) * 4
        ptype = _U16.unpack_from(buf, p + 10)[0]
        if ptype == 0x6558:
            return _ether(buf, start, end, depth + 1)
        if ptype in (0x0800, 0x86DD):
            return _ethertype(ptype, buf, start, end, depth + 1)
    return None


def _ip4(buf: Any, off: int, end: int, depth: int = 0) -> Parsed | str:
    if end - off < 20:
        return _cut("IPv4 header")
    vihl, total, frag, proto, src, dst = _IP4.unpack_from(buf, off)
    ihl = (vihl & 15) * 4
    if vihl >> 4 != 4 or ihl < 20:
        return "malformed IPv4 header"
    if frag & 0x1FFF:
        return "IP fragment after the first (no L4 header)"
    return _l4(buf, off + ihl, end, proto, src, dst, total or end - off, depth)


def _ip6(buf: Any, off: int, end: int, depth: int = 0) -> Parsed | str:
    if end - off < 40:
        return _cut("IPv6 header")
    v, plen, nh, src, dst = _IP6.unpack_from(buf, off)
    if v >> 4 != 6:
        return "malformed IPv6 header"
    p = off + 40
    while nh in _IP6_EXT:
        if p + 8 > end:
            return _cut("IPv6 extension headers")
        if nh == 44:
            if _U16.unpack_from(buf, p + 2)[0] & 0xFFF8:
                return "IP fragment after the first (no L4 header)"
            nh, p = buf[p], p + 8
        elif nh == 51:
            nh, p = buf[p], p + (buf[p + 1] + 2) * 4
        else:
            nh, p = buf[p], p + (buf[p + 1] + 1) * 8
    if nh == 59:
        return "IPv6 packet with no next header"
    return _l4(buf, p, end, nh, src, dst, plen + 40 if plen else end - off, depth)


def _ip(buf: Any, off: int, end: int, depth: int = 0) -> Parsed | str:
    if off >= end:
        return _cut("IP header")
    v = buf[off] >> 4
    if v == 4:
        return _ip4(buf, off, end, depth)
    if v == 6:
        return _ip6(buf, off, end, depth)
    return f"not an IP packet (version {v}) on a raw IP link"


def _ethertype(et: int, buf: Any, off: int, end: int, depth: int = 0) -> Parsed | str:
    while et in _VLAN:
        if off + 4 > end:
            return _cut("VLAN tag")
        et = _U16.unpack_from(buf, off + 2)[0]
        off += 4
    if et == 0x0800:
        return _ip4(buf, off, end, depth)
    if et == 0x86DD:
        return _ip6(buf, off, end, depth)
    if et < 0x0600:
        return "non-IP packet (802.3 LLC frame, e.g. STP)"
    return f"non-IP packet ({_ETHERTYPES.get(et) or f'EtherType 0x{et:04x}'})"


def _ether(buf: Any, off: int, end: int, depth: int = 0) -> Parsed | str:
    if end - off < 14:
        return _cut("Ethernet header")
    return _ethertype(_U16.unpack_from(buf, off + 12)[0], buf, off + 14, end, depth)


def _null(buf: Any, off: int, end: int, big: bool) -> Parsed | str:
    if end - off < 4:
        return _cut("loopback header")
    fam = _U32.unpack_from(buf, off)[0]
    if not big and fam > 0xFFFF:  # written in the capturing host's byte order
        fam = int.from_bytes(buf[off:off + 4], "little")
    if fam == 2:
        return _ip4(buf, off + 4, end)
    if fam in (10, 24, 28, 30):
        return _ip6(buf, off + 4, end)
    return f"non-IP packet (loopback address family {fam})"


def _ppp(buf: Any, off: int, end: int) -> Parsed | str:
    if end - off >= 2 and buf[off] == 0xFF and buf[off + 1] == 0x03:
        off += 2
    if off >= end:
        return _cut("PPP header")
    if buf[off] & 1:  # protocol field compressed to one byte
        proto, off = buf[off], off + 1
    elif off + 2 <= end:
        proto, off = _U16.unpack_from(buf, off)[0], off + 2
    else:
        return _cut("PPP header")
    if proto == 0x21:
        return _ip4(buf, off, end)
    if proto == 0x57:
        return _ip6(buf, off, end)
    return f"non-IP packet (PPP protocol 0x{proto:04x})"


def _nflog(buf: Any, off: int, end: int) -> Parsed | str:
    p = off + 4
    while p + 4 <= end:
        tlv_len = int.from_bytes(buf[p:p + 2], "little")
        tlv_type = int.from_bytes(buf[p + 2:p + 4], "little")
        if tlv_len < 4:
            return "malformed NFLOG record"
        if tlv_type == 9:  # NFULA_PAYLOAD
            return _ip(buf, p + 4, min(end, p + tlv_len))
        p += (tlv_len + 3) & ~3
    return "NFLOG record without a packet payload"


def decode(buf: Any, off: int, end: int, link: int) -> Parsed | str:
    """(proto, src, sport, dst, dport, mark, ip length) of one packet, or why not."""
    if link == 1:
        return _ether(buf, off, end)
    if link in (101, 12, 14):
        return _ip(buf, off, end)
    if link == 228:
        return _ip4(buf, off, end)
    if link == 229:
        return _ip6(buf, off, end)
    if link == 113:
        if end - off < 16:
            return _cut("Linux cooked header")
        return _ethertype(_U16.unpack_from(buf, off + 14)[0], buf, off + 16, end)
    if link == 276:
        if end - off < 20:
            return _cut("Linux cooked v2 header")
        return _ethertype(_U16.unpack_from(buf, off)[0], buf, off + 20, end)
    if link == 0:
        return _null(buf, off, end, False)
    if link == 108:
        return _null(buf, off, end, True)
    if link in (9, 50):
        return _ppp(buf, off, end)
    if link == 239:
        return _nflog(buf, off, end)
    name = _LINKTYPES.get(link)
    return f"non-IP link type {link}" + (f" ({name})" if name else "")


# --- aggregation --------------------------------------------------------------------------

class Capture:
    """Connections of one capture, built packet by packet."""

    def __init__(self) -> None:
        self.dirs: dict[tuple, list] = {}
        self.conns: list[tuple[list, list, tuple]] = []
        self.skips: dict[str, list] = {}  # reason -> [count, first packet number]
        self.problem: str | None = None  # why the walk stopped early (names the byte)
        # pcapng: (mul, div, offset µs) of each interface; µs = count * mul // div + offset
        self.clocks: list[tuple[int, int, int]] = []
        self.packets = 0
        # ports in the keys are byte-swapped (read little-endian by the fast path)
        self.swap = False

    def new(self, key: tuple, ts_a: int, ts_b: int, pno: int) -> list:
        proto, src, sp, dst, dp = key
        fwd = [0, 0, ts_a, ts_b, ts_a, ts_b, 0, pno]
        rev = [0, 0, None, None, None, None, 0, 0]
        self.dirs[key] = fwd
        self.dirs[(proto, dst, dp, src, sp)] = rev
        self.conns.append((fwd, rev, key))
        return fwd

    def add(self, r: Parsed | str, ts_a: int, ts_b: int, pno: int) -> None:
        if r.__class__ is str:
            s = self.skips.get(r)  # type: ignore[call-overload]
            if s is None:
                self.skips[r] = [1, pno]  # type: ignore[index]
            else:
                s[0] += 1
            return
        proto, src, sp, dst, dp, mark, length = r  # type: ignore[misc]
        if self.swap and sp is not None:  # ports as the fast path keys them
            table = _swap_table()
            sp, dp = table[sp], table[dp]  # type: ignore[index]
        key = (proto, src, sp, dst, dp)
        d = self.dirs.get(key)
        if d is None:
            d = self.new(key, ts_a, ts_b, pno)
        elif not d[0]:
            d[2] = ts_a
            d[3] = ts_b
            d[7] = pno
        d[0] += 1
        d[1] += length
        d[4] = ts_a
        d[5] = ts_b
        d[6] |= mark


def _orient(fwd: list, rev: list, proto: int) -> tuple[list, list, bool]:
    """(initiator, responder, known) of a connection."""
    fm, rm = fwd[_MARK], rev[_MARK]
    if fm & _OPEN and not rm & _OPEN:
        return fwd, rev, True
    if rm & _OPEN and not fm & _OPEN:
        return rev, fwd, True
    if rm & _ANSWER and not fm & _ANSWER:
        return fwd, rev, True
    if fm & _ANSWER and not rm & _ANSWER:
        return rev, fwd, True
    return fwd, rev, proto != 6  # TCP seen mid-connection: the pipeline guesses


# --- file walking -----------------------------------------------------------------------

def _fast_constants(swap: bool) -> tuple[int, int, tuple[int, ...], list[int]]:
    """The fast path reads network-order fields in the file's byte order (one unpack with
    the record header): (IPv4 EtherType, fragment-offset mask, overlay ports, the table
    that turns a 16-bit field into its value) as read that way."""
    table = _swap_table() if swap else _ident_table()
    ports = (_VXLAN_PORTS[0], _VXLAN_PORTS[1], _GENEVE_PORT)
    return table[0x0800], (0xFF1F if swap else 0x1FFF), tuple(table[p] for p in ports), table


_TABLES: dict[bool, list[int]] = {}


def _swap_table() -> list[int]:
    if True not in _TABLES:
        _TABLES[True] = [((i & 0xFF) << 8) | (i >> 8) for i in range(65536)]
    return _TABLES[True]


def _ident_table() -> list[int]:
    if False not in _TABLES:
        _TABLES[False] = list(range(65536))
    return _TABLES[False]


def _pcap(buf: Any, n: int, cap: Capture) -> None:
    """Walk a classic pcap."""
    if n < 24:
        raise _Stop(f"truncated capture at byte {n}: the 24-byte file header is cut short")
    order = _PCAP_MAGIC[bytes(buf[:4])][0]
    snaplen, linkfield = struct.unpack_from(order + "II", buf, 16)
    if linkfield & 0x03FF0000:
        raise _Stop(f"corrupt capture header at byte 20: link type field 0x{linkfield:08x} "
                    "has reserved bits set")
    link = linkfield & 0xFFFF
    maxrec = max(snaplen, _MAX_RECORD)
    rec = struct.Struct(order + "IIII").unpack_from
    # record header + Ethernet/IPv4/ports in one unpack; ports stay in file byte order
    both = struct.Struct(order + "IIII" + _FAST.format[1:]).unpack_from
    both_len = 16 + _FAST_LEN
    cap.swap = order == "<"
    et4, fragmask, overlay, value = _fast_constants(cap.swap)
    fast = link == 1
    dirs = cap.dirs
    get = dirs.get
    new = cap.new
    add = cap.add
    off = 24
    pno = 0
    try:
        while off + 16 <= n:
            if off + both_len <= n:
                ts_a, ts_b, incl, _o, et, vihl, total, frag, proto, src, dst, sp, dp = \
                    both(buf, off)
            else:
                ts_a, ts_b, incl, _o = rec(buf, off)
                et = -1
            if incl > maxrec:
                raise _Stop(f"corrupt capture at byte {off}: packet record {pno + 1} claims "
                            f"{incl:,} bytes")
            o = off + 16
            end = o + incl
            if end > n:
                raise _Stop(f"truncated capture at byte {off}: packet {pno + 1} cut short "
                            f"({n - o:,} of {incl:,} bytes)")
            pno += 1
            off = end
            if (et == et4 and vihl == 0x45 and fast and incl >= _FAST_LEN
                    and not frag & fragmask):
                if proto == 6:
                    if incl >= 48:
                        fl = buf[o + 47]
                        mark = fl & 5
                        if fl & 2:
                            mark |= 32 if fl & 16 else 2
                    else:
                        mark = 0
                elif proto == 17 and dp not in overlay:
                    mark = 0
                else:
                    add(_ip4(buf, o + 14, end), ts_a, ts_b, pno)
                    continue
                key = (proto, src, sp, dst, dp)
                d = get(key)
                if d is None:
                    d = new(key, ts_a, ts_b, pno)
                elif not d[0]:
                    d[2] = ts_a
                    d[3] = ts_b
                    d[7] = pno
                d[0] += 1
                d[1] += value[total] or incl - 14
                d[4] = ts_a
                d[5] = ts_b
                if mark:
                    d[6] |= mark
                continue
            add(decode(buf, o, end, link), ts_a, ts_b, pno)
        if off < n:
            raise _Stop(f"truncated capture at byte {off}: packet record header cut short "
                        f"({n - off} of 16 bytes)")
    finally:
        cap.packets = pno


def _pcapng(buf: Any, n: int, cap: Capture) -> None:
    """Walk a pcapng file. A packet's timestamp is kept as (raw count, interface number
    in cap.clocks); read_capture's stamp() turns it into µs."""
    off = 0
    pno = 0
    order = "<"
    links: list[int] = []  # link type of each interface of the current section
    first_iface = 0  # the section's first interface in cap.clocks
    ts_a = ts_b = 0
    add = cap.add
    dirs = cap.dirs
    get = dirs.get
    new = cap.new
    hdr = struct.Struct("<II").unpack_from
    epb = struct.Struct("<IIIIIII").unpack_from
    pkt = struct.Struct("<IIIII").unpack_from
    if n >= 12 and bytes(buf[8:12]) == b"\x1a\x2b\x3c\x4d":
        order = ">"
    cap.swap = order == "<"
    et4, fragmask, overlay, value = _fast_constants(cap.swap)
    # Enhanced Packet Block header + Ethernet/IPv4/ports in one unpack (sections in the
    # first section's byte order only: ports stay in that order)
    both = struct.Struct(order + "IIIIIII" + _FAST.format[1:]).unpack_from
    both_len = 28 + _FAST_LEN
    first_order = order
    try:
        while off < n:
            if off + both_len <= n:
                btype, blen, iface, hi, lo, caplen, _o, et, vihl, total, frag, proto, src, \
                    dst, sp, dp = both(buf, off)
            elif off + 28 <= n:
                btype, blen, iface, hi, lo, caplen, _o = epb(buf, off)
                et = -1
            else:
                btype = -1
            if (btype == 6 and blen >= 32 and not blen & 3 and off + blen <= n
                    and iface < len(links) and caplen <= blen - 32):
                # Enhanced Packet Block, well formed: the common case
                o = off + 28
                end = o + caplen
                off += blen
                pno += 1
                ts_a = hi << 32 | lo
                ts_b = first_iface + iface
                # the same fast path as _pcap's, inlined on purpose: a function call per
                # packet would cost a sizeable share of the per-packet budget
                if (et == et4 and vihl == 0x45 and caplen >= _FAST_LEN and not frag & fragmask
                        and links[iface] == 1 and order is first_order):
                    if proto == 6:
                        if caplen >= 48:
                            fl = buf[o + 47]
                            mark = fl & 5
                            if fl & 2:
                                mark |= 32 if fl & 16 else 2
                        else:
                            mark = 0
                    elif proto == 17 and dp not in overlay:
                        mark = 0
                    else:
                        add(_ip4(buf, o + 14, end), ts_a, ts_b, pno)
                        continue
                    key = (proto, src, sp, dst, dp)
                    d = get(key)
                    if d is None:
                        d = new(key, ts_a, ts_b, pno)
                    elif not d[0]:
                        d[2] = ts_a
                        d[3] = ts_b
                        d[7] = pno
                    d[0] += 1
                    d[1] += value[total] or caplen - 14
                    d[4] = ts_a
                    d[5] = ts_b
                    if mark:
                        d[6] |= mark
                    continue
                add(decode(buf, o, end, links[iface]), ts_a, ts_b, pno)
                continue
            if off + 12 > n:
                raise _Stop(f"truncated capture at byte {off}: block header cut short")
            btype, blen = hdr(buf, off)
            if btype == 0x0A0D0D0A:
                if off + 28 > n:
                    raise _Stop(f"truncated capture at byte {off}: section header cut short "
                                f"({n - off} of 28 bytes)")
                bom = bytes(buf[off + 8:off + 12])
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    raise _Stop(f"corrupt capture at byte {off + 8}: bad byte-order magic")
                hdr = struct.Struct(order + "II").unpack_from
                epb = struct.Struct(order + "IIIIIII").unpack_from
                pkt = struct.Struct(order + "IIIII").unpack_from
                btype, blen = hdr(buf, off)
                major, minor = struct.unpack_from(order + "HH", buf, off + 12)
                if major != 1:
                    raise _Stop(f"unsupported pcapng section (version {major}.{minor}) at "
                                f"byte {off}")
                links = []
                first_iface = len(cap.clocks)
            if blen < 12 or blen % 4:
                raise _Stop(f"corrupt capture at byte {off}: block length {blen} is invalid")
            if off + blen > n:
                raise _Stop(f"truncated capture at byte {off}: block cut short "
                            f"({n - off:,} of {blen:,} bytes)")
            body = off + 8
            bend = off + blen - 4
            if btype == 6 or btype == 2:  # Enhanced Packet Block, obsolete Packet Block
                if bend - body < 20:
                    raise _Stop(f"corrupt capture at byte {off}: packet block too short")
                iface, hi, lo, caplen, _orig = pkt(buf, body)
                if btype == 2:  # u16 interface id, then u16 drop count
                    iface = iface >> 16 if order == ">" else iface & 0xFFFF
                if iface >= len(links):
                    raise _Stop(f"corrupt capture at byte {off}: packet for interface "
                                f"{iface}, but {len(links)} interface(s) described before it")
                if body + 20 + caplen > bend:
                    raise _Stop(f"corrupt capture at byte {off}: packet longer than its block")
                ts_a, ts_b = hi << 32 | lo, first_iface + iface
                pno += 1
                start = body + 20
                add(decode(buf, start, start + caplen, links[iface]), ts_a, ts_b, pno)
            elif btype == 3:  # Simple Packet Block: no timestamp, the previous one is kept
                if not links:
                    raise _Stop(f"corrupt capture at byte {off}: packet before any interface "
                                "description")
                orig = struct.unpack_from(order + "I", buf, body)[0]
                caplen = min(orig, bend - body - 4)
                pno += 1
                add(decode(buf, body + 4, body + 4 + caplen, links[0]), ts_a, ts_b, pno)
            elif btype == 1:  # Interface Description Block
                if bend - body < 8:
                    raise _Stop(f"corrupt capture at byte {off}: interface block too short")
                links.append(struct.unpack_from(order + "H", buf, body)[0])
                cap.clocks.append(_if_options(buf, body + 8, bend, order))
            off += blen
    finally:
        cap.packets = pno


def _if_options(buf: Any, p: int, end: int, order: str) -> tuple[int, int, int]:
    """(mul, div, offset µs) from an interface's if_tsresol and if_tsoffset options."""
    resol, offset = 6, 0
    opt = struct.Struct(order + "HH").unpack_from
    while p + 4 <= end:
        code, length = opt(buf, p)
        if code == 0:
            break
        if code == 9 and length >= 1:
            resol = buf[p + 4]
        elif code == 14 and length >= 8:
            offset = struct.unpack_from(order + "q", buf, p + 4)[0]
        p += 4 + ((length + 3) & ~3)
    if resol & 0x80:
        mul, div = 1_000_000, 1 << (resol & 0x7F)
    elif resol <= 6:
        mul, div = 10 ** (6 - resol), 1
    else:
        mul, div = 1, 10 ** (resol - 6)
    return mul, div, offset * 1_000_000


def read_capture(path: Path, spool_dir: str | None = None
                 ) -> tuple[Capture, Callable[[int, int], int]]:
    """Walk a capture file (gzip-compressed ones are unpacked to spool_dir first).
    Returns the connections and the function from the two timestamp parts kept per
    packet to epoch µs."""
    plain, tmp = _plain(path, spool_dir)
    try:
        with open(plain, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            magic = fh.read(4)
            fh.seek(0)
            if not sniff_bytes(magic):
                raise UnusableInput(path, "not a packet capture: no pcap or pcapng magic number "
                                       f"(starts with {magic.hex() or 'nothing'})")
            walk: Callable[[Any, int, Capture], None] = (
                _pcapng if magic == _PCAPNG_MAGIC else _pcap)
            cap = Capture()
            if magic == _PCAPNG_MAGIC:
                def stamp(a: int, b: int) -> int:
                    mul, div, offset = cap.clocks[b]
                    return a * mul // div + offset
            else:
                div = _PCAP_MAGIC[magic][1] // 1_000_000

                def stamp(a: int, b: int) -> int:
                    return a * 1_000_000 + b // div
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                try:
                    walk(mm, size, cap)
                except _Stop as e:
                    cap.problem = str(e)
            return cap, stamp
    finally:
        if tmp:
            os.unlink(tmp)


# A capture compresses a few-fold; far beyond this, a small file would fill the disk (a
# decompression bomb): refused once it has unpacked past both bounds.
MAX_GZIP_RATIO = 500
MAX_GZIP_FREE = 1 << 30


def _plain(path: Path, spool_dir: str | None) -> tuple[Path, str | None]:
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                return path, None
            limit = max(MAX_GZIP_FREE, MAX_GZIP_RATIO * os.fstat(fh.fileno()).st_size)
            fd, tmp = tempfile.mkstemp(prefix="pcap-", suffix=".unzipped", dir=spool_dir)
            fh.seek(0)
            written = 0
            try:
                with os.fdopen(fd, "wb") as out, gzip.open(fh) as gz:
                    while chunk := gz.read(1 << 20):
                        written += len(chunk)
                        if written > limit:
                            raise UnusableInput(path, f"gzip stream expands more than "
                                                      f"{MAX_GZIP_RATIO}-fold (a "
                                                      "decompression bomb?); refused")
                        out.write(chunk)
            except (OSError, EOFError):
                pass  # a cut-off gzip stream: keep what was unpacked; the walk reports it
            except UnusableInput:
                os.unlink(tmp)
                raise
            return Path(tmp), tmp
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror or e}") from None


# --- output -----------------------------------------------------------------------------

def _ip_text(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(b) == 4 else socket.AF_INET6, b)


def convert(path: Path, out: str, spool_dir: str | None = None) -> dict[str, Any]:
    """Capture -> normalized Parquet at `out`. Returns counts and any warning."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cap, stamp = read_capture(path, spool_dir)
    if cap.problem and not cap.packets and not cap.conns and not cap.skips:
        # cut or corrupt before its first packet: the header itself is broken
        raise UnusableInput(path, f"unusable capture: {cap.problem}")
    cols: dict[str, list] = {c: [] for c in (*COLUMN_TYPES, "skip_reason", "place", "repeat")}

    def us(a: int | None, b: int | None) -> int | None:
        return None if a is None or b is None else stamp(a, b)

    def row(d: list, src: bytes, sp: Any, dst: bytes, dp: Any, proto: int,
            is_reply: bool | None, flags: int | None) -> None:
        cols["start_time"].append(us(d[_FS], d[_FF]))
        cols["end_time"].append(us(d[_LS], d[_LF]))
        cols["src_ip"].append(_ip_text(src))
        cols["dst_ip"].append(_ip_text(dst))
        cols["src_port"].append(sp)
        cols["dst_port"].append(dp)
        cols["protocol"].append(_PROTO_NAMES.get(proto) or str(proto))
        cols["packets"].append(d[_PK])
        cols["bytes"].append(d[_BY])
        cols["is_reply"].append(is_reply)
        cols["tcp_flags"].append(flags)
        cols["skip_reason"].append(None)
        cols["place"].append(f"packet {d[_PNO]}")
        cols["repeat"].append(1)

    mid = 0
    ports = _swap_table() if cap.swap else _ident_table()
    for fwd, rev, (proto, src, sp, dst, dp) in cap.conns:
        if sp is not None:
            sp, dp = ports[sp], ports[dp]  # type: ignore[index]
        init, resp, known = _orient(fwd, rev, proto)
        mid += not known
        for d, reply in ((init, False), (resp, True)):
            if not d[_PK]:
                continue
            a, pa_, b, pb = (src, sp, dst, dp) if d is fwd else (dst, dp, src, sp)
            flags = None
            if proto == 6:
                m = d[_MARK]
                flags = (m & 5) | (18 if reply and m & _ANSWER else
                                   2 if not reply and m & _OPEN else 0)
            row(d, a, pa_, b, pb, proto, reply if known else None, flags)
    skipped = sorted(cap.skips.items(), key=lambda kv: kv[1][1])
    problems = [(reason, c, f"packet {first}") for reason, (c, first) in skipped]
    if cap.problem:
        problems.append((cap.problem, 1, f"after packet {cap.packets}" if cap.packets
                         else "before the first packet"))
    for reason, count, place in problems:
        for c in COLUMN_TYPES:
            cols[c].append(None)
        cols["skip_reason"].append(reason)
        cols["place"].append(place)
        cols["repeat"].append(count)
    ts = pa.timestamp("us", tz="UTC")
    types = {"start_time": ts, "end_time": ts, "src_ip": pa.string(), "dst_ip": pa.string(),
             "src_port": pa.int32(), "dst_port": pa.int32(), "protocol": pa.string(),
             "packets": pa.int64(), "bytes": pa.int64(), "is_reply": pa.bool_(),
             "tcp_flags": pa.int32(), "skip_reason": pa.string(), "place": pa.string(),
             "repeat": pa.int64()}
    table = pa.table({c: pa.array(v, type=types[c]) for c, v in cols.items()})
    pq.write_table(table, out)
    warning = cap.problem
    if mid:
        note = (f"{mid} TCP connection(s) were already open when the capture started "
                "(no SYN or SYN-ACK seen): their direction is guessed")
        warning = f"{warning}; {note}" if warning else note
    return {"packets": cap.packets, "connections": len(cap.conns),
            "mid_connection": mid, "warning": warning}
