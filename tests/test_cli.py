"""The command line as a user meets it: outputs, exit codes, and bad input reported as one
line naming the file and the place, with exit code 2 and no traceback."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner
from test_semantics import XA, XB, YA, deny_all_ingress, world
from worldfiles import netpol, pod, vpc_record, write_cluster, write_policies, write_vpc_parquet

from simulator.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    recs = [vpc_record(XA, YA, 80), vpc_record(YA, XA, 40000, src_port=80),
            vpc_record(XB, YA, 81, action="REJECT"),
            vpc_record(None, None, 0, log_status="NODATA")]
    return {
        "flows": write_vpc_parquet(tmp_path / "flows.parquet", recs),
        "cluster": write_cluster(tmp_path / "cluster.json", world()),
        "candidate": write_policies(tmp_path / "candidate", [deny_all_ingress("y")]),
        "baseline": write_policies(tmp_path / "baseline", []),
    }


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def base_args(inp: dict[str, Path]) -> list[Any]:
    return ["--flows", inp["flows"], "--cluster", inp["cluster"], "--policies", inp["candidate"]]


def assert_input_error(result: Any, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("simulate: error: ")
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0], lines[0]


def test_summary_names_breaks_and_skips(inputs):
    r = invoke(*base_args(inputs), "--baseline", inputs["baseline"])
    assert r.exit_code == 0, r.output
    assert "Flows: 4 read = 3 evaluated + 1 skipped" in r.output
    assert "NODATA" in r.output
    assert "record 4" in r.output  # the skipped record is named
    assert "break" in r.output and "x/Pod/a -> y/Pod/a TCP/80" in r.output
    assert "isolated by y/deny-ingress" in r.output


def test_quiet_prints_nothing(inputs):
    r = invoke(*base_args(inputs), "--quiet")
    assert r.exit_code == 0
    assert r.output == ""


def test_fail_on_break_exit_code(inputs):
    assert invoke(*base_args(inputs), "--fail-on-break", "-q").exit_code == 1
    ok = write_policies(inputs["flows"].parent / "open", [])
    r = invoke("--flows", inputs["flows"], "--cluster", inputs["cluster"], "--policies", ok,
               "--fail-on-break", "-q")
    assert r.exit_code == 0


def gate_lines(result: Any) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("simulate: gate")]


def test_max_breaks_gate_counts_breaking_connections(inputs):
    args = [*base_args(inputs), "--baseline", inputs["baseline"], "-q"]
    assert invoke(*args, "--max-breaks", "2").exit_code == 0
    r = invoke(*args, "--max-breaks", "1")
    assert r.exit_code == 1
    assert gate_lines(r) == ["simulate: gate --max-breaks 1: 2 observed connections would "
                             "break"]


def test_unresolved_and_disagreement_gates(inputs, tmp_path):
    unresolved = write_vpc_parquet(tmp_path / "unresolved.parquet",
                                   [vpc_record(XA, "10.0.1.250", 80)])
    r = invoke("--flows", unresolved, "--cluster", inputs["cluster"], "--policies",
               inputs["candidate"], "--pod-cidr", "10.0.0.0/16", "--fail-on-unresolved", "-q")
    assert r.exit_code == 1
    assert gate_lines(r)[0] == ("simulate: gate --fail-on-unresolved: 1 connection has an "
                                "endpoint that matches no pod")
    assert invoke("--flows", unresolved, "--cluster", inputs["cluster"], "--policies",
                  inputs["candidate"], "-q").exit_code == 0
    # the empty baseline says allow where the dataplane REJECTed: a disagreement
    args = [*base_args(inputs), "--baseline", inputs["baseline"], "-q"]
    r = invoke(*args, "--fail-on-disagreement")
    assert r.exit_code == 1
    assert gate_lines(r) == ["simulate: gate --fail-on-disagreement: the baseline disagrees "
                             "with the recorded verdict on 1 of 2 connections"]
    both = invoke(*args, "--fail-on-disagreement", "--fail-on-break")
    assert len(gate_lines(both)) == 2


def test_markdown_summary_for_a_pull_request(inputs, tmp_path):
    md = tmp_path / "pr.md"
    assert invoke(*base_args(inputs), "--baseline", inputs["baseline"], "--markdown", md,
                  "-q").exit_code == 0
    text = md.read_text()
    assert text.startswith("### netpol-simulator: 2 workload pairs would break")
    assert "| B1 | x/a → y/a TCP/80 | 1 | 2 | y/a is isolated for ingress by y/deny" in text
    assert "<details><summary>B1: fix" in text and "```yaml" in text


def test_report_names_are_checked_before_the_run(inputs, tmp_path):
    assert_input_error(invoke(*base_args(inputs), "--report", tmp_path / "r.txt"), "--report")
    assert_input_error(invoke(*base_args(inputs), "--markdown", tmp_path / "r.html"),
                       "--markdown")


@pytest.mark.parametrize("ext", [".parquet", ".csv", ".jsonl"])
def test_out_formats_carry_the_required_columns(inputs, tmp_path, ext):
    out = tmp_path / f"conns{ext}"
    assert invoke(*base_args(inputs), "--out", out, "-q").exit_code == 0
    if ext == ".parquet":
        rows = pq.read_table(out).to_pylist()
    elif ext == ".csv":
        rows = list(csv.DictReader(out.open()))
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    required = ("src_ip dst_ip dst_port protocol src_kind dst_kind src_namespace src_pod "
                "src_workload dst_namespace dst_pod dst_workload flows packets bytes first_seen "
                "last_seen observed baseline candidate change baseline_reason "
                "candidate_reason").split()
    assert all(c in rows[0] for c in required)
    by_key = {(r["src_ip"], str(r["dst_port"])): r for r in rows}
    assert by_key[(XA, "80")]["change"] == "break"
    assert by_key[(XB, "81")]["observed"] == "denied"
    assert by_key[(XB, "81")]["change"] == "still_denied"


def test_action_and_log_status_are_read_however_they_are_spelled(tmp_path):
    """The usual spellings (ACCEPT, REJECT, OK, NODATA) are read fast; any other casing
    or padding means the same, and an unknown action is no verdict."""
    spellings = {81: "ACCEPT", 82: "REJECT", 83: " accept", 84: "Reject ", 85: "DROP",
                 86: None}
    records = [vpc_record(XA, YA, port, action=action) for port, action in spellings.items()]
    records += [vpc_record(None, None, 0, log_status=" nodata"),
                vpc_record(XA, YA, 87, log_status="SkipData"),
                vpc_record(XA, YA, 88, log_status="ok ")]
    write_vpc_parquet(tmp_path / "f.parquet", records)
    write_cluster(tmp_path / "c.json", world())
    write_policies(tmp_path / "p", [])
    r = invoke("--flows", tmp_path / "f.parquet", "--cluster", tmp_path / "c.json",
               "--policies", tmp_path / "p", "--out", tmp_path / "o.parquet",
               "--json", tmp_path / "s.json", "-q")
    assert r.exit_code == 0, r.output
    observed = {row["dst_port"]: row["observed"]
                for row in pq.read_table(tmp_path / "o.parquet").to_pylist()}
    assert observed == {81: "allowed", 82: "denied", 83: "allowed", 84: "denied",
                        85: "unknown", 86: "unknown", 88: "allowed"}
    summary = json.loads((tmp_path / "s.json").read_text())["summary"]
    assert summary["flows"]["skipped"] == {"NODATA record (no traffic in the window)": 1,
                                           "SKIPDATA record (AWS dropped records)": 1}


def test_csv_neutralises_formula_injection(tmp_path):
    objs = world() + [pod("x", "evil", "10.0.1.66", {"app": "x"}, [],
                          owner=("Job", "=HYPERLINK(\"http://e\")"))]
    write_cluster(tmp_path / "c.json", objs)
    write_vpc_parquet(tmp_path / "f.parquet", [vpc_record("10.0.1.66", YA, 80)])
    write_policies(tmp_path / "p", [])
    r = invoke("--flows", tmp_path / "f.parquet", "--cluster", tmp_path / "c.json",
               "--policies", tmp_path / "p", "--out", tmp_path / "o.csv", "-q")
    assert r.exit_code == 0, r.output
    row = next(csv.DictReader((tmp_path / "o.csv").open()))
    assert row["src_workload"].startswith("Job/=")  # not at the start: harmless
    assert not any(v.startswith(("=", "+", "@")) for v in row.values())


def test_csv_neutralises_formulas_in_flow_named_pods(tmp_path):
    """Names a flow gives (a pod, its namespace) reach every text column: each is quoted."""
    evil = ["=HYPERLINK(\"http://e\")", "+1+1", "@SUM(A1)", "-2-2"]
    table = pa.table({
        "start_time": pa.array([1_717_000_000_000_000] * 4, pa.timestamp("us", tz="UTC")),
        "src_ip": [f"10.0.1.{i}" for i in range(4)], "dst_ip": ["10.0.2.10"] * 4,
        "src_port": pa.array([40000] * 4, pa.int32()), "dst_port": pa.array([80] * 4, pa.int32()),
        "protocol": ["TCP"] * 4, "verdict": ["FORWARDED"] * 4,
        "src_namespace": evil, "src_pod": evil, "dst_namespace": ["y"] * 4,
        "dst_pod": ["db-0"] * 4})
    pq.write_table(table, tmp_path / "flows.parquet")
    write_policies(tmp_path / "p", [])
    r = invoke("--flows", tmp_path / "flows.parquet", "--policies", tmp_path / "p",
               "--out", tmp_path / "o.csv", "-q")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((tmp_path / "o.csv").open()))
    assert sorted(r["src_pod"] for r in rows) == sorted("'" + e for e in evil)
    assert sorted(r["src_namespace"] for r in rows) == sorted("'" + e for e in evil)
    assert not any(v.startswith(("=", "+", "@", "-")) for r in rows for v in r.values())


def test_json_output(inputs, tmp_path):
    out = tmp_path / "r.json"
    assert invoke(*base_args(inputs), "--baseline", inputs["baseline"], "--json", out,
                  "-q").exit_code == 0
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 3
    # the empty baseline set is said, loudly, in the warnings and the headline
    assert [w["code"] for w in doc["warnings"]] == ["empty_policy_set"]
    assert doc["summary"]["warnings"] == doc["warnings"]
    s = doc["summary"]
    assert s["flows"]["read"] == 4
    assert s["flows"]["skipped"] == {"NODATA record (no traffic in the window)": 1}
    # against an empty baseline set, the REJECTed 81 connection breaks too, and the
    # baseline model disagrees with the dataplane about it
    assert s["connections"]["by_change"]["break"]["connections"] == 2
    assert s["calibration"]["disagreements"] == 1
    assert s["top_breaks"][0]["destination"] == "y/Pod/a"
    assert len(doc["connections"]) == s["connections"]["total"]
    brk = [c for c in doc["connections"] if c["change"] == "break"][0]
    assert brk["candidate_ingress_isolated_by"] == ["y/deny-ingress"]
    # the report: the same content as the HTML, machine-readable
    report = doc["report"]
    assert report["version"] == 1
    assert report["headline"].startswith("2 workload pairs would break")
    assert report["headline"].endswith("— partial judgement: 1 warning")
    group = report["breaks"]["groups"][0]
    assert group["reason"].startswith("y/a is isolated for ingress by y/deny-ingress")
    # the default-deny selects every pod of y: never widened; a policy for y/a alone
    [edit] = group["fix"]["edits"]
    assert edit["new_policy"] and edit["policy"].startswith("y/allow-a-from-")
    assert "conn_id" not in brk and "src_ep" not in brk


def test_inputs_are_not_modified(inputs, tmp_path):
    files = [inputs["flows"], inputs["cluster"], *inputs["candidate"].iterdir()]
    before = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    invoke(*base_args(inputs), "--out", tmp_path / "o.parquet", "-q")
    assert before == {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_ignored_kinds_are_counted(inputs):
    (inputs["candidate"] / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n"
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n"
        "  metadata: {name: s}\n")
    r = invoke(*base_args(inputs))
    assert r.exit_code == 0, r.output
    assert "ignored in candidate: v1 ConfigMap ×1, v1 Service ×1" in r.output


def test_normalized_flows_with_identity_run_without_cluster(tmp_path):
    table = pa.table({
        "start_time": pa.array([1_717_000_000_000_000] * 2, pa.timestamp("us", tz="UTC")),
        "src_ip": ["10.0.1.10", "10.0.1.11"], "dst_ip": ["10.0.2.10", "10.0.2.10"],
        "src_port": pa.array([40000, 40001], pa.int32()),
        "dst_port": pa.array([80, 80], pa.int32()), "protocol": ["TCP", "TCP"],
        "verdict": ["FORWARDED", "FORWARDED"],
        "src_namespace": ["x", "x"], "src_pod": ["a", "b"],
        "src_labels": ['{"app": "web"}', '{"app": "batch"}'],
        "dst_namespace": ["y", "y"], "dst_pod": ["db-0", "db-0"],
        "dst_labels": ['{"app": "db"}', '{"app": "db"}'],
        "dst_namespace_labels": ['{"team": "data"}', '{"team": "data"}'],
    })
    pq.write_table(table, tmp_path / "flows.parquet")
    pol = netpol("y", "db", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
        {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}]}]})
    write_policies(tmp_path / "p", [pol])
    r = invoke("--flows", tmp_path / "flows.parquet", "--policies", tmp_path / "p",
               "--out", tmp_path / "o.parquet", "-q")
    assert r.exit_code == 0, r.output
    rows = {r["src_pod"]: r for r in pq.read_table(tmp_path / "o.parquet").to_pylist()}
    assert rows["a"]["candidate"] == "allow"
    assert rows["b"]["candidate"] == "deny"
    assert rows["b"]["change"] == "break"  # observed FORWARDED
    assert rows["b"]["dst_kind"] == "pod"


def test_normalized_csv(tmp_path):
    (tmp_path / "flows.csv").write_text(
        "start_time,src_ip,dst_ip,src_port,dst_port,protocol,verdict\n"
        "2024-06-01T12:00:00Z,10.0.1.10,10.0.2.10,40000,80,TCP,allowed\n"
        "2024-06-01T12:00:01Z,10.0.1.10,not-an-ip,40000,80,TCP,allowed\n"
        "2024-06-01T12:00:02Z,10.0.1.10,10.0.2.10,40000,,TCP,allowed\n")
    write_cluster(tmp_path / "c.json", world())
    write_policies(tmp_path / "p", [deny_all_ingress("y")])
    r = invoke("--flows", tmp_path / "flows.csv", "--cluster", tmp_path / "c.json",
               "--policies", tmp_path / "p", "--json", tmp_path / "o.json")
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "o.json").read_text())["summary"]
    assert s["flows"]["skipped"] == {"invalid IP address": 1, "missing destination port": 1}
    assert any("line 4" in e for e in s["flows"]["skipped_examples"])
    assert s["connections"]["by_change"]["break"]["connections"] == 1


def test_real_vpc_records_with_tcp_flags(tmp_path):
    """The AWS doc's TCP-flag sequence, turned into the Parquet delivery schema: SYN-ACK
    and FIN records are the server's replies, so there are two connections, both to the
    server's port 5001, none from it."""
    lines = (FIXTURES / "awsdocs-v3-custom-tcp-flags.log").read_text().split("\n")
    header = [h.replace("-", "_") for h in lines[0].split()]
    rows = [dict(zip(header, line.split(), strict=True)) for line in lines[1:] if line.strip()]
    ints = {"version", "srcport", "dstport", "protocol", "tcp_flags", "packets", "bytes",
            "start", "end"}
    table = pa.Table.from_pylist([{k: int(v) if k in ints else v for k, v in r.items()}
                                  for r in rows])
    pq.write_table(table, tmp_path / "f.parquet")
    write_policies(tmp_path / "p", [])
    r = invoke("--flows", tmp_path / "f.parquet", "--policies", tmp_path / "p",
               "--out", tmp_path / "o.parquet", "-q")
    assert r.exit_code == 0, r.output
    conns = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert {(c["src_ip"], c["dst_ip"], c["dst_port"]) for c in conns} == {
        ("52.213.180.42", "10.0.0.62", 5001)}
    assert conns[0]["flows"] == 8 and conns[0]["reply_flows"] == 4
    assert conns[0]["direction"] == "tcp flags"


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize("spec,field", [
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]},
     "spec.ingress[0].from[0].ipBlock.cidr"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16",
                                                             "except": ["10.1.0.0/24"]}}]}]},
     "spec.ingress[0].from[0].ipBlock.except[0]"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 90}]}]},
     "spec.ingress[0].ports[0].endPort"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]},
     "spec.ingress[0].ports[0].endPort"),
    ({"podSelector": {}, "egress": [{"ports": [{"protocol": "ICMP"}]}]},
     "spec.egress[0].ports[0].protocol"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Equals",
                                            "values": ["b"]}]}},
     "spec.podSelector.matchExpressions[0].operator"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists",
                                            "values": ["b"]}]}},
     "spec.podSelector.matchExpressions[0].values"),
    ({"podSelector": {}, "ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"},
                                                 "podSelector": {}}]}]},
     "spec.ingress[0].from[0]"),
    ({"podSelector": {}, "policyTypes": ["Inbound"]}, "spec.policyTypes"),
    ({"podSelector": {}, "ingres": []}, "spec.ingres"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]},
     "spec.ingress[0].ports[0].port"),
])
def test_invalid_policy_names_file_document_and_field(inputs, spec, field):
    bad = inputs["candidate"] / "zz-bad.yaml"
    bad.write_text("# first document is fine\n"
                   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\n"
                   + json.dumps(netpol("y", "broken", spec)))
    r = invoke(*base_args(inputs))
    assert_input_error(r, str(bad), "document 2", "y/broken", field)   # counted from 1


