"""AWS VPC flow logs in text form (S3 `.log`/`.log.gz` delivery, CloudWatch Logs
envelopes), through the CLI on the AWS doc and OpenTelemetry fixtures (see
fixtures/SOURCES.md) and on logs written here in the documented format."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from test_semantics import XA, XB, YA, deny_all_ingress, world
from worldfiles import write_cluster, write_policies

from simulator.cli import main
from simulator.ingest import vpc_cloudwatch, vpc_text

FIXTURES = Path(__file__).parent / "fixtures"
OTEL = FIXTURES / "otel-vpc"
V2 = FIXTURES / "awsdocs-v2-default-format.log"
V3_FLAGS = FIXTURES / "awsdocs-v3-custom-tcp-flags.log"
V2_HEADER = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol "
             "packets bytes start end action log-status")


class Sim:
    """One `simulate` run: exit code, output, the connections table and the summary."""

    def __init__(self, tmp: Path, flows: list[Any], *extra: Any, cluster: Path | None = None,
                 policies: list[dict[str, Any]] | None = None, stdin: bytes | None = None):
        tmp.mkdir(parents=True, exist_ok=True)
        out, js = tmp / "out.parquet", tmp / "summary.json"
        args = [a for f in flows for a in ("--flows", f)]
        args += ["--policies", write_policies(tmp / "policies", policies or []),
                 "--out", out, "--json", js, *extra]
        if cluster is not None:
            args += ["--cluster", cluster]
        self.result = CliRunner().invoke(main, [str(a) for a in args], input=stdin)
        self.exit_code = self.result.exit_code
        self.output = self.result.output
        self.rows = pq.read_table(out).to_pylist() if out.exists() else []
        self.summary = json.loads(js.read_text())["summary"] if js.exists() else {}

    @property
    def flows(self) -> dict[str, Any]:
        return self.summary["flows"]

    def keys(self) -> set[tuple[str, str, int | None, str]]:
        return {(r["src_ip"], r["dst_ip"], r["dst_port"], r["protocol"]) for r in self.rows}


def ok(sim: Sim) -> Sim:
    assert sim.exit_code == 0, sim.output
    assert "Traceback" not in sim.output
    return sim


def refused(sim: Sim, *fragments: str) -> str:
    """Exit code 2 with one line naming what it refused; returns the line."""
    assert sim.exit_code == 2, sim.output
    lines = sim.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simulate: error: "), sim.output
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def to_parquet(log: Path, out: Path) -> Path:
    """The text records in the Parquet delivery schema (as tests/test_cli.py does)."""
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    header = [h.replace("-", "_") for h in lines[0].split()]
    ints = {"version", "srcport", "dstport", "protocol", "tcp_flags", "packets", "bytes",
            "start", "end"}
    rows = [{k: (int(v) if k in ints else v) if v != "-" else None
             for k, v in zip(header, ln.split(), strict=True)} for ln in lines[1:]]
    types = {k: pa.int64() if k in ints else pa.string() for k in header}
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(types.items())), out)
    return out


def comparable(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(tuple(sorted((k, repr(v)) for k, v in r.items())) for r in rows)


# --- S3 text delivery -----------------------------------------------------------------------

def test_default_v2_with_header(tmp_path):
    sim = ok(Sim(tmp_path, [V2]))
    assert sim.summary["inputs"]["flows"] == [{"format": "vpc-text", "files": [str(V2)]}]
    assert sim.flows["read"] == 7  # the header line is not a record
    assert sim.flows["skipped"] == {"NODATA record (no traffic in the window)": 1,
                                    "SKIPDATA record (AWS dropped records)": 1}
    assert sim.flows["skipped_examples"] == [
        f"{V2}: line 4: NODATA record (no traffic in the window)",
        f"{V2}: line 5: SKIPDATA record (AWS dropped records)"]
    keys = sim.keys()
    assert ("172.31.16.139", "172.31.16.21", 22, "TCP") in keys
    assert ("172.31.9.69", "172.31.9.12", 3389, "TCP") in keys
    assert ("2001:db8:1234:a100:8d6e:3477:df66:f105",
            "2001:db8:1234:a102:3304:8879:34cf:4071", 22, "TCP") in keys
    icmp = [r for r in sim.rows if r["protocol"] == "ICMP"]
    assert {r["src_ip"] for r in icmp} | {r["dst_ip"] for r in icmp} == {
        "203.0.113.12", "172.31.16.139"}
    assert sum(r["flows"] for r in icmp) == 2
    rdp = [r for r in sim.rows if r["dst_port"] == 3389][0]
    assert rdp["observed"] == "denied"


@pytest.mark.parametrize("log", [V2, V3_FLAGS], ids=["v2", "v3-tcp-flags"])
def test_text_and_parquet_deliveries_give_the_same_result(tmp_path, log):
    text = ok(Sim(tmp_path / "text", [log]))
    parquet = ok(Sim(tmp_path / "parquet", [to_parquet(log, tmp_path / "f.parquet")]))
    assert comparable(text.rows) == comparable(parquet.rows)
    same = ("read", "skipped", "evaluated", "resplit_tuples")
    assert {k: text.flows[k] for k in same} == {k: parquet.flows[k] for k in same}


def test_v3_tcp_flags_give_direction_and_fold_replies(tmp_path):
    """As tests/test_cli.py::test_real_vpc_records_with_tcp_flags, from the text: SYN-ACK
    and FIN records are the server's replies; line 9 has a double space."""
    assert "  " in V3_FLAGS.read_text().splitlines()[8]
    sim = ok(Sim(tmp_path, [V3_FLAGS]))
    assert sim.flows["read"] == 8 and sim.flows["skipped"] == {}
    assert sim.keys() == {("52.213.180.42", "10.0.0.62", 5001, "TCP")}
    conn = sim.rows[0]
    assert conn["flows"] == 8 and conn["reply_flows"] == 4
    assert conn["direction"] == "tcp flags"


