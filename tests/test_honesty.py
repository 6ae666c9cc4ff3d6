"""Honest verdicts: nothing judged is never green, a bad record is skipped and counted (never
replayed or coerced), hostile input is bounded and inert, inputs are never touched, and each
exit code means one thing. Every fixture here is small and built in the test."""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from test_semantics import EXT, XA, YA, deny_all_ingress, world
from worldfiles import netpol, pod, vpc_record, write_cluster, write_policies, write_vpc_parquet

from simulator import __version__
from simulator.cli import FLOW_FORMATS, main

FIXTURES = Path(__file__).parent / "fixtures"
T0 = 1_717_000_000
HOSTILE_CHARS = ("\x1b", "\x07", "\x00", "\x9b", "\u202e", "\u2066")


def invoke(*args: Any, stdin: bytes | None = None) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], input=stdin)


def refused(result: Any, *fragments: str, code: int = 2) -> str:
    """Exit code 2 (or `code`) with exactly one line on stderr, no traceback."""
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def world_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "cluster": write_cluster(tmp_path / "cluster.json", world()),
        "policies": write_policies(tmp_path / "policies", [deny_all_ingress("y")]),
        "good": write_vpc_parquet(tmp_path / "good.parquet", [vpc_record(XA, YA, 80)]),
    }


def summary_of(result: Any, js: Path) -> dict[str, Any]:
    assert result.exit_code in (0, 1), result.output
    return json.loads(js.read_text())


def assert_accounted(doc: dict[str, Any]) -> None:
    """records read = evaluated + skipped, for the run and for every file."""
    fl = doc["summary"]["flows"]
    assert fl["read"] == fl["evaluated"] + sum(fl["skipped"].values())
    for f in fl["files"]:
        assert f["records"] == f["evaluated"] + sum(f["skipped"].values()), f
    assert sum(f["records"] for f in fl["files"]) == fl["read"]
    assert sum(f["evaluated"] for f in fl["files"]) == fl["evaluated"]


# --- 1. nothing judged is never green ----------------------------------------------------

def _pcap_header() -> bytes:
    return (b"\xd4\xc3\xb2\xa1" + (2).to_bytes(2, "little") + (4).to_bytes(2, "little")
            + bytes(8) + (65535).to_bytes(4, "little") + (1).to_bytes(4, "little"))


def _struct_parquet(path: Path, column: str) -> None:
    rows = [vpc_record(XA, YA, 80)]
    table = pa.Table.from_pylist(rows)
    table = table.set_column(table.schema.get_field_index(column), column,
                             pa.array([{"a": "10.0.1.10"}]) if column == "srcaddr"
                             else pa.array([[80]]))
    pq.write_table(table, path)


UNUSABLE = {
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "zero-byte.gz": (lambda p: p.write_bytes(b""), "empty file"),
    "nothing.gz": (lambda p: p.write_bytes(gzip.compress(b"")), "empty file"),
    "blank.log": (lambda p: p.write_text("\n \n\t\n"), "empty file"),
    "garbage.bin": (lambda p: p.write_bytes(bytes(range(256)) * 64),
                    "unknown flow file format"),
    "garbage.parquet": (lambda p: p.write_bytes(b"\x00\x01garbage" * 100),
                        "not a readable PARQUET file"),
    "magic-only.pcap": (lambda p: p.write_bytes(b"\xd4\xc3\xb2\xa1"),
                        "unusable capture: truncated capture at byte 4"),
    "cut-header.pcap": (lambda p: p.write_bytes(_pcap_header()[:18]),
                        "unusable capture: truncated capture at byte 18"),
    "cut-shb.pcapng": (lambda p: p.write_bytes(b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00"
                                               b"\x4d\x3c\x2b\x1a"),
                       "unusable capture: truncated capture at byte 0"),
    "struct-address.parquet": (lambda p: _struct_parquet(p, "srcaddr"),
                               "column srcaddr has type STRUCT"),
    "list-port.parquet": (lambda p: _struct_parquet(p, "dstport"), "column dstport has type"),
    "no-line-parses.jsonl": (lambda p: p.write_text("{not json\n[[[\n}\n"),
                             "unknown flow file format"),
}


@pytest.mark.parametrize("name", sorted(UNUSABLE))
def test_unusable_flow_file_is_refused_naming_it(tmp_path, world_files, name):
    make, why = UNUSABLE[name]
    f = tmp_path / name
    make(f)
    line = refused(invoke("--flows", f, "--policies", world_files["policies"],
                          "--json", tmp_path / "o.json"), str(f), why)
    assert len(line) < 300  # one short line: the formats are in --help, not in the error
    assert not (tmp_path / "o.json").exists()


def test_path_with_trailing_slash_and_missing_paths(tmp_path, world_files):
    good = world_files["good"]
    refused(invoke("--flows", f"{good}/", "--policies", world_files["policies"]),
            "not a directory")
    refused(invoke("--flows", world_files["good"], "--cluster",
                   f"{world_files['cluster']}/", "--policies", world_files["policies"]),
            "not a directory")
    (tmp_path / "nothing").mkdir()
    refused(invoke("--flows", tmp_path / "nothing", "--policies", world_files["policies"]),
            "the directory holds no files")
    refused(invoke("--flows", tmp_path / "*.nope", "--policies", world_files["policies"]),
            "the pattern matches no file")
    # an empty path would be the current directory: never what was meant
    refused(invoke("--flows", "", "--policies", world_files["policies"]), "--flows: an empty")
    refused(invoke("--flows", good, "--policies", ""), "--policies: an empty path")
    refused(invoke("--flows", good, "--policies", world_files["policies"], "--out", ""),
            "--out: an empty path")