def test_invalid_yaml_names_the_line(inputs):
    bad = inputs["candidate"] / "zz-bad.yaml"
    bad.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n"
                   "  name: [unclosed\n")
    assert_input_error(invoke(*base_args(inputs)), str(bad), "line")


def test_invalid_cluster_json_names_the_line(inputs):
    inputs["cluster"].write_text('{"kind": "List",\n "items": [\n {"kind": "Pod",]}')
    assert_input_error(invoke(*base_args(inputs)), str(inputs["cluster"]), "line 3")


def test_bad_pod_in_snapshot_is_skipped_and_named(inputs, tmp_path):
    """One item of the snapshot that cannot be understood is skipped, counted and named;
    the rest of the cluster is used (policies, by contrast, stay strict)."""
    objs = world() + [pod("x", "broken", "10.0.0.300", {}, [])]
    write_cluster(inputs["cluster"], objs)
    out = tmp_path / "r.json"
    r = invoke(*base_args(inputs), "--json", out)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    cluster = doc["summary"]["inputs"]["cluster"]
    assert cluster["skipped"] == 1 and cluster["pods"] == len(
        [o for o in world() if o["kind"] == "Pod"])
    assert "x/broken" in cluster["skipped_examples"][0]
    assert "status.podIPs: not an IP address: '10.0.0.300'" in cluster["skipped_examples"][0]
    assert "cluster_items_skipped" in [w["code"] for w in doc["warnings"]]
    assert "x/broken" in r.output and "partial judgement" in r.output
    # the good pods still resolve: the break is still found
    assert doc["summary"]["connections"]["by_change"]["break"]["connections"] == 1