def test_runs_of_whitespace_blank_lines_and_crlf(tmp_path):
    lines = [V2_HEADER,
             "2 123456789010 eni-1 10.0.0.1 10.0.0.2 40001 80 6 1 60 1700000000 1700000060"
             " ACCEPT OK",
             "",
             "2  123456789010\teni-1 10.0.0.1 10.0.0.2 40002 80 6 1 60 1700000000 1700000060"
             " ACCEPT OK ",
             "   ",
             "  2 123456789010 eni-1 10.0.0.1 10.0.0.2 40003 80 6 1 60 1700000000 1700000060"
             " ACCEPT\t\tOK",
             "2 123456789010 eni-1 10.0.0.1 10.0.0.2 40004 80 6 1 60 1700000000 ACCEPT OK"]
    f = tmp_path / "ws.log"
    f.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    sim = ok(Sim(tmp_path, [f]))
    assert sim.flows["read"] == 4
    assert sim.flows["skipped"] == {"wrong number of fields (13, expected 14)": 1}
    assert sim.flows["skipped_examples"] == [
        f"{f}: line 7: wrong number of fields (13, expected 14)"]
    assert sim.keys() == {("10.0.0.1", "10.0.0.2", 80, "TCP")}
    assert sim.rows[0]["flows"] == 3


def test_header_lines_of_concatenated_files_are_not_records(tmp_path):
    f = tmp_path / "cat.log"
    f.write_text(V2.read_text() + "\n" + V2.read_text())
    sim = ok(Sim(tmp_path, [f]))
    assert sim.flows["read"] == 14
    assert sim.flows["skipped"] == {"NODATA record (no traffic in the window)": 2,
                                    "SKIPDATA record (AWS dropped records)": 2}


def test_nat_gateway_format_without_version_is_detected_by_its_header(tmp_path):
    """The doc's NAT gateway example has neither version nor protocol nor ports: its
    records are read (header line detected) and skipped for want of a protocol. Alone it
    leaves nothing to judge; beside a usable log it is accounted for per file."""
    log = FIXTURES / "awsdocs-custom-nat-gateway.log"
    refused(Sim(tmp_path / "alone", [log]), str(log),
            "nothing to judge: 0 of 6 records evaluated (missing protocol ×6)")
    sim = ok(Sim(tmp_path / "both", [log, V2]))
    assert sim.summary["inputs"]["flows"][0]["format"] == "vpc-text"
    files = {f["file"]: f for f in sim.flows["files"]}
    assert files[str(log)] == {"file": str(log), "format": "vpc-text", "records": 6,
                               "evaluated": 0, "skipped": {"missing protocol": 6}}
    assert f"{log}: line 2: missing protocol" in sim.flows["skipped_examples"]
    assert [w["code"] for w in sim.summary["warnings"]] == ["empty_policy_set", "no_pod_identity",
                                                            "skipped_records"]


def test_pkt_addresses_are_the_endpoints(tmp_path):
    """Transit gateway ENIs record the TGW's own addresses in srcaddr/dstaddr; the
    packet's addresses (pkt-srcaddr/pkt-dstaddr) are the real endpoints."""
    sim = ok(Sim(tmp_path, [FIXTURES / "awsdocs-v3-custom-transit-gateway-path.log"]))
    assert sim.flows["read"] == 4 and sim.flows["skipped"] == {}
    assert sim.keys() == {("10.20.33.164", "10.40.2.236", 80, "TCP")}
    assert sim.rows[0]["flows"] == 4 and sim.rows[0]["reply_flows"] == 2