def test_directory_lists_files_it_cannot_read_and_goes_on(tmp_path, world_files):
    d = tmp_path / "logs"
    d.mkdir()
    write_vpc_parquet(d / "part-0.parquet", [vpc_record(XA, YA, 80)])
    (d / "README.md").write_text("# VPC flow logs exported from S3\n\nSee the wiki.\n")
    (d / "SHA256SUMS").write_text("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852"
                                  "b855  part-0.parquet\n")
    (d / "empty.log").write_bytes(b"")
    js = tmp_path / "o.json"
    r = invoke("--flows", d, "--cluster", world_files["cluster"], "--policies",
               world_files["policies"], "--json", js)
    doc = summary_of(r, js)
    skipped = {Path(f["file"]).name: f["reason"] for f in
               doc["summary"]["inputs"]["skipped_files"]}
    assert set(skipped) == {"README.md", "SHA256SUMS", "empty.log"}
    assert skipped["empty.log"] == "empty file"
    assert skipped["README.md"].startswith("unknown flow file format")
    assert doc["summary"]["flows"]["evaluated"] == 1
    assert "skipped_files" in [w["code"] for w in doc["warnings"]]
    assert "file skipped: " in r.output and "partial judgement" in r.output
    # the same file named on its own is judged strictly
    refused(invoke("--flows", d / "README.md", "--policies", world_files["policies"]),
            "README.md", "unknown flow file format")


def test_run_that_evaluates_nothing_is_exit_2_with_counts(tmp_path, world_files):
    f = write_vpc_parquet(tmp_path / "nodata.parquet", [
        vpc_record(None, None, 0, log_status="NODATA"),
        vpc_record(None, None, 0, log_status="NODATA"),
        vpc_record(XA, YA, 80, log_status="SKIPDATA")])
    line = refused(invoke("--flows", f, "--cluster", world_files["cluster"], "--policies",
                          world_files["policies"], "--fail-on-break"))
    assert line == (f"simulate: error: {f}: nothing to judge: 0 of 3 records evaluated "
                    "(NODATA record (no traffic in the window) ×2, SKIPDATA record (AWS "
                    "dropped records) ×1)")


@pytest.mark.parametrize("content,why", [
    (b"", "empty: no Kubernetes objects"),
    (b"# kubectl get pods -o yaml\n---\n", "empty: no Kubernetes objects"),
    (b"\x89PNG\r\n\x1a\n\x00\x00garbage\xff\xfe", "not UTF-8 text"),
    (b"[1, 2, 3]", "no Kubernetes object in the file"),
    (b"hello", "no Kubernetes object in the file"),
])
def test_empty_or_unreadable_cluster_is_refused(tmp_path, world_files, content, why):
    c = tmp_path / "snapshot.yaml"
    c.write_bytes(content)
    refused(invoke("--flows", world_files["good"], "--cluster", c, "--policies",
                   world_files["policies"]), str(c), why)


def test_policy_directory_without_manifests_is_refused(tmp_path, world_files):
    d = tmp_path / "policies-typo"
    d.mkdir()
    (d / "README.txt").write_text("policies live in ../netpol\n")
    base = ["--flows", world_files["good"]]
    refused(invoke(*base, "--policies", d), str(d),
            "--policies: the directory holds no manifest file")
    refused(invoke(*base, "--policies", world_files["policies"], "--baseline", d), str(d),
            "--baseline: the directory holds no manifest file")


def test_zero_networkpolicies_is_allowed_but_loud(tmp_path, world_files):
    d = tmp_path / "only-configmaps"
    d.mkdir()
    (d / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    js = tmp_path / "o.json"
    r = invoke("--flows", world_files["good"], "--cluster", world_files["cluster"],
               "--policies", d, "--json", js)
    doc = summary_of(r, js)
    (w,) = [w for w in doc["warnings"] if w["code"] == "empty_policy_set"]
    assert "candidate set holds no policy" in w["message"]
    assert w["message"] in r.output and "partial judgement" in r.output


def test_what_was_not_judged_is_in_every_headline(tmp_path, world_files):
    """Ignored policy dialects and a run that mapped no endpoint to a pod: warnings in the
    terminal verdict, the HTML and Markdown headlines and --json; --strict trips on them."""
    d = tmp_path / "cand"
    write_policies(d, [deny_all_ingress("y")])
    (d / "cilium.yaml").write_text(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: c, namespace: y}"
        "\nspec: {selector: all()}\n---\napiVersion: v1\nkind: ConfigMap\n"
        "metadata: {name: not-a-policy}\n")
    out = {k: tmp_path / f"r.{k}" for k in ("json", "html", "md")}
    args = ["--flows", world_files["good"], "--policies", d, "--json", out["json"],
            "--report", out["html"], "--markdown", out["md"]]
    r = invoke(*args)
    doc = summary_of(r, out["json"])
    codes = [w["code"] for w in doc["warnings"]]
    assert codes == ["ignored_policy_kinds", "no_pod_identity"]  # the ConfigMap is no policy
    assert "projectcalico.org/v3 NetworkPolicy ×1" in doc["warnings"][0]["message"]
    verdict = r.output.splitlines().index(next(x for x in r.output.splitlines()
                                               if x.startswith("Verdict:")))
    assert "partial judgement, 2 warnings" in r.output.splitlines()[verdict]
    assert doc["report"]["headline"].endswith("— partial judgement: 2 warnings")
    html, md = out["html"].read_text(), out["md"].read_text()
    assert 'id="warnings"' in html and "projectcalico.org/v3 NetworkPolicy" in html
    assert md.splitlines()[0].endswith("partial judgement: 2 warnings")
    assert "**Not judged**" in md and "no endpoint could be mapped to a pod" in md
    strict = invoke("--flows", world_files["good"], "--policies", d, "--strict", "-q")
    assert strict.exit_code == 1
    gates = [x for x in strict.output.splitlines() if x.startswith("simulate: gate")]
    assert len(gates) == 2 and all(g.startswith("simulate: gate --strict: ") for g in gates)
    # a run that judged everything passes --strict
    ok = invoke("--flows", world_files["good"], "--cluster", world_files["cluster"],
                "--policies", world_files["policies"], "--strict", "-q")
    assert ok.exit_code == 0, ok.output


def test_large_unresolved_share_is_a_warning(tmp_path, world_files):
    f = write_vpc_parquet(tmp_path / "f.parquet", [vpc_record(XA, "10.0.2.250", 80),
                                                  vpc_record(XA, YA, 80)])
    js = tmp_path / "o.json"
    doc = summary_of(invoke("--flows", f, "--cluster", world_files["cluster"], "--policies",
                            world_files["policies"], "--pod-cidr", "10.0.0.0/16", "--json",
                            js), js)
    (w,) = [w for w in doc["warnings"] if w["code"] == "unresolved_share"]
    assert w["message"].startswith("50% of the evaluated flows")


