"""Write small packet captures (pcap, pcapng) from hand-built headers, for tests and the
ingest benchmark. Checksums are left zero: the reader never checks them."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from pathlib import Path

FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_SLL, LINKTYPE_SLL2 = 1, 101, 113, 276

Packet = tuple[float, bytes]  # (epoch seconds, link-layer frame)


def _addr(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def tcp(sport: int, dport: int, flags: int, payload: bytes = b"") -> tuple[int, bytes]:
    return 6, struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) \
        + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> tuple[int, bytes]:
    return 17, struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(src: str, dst: str, l4: tuple[int, bytes]) -> bytes:
    proto, body = l4
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0x4000, 64, proto, 0,
                       _addr(src), _addr(dst)) + body


def ipv6(src: str, dst: str, l4: tuple[int, bytes], ext: Iterable[int] = ()) -> bytes:
    """ext: extension header types (0 hop-by-hop, 43 routing, 44 fragment, 60 dest opts),
    each 8 bytes long, chained before the L4 header."""
    proto, body = l4
    chain = list(ext)
    headers = b""
    for i, h in enumerate(chain):
        nxt = chain[i + 1] if i + 1 < len(chain) else proto
        if h == 44:  # fragment header: offset 0, more fragments: the first fragment
            headers += struct.pack(">BBHI", nxt, 0, 1, 0x1234)
        else:
            headers += struct.pack(">BB6x", nxt, 0)
    first = chain[0] if chain else proto
    payload = headers + body
    return struct.pack(">IHBB16s16s", 6 << 28, len(payload), first, 64, _addr(src),
                       _addr(dst)) + payload


def ether(ip: bytes, vlans: Iterable[int] = ()) -> bytes:
    """An Ethernet frame; vlans: VLAN ids, outermost first (two make a QinQ frame)."""
    etype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    vlans = list(vlans)
    frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"
    for i, vid in enumerate(vlans):
        frame += struct.pack(">HH", 0x88A8 if i == 0 and len(vlans) > 1 else 0x8100, vid)
    return frame + struct.pack(">H", etype) + ip


def arp() -> bytes:
    return (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x06"
            + struct.pack(">HHBBH", 1, 0x0800, 6, 4, 1) + b"\x00" * 20)


def sll2(ip: bytes, outgoing: bool = False) -> bytes:
    etype = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    return struct.pack(">HHIHBB8s", etype, 0, 3, 1, 4 if outgoing else 0, 6,
                       b"\x02\x00\x00\x00\x00\x01") + ip


def write_pcap(path: Path, packets: Iterable[Packet], linktype: int = LINKTYPE_ETHERNET,
               nano: bool = False) -> Path:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0,
                             262144, linktype))
        for t, frame in packets:
            sec = int(t)
            frac = round((t - sec) * (1e9 if nano else 1e6))
            fh.write(struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame)
    return path


def write_pcapng(path: Path, packets: Iterable[Packet],
                 linktype: int = LINKTYPE_ETHERNET) -> Path:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    with open(path, "wb") as fh:
        fh.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        fh.write(block(1, struct.pack("<HHI", linktype, 0, 262144)))
        for t, frame in packets:
            us = round(t * 1e6)
            fh.write(block(6, struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(frame),
                                          len(frame)) + frame))
    return path