@pytest.mark.parametrize("name,count", [("vpc_flow_log_too_few_fields.log", 13),
                                        ("vpc_flow_log_too_many_fields.log", 15)])
def test_wrong_number_of_fields_is_skipped_and_counted(tmp_path, name, count):
    log = OTEL / name
    reason = f"wrong number of fields ({count}, expected 14)"
    refused(Sim(tmp_path / "alone", [log]), f"nothing to judge: 0 of 1 record evaluated "
                                            f"({reason} ×1)")
    sim = ok(Sim(tmp_path / "both", [log, V2]))
    assert sim.flows["files"][0]["skipped"] == {reason: 1}
    assert f"{log}: line 2: {reason}" in sim.flows["skipped_examples"]
    assert f"{log}: line 2: {reason}" in sim.output  # named in the terminal summary too
    # the headline says what was not judged, with the hint for custom formats
    hint = [w for w in sim.summary["warnings"] if w["code"] == "wrong_field_count"]
    assert hint and "--vpc-fields" in hint[0]["message"]
    assert "partial judgement" in sim.output and "--vpc-fields" in sim.output


def test_gzip_file_and_gzip_on_stdin(tmp_path):
    plain = ok(Sim(tmp_path / "plain", [V2]))
    gz = tmp_path / "123_vpcflowlogs_eu-west-1_fl-1_20240101T0000Z_abcd.log.gz"
    gz.write_bytes(gzip.compress(V2.read_bytes()))
    packed = ok(Sim(tmp_path / "gz", [gz]))
    assert comparable(packed.rows) == comparable(plain.rows)
    assert packed.flows["skipped_examples"][0] == \
        f"{gz}: line 4: NODATA record (no traffic in the window)"
    piped = ok(Sim(tmp_path / "stdin", ["-"], stdin=gzip.compress(V3_FLAGS.read_bytes())))
    assert piped.keys() == {("52.213.180.42", "10.0.0.62", 5001, "TCP")}
    assert piped.summary["inputs"]["flows"][0]["format"] == "vpc-text"


def test_stdin(tmp_path):
    sim = ok(Sim(tmp_path, ["-"], stdin=V2.read_bytes()))
    assert sim.flows["read"] == 7
    assert sim.flows["skipped_examples"][0].endswith(
        ": line 4: NODATA record (no traffic in the window)")


def test_headerless_default_format(tmp_path):
    f = tmp_path / "noheader.log"
    f.write_text("\n".join(V2.read_text().splitlines()[1:]) + "\n")
    sim = ok(Sim(tmp_path, [f]))
    assert sim.flows["read"] == 7
    assert sim.flows["skipped_examples"][0] == \
        f"{f}: line 3: NODATA record (no traffic in the window)"


CUSTOM = "srcaddr dstaddr srcport dstport protocol packets bytes start end action"


def test_vpc_fields_for_headerless_custom_format(tmp_path):
    f = tmp_path / "custom.log"
    f.write_text(f"{XA} {YA} 40000 80 6 3 180 1700000000 1700000060 ACCEPT\n"
                 f"{YA} {XA} 80 40000 6 3 180 1700000000 1700000060 ACCEPT\n")
    unknown = Sim(tmp_path / "a", [f])  # not the default format: not recognised
    assert unknown.exit_code == 2 and "unknown flow file format" in unknown.output
    assert "--vpc-fields" in unknown.output
    sim = ok(Sim(tmp_path / "b", [f], "--vpc-fields", CUSTOM))
    assert sim.keys() == {(XA, YA, 80, "TCP")} and sim.rows[0]["reply_flows"] == 1
    aws_style = " ".join("${" + n + "}" for n in CUSTOM.split())  # the flow log's format
    assert ok(Sim(tmp_path / "c", [f], "--vpc-fields", aws_style)).rows == sim.rows
    # forced, without the field list: the default format, so every record is the wrong size
    refused(Sim(tmp_path / "d", [f], "--flows-format", "vpc-text"),
            "nothing to judge", "wrong number of fields (10, expected 14) ×2")


def test_header_wins_over_vpc_fields(tmp_path):
    sim = ok(Sim(tmp_path, [V3_FLAGS], "--vpc-fields", CUSTOM))
    assert sim.keys() == {("52.213.180.42", "10.0.0.62", 5001, "TCP")}