def test_fail_on_disagreement_needs_something_to_disagree_with(tmp_path, world_files):
    line = refused(invoke("--flows", world_files["good"], "--policies",
                          world_files["policies"], "--fail-on-disagreement"))
    assert "--fail-on-disagreement needs --baseline" in line
    table = pa.table({"start_time": pa.array([T0 * 10**6], pa.timestamp("us", tz="UTC")),
                      "src_ip": [XA], "dst_ip": [YA], "dst_port": pa.array([80], pa.int32()),
                      "protocol": ["TCP"]})
    pq.write_table(table, tmp_path / "noverdict.parquet")
    out = tmp_path / "conns.parquet"
    refused(invoke("--flows", tmp_path / "noverdict.parquet", "--cluster",
                   world_files["cluster"], "--policies", world_files["policies"], "--baseline",
                   world_files["policies"], "--fail-on-disagreement", "--out", out),
            "--fail-on-disagreement", "no verdict")
    # refused: no output is left behind, nor a partial one
    assert not list(tmp_path.glob("*conns.parquet*"))


# --- 2. a bad record is skipped and counted, never replayed --------------------------------

BAD_PORTS = ["http", "80.5", "-1", "-5", "70000", "99999999999999999999", "0x50", "1e3"]
BAD_PROTOCOLS = ["999", "-3", "FOO", "6.5"]
BAD_ADDRESSES = ["999.1.1.1", "167772161", "fe80::1%eth0", "10.0.0.1.5"]


def _text_vpc(tmp: Path, bad: dict[str, str]) -> Path:
    """A VPC text log: two good records and one whose fields `bad` overrides."""
    header = ("version account-id interface-id srcaddr dstaddr srcport dstport protocol "
              "packets bytes start end action log-status")
    names = header.split()

    def line(**kw: str) -> str:
        rec = {"version": "2", "account-id": "1", "interface-id": "eni-1", "srcaddr": XA,
               "dstaddr": YA, "srcport": "40000", "dstport": "80", "protocol": "6",
               "packets": "3", "bytes": "180", "start": str(T0), "end": str(T0 + 60),
               "action": "ACCEPT", "log-status": "OK", **kw}
        return " ".join(rec[n] for n in names)

    f = tmp / "flows.log"
    f.write_text("\n".join([header, line(), line(srcport="40001"), line(**bad)]) + "\n")
    return f


@pytest.mark.parametrize("field,value,reason", [
    *[("dstport", v, "invalid port") for v in BAD_PORTS],
    ("srcport", "http", "invalid port"),
    *[("protocol", v, "invalid protocol") for v in BAD_PROTOCOLS],
    *[("srcaddr", v, "invalid IP address") for v in BAD_ADDRESSES],
    ("dstaddr", "2001:db8::1", "different address families"),
    ("start", "1e20", "invalid or absurd timestamp"),
    ("start", "-1000000000000000000", "invalid or absurd timestamp"),
    ("end", "yesterday", "invalid or absurd timestamp"),
    ("packets", "-5", "invalid packet or byte count"),
    ("bytes", "99999999999999999999", "invalid packet or byte count"),
    ("bytes", "1.5", "invalid packet or byte count"),
])
def test_impossible_value_is_skipped_never_coerced(tmp_path, world_files, field, value, reason):
    f = _text_vpc(tmp_path, {field: value})
    js, out = tmp_path / "o.json", tmp_path / "o.parquet"
    doc = summary_of(invoke("--flows", f, "--cluster", world_files["cluster"], "--policies",
                            world_files["policies"], "--json", js, "--out", out), js)
    assert_accounted(doc)
    fl = doc["summary"]["flows"]
    assert fl["read"] == 3 and fl["evaluated"] == 2
    (skipped,) = fl["skipped"]
    assert reason in skipped
    assert any(e.startswith(f"{f}: line 4: ") for e in fl["skipped_examples"])
    rows = pq.read_table(out).to_pylist()
    assert {(r["src_ip"], r["dst_ip"], r["dst_port"], r["protocol"]) for r in rows} == {
        (XA, YA, 80, "TCP")}


def test_impossible_values_in_typed_columns(tmp_path, world_files):
    """Parquet columns of the wrong width or kind: each bad row skipped, the others kept;
    an absurd timestamp never ends the run (DuckDB's epoch conversion would)."""
    n = 6
    table = pa.table({
        "srcaddr": [XA] * n, "dstaddr": [YA] * n,
        "srcport": pa.array([40000] * n, pa.int64()),
        "dstport": pa.array([80, 80, 70000, -1, 80, 80], pa.int64()),
        "protocol": pa.array([6.0, 6.0, 6.0, 6.0, 6.5, 6.0], pa.float64()),
        "packets": pa.array([1, 1, 1, 1, 1, -4], pa.int64()),
        "bytes": pa.array([60] * n, pa.int64()),
        "start": pa.array([T0, float("nan"), T0, T0, T0, T0], pa.float64()),
        "end": pa.array([T0 + 1] * n, pa.float64()),
        "action": ["ACCEPT"] * n, "log_status": ["OK"] * n})
    pq.write_table(table, tmp_path / "typed.parquet")
    js = tmp_path / "o.json"
    doc = summary_of(invoke("--flows", tmp_path / "typed.parquet", "--cluster",
                            world_files["cluster"], "--policies", world_files["policies"],
                            "--json", js), js)
    assert_accounted(doc)
    fl = doc["summary"]["flows"]
    assert fl["evaluated"] == 1
    assert fl["skipped"] == {
        "invalid or absurd timestamp": 1,
        "invalid packet or byte count (negative, not an integer, or absurd)": 1,
        "invalid port (not an integer 0-65535)": 2,
        "invalid protocol (not a number 0-255 or a known name)": 1}
    ports = {c["dst_port"] for c in doc["connections"]}
    assert ports == {80}


def _hubble_line(src: Any, dst: Any, dport: Any, time_: str = "2024-06-01T12:00:00Z") -> str:
    return json.dumps({"flow": {
        "time": time_, "verdict": "FORWARDED", "IP": {"source": src, "destination": dst},
        "l4": {"TCP": {"source_port": 41000, "destination_port": dport,
                       "flags": {"SYN": True}}},
        "source": {"namespace": "x", "pod_name": "a", "labels": ["k8s:pod=a"]},
        "destination": {"namespace": "y", "pod_name": "a", "labels": ["k8s:pod=a"]}}})


