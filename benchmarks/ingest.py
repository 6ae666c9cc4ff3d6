"""Ingest speed per flow format, measured in one run: records/s of the path `simulate`
takes (format detection, parsing, grouping into tuples), beside the obvious approach.

    python benchmarks/ingest.py [--hubble 1000000] [--vpc 2000000] [--pcap 1000000]

Generates its inputs under benchmarks/data/ingest/ when missing:
* hubble.json  -- Hubble jsonpb lines (the real sample's shapes, varied ports and times)
* vpc.log      -- AWS VPC flow log text, v2 default format with its header line
* capture.pcap -- Ethernet/IPv4 TCP packets, 10,000 connections
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import sys
import time
from pathlib import Path

import duckdb

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from simulator import connections, ipnet  # noqa: E402
from simulator.ingest.sources import open_flow_sources  # noqa: E402
from simulator.inputs import expand_flow_paths  # noqa: E402

TARGETS = {"hubble": 300_000, "vpc-text": 300_000, "pcap": 1_000_000}
# pcap: the whole ingest path (parse, write the per-connection Parquet, group);
# pcap-parse: the parser alone, which the 1M packets/s target is about
SAMPLE = ROOT / "tests" / "fixtures" / "hubble" / "basic-sample-10-flows.json"


def make_hubble(path: Path, n: int) -> None:
    lines = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    rnd = random.Random(7)
    with path.open("w") as out:
        for i in range(n):
            obj = lines[i % len(lines)]
            tcp = obj["flow"]["l4"]["TCP"]
            port_key = "destination_port" if obj["flow"].get("reply") else "source_port"
            tcp[port_key] = 32768 + rnd.randrange(28000)
            t = f"2024-06-01T12:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}Z"
            obj["flow"]["time"] = obj["time"] = t
            out.write(json.dumps(obj, separators=(",", ":")) + "\n")


def make_vpc(path: Path, n: int) -> None:
    con = duckdb.connect()
    body = path.with_suffix(".body")
    con.execute(f"""
        COPY (SELECT 2, '123456789012', 'eni-0a1b2c3d', '10.0.' || (i % 200) || '.' || (i % 250),
                     '10.1.' || (i % 50) || '.' || (i % 20), 32768 + (i * 7919) % 28000,
                     [80, 443, 8080, 5432][1 + i % 4], 6, 1 + i % 9, 60 + i % 1400,
                     1717243200 + i // 1000, 1717243260 + i // 1000,
                     CASE WHEN i % 17 = 0 THEN 'REJECT' ELSE 'ACCEPT' END, 'OK'
              FROM range({n}) t(i))
        TO '{body}' (FORMAT csv, DELIMITER ' ', HEADER false, QUOTE '')""")
    header = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol "
              "packets bytes start end action log-status\n")
    with path.open("w") as out:
        out.write(header)
        with body.open() as src:
            while chunk := src.read(1 << 24):
                out.write(chunk)
    body.unlink()


def make_pcap(path: Path, n: int) -> None:
    from pcapfiles import ACK, PSH, SYN, ether, ipv4, tcp

    conns = 10_000
    frames = []
    for c in range(conns):
        src, dst = f"10.0.{c // 250}.{c % 250 + 1}", f"10.1.{c % 50}.{c % 200 + 1}"
        sport, dport = 40000 + c % 20000, [80, 443, 8080][c % 3]
        frames.append((ether(ipv4(src, dst, tcp(sport, dport, SYN))),
                       ether(ipv4(dst, src, tcp(dport, sport, SYN | ACK))),
                       ether(ipv4(src, dst, tcp(sport, dport, PSH | ACK, b"x" * 40)))))
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(n):
            c, k = i % conns, min(i // conns, 2)
            frame = frames[c][k]
            out.write(struct.pack("<IIII", 1717243200 + i // 10000, i % 1_000_000,
                                  len(frame), len(frame)))
            out.write(frame)


def ingest_rate(path: Path, count: str) -> tuple[float, int]:
    con = duckdb.connect(config={"preserve_insertion_order": False})
    ipnet.register(con)
    t0 = time.perf_counter()
    sources = open_flow_sources(con, expand_flow_paths([str(path)])).sources
    connections.build_tuples(con, sources, [])
    took = time.perf_counter() - t0
    records = con.execute(f"SELECT sum({count}) FROM tuples").fetchall()[0][0]
    con.close()
    return took, int(records)


def pcap_parse_rate(path: Path) -> float:
    """Packets/s of the capture parser alone (one core: it is a Python loop)."""
    from simulator.ingest.pcap import read_capture

    t0 = time.perf_counter()
    cap, _ = read_capture(path)
    return cap.packets / (time.perf_counter() - t0)


def obvious(fmt: str, path: Path, limit: int) -> float:
    """Records/s of the obvious per-record Python approach, on the first `limit` records."""
    t0 = time.perf_counter()
    n = 0
    if fmt == "hubble":
        with path.open() as fh:
            for line in fh:
                f = json.loads(line)["flow"]
                _ = (f["IP"]["source"], f["IP"]["destination"], f.get("l4"))
                n += 1
                if n == limit:
                    break
    elif fmt == "vpc-text":
        with path.open() as fh:
            next(fh)
            for line in fh:
                _ = line.split()
                n += 1
                if n == limit:
                    break
    else:
        from scapy.all import PcapReader  # the dissecting reader, with its layers loaded

        for _pkt in PcapReader(str(path)):
            n += 1
            if n == limit:
                break
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hubble", type=int, default=1_000_000)
    ap.add_argument("--vpc", type=int, default=2_000_000)
    ap.add_argument("--pcap", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, default=HERE / "data" / "ingest")
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    inputs = [("hubble", args.data / f"hubble-{args.hubble}.json", make_hubble, args.hubble),
              ("vpc-text", args.data / f"vpc-{args.vpc}.log", make_vpc, args.vpc),
              ("pcap", args.data / f"capture-{args.pcap}.pcap", make_pcap, args.pcap)]
    rows = []
    for fmt, path, make, n in inputs:
        if not path.exists():
            print(f"generating {path.name} ...", flush=True)
            make(path, n)
        # a capture's records are packets (the reader folds them into connections)
        took, records = ingest_rate(path, "packets" if fmt == "pcap" else "records")
        rate = records / took
        base = obvious(fmt, path, 20_000 if fmt == "pcap" else 200_000)
        rows.append((fmt, records, took, rate, TARGETS[fmt], base))
        if fmt == "pcap":
            parse = pcap_parse_rate(path)
            rows.append(("pcap-parse", records, records / parse, parse, TARGETS[fmt], base))
    print(f"\n{'format':<10} {'records':>10} {'seconds':>8} {'records/s':>12} {'target':>10} "
          f"{'status':>6} {'obvious/s':>10} {'speed-up':>9}")
    for fmt, records, took, rate, target, base in rows:
        status = "OK" if rate >= target else "UNDER"
        print(f"{fmt:<10} {records:>10,} {took:>8.2f} {rate:>12,.0f} {target:>10,} {status:>6} "
              f"{base:>10,.0f} {rate / base:>8.1f}x")
    print("\nobvious: hubble = json.loads per line; vpc-text = str.split per line; "
          "pcap = scapy's dissecting PcapReader")


if __name__ == "__main__":
    main()