def test_bad_vpc_fields_is_a_usage_error(tmp_path):
    sim = Sim(tmp_path, [V2], "--vpc-fields", "version, src addr!")
    assert sim.exit_code == 2
    lines = sim.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simulate: error: --vpc-fields: ")


def test_flows_format_forces_text_on_a_csv_name(tmp_path):
    f = tmp_path / "flows.csv"
    f.write_bytes(V2.read_bytes())
    assert Sim(tmp_path / "a", [f]).exit_code == 2  # read as a CSV table: no such schema
    sim = ok(Sim(tmp_path / "b", [f], "--flows-format", "vpc-text"))
    assert sim.flows["read"] == 7


@pytest.mark.parametrize("content", [b"", b"\n  \n", gzip.compress(b""), b""],
                         ids=["empty", "blank", "empty-gzip", "zero-byte-gz"])
def test_empty_log_is_refused_never_green(tmp_path, content):
    """An empty file judges nothing: exit 2 naming it, never "nothing would break"."""
    gz = content[:2] == b"\x1f\x8b" or "gz" in tmp_path.name
    f = tmp_path / ("empty.log.gz" if gz else "empty.log")
    f.write_bytes(content)
    sim = Sim(tmp_path, [f], "--fail-on-break")
    refused(sim, str(f), "empty file")
    assert sim.rows == [] and sim.summary == {}  # no output written


def test_text_log_with_cluster_and_policies_finds_a_break(tmp_path):
    log = tmp_path / "123456789012_vpcflowlogs_eu-west-1_fl-1_20240601T1200Z_0a1b.log"
    log.write_text("\n".join([
        V2_HEADER,
        f"2 123456789012 eni-0a {XA} {YA} 41234 80 6 10 840 1717243200 1717243260 ACCEPT OK",
        f"2 123456789012 eni-0b {YA} {XA} 80 41234 6 8 4200 1717243200 1717243260 ACCEPT OK",
        f"2 123456789012 eni-0b {XB} {YA} 45000 81 6 2 120 1717243200 1717243260 REJECT OK",
        "2 123456789012 eni-0c - - - - - - - 1717243200 1717243260 - NODATA",
    ]) + "\n")
    cluster = write_cluster(tmp_path / "cluster.json", world())
    sim = Sim(tmp_path, [log], "--fail-on-break", cluster=cluster,
              policies=[deny_all_ingress("y")])
    assert sim.exit_code == 1, sim.output
    assert sim.flows["read"] == 4 and sim.flows["evaluated"] == 3
    brk = [r for r in sim.rows if r["change"] == "break"]
    assert [(r["src_pod"], r["dst_pod"], r["dst_port"]) for r in brk] == [("a", "a", 80)]
    assert brk[0]["src_namespace"] == "x" and brk[0]["dst_namespace"] == "y"
    assert brk[0]["flows"] == 2 and brk[0]["reply_flows"] == 1
    assert "x/Pod/a -> y/Pod/a TCP/80" in sim.output


# --- CloudWatch Logs ------------------------------------------------------------------------

def test_cloudwatch_envelope(tmp_path):
    cw = OTEL / "valid_vpc_flow_cw.json"
    sim = ok(Sim(tmp_path, [cw]))
    assert sim.summary["inputs"]["flows"] == [{"format": "vpc-cloudwatch", "files": [str(cw)]}]
    assert sim.flows["read"] == 2 and sim.flows["skipped"] == {}
    assert sim.keys() == {("172.31.16.139", "172.31.16.21", 22, "TCP"),
                          ("172.31.9.69", "172.31.9.12", 3389, "TCP")}


def test_cloudwatch_custom_format(tmp_path):
    cw = OTEL / "valid_vpc_flow_cw_custom.json"
    refused(Sim(tmp_path / "a", [cw]), str(cw), "nothing to judge",
            "wrong number of fields (4, expected 14) ×2")
    sim = ok(Sim(tmp_path / "a2", [cw, OTEL / "valid_vpc_flow_cw.json"]))
    assert sim.flows["files"][0]["skipped"] == {"wrong number of fields (4, expected 14)": 2}
    assert f"{cw}: event 1: wrong number of fields (4, expected 14)" in \
        sim.flows["skipped_examples"]
    refused(Sim(tmp_path / "b", [cw], "--vpc-fields", "version interface-id srcaddr dstaddr"),
            "nothing to judge", "missing protocol ×2")  # none in the format


