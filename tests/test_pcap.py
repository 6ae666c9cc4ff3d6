"""Packet captures (pcap, pcapng): the real test captures of tcpdump, libpcap and gopacket,
corrupt and cut-short files, hand-built edge cases, and a break found from a capture taken
on a node plus a kubectl snapshot."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from pcapfiles import (
    ACK,
    FIN,
    LINKTYPE_SLL2,
    PSH,
    SYN,
    arp,
    ether,
    ipv4,
    ipv6,
    sll2,
    tcp,
    udp,
    write_pcap,
    write_pcapng,
)
from worldfiles import namespace, netpol, node, pod, write_cluster, write_policies

from simulator.cli import main
from simulator.ingest import pcap

PCAPS = Path(__file__).parent / "fixtures" / "pcap"
SAMPLES = sorted(p for p in PCAPS.rglob("*") if p.is_file())
# Deliberately broken files read up to the damage, with the damage as a skip reason.
BROKEN = {
    "gopacket/test901.pcapng": "unsupported pcapng section (version 2.0) at byte 480",
}
# Files with a broken header or nothing to replay: refused (exit 2) with the reason.
REFUSED = {
    "libpcap/pcap-truncated-hdr-23.pcap":
        "unusable capture: truncated capture at byte 23",
    "libpcap/pcapng-truncated-shb.pcapng": "unusable capture: truncated capture at byte 0",
    "libpcap/pcapng-block-len-too-small.pcapng":
        "unusable capture: corrupt capture at byte 28",
    "libpcap/pcapng-packet-before-idb.pcapng": "unusable capture: corrupt capture at byte 28",
    "libpcap/linktype-reserved-field-not-zero.pcap":
        "unusable capture: corrupt capture header at byte 20",
    "libpcap/pcapng-no-idb.pcapng": "nothing to judge: 0 of 0 records evaluated",
    "tcpdump/empty.pcap": "nothing to judge: 0 of 0 records evaluated",
    "tcpdump/empty.pcapng": "nothing to judge: 0 of 0 records evaluated",
    "tcpdump/802.1ad_QinQ.pcap": "nothing to judge: 0 of 2 records evaluated (non-IP packet "
                                 "(ARP) ×2)",
    "tcpdump/ppp_ip_udp_dns.pcap": "nothing to judge: 0 of 1 record evaluated (non-IP "
                                   "packet (PPP protocol 0x00ff) ×1)",
    "tcpdump/rpvstp-trunk-native-vid5.pcap": "nothing to judge: 0 of 22 records evaluated "
                                             "(non-IP packet (802.3 LLC frame, e.g. STP) ×21",
    "tcpdump/truncated-aack.pcap": "nothing to judge: 0 of 1 record evaluated (non-IP "
                                   "packet (PPP protocol 0xc023) ×1)",
    "tcpdump/vsock-1.pcapng": "nothing to judge: 0 of 10 records evaluated (non-IP link "
                              "type 271 (VSOCK) ×10)",
}
T0 = 1_717_000_000.0


def run(tmp: Path, *flows: Path, args: tuple = ()) -> tuple[list[dict[str, Any]], dict]:
    policies = tmp / "no-policies"
    if not policies.exists():
        write_policies(policies, [])
    if "--policies" not in args:
        args = ("--policies", policies, *args)
    out, js = tmp / "out.parquet", tmp / "out.json"
    cmd = [a for f in flows for a in ("--flows", f)] + [*args, "--out", out, "--json", js, "-q"]
    result = CliRunner().invoke(main, [str(a) for a in cmd])
    assert result.exit_code == 0, result.output
    return pq.read_table(out).to_pylist(), json.loads(js.read_text())["summary"]


def handshake(cli: str, srv: str, sport: int, dport: int, t: float = T0,
              data: int = 2, v6: bool = False) -> list[tuple[float, bytes]]:
    """A TCP connection: handshake, `data` request/response pairs, FIN."""
    ip = ipv6 if v6 else ipv4
    out = [(t, ether(ip(cli, srv, tcp(sport, dport, SYN)))),
           (t + 0.001, ether(ip(srv, cli, tcp(dport, sport, SYN | ACK)))),
           (t + 0.002, ether(ip(cli, srv, tcp(sport, dport, ACK))))]
    for i in range(data):
        out.append((t + 0.01 * (i + 1), ether(ip(cli, srv, tcp(sport, dport, PSH | ACK,
                                                                b"GET / HTTP/1.1\r\n")))))
        out.append((t + 0.01 * (i + 1) + 0.001,
                    ether(ip(srv, cli, tcp(dport, sport, PSH | ACK, b"HTTP/1.1 200 OK\r\n")))))
    out.append((t + 1, ether(ip(cli, srv, tcp(sport, dport, FIN | ACK)))))
    return out


def refused(tmp: Path, capture: Path) -> str:
    policies = tmp / "no-policies"
    write_policies(policies, [])
    result = CliRunner().invoke(main, ["--flows", str(capture), "--policies", str(policies)])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"simulate: error: {capture}: ")
    return line


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: str(p.relative_to(PCAPS)))
def test_real_captures_run(tmp_path, sample):
    name = str(sample.relative_to(PCAPS))
    if name in REFUSED:
        assert REFUSED[name] in refused(tmp_path, sample)
        return
    rows, summary = run(tmp_path, sample)
    flows = summary["flows"]
    assert summary["inputs"]["flows"][0]["format"] == "pcap"
    assert summary["inputs"]["flows"][0]["files"] == [str(sample)]
    if name in BROKEN:
        assert any(r.startswith(BROKEN[name]) for r in flows["skipped"]), flows["skipped"]
        assert any(str(sample) in e for e in flows["skipped_examples"])
    # every skipped record is explained, and the rest became connections
    assert all(isinstance(r, str) and r for r in flows["skipped"])
    assert flows["read"] == flows["evaluated"] + sum(flows["skipped"].values())


def test_what_real_captures_hold(tmp_path):
    rows, _ = run(tmp_path, PCAPS / "tcpdump" / "tcp-handshake-nano.pcap")  # SLL, ns stamps
    assert len(rows) == 1
    r = rows[0]
    assert (r["protocol"], r["flows"], r["reply_flows"], r["packets"]) == ("TCP", 2, 1, 3)
    assert not r["direction_guessed"]
    assert r["first_seen"].year >= 2000

    rows, summary = run(tmp_path, PCAPS / "tcpdump" / "vxlan.pcap")  # ICMP inside VXLAN
    assert [(r["src_ip"], r["dst_ip"], r["protocol"]) for r in rows] == \
        [("192.168.203.3", "192.168.203.5", "ICMP")]
    assert summary["flows"]["skipped"] == {"non-IP packet (ARP)": 2}

    rows, _ = run(tmp_path, PCAPS / "libpcap" / "geneve.pcap")  # Geneve: the inner flows
    assert {(r["src_ip"], r["dst_ip"], r["protocol"], r["dst_port"]) for r in rows} == \
        {("30.0.0.1", "30.0.0.2", "ICMP", 0), ("30.0.0.2", "30.0.0.1", "TCP", 22)}

    rows, _ = run(tmp_path, PCAPS / "tcpdump" / "gso-ipv6-vxlan-ipv4.pcap")
    assert all(":" not in r["src_ip"] for r in rows)  # the IPv4 inside, not the IPv6 outside

    assert "(non-IP link type 271 (VSOCK) ×10)" in refused(tmp_path, PCAPS / "tcpdump" /
                                                            "vsock-1.pcapng")


def test_capture_cut_mid_record_keeps_what_was_read(tmp_path):
    whole = (PCAPS / "tcpdump" / "print-flags.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:len(whole) - 30])
    rows, summary = run(tmp_path, cut)
    assert len(rows) == 1 and rows[0]["packets"] == 9
    (reason,) = summary["flows"]["skipped"]
    assert reason.startswith("truncated capture at byte ")
    offset = int(reason.split("byte ")[1].split(":")[0])
    assert 24 < offset < len(whole) - 30
    assert any("after packet 9" in e for e in summary["flows"]["skipped_examples"])


def test_not_a_capture_is_an_error(tmp_path):
    bad = tmp_path / "trace.pcap"
    bad.write_text("this is not a capture\n")
    write_policies(tmp_path / "p", [])
    for extra in ([], ["--flows-format", "pcap"]):
        result = CliRunner().invoke(main, ["--flows", str(bad), "--policies",
                                           str(tmp_path / "p"), *extra])
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and str(bad) in lines[0]
    assert "not a packet capture" in lines[0]


def test_both_directions_fold_into_one_connection(tmp_path):
    # the capture starts with the server's SYN-ACK listed first: direction still from SYN
    pkts = handshake("10.0.1.5", "10.0.2.9", 40123, 8080)
    pkts[0], pkts[1] = pkts[1], pkts[0]
    rows, summary = run(tmp_path, write_pcap(tmp_path / "c.pcap", pkts))
    assert len(rows) == 1
    r = rows[0]
    assert (r["src_ip"], r["dst_ip"], r["dst_port"]) == ("10.0.1.5", "10.0.2.9", 8080)
    assert (r["flows"], r["reply_flows"], r["packets"]) == (2, 1, 8)
    assert not r["direction_guessed"]
    assert summary["flows"]["read"] == 2


def test_converted_rows(tmp_path):
    pkts = handshake("10.0.1.5", "10.0.2.9", 40123, 8080)
    out = tmp_path / "c.parquet"
    stats = pcap.convert(write_pcap(tmp_path / "c.pcap", pkts), str(out))
    rows = pq.read_table(out).to_pylist()
    assert stats["warning"] is None
    fwd, rev = rows
    assert (fwd["src_port"], fwd["dst_port"], fwd["is_reply"], fwd["tcp_flags"]) == \
        (40123, 8080, False, 2 | FIN)
    assert (rev["src_port"], rev["dst_port"], rev["is_reply"], rev["tcp_flags"]) == \
        (8080, 40123, True, 18)
    assert (fwd["packets"], rev["packets"]) == (5, 3)
    assert fwd["bytes"] == 40 * 3 + (40 + 16) * 2  # IP lengths: 16-byte request lines
    assert fwd["start_time"].timestamp() == T0
    assert rev["start_time"].timestamp() == pytest.approx(T0 + 0.001)
    assert fwd["end_time"].timestamp() == T0 + 1


def test_capture_starting_mid_connection(tmp_path):
    pkts = handshake("10.0.1.5", "10.0.2.9", 40123, 8080)[3:]  # no SYN, no SYN-ACK
    pkts = [pkts[1]] + pkts  # and the server speaks first
    cap = write_pcap(tmp_path / "mid.pcap", pkts)
    stats = pcap.convert(cap, str(tmp_path / "mid.parquet"))
    assert stats["mid_connection"] == 1 and "already open" in stats["warning"]
    converted = pq.read_table(tmp_path / "mid.parquet").to_pylist()
    assert [r["is_reply"] for r in converted] == [None, None]
    rows, _ = run(tmp_path, cap)
    assert len(rows) == 1
    r = rows[0]
    # oriented by port, not by the first packet seen, and marked as a guess
    assert (r["src_ip"], r["dst_ip"], r["dst_port"]) == ("10.0.1.5", "10.0.2.9", 8080)
    assert r["direction_guessed"]


def test_ipv6_extension_headers(tmp_path):
    pkts = [(T0, ether(ipv6("fd00::1", "fd00::2", udp(50000, 5353, b"q"), ext=[0, 60, 44]))),
            (T0 + 1, ether(ipv6("fd00::1", "fd00::2", tcp(50001, 443, SYN), ext=[43])))]
    rows, summary = run(tmp_path, write_pcap(tmp_path / "v6.pcap", pkts))
    assert {(r["src_ip"], r["dst_ip"], r["protocol"], r["dst_port"]) for r in rows} == \
        {("fd00::1", "fd00::2", "UDP", 5353), ("fd00::1", "fd00::2", "TCP", 443)}
    assert summary["flows"]["skipped"] == {}


def test_non_first_fragment_is_skipped(tmp_path):
    frag = bytearray(ipv4("10.0.0.1", "10.0.0.2", udp(1, 2, b"x" * 16)))
    frag[6:8] = (0x0002).to_bytes(2, "big")  # fragment offset 16 bytes
    whole = ether(ipv4("10.0.0.1", "10.0.0.2", udp(40000, 53, b"q")))
    rows, summary = run(tmp_path, write_pcap(tmp_path / "f.pcap", [(T0, ether(bytes(frag))),
                                                                   (T0 + 1, whole)]))
    assert [(r["dst_port"], r["flows"]) for r in rows] == [(53, 1)]
    assert summary["flows"]["skipped"] == {"IP fragment after the first (no L4 header)": 1}


def test_vlan_qinq_and_arp(tmp_path):
    pkts = [(T0, arp()), (T0, arp()), (T0, arp())]
    pkts += [(T0 + 0.1, ether(ipv4("10.0.0.1", "10.0.0.2", tcp(40000, 80, SYN)), [100])),
             (T0 + 0.2, ether(ipv4("10.0.0.2", "10.0.0.1", tcp(80, 40000, SYN | ACK)),
                              [200, 100]))]
    rows, summary = run(tmp_path, write_pcap(tmp_path / "vlan.pcap", pkts))
    assert len(rows) == 1 and (rows[0]["flows"], rows[0]["reply_flows"]) == (2, 1)
    assert summary["flows"]["skipped"] == {"non-IP packet (ARP)": 3}
    assert any("packet 1 and 2 more" in e for e in summary["flows"]["skipped_examples"])


def test_sll2_pcapng_and_gzip(tmp_path):
    ip_pkts = [(T0, ipv4("10.0.0.1", "10.0.0.2", udp(53000, 53, b"query"))),
               (T0 + 0.5, ipv4("10.0.0.2", "10.0.0.1", udp(53, 53000, b"answer")))]
    sll = write_pcap(tmp_path / "sll2.pcap", [(t, sll2(p)) for t, p in ip_pkts],
                     LINKTYPE_SLL2, nano=True)
    ng = write_pcapng(tmp_path / "eth.pcapng", [(t, ether(p)) for t, p in ip_pkts])
    gz = tmp_path / "eth.pcapng.gz"
    gz.write_bytes(gzip.compress(ng.read_bytes()))
    for f in (sll, ng, gz):
        rows, _ = run(tmp_path, f)
        assert len(rows) == 1, f
        r = rows[0]
        assert (r["src_ip"], r["dst_ip"], r["dst_port"], r["protocol"]) == \
            ("10.0.0.1", "10.0.0.2", 53, "UDP")
        assert (r["flows"], r["reply_flows"], r["packets"]) == (2, 1, 2)
        assert r["first_seen"].timestamp() == T0


def test_node_capture_with_cluster_snapshot_finds_a_break(tmp_path):
    write_cluster(tmp_path / "cluster.json", [
        namespace("shop", {"team": "storefront"}), namespace("pay", {"team": "payments"}),
        pod("shop", "web-0", "10.1.0.5", {"app": "web"}),
        pod("pay", "api-0", "10.2.0.9", {"app": "api"}, [("https", 8443, "TCP")]),
        pod("pay", "batch-0", "10.2.0.7", {"app": "batch"}),
        node("node-1", "10.0.0.1", ["10.1.0.0/24"]),
    ])
    write_policies(tmp_path / "p", [netpol("pay", "api", {
        "podSelector": {"matchLabels": {"app": "api"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "payments"}}}],
                     "ports": [{"port": 8443}]}]})])
    pkts = (handshake("10.1.0.5", "10.2.0.9", 41000, 8443)
            + handshake("10.2.0.7", "10.2.0.9", 42000, 8443, t=T0 + 5)
            + handshake("10.1.0.5", "10.2.0.9", 41001, 8443, t=T0 + 10)
            + [(T0 + 20, arp())])
    rows, summary = run(tmp_path, write_pcap(tmp_path / "node-1.pcap", pkts),
                        args=("--cluster", tmp_path / "cluster.json",
                              "--policies", tmp_path / "p"))
    by_src = {r["src_pod"]: r for r in rows}
    web = by_src["web-0"]
    assert (web["dst_pod"], web["dst_port"], web["change"]) == ("api-0", 8443, "break")
    assert (web["flows"], web["reply_flows"]) == (4, 2)  # two connections, ports folded
    assert "isolated by pay/api" in web["candidate_reason"]
    assert by_src["batch-0"]["change"] == "still_allowed"
    assert summary["connections"]["by_change"]["break"]["connections"] == 1
    assert summary["flows"]["skipped"] == {"non-IP packet (ARP)": 1}