def test_bad_records_in_json_lines_are_counted(tmp_path, world_files):
    """Hubble: an address that is an integer, an object or a list, a port that is a float or
    a word, a time that is not one, a line that is not JSON; all counted, none replayed,
    even where the flow names the pods."""
    lines = [_hubble_line(XA, YA, 80),
             _hubble_line(167772161, YA, 80), _hubble_line({"a": 1}, YA, 80),
             _hubble_line([1, 2], YA, 80), _hubble_line(XA, YA, 80.5),
             _hubble_line(XA, YA, "http"), _hubble_line(XA, YA, 80, "not-a-time"),
             "{this is not json", _hubble_line(XA, YA, 80)]
    f = tmp_path / "hubble.jsonl"
    f.write_text("\ufeff" + "\n".join(lines) + "\n")  # with a byte-order mark
    js = tmp_path / "o.json"
    doc = summary_of(invoke("--flows", f, "--policies", world_files["policies"], "--json",
                            js), js)
    assert_accounted(doc)
    fl = doc["summary"]["flows"]
    assert (fl["read"], fl["evaluated"]) == (9, 2)
    assert fl["skipped"]["invalid IP address"] == 3
    assert fl["skipped"]["invalid port (not an integer 0-65535)"] == 2
    assert fl["skipped"]["invalid or absurd timestamp"] == 1
    assert [c["dst_port"] for c in doc["connections"]] == [80]


@pytest.mark.parametrize("sample", [
    FIXTURES / "hubble" / "basic-sample-10-flows.json",
    FIXTURES / "awsdocs-v2-default-format.log",
    FIXTURES / "antrea" / "flowlogger-csv-unit-test-examples.csv",
    FIXTURES / "calico" / "tigera-docs-enterprise-flowlog-example.json",
], ids=lambda p: p.name)
@pytest.mark.parametrize("prefix", ["bom", "garbage-line"])
def test_bom_and_stray_first_line_do_not_defeat_detection(tmp_path, world_files, sample,
                                                          prefix):
    f = tmp_path / sample.name
    body = sample.read_bytes()
    plain = tmp_path / "plain.json"
    base = summary_of(invoke("--flows", sample, "--policies", world_files["policies"],
                             "--json", plain), plain)
    f.write_bytes(b"\xef\xbb\xbf" + body if prefix == "bom"
                  else b"#!! exported by some-tool v1.2 -- do not edit\n" + body)
    js = tmp_path / "o.json"
    doc = summary_of(invoke("--flows", f, "--policies", world_files["policies"], "--json",
                            js), js)
    assert_accounted(doc)
    fl = doc["summary"]["flows"]
    assert doc["summary"]["inputs"]["flows"][0]["format"] == \
        base["summary"]["inputs"]["flows"][0]["format"]
    assert fl["evaluated"] == base["summary"]["flows"]["evaluated"]
    extra = 0 if prefix == "bom" else 1  # the stray line is one skipped record
    assert fl["read"] == base["summary"]["flows"]["read"] + extra


def test_odd_cloudwatch_envelope_skips_only_its_events(tmp_path, world_files):
    good = json.loads((FIXTURES / "otel-vpc" / "valid_vpc_flow_cw.json").read_text())
    odd_list = {**good, "logEvents": "not a list"}
    odd_event = {**good, "logEvents": [{"id": "x", "timestamp": 1, "message": {"o": 1}},
                                       *good["logEvents"]]}
    f = tmp_path / "cw.json"
    f.write_text("\n".join(json.dumps(e) for e in (good, odd_list, odd_event)) + "\n")
    js = tmp_path / "o.json"
    doc = summary_of(invoke("--flows", f, "--policies", world_files["policies"], "--json",
                            js), js)
    assert_accounted(doc)
    fl = doc["summary"]["flows"]
    assert fl["evaluated"] == 4
    assert fl["skipped"] == {"malformed envelope (logEvents is not a list)": 1,
                             "malformed log event (message is not a string)": 1}


def test_bad_snapshot_items_are_skipped_and_counted(tmp_path, world_files):
    bad = [pod("x", "bad-ip", "10.0.1.300", {}), pod("x", "bad-port", "10.0.1.51", {},
                                                     [("http", 70000, "TCP")]),
           {**pod("x", "bad-time", "10.0.1.52", {}), "metadata": {
               "name": "bad-time", "namespace": "x", "creationTimestamp": "yesterday"}},
           {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "x"}},
           {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n9"},
            "spec": {"podCIDR": "10.9.0.0/33"}},
           "not an object"]
    c = tmp_path / "c.json"
    c.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": world() + bad}))
    js = tmp_path / "o.json"
    doc = summary_of(invoke("--flows", world_files["good"], "--cluster", c, "--policies",
                            world_files["policies"], "--json", js), js)
    cl = doc["summary"]["inputs"]["cluster"]
    assert cl["skipped"] == 6
    text = "\n".join(cl["skipped_examples"])
    for fragment in ("not an IP address: '10.0.1.300'", "containerPort: not a port number",
                     "not an RFC 3339 time: 'yesterday'", "metadata.name: missing",
                     "spec.podCIDRs: not a CIDR", "not a Kubernetes object (a str"):
        assert fragment in text
    assert doc["summary"]["connections"]["by_change"]["break"]["connections"] == 1


def test_records_without_byte_counts_show_n_a(tmp_path, world_files):
    for sample in (FIXTURES / "hubble" / "basic-sample-10-flows.json",
                   FIXTURES / "azure" / "azure-docs-nsg-flow-log-v2-example.json",
                   FIXTURES / "antrea" / "flowlogger-csv-unit-test-examples.csv"):
        r = invoke("--flows", sample, "--policies", world_files["policies"])
        assert r.exit_code == 0, r.output
        assert "Traceback" not in r.output
    r = invoke("--flows", FIXTURES / "hubble" / "basic-sample-10-flows.json", "--policies",
               world_files["policies"])
    still = next(x for x in r.output.splitlines() if x.strip().startswith("still allowed"))
    assert still.rstrip().endswith("n/a") and " 0 B" not in r.output