def test_unknown_flow_schema_lists_what_was_expected(inputs, tmp_path):
    pq.write_table(pa.table({"a": [1], "b": ["x"]}), tmp_path / "weird.parquet")
    r = invoke("--flows", tmp_path / "weird.parquet", "--policies", inputs["candidate"])
    assert_input_error(r, "weird.parquet", "unknown flow table", "srcaddr", "start_time")


def test_flow_file_that_is_not_parquet(inputs, tmp_path):
    (tmp_path / "x.parquet").write_text("hello")
    r = invoke("--flows", tmp_path / "x.parquet", "--policies", inputs["candidate"])
    assert_input_error(r, "x.parquet", "not a readable PARQUET file")


def test_missing_inputs(inputs, tmp_path):
    assert_input_error(invoke("--flows", tmp_path / "nope.parquet", "--policies",
                              inputs["candidate"]), "nope.parquet", "no such file")
    assert_input_error(invoke("--flows", inputs["flows"], "--policies", tmp_path / "nodir"),
                       "nodir", "no such file")
    assert_input_error(invoke("--flows", inputs["flows"]), "--policies")


def test_bad_pod_cidr_option(inputs):
    assert_input_error(invoke(*base_args(inputs), "--pod-cidr", "10.0.0.0"), "--pod-cidr")