def test_cloudwatch_gzip_several_envelopes_and_control_messages(tmp_path):
    env = json.loads((OTEL / "valid_vpc_flow_cw.json").read_text())
    control = {**env, "messageType": "CONTROL_MESSAGE", "logEvents": [
        {"id": "", "timestamp": 1, "message": "CWL CONTROL MESSAGE: Checking health of "
                                               "destination Firehose."}]}
    nodata = {"id": "e3", "timestamp": 1, "message":
              "2 123456789010 eni-1 - - - - - - - 1418530010 1418530070 - NODATA"}
    short = {"id": "e4", "timestamp": 1, "message": "2 123456789010 eni-1 10.0.0.1"}
    third = {**env, "logEvents": [nodata, short]}
    f = tmp_path / "firehose.json.gz"
    # concatenated objects, as Firehose writes them
    f.write_bytes(gzip.compress("".join(json.dumps(e) for e in (env, control, third))
                                .encode()))
    sim = ok(Sim(tmp_path, [f]))
    assert sim.summary["inputs"]["flows"][0]["format"] == "vpc-cloudwatch"
    assert sim.flows["read"] == 4
    assert sim.flows["skipped"] == {"NODATA record (no traffic in the window)": 1,
                                    "wrong number of fields (4, expected 14)": 1}
    assert sorted(sim.flows["skipped_examples"]) == [
        f"{f}: envelope 3 event 1: NODATA record (no traffic in the window)",
        f"{f}: envelope 3 event 2: wrong number of fields (4, expected 14)"]


def test_cloudwatch_on_stdin_and_forced(tmp_path):
    cw = (OTEL / "valid_vpc_flow_cw.json").read_bytes()
    assert ok(Sim(tmp_path / "a", ["-"], stdin=gzip.compress(cw))).flows["read"] == 2
    f = tmp_path / "events.txt"
    f.write_bytes(cw)
    sim = ok(Sim(tmp_path / "b", [f], "--flows-format", "vpc-cloudwatch"))
    assert sim.flows["read"] == 2


# --- detection ------------------------------------------------------------------------------

def test_sniff_keeps_hubble_and_other_json_out():
    hubble = [p for p in (FIXTURES / "hubble").glob("*.json*")]
    lines = [p.read_text()[:65536] for p in hubble] + [
        '{"flow": {"verdict": "FORWARDED", "IP": {"source": "10.0.0.1"}}}\n',
        '{"verdict": "DROPPED", "IP": {"source": "10.0.0.1"}, "logEvents": []}\n',
        '{"time": "2024-01-01T00:00:00Z", "message": "2 a b c d e f g h i j k l m"}\n']
    for head in lines:
        assert not vpc_text.sniff(head), head[:80]
        assert not vpc_cloudwatch.sniff(head), head[:80]
    assert vpc_text.sniff(V2.read_text()) and vpc_text.sniff(V3_FLAGS.read_text())
    assert vpc_cloudwatch.sniff((OTEL / "valid_vpc_flow_cw.json").read_text())
    assert not vpc_text.sniff((OTEL / "valid_vpc_flow_cw.json").read_text())
    assert not vpc_text.sniff("hello world\nthis is not a flow log\n")
    # a header with fields unknown today (newer versions) is still a header
    assert vpc_text.sniff("version srcaddr dstaddr some-future-field\n")


def test_traffic_recorded_at_both_interfaces_counts_once(tmp_path):
    """With flow-direction in the format, the sender's egress record and the receiver's
    ingress record of the same traffic are one flow, not two."""
    header = ("version interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
              "start end action log-status flow-direction")
    lines = [header,
             "5 eni-a 10.0.1.10 10.0.2.10 40000 80 6 3 300 1717243200 1717243260 ACCEPT OK egress",
             "5 eni-b 10.0.1.10 10.0.2.10 40000 80 6 3 300 1717243200 1717243260 ACCEPT OK "
             "ingress",
             "5 eni-b 10.0.2.10 10.0.1.10 80 40000 6 2 900 1717243200 1717243260 ACCEPT OK egress"]
    (tmp_path / "f.log").write_text("\n".join(lines) + "\n")
    write_policies(tmp_path / "p", [])
    out, js = tmp_path / "o.parquet", tmp_path / "o.json"
    r = CliRunner().invoke(main, ["--flows", str(tmp_path / "f.log"), "--policies",
                                  str(tmp_path / "p"), "--out", str(out), "--json", str(js),
                                  "-q"])
    assert r.exit_code == 0, r.output
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 1
    assert (rows[0]["flows"], rows[0]["reply_flows"], rows[0]["bytes"]) == (2, 1, 1200)
    skipped = json.loads(js.read_text())["summary"]["flows"]["skipped"]
    assert skipped == {"same traffic recorded at the other interface (flow-direction)": 1}