# network-policy-api/ holds policy conformance cases, not flow records
FLOW_FIXTURES = sorted(p for p in FIXTURES.rglob("*") if p.is_file()
                       and p.suffix not in (".md", ".txt")
                       and "network-policy-api" not in p.parts)


@pytest.mark.parametrize("sample", FLOW_FIXTURES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_fixture_accounts_for_every_record(tmp_path, world_files, sample):
    """Over every fixture: read = evaluated + skipped, per file and for the run, in --json
    and on the terminal; or, when nothing is left to judge, exit 2 with the counts."""
    js = tmp_path / "o.json"
    r = invoke("--flows", sample, "--policies", world_files["policies"], "--json", js)
    if r.exit_code == 2:
        line = refused(r, str(sample))
        assert "nothing to judge" in line or "unusable" in line or "empty" in line
        return
    doc = summary_of(r, js)
    assert_accounted(doc)
    fl = doc["summary"]["flows"]
    skipped = sum(fl["skipped"].values())
    assert f"Flows: {fl['read']:,} read = {fl['evaluated']:,} evaluated + {skipped:,} skipped" \
        in r.output


# --- 3. bounded and safe on hostile input --------------------------------------------------

BOMB = "".join(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join(
    [f"*{chr(96 + i)}"] * 9 if i else ['"lol"'] * 9) + "]\n" for i in range(9))


@pytest.mark.parametrize("where", ["cluster", "policies"])
@pytest.mark.parametrize("kind", ["alias-bomb", "deep-json", "deep-yaml"])
def test_hostile_manifests_end_quickly_with_one_line(tmp_path, world_files, where, kind):
    text = {"alias-bomb": BOMB,
            "deep-json": "[" * 20000 + "]" * 20000,
            "deep-yaml": "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 3000))}[kind]
    f = tmp_path / ("hostile.yaml" if where == "cluster" else "pol")
    if where == "policies":
        f.mkdir()
        (f / "hostile.yaml").write_text(text)
    else:
        f.write_text(text)
    args = ["--flows", world_files["good"], "--policies",
            f if where == "policies" else world_files["policies"]]
    if where == "cluster":
        args += ["--cluster", f]
    start = time.monotonic()
    line = refused(invoke(*args))
    assert time.monotonic() - start < 10
    assert ("alias bomb" in line) if kind == "alias-bomb" else ("nested" in line)


def test_hostile_strings_are_inert_everywhere(tmp_path):
    evil = "x\x1b[31mRED\x1b]0;pwned\x07\x9b2J\u202eevil\u2066\x00=cmd|' /C calc'!A0"
    table = pa.table({
        "start_time": pa.array([T0 * 10**6] * 2, pa.timestamp("us", tz="UTC")),
        "src_ip": [XA, XA], "dst_ip": [YA, YA], "src_port": pa.array([40000, 40001], pa.int32()),
        "dst_port": pa.array([80, 80], pa.int32()), "protocol": ["TCP", "TCP"],
        "verdict": ["allowed"] * 2, "src_namespace": ["x", "x"], "src_pod": [evil, evil],
        "src_labels": [json.dumps({"app": evil})] * 2, "dst_namespace": ["y", "y"],
        "dst_pod": ["db", "db"], "dst_labels": ['{"app": "db"}'] * 2})
    pq.write_table(table, tmp_path / "evil.parquet")
    write_policies(tmp_path / "p", [deny_all_ingress("y")])
    outs = {ext: tmp_path / f"o.{ext}" for ext in ("csv", "json", "html", "md", "jsonl")}
    r = invoke("--flows", tmp_path / "evil.parquet", "--policies", tmp_path / "p",
               "--out", outs["csv"], "--json", outs["json"], "--report", outs["html"],
               "--markdown", outs["md"])
    assert r.exit_code == 0, r.output
    r2 = invoke("--flows", tmp_path / "evil.parquet", "--policies", tmp_path / "p",
                "--out", outs["jsonl"], "-q")
    assert r2.exit_code == 0
    for ch in HOSTILE_CHARS:
        assert ch not in r.output, repr(ch)
        for path in outs.values():
            assert ch not in path.read_text(encoding="utf-8"), (path.name, repr(ch))
    assert "\\x1b[31mRED" in r.output  # shown, escaped
    assert b"\x00" not in outs["csv"].read_bytes()
    # lossless in JSON: a reader gets the name back
    doc = json.loads(outs["json"].read_text())
    assert evil in {c["src_pod"] for c in doc["connections"]}


def test_hostile_strings_in_errors_are_escaped(tmp_path, world_files):
    evil = tmp_path / "snap\x1b[2J\u202e.json"
    evil.write_text("{ not json")
    line = refused(invoke("--flows", world_files["good"], "--policies",
                          world_files["policies"], "--cluster", evil))
    assert "\x1b" not in line and "\u202e" not in line and "\\x1b[2J\\u202e" in line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_named_pipe_as_flows_is_read_once_as_a_stream(tmp_path, world_files):
    fifo = tmp_path / "flows.pipe"
    os.mkfifo(fifo)
    data = (FIXTURES / "awsdocs-v2-default-format.log").read_bytes()

    def feed() -> None:
        with open(fifo, "wb") as w:
            w.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    js = tmp_path / "o.json"
    doc = summary_of(invoke("--flows", fifo, "--policies", world_files["policies"],
                            "--json", js), js)
    writer.join(timeout=10)
    assert doc["summary"]["flows"]["read"] == 7
    assert doc["summary"]["inputs"]["flows"][0]["files"] == [str(fifo)]


# --- 4. inputs are never touched -----------------------------------------------------------

@pytest.mark.parametrize("option,target", [
    ("--out", "flows"), ("--json", "cluster"), ("--save-flows", "flows"),
    ("--report", "symlink-to-cluster"), ("--out", "hardlink-to-flows"),
    ("--markdown", "policy"), ("--out", "same-as-json"), ("--json", "directory"),
])
def test_outputs_never_overwrite_inputs(tmp_path, world_files, option, target):
    flows = tmp_path / "flows.csv"
    flows.write_text("start_time,src_ip,dst_ip,dst_port,protocol\n"
                     f"2024-06-01T00:00:00Z,{XA},{YA},80,TCP\n")
    link = tmp_path / "r.html"
    hard = tmp_path / "h.csv"
    paths = {"flows": flows, "cluster": world_files["cluster"],
             "policy": next(world_files["policies"].iterdir()),
             "symlink-to-cluster": link, "hardlink-to-flows": hard,
             "same-as-json": tmp_path / "o.json", "directory": tmp_path}
    if target == "symlink-to-cluster":
        link.symlink_to(world_files["cluster"])
    if target == "hardlink-to-flows":
        os.link(flows, hard)
    before = {p: p.read_bytes() for p in (flows, world_files["cluster"], paths["policy"])}
    args = ["--flows", flows, "--cluster", world_files["cluster"], "--policies",
            world_files["policies"], option, paths[target]]
    if target == "same-as-json":
        args += ["--json", tmp_path / "o.json"]
    line = refused(invoke(*args), option)
    assert "is the input file" in line or "is also the" in line or "is a directory" in line
    assert before == {p: p.read_bytes() for p in before}


def test_failed_write_leaves_nothing_half_written(tmp_path):
    import errno

    from simulator.errors import InputError
    from simulator.output.files import atomic_output, write_text

    target = tmp_path / "report.html"
    target.write_text("the previous report")
    with pytest.raises(InputError) as e, atomic_output(target) as tmp:
        tmp.write_text("half a rep")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(e.value) == f"{target}: cannot write: no space left on device"
    assert target.read_text() == "the previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    write_text(target, "the new report")
    assert target.read_text() == "the new report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


# --- 5. exit codes mean one thing each -----------------------------------------------------

@pytest.mark.parametrize("args,option", [
    (["--memory-limit", "lots"], "--memory-limit"),
    (["--threads", "-3"], "--threads"),
    (["--threads", "0"], "--threads"),
    (["--flows-format", "nope"], "--flows-format"),
    (["--max-breaks", "-1"], "--max-breaks"),
])
def test_bad_option_values_are_usage_errors_naming_the_option(world_files, args, option):
    refused(invoke("--flows", world_files["good"], "--policies", world_files["policies"],
                   *args), option)


def test_internal_error_is_exit_3_with_one_line(world_files, monkeypatch):
    from simulator import pipeline

    def broken(*a: Any, **k: Any) -> None:
        raise RuntimeError("a bug\nwith a second line")

    monkeypatch.setattr(pipeline, "build_summary", broken)
    args = ["--flows", world_files["good"], "--cluster", world_files["cluster"],
            "--policies", world_files["policies"]]
    assert refused(invoke(*args), code=3) == (
        "simulate: internal error: RuntimeError: a bug; rerun with --debug for the traceback")
    debug = invoke(*args, "--debug")
    assert debug.exit_code == 3 and "Traceback" in debug.output


def test_version_and_help_list_every_format():
    r = invoke("--version")
    assert r.exit_code == 0 and r.output.strip() == f"simulate (netpol-simulator) {__version__}"
    help_text = " ".join(invoke("--help").output.split())
    from simulator.ingest.sources import format_names

    assert list(FLOW_FORMATS) == format_names()
    for name in FLOW_FORMATS:
        assert name in help_text


def test_gate_exit_1_only_for_gates(tmp_path, world_files):
    """Exit 1 means a gate tripped: a run with breaks but no gate is 0."""
    f = write_vpc_parquet(tmp_path / "f.parquet", [vpc_record(XA, YA, 80),
                                                  vpc_record(EXT, YA, 80)])
    args = ["--flows", f, "--cluster", world_files["cluster"], "--policies",
            world_files["policies"], "-q"]
    assert invoke(*args).exit_code == 0
    assert invoke(*args, "--fail-on-break").exit_code == 1


def test_policies_stay_strict(tmp_path, world_files):
    d = tmp_path / "bad-policies"
    write_policies(d, [netpol("y", "bad", {"podSelector": {}, "ingress": [
        {"ports": [{"port": 70000}]}]})])
    refused(invoke("--flows", world_files["good"], "--policies", d),
            "spec.ingress[0].ports[0].port")


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_endless_garbage_stream_is_refused_without_reading_it_all(tmp_path, world_files,
                                                                  device):
    if not Path(device).exists():
        pytest.skip(f"no {device}")
    start = time.monotonic()
    refused(invoke("--flows", device, "--policies", world_files["policies"]), device,
            "unknown flow file format")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("signame,message", [("SIGTERM", "terminated"),
                                             ("SIGINT", "interrupted")])
def test_signal_unwinds_the_run(tmp_path, world_files, signame, message):
    """SIGTERM (a CI timeout) or Ctrl-C unwinds the run: exit 128+signal, one line, never
    an internal error; the temporary directory gone, no output written."""
    import signal
    import subprocess
    import sys

    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator.cli", "--flows", "-", "--policies",
         str(world_files["policies"]), "--out", str(tmp_path / "o.csv")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(temp)})
    assert proc.stdin is not None
    proc.stdin.write((FIXTURES / "awsdocs-v2-default-format.log").read_bytes())
    proc.stdin.flush()  # the stream stays open: the run waits for the rest of it
    deadline = time.monotonic() + 30
    while not any(temp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the run has made its temporary directory
    signum = getattr(signal, signame)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    assert err.decode().strip() == f"simulate: {message}"
    assert list(temp.iterdir()) == []
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="workers need a second CPU")
def test_ctrl_c_while_workers_parse_the_policies(tmp_path, world_files):
    """Ctrl-C reaches the whole process group, the policy-parsing workers too: the run
    still ends at once, with one line (the workers end without a word of their own)."""
    import signal
    import subprocess
    import sys

    policies = write_policies(tmp_path / "many", [netpol(
        f"ns-{i % 7}", f"p{i}", {"podSelector": {"matchLabels": {"app": f"a{i}"}},
                                 "ingress": [{"ports": [{"port": 1000 + i % 50}]}]})
        for i in range(1500)])
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator.cli", "--flows", "-", "--policies", str(policies)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(temp)}, start_new_session=True)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 30
    # the stream stays open: the run waits for it, its workers for the run to read theirs
    while time.monotonic() < deadline and not (
            any(temp.iterdir()) and children.exists() and children.read_text().split()):
        time.sleep(0.02)
    workers = children.read_text().split()
    assert workers, "no worker was started"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.decode().strip() == "simulate: interrupted"
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("option", ["--policies", "--cluster"])
def test_manifests_from_standard_input_leave_no_temporary_file(tmp_path, world_files,
                                                               option):
    """`--policies -` / `--cluster -` copy the stream to a temporary file: the command
    removes it, whether the run succeeds or the stream is refused."""
    import subprocess
    import sys

    given = {"--policies": next(world_files["policies"].glob("*.yaml")),
             "--cluster": world_files["cluster"]}
    for stream, ok in ((given[option].read_bytes(), True), (b"kind: [unclosed\n", False)):
        temp = tmp_path / f"tmp-{ok}"
        temp.mkdir()
        args = {"--policies": str(world_files["policies"]),
                "--cluster": str(world_files["cluster"]), option: "-"}
        proc = subprocess.run(
            [sys.executable, "-m", "simulator.cli", "--flows", str(world_files["good"]),
             *[x for kv in args.items() for x in kv], "--quiet"],
            input=stream, capture_output=True, env={**os.environ, "TMPDIR": str(temp)})
        assert (proc.returncode in (0, 1)) if ok else proc.returncode == 2, proc.stderr
        assert list(temp.iterdir()) == []