def test_bad_out_extension(inputs, tmp_path):
    assert_input_error(invoke(*base_args(inputs), "--out", tmp_path / "x.xlsx"), "--out")


def test_the_simulate_command_exits_with_its_code_and_output(inputs, tmp_path):
    """The installed command (cli.entry) leaves without tearing the run down: what it
    printed and wrote must be complete, and its exit code the gate's."""
    import os
    import subprocess
    import sys

    out = tmp_path / "conns.csv"
    temp = tmp_path / "temp"  # where the run's DuckDB spill directory is made
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    args = [sys.executable, "-m", "simulator.cli", *map(str, base_args(inputs)),
            "--out", str(out), "--fail-on-break"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1, r.stderr
    assert "Verdict:" in r.stdout and r.stdout.rstrip().endswith(f"Connections: {out}")
    assert r.stderr.startswith("simulate: gate --fail-on-break: 1 observed")
    assert len(out.read_text().splitlines()) == 3  # header and two connections
    assert list(temp.iterdir()) == []  # the spill directory is removed all the same
    r = subprocess.run([sys.executable, "-m", "simulator.cli", "--flows", "nope.parquet",
                        "--policies", str(inputs["candidate"])],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and r.stderr.startswith("simulate: error: nope.parquet")


def test_python_api_returns_the_connections_table(inputs):
    from simulator.pipeline import Options, run

    result = run(Options(flows=[str(inputs["flows"])], cluster=[str(inputs["cluster"])],
                         policies=[str(inputs["candidate"])]))
    try:
        table = result.connections()
    finally:
        result.close()
    rows = {(r["src_ip"], r["dst_port"]): r for r in table.to_pylist()}
    assert rows[(XA, 80)]["change"] == "break"


def test_records_are_accounted_per_file(inputs, tmp_path):
    second = write_vpc_parquet(tmp_path / "more.parquet", [
        vpc_record(XA, YA, 80), vpc_record("10.0.1.999", YA, 80),
        vpc_record(None, None, 0, log_status="SKIPDATA")])
    out = tmp_path / "r.json"
    r = invoke("--flows", inputs["flows"], "--flows", second, "--cluster", inputs["cluster"],
               "--policies", inputs["candidate"], "--json", out)
    assert r.exit_code == 0, r.output
    fl = json.loads(out.read_text())["summary"]["flows"]
    files = {Path(f["file"]).name: f for f in fl["files"]}
    assert files["flows.parquet"]["records"] == 4
    assert files["flows.parquet"]["skipped"] == {"NODATA record (no traffic in the window)": 1}
    assert files["more.parquet"]["records"] == 3
    # an address that is not one is found after grouping, and still put in its own file
    assert files["more.parquet"]["skipped"] == {"SKIPDATA record (AWS dropped records)": 1,
                                                "invalid IP address": 1}
    assert len(fl["files"]) == 2
    for f in fl["files"]:
        assert f["records"] == f["evaluated"] + sum(f["skipped"].values())
    assert fl["read"] == 7
    assert fl["read"] == fl["evaluated"] + sum(fl["skipped"].values())
    assert "more.parquet (vpc-parquet): 3 read, 1 evaluated; skipped SKIPDATA" in r.output


def test_saved_flows_replay_to_identical_results(inputs, tmp_path):
    saved = tmp_path / "saved.parquet"
    assert invoke(*base_args(inputs), "--save-flows", saved, "--out", tmp_path / "a.parquet",
                  "-q").exit_code == 0
    assert invoke("--flows", saved, "--cluster", inputs["cluster"], "--policies",
                  inputs["candidate"], "--out", tmp_path / "b.parquet", "-q").exit_code == 0
    first = pq.read_table(tmp_path / "a.parquet").to_pylist()
    again = pq.read_table(tmp_path / "b.parquet").to_pylist()
    key = lambda r: (r["src_ip"], r["dst_ip"], r["dst_port"], r["protocol"])  # noqa: E731
    assert sorted(first, key=key) == sorted(again, key=key)
    assert pq.read_schema(saved).names[:4] == ["start_time", "end_time", "src_ip", "dst_ip"]


# --- kubectl-native inputs -------------------------------------------------------------

def test_policies_and_cluster_from_standard_input(inputs, tmp_path):
    # kubectl get networkpolicies -A -o yaml | simulate --policies - ...
    listing = yaml.safe_dump({"apiVersion": "v1", "kind": "List",
                              "items": [deny_all_ingress("y")]})
    out = tmp_path / "o.jsonl"
    r = CliRunner().invoke(main, ["--flows", str(inputs["flows"]), "--cluster",
                                  str(inputs["cluster"]), "--policies", "-", "--out", str(out),
                                  "-q"], input=listing)
    assert r.exit_code == 0, r.output
    from_files = tmp_path / "f.jsonl"
    r = invoke(*base_args(inputs), "--out", from_files, "-q")
    assert r.exit_code == 0, r.output
    assert same_rows(out, from_files)
    # the snapshot too (kubectl get pods,namespaces,nodes -A -o json | ... --cluster -)
    r = CliRunner().invoke(main, ["--flows", str(inputs["flows"]), "--cluster", "-",
                                  "--policies", str(inputs["candidate"]), "--out", str(out),
                                  "-q"], input=inputs["cluster"].read_text())
    assert r.exit_code == 0, r.output
    assert same_rows(out, from_files)


def same_rows(a: Path, b: Path) -> bool:
    """The same connections (rows come in the order the parallel writer finished)."""
    return sorted(a.read_text().splitlines()) == sorted(b.read_text().splitlines())


def test_standard_input_is_read_by_one_option_only(inputs):
    r = CliRunner().invoke(main, ["--flows", "-", "--cluster", "-",
                                  "--policies", str(inputs["candidate"])], input="")
    assert r.exit_code == 2
    assert "--flows and --cluster -: standard input can be read once" in r.output


def test_bad_policy_from_standard_input_is_named_as_such(inputs):
    bad = json.dumps(netpol("y", "broken", {"podSelector": {}, "policyTypes": ["Inbound"]}))
    r = CliRunner().invoke(main, ["--flows", str(inputs["flows"]), "--policies", "-"],
                           input=bad)
    assert_input_error(r, "--policies - (standard input)", "document 1", "spec.policyTypes")


def test_policy_without_namespace_needs_default_namespace(inputs, tmp_path):
    pol = deny_all_ingress("y")
    del pol["metadata"]["namespace"]
    pols = write_policies(tmp_path / "nons", [pol])
    r = invoke("--flows", inputs["flows"], "--cluster", inputs["cluster"], "--policies", pols)
    assert_input_error(r, "metadata.namespace: missing", "--default-namespace", "document 1")
    out = tmp_path / "o.jsonl"
    r = invoke("--flows", inputs["flows"], "--cluster", inputs["cluster"], "--policies", pols,
               "--default-namespace", "y", "--out", out, "-q")
    assert r.exit_code == 0, r.output
    # placed in y, as `kubectl apply -n y` would: it isolates y's pods
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert any(r["dst_namespace"] == "y" and r["candidate"] == "deny" for r in rows)
    # and the next run without the option is refused again
    r = invoke("--flows", inputs["flows"], "--cluster", inputs["cluster"], "--policies", pols)
    assert r.exit_code == 2
    r = invoke(*base_args(inputs), "--default-namespace", "Not_A_Namespace")
    assert r.exit_code == 2 and "--default-namespace" in r.output


def test_colour_only_when_asked_or_on_a_terminal(inputs, monkeypatch):
    painted = invoke(*base_args(inputs), "--color", "always")
    assert painted.exit_code == 0, painted.output
    assert "\x1b[" in painted.output
    # the same words either way
    plain = invoke(*base_args(inputs), "--color", "never")
    assert "\x1b[" not in plain.output
    assert click.unstyle(painted.output) == plain.output
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in invoke(*base_args(inputs)).output   # auto, not a terminal


def test_every_json_timestamp_is_rfc3339_utc(inputs, tmp_path):
    js, jl = tmp_path / "o.json", tmp_path / "o.jsonl"
    r = invoke(*base_args(inputs), "--json", js, "--out", jl, "-q")
    assert r.exit_code == 0, r.output
    rfc3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
    for text in (js.read_text(), jl.read_text()):
        stamps = re.findall(r'"(\d{4}-\d\d-\d\d[ T][^"]*)"', text)
        assert stamps and all(rfc3339.fullmatch(s) for s in stamps), set(stamps)
    doc = json.loads(js.read_text())
    assert doc["connections"][0]["first_seen"].endswith("Z")