def test_a_run_cut_short_before_its_cleanup_leaves_no_directory(tmp_path, world_files):
    """However a run ends (here: its directory made, then a signal's exit before any of the
    run's own cleanup), the command removes that directory on its way out."""
    import subprocess
    import sys

    temp = tmp_path / "spill"
    temp.mkdir()
    script = (
        "import sys\n"
        "from simulator import cli, pipeline, scratch\n"
        "def run(opts, pending=None, write=None):\n"
        "    d = scratch.make('netpol-simulator-', opts.temp_dir)\n"
        "    open(d + '/spilled.tmp', 'wb').close()\n"
        "    raise SystemExit(143)\n"
        "pipeline.run = run\n"
        "sys.argv = ['simulate', '--flows', sys.argv[1], '--policies', sys.argv[2],\n"
        "            '--temp-dir', sys.argv[3], '--quiet']\n"
        "cli.entry()\n")
    proc = subprocess.run([sys.executable, "-c", script, str(world_files["good"]),
                           str(world_files["policies"]), str(temp)],
                          capture_output=True)
    assert proc.returncode == 143, proc.stderr
    assert list(temp.iterdir()) == []


# --- found in review: each a way the rules above were broken --------------------------------

def test_one_bad_line_never_takes_the_good_ones_with_it(tmp_path, world_files):
    """A CSV line with too few or too many columns, or not UTF-8, is one skipped record,
    named by its line, and the records after it keep their own line numbers."""
    rows = ["start_time,src_ip,dst_ip,dst_port,protocol"]
    rows += [f"2024-06-01T00:00:{i:02d}Z,{XA},{YA},80,TCP" for i in range(5)]
    rows.insert(2, "truncated,line")
    rows.insert(4, f"2024-06-01T00:00:00Z,{XA},{YA},80,TCP,extra")
    rows.append(f"2024-06-01T00:00:00Z,{XA},{YA},0x50,TCP")  # hex: never read as 80
    f = tmp_path / "flows.csv"
    f.write_bytes("\n".join(rows).encode() + b"\n2024-06-01T00:00:00Z,10.0.1.\xff,x,80,TCP\n")
    js = tmp_path / "o.json"
    doc = summary_of(invoke("--flows", f, "--cluster", world_files["cluster"], "--policies",
                            world_files["policies"], "--json", js), js)
    assert_accounted(doc)
    fl = doc["summary"]["flows"]
    assert (fl["read"], fl["evaluated"]) == (9, 5)
    assert fl["skipped"] == {"invalid port (not an integer 0-65535)": 1,
                             "line not valid UTF-8": 1,
                             "malformed CSV line (too few columns)": 1,
                             "malformed CSV line (too many columns)": 1}
    assert set(fl["skipped_examples"]) == {
        f"{f}: line 3: malformed CSV line (too few columns)",
        f"{f}: line 5: malformed CSV line (too many columns)",
        f"{f}: line 9: invalid port (not an integer 0-65535)",
        f"{f}: line 10: line not valid UTF-8"}


def test_normalized_csv_is_recognised_by_its_content(tmp_path, world_files):
    """Through a pipe or under any name, a CSV table is known by its header."""
    body = f"start_time,src_ip,dst_ip,dst_port,protocol\n2024-06-01T00:00:00Z,{XA},{YA},80,TCP\n"
    (tmp_path / "flows.data").write_text(body)
    (tmp_path / "flows.data.gz").write_bytes(gzip.compress(body.encode()))
    for source in ("flows.data", "flows.data.gz"):
        js = tmp_path / f"{source}.json"
        doc = summary_of(invoke("--flows", tmp_path / source, "--policies",
                                world_files["policies"], "--json", js), js)
        assert doc["summary"]["inputs"]["flows"][0]["format"] == "normalized"
    js = tmp_path / "stdin.json"
    doc = summary_of(invoke("--flows", "-", "--policies", world_files["policies"], "--json", js,
                            stdin=body.encode()), js)
    assert doc["summary"]["flows"]["evaluated"] == 1


def test_standard_input_and_pipes_are_inputs_too(tmp_path, world_files):
    """An output may not be the file redirected into standard input, nor a pipe read."""
    import subprocess
    import sys

    f = tmp_path / "flows.log"
    f.write_bytes((FIXTURES / "awsdocs-v2-default-format.log").read_bytes())
    before = f.read_bytes()
    with f.open("rb") as stdin:
        r = subprocess.run([sys.executable, "-m", "simulator.cli", "--flows", "-",
                            "--policies", str(world_files["policies"]), "--json", str(f)],
                           stdin=stdin, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "is the input file" in r.stderr, r.stderr
    assert f.read_bytes() == before
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "p.log"
        os.mkfifo(fifo)
        line = refused(invoke("--flows", fifo, "--policies", world_files["policies"],
                              "--json", fifo))
        assert "is the input file" in line and fifo.is_fifo()


@pytest.mark.parametrize("text,why", [
    ('{"kind": "List", "items": [{"kind": "Pod", "x": ' + "9" * 5000 + "}]}",
     "invalid JSON: Exceeds the limit"),
])
def test_manifest_python_cannot_hold_is_refused_not_a_crash(tmp_path, world_files, text, why):
    c = tmp_path / "c.json"
    c.write_text(text)
    refused(invoke("--flows", world_files["good"], "--cluster", c, "--policies",
                   world_files["policies"]), why)
    p = tmp_path / "p"
    p.mkdir()
    (p / "p.json").write_text(text)
    refused(invoke("--flows", world_files["good"], "--policies", p), why)


def test_unpaired_surrogate_skips_a_snapshot_item_and_refuses_a_policy(tmp_path, world_files):
    objs = world()
    objs[3]["metadata"]["labels"] = {"app": "x\udc80"}
    c = tmp_path / "c.json"
    c.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
    js = tmp_path / "o.json"
    doc = summary_of(invoke("--flows", world_files["good"], "--cluster", c, "--policies",
                            world_files["policies"], "--json", js), js)
    assert doc["summary"]["inputs"]["cluster"]["skipped"] == 1
    assert "unpaired UTF-16 surrogate" in doc["summary"]["inputs"]["cluster"][
        "skipped_examples"][0]
    p = tmp_path / "p"
    p.mkdir()
    (p / "p.json").write_text(json.dumps(netpol("y", "bad\ud800name", {"podSelector": {}})))
    refused(invoke("--flows", world_files["good"], "--policies", p), "surrogate")


@pytest.mark.parametrize("args,fragment", [
    (["--threads", "99999"], "--threads"),
    (["--memory-limit", "1000%"], "--memory-limit"),
    (["--memory-limit", "10 KB"], "--memory-limit"),
    (["--temp-dir", ""], "--temp-dir"),
])
def test_option_values_out_of_bounds(world_files, args, fragment):
    refused(invoke("--flows", world_files["good"], "--policies", world_files["policies"],
                   *args), fragment)


def test_dangling_links_and_devices_in_a_directory_are_listed(tmp_path, world_files):
    d = tmp_path / "logs"
    d.mkdir()
    write_vpc_parquet(d / "a.parquet", [vpc_record(XA, YA, 80)])
    (d / "gone.log").symlink_to(tmp_path / "nowhere.log")
    if Path("/dev/zero").exists():
        (d / "zero.log").symlink_to("/dev/zero")
    js = tmp_path / "o.json"
    doc = summary_of(invoke("--flows", d, "--policies", world_files["policies"], "--json",
                            js), js)
    skipped = {Path(f["file"]).name: f["reason"] for f in
               doc["summary"]["inputs"]["skipped_files"]}
    assert skipped["gone.log"] == "a dangling symbolic link"
    if "zero.log" in skipped:
        assert skipped["zero.log"].startswith("not a regular file")


def test_gzip_bomb_capture_is_refused(tmp_path, world_files):
    from simulator.ingest import pcap

    f = tmp_path / "bomb.pcap.gz"
    header = bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000")
    f.write_bytes(gzip.compress(header + bytes(8 << 20)))
    limit = pcap.MAX_GZIP_FREE
    try:
        pcap.MAX_GZIP_FREE = 1 << 20  # the floor lowered so that a small file shows it
        refused(invoke("--flows", f, "--policies", world_files["policies"]),
                "decompression bomb")
    finally:
        pcap.MAX_GZIP_FREE = limit


@pytest.mark.parametrize("doc,field", [
    (netpol("y", "BAD NAME!", {"podSelector": {}}), "metadata.name"),
    (netpol("NOT valid", "p", {"podSelector": {}}), "metadata.namespace"),
    (netpol("y", "p", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {
        "cidr": "fe80::1%eth0/64"}}]}]}), "ipBlock.cidr"),
    ({**netpol("y", "p", {"podSelector": {}}), "kind": ["NetworkPolicy"]}, "kind"),
])
def test_policies_the_api_server_would_reject(tmp_path, world_files, doc, field):
    p = tmp_path / "p"
    p.mkdir()
    (p / "p.json").write_text(json.dumps(doc))
    refused(invoke("--flows", world_files["good"], "--policies", p), field)
    (p / "p.json").write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                              "metadata: {name: p, namespace: y}\nspec:\n  podSelector:\n"
                              "    matchLabels: {null: x}\n")
    refused(invoke("--flows", world_files["good"], "--policies", p), "invalid label key")


def test_a_failed_run_leaves_no_output_and_outputs_keep_their_mode(tmp_path, world_files):
    """Outputs appear together at the end, or none does; a new output gets the mode the
    umask gives, a replaced one keeps its own."""
    out, js = tmp_path / "o.csv", tmp_path / "o.json"
    args = ["--flows", world_files["good"], "--cluster", world_files["cluster"],
            "--policies", world_files["policies"], "--out", out, "--json", js]
    from simulator.output import jsonout

    def full_disk(*a: Any, **k: Any) -> None:
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")

    original = jsonout.escape_json_file
    jsonout.escape_json_file = full_disk  # the second output fails
    try:
        line = refused(invoke(*args))
    finally:
        jsonout.escape_json_file = original
    assert "no space left on device" in line
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["cluster.json",
                                                                         "good.parquet"]
    assert invoke(*args).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    out.chmod(0o640)
    assert invoke(*args).exit_code == 0 and out.stat().st_mode & 0o777 == 0o640


def test_gzip_cut_short_is_listed_in_a_directory_refused_when_named(tmp_path, world_files):
    d = tmp_path / "logs"
    d.mkdir()
    log = (FIXTURES / "awsdocs-v2-default-format.log").read_bytes()
    (d / "good.log").write_bytes(log)
    packed = gzip.compress(log * 2000)
    (d / "cut.log.gz").write_bytes(packed[:len(packed) // 2])  # fails past its head only
    js = tmp_path / "o.json"
    doc = summary_of(invoke("--flows", d, "--policies", world_files["policies"], "--json",
                            js), js)
    (skipped,) = doc["summary"]["inputs"]["skipped_files"]
    assert skipped["file"] == str(d / "cut.log.gz")
    assert skipped["reason"].startswith("cannot be read to its end")
    assert doc["summary"]["flows"]["read"] == 7
    refused(invoke("--flows", d / "cut.log.gz", "--policies", world_files["policies"]),
            str(d / "cut.log.gz"), "cannot read flows")
